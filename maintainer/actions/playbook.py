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
        message = res.get("msg") or res.get("stderr") or res.get("reason") or "failed"
        found.append(f"task '{data.get('task', '?')}' ({data.get('task_path', '?')}): {str(message).strip()}")
    return found


def _count(stats: dict[str, Any], key: str, host: str) -> int:
    return int((stats.get(key) or {}).get(host, 0))


class PlaybookAction(Action):
    name = "playbook"
    Args = PlaybookArgs
    summary = "run playbooks/PLAYBOOK with ansible-runner against this site's host"

    def _path(self, ctx: StepContext, args: PlaybookArgs) -> Path:
        path = (ctx.project_dir / "playbooks" / args.playbook).resolve()
        if not path.is_file():
            raise StepFailed(f"playbook '{args.playbook}' not found under {ctx.project_dir / 'playbooks'}")
        return path

    def dry_run(self, ctx: StepContext, args: PlaybookArgs) -> dict[str, Any]:
        return {
            "would_run": str(self._path(ctx, args).relative_to(ctx.project_dir.resolve())),
            "limit": ctx.site.name,
            "extra_vars": ctx.redactor(args.extra_vars),
            "check": args.check,
        }

    def run(self, ctx: StepContext, args: PlaybookArgs) -> ActionResult:
        import ansible_runner

        playbook = self._path(ctx, args)
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
        if args.check:
            cmdline.append("--check")
        extravars = {
            **args.extra_vars,
            "maintainer_run_id": ctx.run.id,
            "maintainer_site": ctx.site.name,
        }
        try:
            result = ansible_runner.run(
                private_data_dir=data_dir,
                playbook=str(playbook),
                inventory=[str(p.resolve()) for p in ctx.inventory_sources],
                limit=ctx.site.name,
                extravars=extravars,
                tags=",".join(args.tags) or None,
                cmdline=" ".join(cmdline) or None,
                envvars=env,
                suppress_env_files=True,
                quiet=True,
                timeout=int(ctx.timeout) if ctx.timeout else None,
                cancel_callback=ctx.cancel.is_set,
            )
            stats = result.stats or {}
            stdout = result.stdout.read() if result.stdout else ""
            status, rc = result.status, result.rc
            failures = _failed_tasks(result.events) if status != "successful" else []
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
        if status == "canceled":
            raise StepCancelled(f"playbook {args.playbook} stopped: the run was interrupted", outputs=outputs)
        if status != "successful":
            why = "; ".join(failures) or tail(stdout, lines=8)
            raise StepFailed(
                ctx.redactor.text(f"playbook {args.playbook} {status} (rc {rc}): {why}"),
                outputs=outputs,
            )
        return ActionResult(
            outputs=outputs,
            changed=outputs["changed"] > 0,
            changes=[{"kind": "playbook", "playbook": args.playbook, "changed_tasks": outputs["changed"]}]
            if outputs["changed"]
            else [],
        )
