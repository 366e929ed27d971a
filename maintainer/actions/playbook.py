"""``playbook``: run a playbook from playbooks/ with ansible-runner, for this site only.

The playbook sees the same inventory files maintainer loaded, limited to
the site's host entry, so group_vars, host_vars and vault work as they do
with ``ansible-playbook``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from ..errors import StepCancelled, StepFailed
from ..inventory import vault_source
from .base import Action, ActionResult, Args, StepContext, tail


class PlaybookArgs(Args):
    playbook: str  # relative to the project's playbooks/
    extra_vars: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    check: bool = False


def _vault_cmdline(password_file: str | Path | None, private_dir: Path) -> list[str]:
    """ansible-playbook's vault option for the password maintainer itself used.

    A password given only in MAINTAINER_VAULT_PASSWORD goes into a 0600 file in
    the run's private directory (removed afterwards): never onto a command line.
    """
    source = vault_source(password_file)
    if source is None:
        return []
    if source.file is None:
        path = private_dir / "vault-password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(source.password or "")
        return ["--vault-password-file", str(path)]
    return ["--vault-password-file", str(source.file.resolve())]


def _failed_tasks(events: Any) -> list[str]:
    """'task NAME: message' for each failed or unreachable task (ansible-runner's events)."""
    found = []
    for event in events:
        if event.get("event") not in ("runner_on_failed", "runner_on_unreachable"):
            continue
        data = event.get("event_data") or {}
        if data.get("ignore_errors"):
            continue
        res = data.get("res") or {}
        message = str(res.get("msg") or res.get("reason") or "").strip()
        stderr = str(res.get("stderr") or "").strip()
        if stderr and stderr != message:  # a command's own words, not only "non-zero return code"
            message = f"{message}: {tail(stderr, lines=3)}" if message else tail(stderr, lines=3)
        found.append(f"task '{data.get('task', '?')}' ({data.get('task_path', '?')}): {message or 'failed'}")
    return found


def _count(stats: dict[str, Any], key: str, host: str) -> int:
    return int((stats.get(key) or {}).get(host, 0))


@dataclass
class PlaybookRun:
    """What one ansible-runner run of a playbook left: status, per-host counts and its events."""

    playbook: str
    status: str  # successful, failed, timeout, canceled
    rc: int
    outputs: dict[str, Any]  # status, rc, ok, changed, failed, unreachable, skipped (this site's host)
    events: list[dict[str, Any]]
    stdout: str

    def check(self, ctx: StepContext) -> None:
        """Raise StepCancelled (a stop request) or StepFailed (naming the failed task) unless it succeeded."""
        if self.status == "canceled":
            raise StepCancelled(
                f"playbook {self.playbook} stopped: the run was interrupted", outputs=self.outputs
            )
        if self.status != "successful":
            why = "; ".join(_failed_tasks(self.events)) or tail(self.stdout, lines=8)
            raise StepFailed(
                ctx.redactor.text(f"playbook {self.playbook} {self.status} (rc {self.rc}): {why}"),
                outputs=self.outputs,
            )

    def task_results(self, task: str) -> list[dict[str, Any]]:
        """The results (``res``) of the task named ``task`` that ran ok, in order."""
        return [
            (event.get("event_data") or {}).get("res") or {}
            for event in self.events
            if event.get("event") == "runner_on_ok" and (event.get("event_data") or {}).get("task") == task
        ]


def playbook_path(ctx: StepContext, playbook: str) -> Path:
    """playbooks/PLAYBOOK of the project; a missing file fails the step."""
    path = (ctx.project_dir / "playbooks" / playbook).resolve()
    if not path.is_file():
        raise StepFailed(f"playbook '{playbook}' not found under {ctx.project_dir / 'playbooks'}")
    return path


def run_playbook(
    ctx: StepContext,
    playbook: str,
    extra_vars: dict[str, Any] | None = None,
    *,
    tags: list[str] | None = None,
    check: bool = False,
) -> PlaybookRun:
    """Run playbooks/PLAYBOOK with ansible-runner against this site only; never raises for its outcome."""
    import ansible_runner

    path = playbook_path(ctx, playbook)
    data_dir = tempfile.mkdtemp(prefix="maintainer-runner-")
    # the venv's bin holds ansible-playbook; without it ansible-runner gets rc=127
    bin_dir = os.path.dirname(sys.executable)
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "LANG": "C.UTF-8",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }
    cmdline = _vault_cmdline(ctx.vault_password_file, Path(data_dir))
    if check:
        cmdline.append("--check")
    extravars = {
        **(extra_vars or {}),
        "maintainer_run_id": ctx.run.id,
        "maintainer_site": ctx.site.name,
    }
    try:
        result = ansible_runner.run(
            private_data_dir=data_dir,
            playbook=str(path),
            inventory=[str(p.resolve()) for p in ctx.inventory_sources],
            limit=ctx.site.name,
            extravars=extravars,
            tags=",".join(tags or []) or None,
            cmdline=" ".join(cmdline) or None,
            envvars=env,
            suppress_env_files=True,
            quiet=True,
            timeout=int(ctx.timeout) if ctx.timeout else None,
            cancel_callback=ctx.cancel.is_set,
        )
        # both read the private data dir: before it is removed
        stats = result.stats or {}
        stdout = result.stdout.read() if result.stdout else ""
        events = list(result.events)
        status, rc = result.status, result.rc
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    host = ctx.site.name
    outputs = {
        "status": status,
        "rc": rc,
        "ok": _count(stats, "ok", host),
        "changed": _count(stats, "changed", host),
        "failed": _count(stats, "failures", host),
        "unreachable": _count(stats, "dark", host),
        "skipped": _count(stats, "skipped", host),
    }
    return PlaybookRun(playbook, status, rc, outputs, events, stdout)


class PlaybookAction(Action):
    name = "playbook"
    Args = PlaybookArgs
    summary = "run playbooks/PLAYBOOK with ansible-runner against this site's host"

    def dry_run(self, ctx: StepContext, args: PlaybookArgs) -> dict[str, Any]:
        return {
            "would_run": str(playbook_path(ctx, args.playbook).relative_to(ctx.project_dir.resolve())),
            "limit": ctx.site.name,
            "extra_vars": ctx.redactor(args.extra_vars),
            "check": args.check,
        }

    def run(self, ctx: StepContext, args: PlaybookArgs) -> ActionResult:
        done = run_playbook(ctx, args.playbook, args.extra_vars, tags=args.tags, check=args.check)
        done.check(ctx)
        outputs = done.outputs
        return ActionResult(
            outputs=outputs,
            changed=outputs["changed"] > 0,
            changes=[{"kind": "playbook", "playbook": args.playbook, "changed_tasks": outputs["changed"]}]
            if outputs["changed"]
            else [],
        )
