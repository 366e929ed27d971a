"""Plan and execute a run: the stages are named functions.

    load runbook -> load inventory -> plan -> execute -> record

``--dry-run`` is "stop after plan". Execution runs sites in ``serial``
batches (the first is the canary) on a bounded thread pool; a failed step
triggers the site's undo and ``rollback`` steps; ``finally`` steps always
run (a failed one fails the site); ``max_fail`` (default: unlimited) stops
scheduling new batches, and so does a batch in which every site failed. A
cancel event (SIGINT, SIGTERM) lets no new step start, while in-flight sites
still roll back.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from jinja2 import TemplateError
from pydantic import ValidationError

from . import locks, templating, windows
from .actions import registry
from .actions.base import ActionResult, RunInfo, StepContext
from .changelog import ChangeLog
from .errors import (
    REPORT_URL,
    BadInput,
    ExitCode,
    LockHeld,
    MaintainerError,
    RecordFailed,
    StepCancelled,
    StepFailed,
    StepTimeout,
    Unreachable,
    ValidationFailed,
)
from .inventory import Inventory, Site, load_inventory
from .project import Project, load_project
from .redact import Redactor
from .runbook import LoadedRunbook, Step, count_of, load, resolve, resolve_params, secret_params
from .transport import Connections, Transport, host_key

log = logging.getLogger("maintainer")

# ------------------------------------------------------------------ options and results


@dataclass
class RunOptions:
    runbook: str
    inventory: list[str] = field(default_factory=list)
    project: Path = Path(".")
    limit: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    concurrency: int | None = None
    ticket: str | None = None
    wait_lock: float = 0.0
    vault_password_file: str | None = None
    operator: str | None = None
    trigger: str | None = None
    #: run sites whose maintenance window is closed (recorded in the change log)
    ignore_window: bool = False


@dataclass
class StepResult:
    id: str
    section: str  # steps, rollback, finally, undo
    uses: str
    status: str  # ok, failed, skipped, timeout
    started: str = ""
    duration: float = 0.0
    attempts: int = 0
    changed: bool = False
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "section": self.section,
            "uses": self.uses,
            "status": self.status,
            "started": self.started,
            "duration": round(self.duration, 4),
        }
        if self.attempts > 1:
            data["attempts"] = self.attempts
        if self.changed:
            data["changed"] = True
        if self.error:
            data["error"] = self.error
        return data


SITE_OK = "ok"
SITE_FAILED = "failed"
SITE_UNREACHABLE = "unreachable"
SITE_LOCKED = "locked"
SITE_SKIPPED = "skipped"
SITE_INTERRUPTED = "interrupted"
SITE_WINDOW_CLOSED = "window_closed"  # not run: its maintenance window was closed (exit 3 like locked)


@dataclass
class SiteResult:
    name: str
    status: str = "pending"
    host: str = ""
    error: str | None = None
    rollback: str = "none"  # none, ok, failed
    steps: list[StepResult] = field(default_factory=list)
    started: str = ""
    duration: float = 0.0
    lock_broken: dict[str, Any] | None = None
    internal_error: bool = False
    #: the site's maintenance window as checked at its turn (windows.Window.state), if it has one
    window: dict[str, Any] | None = None

    @property
    def changes(self) -> list[dict[str, Any]]:
        return [
            {"step": s.id, **c}
            for s in self.steps
            # a failed step has changes only when it says what it did before failing
            if s.section != "undo"
            for c in s.changes
        ]

    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "host": self.host,
            "started": self.started,
            "duration": round(self.duration, 4),
            "steps": [s.record() for s in self.steps],
            "changes": self.changes,
        }
        if self.error:
            data["error"] = self.error
        if self.rollback != "none":
            data["rollback"] = self.rollback
        if self.lock_broken:
            data["lock_broken"] = self.lock_broken
        if self.window:
            data["window"] = self.window
        return data


@dataclass
class PlannedStep:
    section: str
    index: int
    step: Step
    args: dict[str, Any] | None  # rendered, or None when they need earlier outputs
    preview: dict[str, Any] = field(default_factory=dict)

    def record(self, redactor: Redactor) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.step.id, "uses": self.step.uses}
        if self.step.when is not None:
            data["when"] = self.step.when
        data["with"] = redactor(self.args) if self.args is not None else redactor(self.step.with_)
        if self.args is None:
            data["rendered_at_run_time"] = True
        if self.preview:
            data["preview"] = redactor(self.preview)
        return data


@dataclass
class SitePlan:
    site: Site
    steps: list[PlannedStep]
    rollback: list[PlannedStep]
    finally_: list[PlannedStep]
    error: str | None = None  # dry run: why the preview could not be made
    window: windows.Window | None = None  # the site's maintenance_window; None: always open


@dataclass
class Plan:
    run: RunInfo
    runbook: LoadedRunbook
    inventory: Inventory
    params: dict[str, Any]
    sites: list[SitePlan]
    batches: list[list[int]]  # indexes into sites
    concurrency: int
    max_fail: int | None
    redactor: Redactor
    ignore_window: bool = False

    def window_state(self, site_plan: SitePlan, now: datetime) -> dict[str, Any] | None:
        """The site's window at ``now`` (spec, open, next_open or closes, ignored), or None without one."""
        if site_plan.window is None:
            return None
        state = site_plan.window.state(now)
        if not state["open"] and self.ignore_window:
            state["ignored"] = True
        return state

    def record(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "run_id": self.run.id,
            "runbook": {
                "name": self.runbook.model.name,
                "version": self.runbook.model.version,
                "digest": self.runbook.digest,
                "path": str(self.runbook.path),
            },
            "inventory": {
                "sources": [str(s) for s in self.inventory.sources],
                "digest": self.inventory.digest,
            },
            "params": self.redactor(self.params),
            "concurrency": self.concurrency,
            "max_fail": self.max_fail,
            "batches": [[self.sites[i].site.name for i in batch] for batch in self.batches],
            "sites": {
                sp.site.name: {
                    "steps": [p.record(self.redactor) for p in sp.steps],
                    "rollback": [p.record(self.redactor) for p in sp.rollback],
                    "finally": [p.record(self.redactor) for p in sp.finally_],
                    # a site the dry run could not preview: the real run would fail there
                    **({"previewed": False, "error": sp.error} if sp.error else {}),
                    **({"window": self.window_state(sp, now)} if sp.window else {}),
                }
                for sp in self.sites
            },
            **({"ignore_window": True} if self.ignore_window else {}),
        }


@dataclass
class RunResult:
    plan: Plan
    status: str  # ok, failed, interrupted, planned
    sites: dict[str, SiteResult]
    started: str
    finished: str
    duration: float
    exit_code: ExitCode
    entry: dict[str, Any] | None = None  # the change-log record
    #: the entry's document for a run refused before starting (every site locked): not recorded
    unrecorded: dict[str, Any] | None = None

    @property
    def succeeded(self) -> dict[str, SiteResult]:
        return {n: r for n, r in self.sites.items() if r.status == SITE_OK}

    @property
    def failed(self) -> dict[str, SiteResult]:
        return {n: r for n, r in self.sites.items() if r.status != SITE_OK}

    def record(self) -> dict[str, Any]:
        if self.entry is not None:
            return self.entry
        if self.unrecorded is not None:
            return self.unrecorded
        return {**self.plan.record(), "status": self.status}


class Reporter(Protocol):
    """Live progress; called from worker threads."""

    def site_started(self, site: str) -> None: ...
    def step_started(self, site: str, step: str, section: str) -> None: ...
    def step_finished(self, site: str, result: StepResult) -> None: ...
    def site_finished(self, result: SiteResult) -> None: ...
    def message(self, site: str | None, text: str) -> None: ...


class NullReporter:
    def site_started(self, site: str) -> None: ...
    def step_started(self, site: str, step: str, section: str) -> None: ...
    def step_finished(self, site: str, result: StepResult) -> None: ...
    def site_finished(self, result: SiteResult) -> None: ...
    def message(self, site: str | None, text: str) -> None: ...


# ------------------------------------------------------------------ helpers


class _Guarded:
    """A reporter whose failures (its reader went away: EPIPE, a hung-up terminal: EIO) only
    silence progress: the run must go on, finish or roll back, and be recorded."""

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter
        self._broken = False

    def _call(self, name: str, *args: Any) -> None:
        if self._broken:
            return
        try:
            getattr(self._reporter, name)(*args)
        except (OSError, ValueError, SystemExit) as exc:  # ValueError: a closed stream
            self._broken = True
            log.debug("progress output stopped: %s", exc)

    def site_started(self, site: str) -> None:
        self._call("site_started", site)

    def step_started(self, site: str, step: str, section: str) -> None:
        self._call("step_started", site, step, section)

    def step_finished(self, site: str, result: StepResult) -> None:
        self._call("step_finished", site, result)

    def site_finished(self, result: SiteResult) -> None:
        self._call("site_finished", result)

    def message(self, site: str | None, text: str) -> None:
        self._call("message", site, text)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


_CRON_NAMES = frozenset({"cron", "crond", "anacron", "fcron"})


def _cron_ancestor(levels: int = 8) -> bool:
    """True when a parent, grandparent, ... (up to ``levels``) is a cron daemon (Linux /proc)."""
    pid = os.getppid()
    for _ in range(levels):
        if pid <= 1:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        if comm.lower() in _CRON_NAMES:
            return True
        try:
            pid = int(stat[stat.rfind(")") + 1 :].split()[1])
        except (IndexError, ValueError):
            return False
    return False


def detect_trigger(explicit: str | None = None) -> dict[str, Any]:
    """How this run was started: ``{"kind", "ci_job_url"}``; a bad explicit kind is BadInput.

    --trigger, else MAINTAINER_TRIGGER, else detected: ci (CI variables, with the job URL),
    cron (a cron daemon among the ancestors), manual (a terminal on stdin), systemd
    (INVOCATION_ID: a service or timer), else script (ssh host cmd, a shell script, ...).
    """
    from .changelog import TRIGGER_KINDS

    env = os.environ
    job_url = None
    if env.get("GITHUB_ACTIONS"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
            job_url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    job_url = job_url or env.get("CI_JOB_URL") or env.get("BUILD_URL") or env.get("CIRCLE_BUILD_URL")
    source = "--trigger" if explicit else "MAINTAINER_TRIGGER"
    given = explicit or env.get("MAINTAINER_TRIGGER")
    if given and given.strip():
        kind = given.strip().lower()
        if kind not in TRIGGER_KINDS:
            raise BadInput(
                f"{given!r} is not a trigger.",
                key=source,
                fix=f"use one of {', '.join(TRIGGER_KINDS)}, or leave {source} unset to detect it.",
            )
    elif job_url or env.get("CI", "").lower() in ("true", "1"):
        kind = "ci"
    elif _cron_ancestor():
        kind = "cron"
    elif sys.stdin is not None and sys.stdin.isatty():
        # before INVOCATION_ID: shells in terminal emulators run as systemd user services inherit it
        kind = "manual"
    elif env.get("INVOCATION_ID"):
        kind = "systemd"
    else:
        kind = "script"  # no terminal, no scheduler we know of: ssh host cmd, a wrapper script, ...
    return {"kind": kind, "ci_job_url": job_url}


def operator_name(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get("MAINTAINER_OPERATOR"):
        return os.environ["MAINTAINER_OPERATOR"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def make_batches(count: int, serial: int | str | list[int | str] | None) -> list[list[int]]:
    """Site indexes in batches: one size for all, or a list (the first is the canary, the last repeats).

    Percentages are of all the sites of the run, as Ansible computes them.
    """
    sizes: list[int | str | None] = list(serial) if isinstance(serial, list) and serial else [None]
    if not isinstance(serial, list):
        sizes = [serial]
    batches: list[list[int]] = []
    start = 0
    position = 0
    while start < count:
        value = sizes[min(position, len(sizes) - 1)]
        size = count_of(value, count) if value not in (None, 0) else count
        size = max(1, size or count)
        batches.append(list(range(start, min(start + size, count))))
        start += size
        position += 1
    return batches


def _all_failed(batch: list[SiteResult]) -> bool:
    """No site of the batch succeeded and at least one failed or was unreachable.

    Sites that never started (locked, window closed, interrupted) do not count as a success: a
    batch of one failed site and one locked site still stops the run.
    """
    statuses = {r.status for r in batch}
    return SITE_OK not in statuses and bool(statuses & {SITE_FAILED, SITE_UNREACHABLE})


def where(site: Site) -> str:
    """Where a site is reached: user@host:port, or local (as its transport's label says)."""
    try:
        key = host_key(site.vars, site.name)
    except MaintainerError:
        return ""  # an unsupported connection: the site's error says so
    return "local" if key.connection == "local" else f"{key.user}@{key.host}:{key.port}"


def _shown(value: Any, redactor: Redactor) -> str:
    return redactor.text(repr(value))


def _validate_args(
    loaded: LoadedRunbook, section: str, index: int, step: Step, args: Any, redactor: Redactor
) -> dict[str, Any]:
    action = registry.get(step.uses)
    assert action is not None  # runbook.load checked it
    if not isinstance(args, dict):
        raise BadInput(f"'with' of step '{step.id}' must render to a mapping.", file=loaded.path)
    try:
        model = action.Args.model_validate(args)
    except ValidationError as exc:
        problems = [
            BadInput(
                # the rendered value may hold a secret param or vault value
                f"step '{step.id}' ({step.uses}): {err['msg']} (got {_shown(err.get('input'), redactor)}).",
                file=loaded.path,
                line=loaded.line_at(section, index, "with", *err["loc"])
                or loaded.step_lines.get((section, index)),
                key=".".join(str(p) for p in ("with", *err["loc"])),
            )
            for err in exc.errors()
        ]
        raise (problems[0] if len(problems) == 1 else ValidationFailed(problems, file=loaded.path)) from None
    # only what the runbook set: defaults are filled again at run time, and plans stay readable
    return model.model_dump(by_alias=True, exclude_unset=True)


def _check_site(step: Step, site: Site, args: dict[str, Any], inventory: Inventory, project: Path) -> None:
    """The action's own check of the site's vars (e.g. backup settings): bad input names the inventory.

    An action that needs the other hosts (restore_drill's drill_host) overrides
    ``check_site_in_inventory``; every other one ``check_site``.
    """
    action = registry.get(step.uses)
    assert action is not None
    try:
        action.check_site_in_inventory(site, action.Args.model_validate(args), project, inventory)
    except BadInput as exc:
        if exc.file is None:
            exc.file = ", ".join(str(s) for s in inventory.sources)
        raise


def site_window(site: Site, inventory: Inventory) -> windows.Window | None:
    """The site's maintenance window (None without the var: always open); invalid: BadInput."""
    if windows.VAR not in site.vars:
        return None
    try:
        return windows.parse_window(site.vars[windows.VAR])
    except ValueError as exc:
        raise BadInput(
            f"site '{site.name}' has an invalid {windows.VAR}: {exc}.",
            file=", ".join(str(s) for s in inventory.sources),
            key=windows.VAR,
            fix=f"write it as {windows.SYNTAX}, or remove it for no restriction.",
        ) from None


# ------------------------------------------------------------------ stages


def prepare(options: RunOptions) -> tuple[Project, LoadedRunbook, Inventory, dict[str, Any]]:
    """Load and validate everything; any problem is BadInput (exit 2), nothing is run."""
    project = load_project(options.project)
    loaded = load(resolve(project.root, options.runbook), project.root)
    params = resolve_params(loaded, options.params)
    inventory = load_inventory(
        project.inventory_sources(options.inventory), vault_password_file=options.vault_password_file
    )
    inventory.redactor.add(secret_params(loaded, params))
    # and by name: the params record masks a secret param whatever its value
    inventory.redactor.add_keys(name for name, spec in loaded.model.params.items() if spec.type == "secret")
    return project, loaded, inventory, params


def site_context(site: Site, params: dict[str, Any], run: RunInfo, steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "site": {"name": site.name, **site.vars},
        "params": params,
        "run": run.as_context(),
        "steps": steps,
    }


def plan(
    project: Project,
    loaded: LoadedRunbook,
    inventory: Inventory,
    params: dict[str, Any],
    options: RunOptions,
) -> Plan:
    """Sites x steps with arguments rendered and validated; BadInput on any problem."""
    model = loaded.model
    sites = inventory.select(options.limit)
    run = RunInfo(
        id=new_run_id(),
        operator=operator_name(options.operator),
        ticket=options.ticket,
        runbook=model.name,
        version=model.version,
        dry_run=options.dry_run,
    )
    empty_steps = {s.id: {"status": "pending", "outputs": {}} for _, s in model.all_steps()}
    site_plans = []
    for site in sites:
        window = site_window(site, inventory)
        context = site_context(site, params, run, empty_steps)
        sections: dict[str, list[PlannedStep]] = {"steps": [], "rollback": [], "finally": []}
        for section, steps in (
            ("steps", model.steps),
            ("rollback", model.rollback),
            ("finally", model.finally_),
        ):
            for index, step in enumerate(steps):
                args = None
                # arguments that read earlier steps' outputs can only be rendered at run time
                if not templating.reads(step.with_, "steps"):
                    try:
                        rendered = templating.render(step.with_, context)
                    except TemplateError as exc:
                        raise BadInput(
                            f"step '{step.id}' cannot be rendered for site '{site.name}': {exc}.",
                            file=loaded.path,
                            line=loaded.step_lines.get((section, index)),
                            fix="define the variable in the inventory (host_vars/group_vars) or the params.",
                        ) from exc
                    args = _validate_args(loaded, section, index, step, rendered, inventory.redactor)
                    _check_site(step, site, args, inventory, project.root)
                sections[section].append(PlannedStep(section, index, step, args))
        site_plans.append(
            SitePlan(site, sections["steps"], sections["rollback"], sections["finally"], window=window)
        )
    concurrency = options.concurrency or model.concurrency
    return Plan(
        run=run,
        runbook=loaded,
        inventory=inventory,
        params=params,
        sites=site_plans,
        batches=make_batches(len(site_plans), model.serial),
        concurrency=max(1, concurrency),
        max_fail=count_of(model.max_fail, len(site_plans)),
        redactor=inventory.redactor,
        ignore_window=options.ignore_window,
    )


def preview(plan: Plan, project: Project, connections: Connections, options: RunOptions) -> None:
    """Fill each planned step's dry-run view (e.g. a template's diff); reads, never writes."""
    # in a dry run no step has run yet: every step reads as pending, as at plan time
    pending = {s.id: {"status": "pending", "outputs": {}} for _, s in plan.runbook.model.all_steps()}
    unreachable: dict[str, Unreachable] = {}  # one try per host, as in a real run
    for site_plan in plan.sites:
        try:
            transport = connections.for_site(site_plan.site.vars, site_plan.site.name)
            # connect even when no step reads the site: an unreachable site or a wrong
            # host key must show in the plan (and fail the dry run), not only in the real run
            if transport.label in unreachable:
                raise unreachable[transport.label]
            try:
                transport.connect()
            except Unreachable as exc:
                unreachable[transport.label] = exc
                raise
            for planned in site_plan.steps:
                if planned.args is None:
                    continue
                action = registry.get(planned.step.uses)
                assert action is not None
                ctx = _step_context(plan, project, site_plan.site, transport, planned.step, options, pending)
                when = planned.step.when
                # a step the real run would skip is not previewed (a condition on earlier outputs
                # cannot be known yet: that step is previewed)
                if when is not None and "steps." not in str(when) and not _holds(when, ctx.variables):
                    planned.preview = {"summary": f"skipped: {when} is false"}
                    continue
                planned.preview = action.dry_run(ctx, action.Args.model_validate(planned.args))
        except (MaintainerError, OSError) as exc:
            site_plan.error = plan.redactor.text(str(exc))


def _holds(when: str | bool, variables: dict[str, Any]) -> bool:
    """A step's ``when`` at plan time; True when it cannot be known yet (the step is previewed)."""
    if isinstance(when, bool):
        return when
    try:
        return bool(templating.evaluate(when, variables))
    except (TemplateError, MaintainerError):
        return True


def unplanned(plan: Plan) -> dict[str, str]:
    """The sites a dry run could not preview (unreachable, refused, unreadable), with why."""
    return {sp.site.name: sp.error for sp in plan.sites if sp.error}


def _step_context(
    plan: Plan,
    project: Project,
    site: Site,
    transport: Transport,
    step: Step,
    options: RunOptions,
    steps: dict[str, Any],
) -> StepContext:
    """The one place a step's context is built, for dry runs and real runs alike."""
    return StepContext(
        site=site,
        transport=transport,
        project_dir=project.root,
        inventory_sources=plan.inventory.sources,
        run=plan.run,
        redactor=plan.redactor,
        timeout=step.timeout if step.timeout is not None else project.settings.step_timeout,
        vault_password_file=options.vault_password_file,
        variables=site_context(site, plan.params, plan.run, steps),
    )


class Executor:
    """Runs a plan: batches, concurrency, per-site steps, rollback, locks."""

    def __init__(
        self,
        plan: Plan,
        project: Project,
        options: RunOptions,
        reporter: Reporter,
        cancel: threading.Event,
        connections: Connections,
    ) -> None:
        self.plan = plan
        self.project = project
        self.options = options
        self.reporter = reporter
        self.cancel = cancel
        self.connections = connections
        self._unreachable: dict[str, Unreachable] = {}
        self._connect_lock = threading.Lock()
        self._held: set[Any] = set()
        self._held_lock = threading.Lock()

    def execute(self) -> dict[str, SiteResult]:
        results: dict[str, SiteResult] = {}
        failed = 0
        # as Ansible does with serial: a batch whose every site failed stops the run, whatever
        # max_fail says (the canary batch gates the others even without max_fail)
        failed_batch: str | None = None
        stop_heartbeat = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(stop_heartbeat,), daemon=True)
        heartbeat.start()
        try:
            with ThreadPoolExecutor(max_workers=self.plan.concurrency, thread_name_prefix="site") as pool:
                for number, batch in enumerate(self.plan.batches, 1):
                    site_plans = [self.plan.sites[i] for i in batch]
                    stop_reason = self._stop_reason(failed, failed_batch)
                    if stop_reason:
                        for sp in site_plans:
                            results[sp.site.name] = SiteResult(
                                sp.site.name, SITE_SKIPPED, host=where(sp.site), error=stop_reason
                            )
                        continue
                    batch_results = list(pool.map(self.run_site, site_plans))
                    for result in batch_results:
                        results[result.name] = result
                        if result.status in (SITE_FAILED, SITE_UNREACHABLE):
                            failed += 1
                    if failed_batch is None and _all_failed(batch_results):
                        names = ", ".join(r.name for r in batch_results)
                        what = "the canary batch" if number == 1 else f"batch {number}"
                        failed_batch = f"every site of {what} failed ({names})"
        finally:
            stop_heartbeat.set()
            heartbeat.join(timeout=5)
        return results

    def _stop_reason(self, failed: int, failed_batch: str | None) -> str | None:
        if self.cancel.is_set():
            return "not started: the run was interrupted"
        if failed_batch is not None:
            return f"not started: {failed_batch}"
        if self.plan.max_fail is not None and failed > self.plan.max_fail:
            return f"not started: {failed} site(s) failed, more than max_fail {self.plan.max_fail}"
        return None

    def _heartbeat(self, stop: threading.Event) -> None:
        interval = max(1.0, self.project.settings.lock_ttl / 3)
        while not stop.wait(interval):
            with self._held_lock:
                held = list(self._held)
            for lock in held:
                try:
                    locks.refresh(lock)
                except MaintainerError as exc:
                    log.warning("could not refresh lock of %s: %s", lock.site, exc)

    def _connect(self, site: Site) -> Transport:
        transport = self.connections.for_site(site.vars, site.name)
        with self._connect_lock:
            known = self._unreachable.get(transport.label)
        if known is not None:
            raise known
        try:
            transport.connect()
        except Unreachable as exc:
            with self._connect_lock:
                self._unreachable[transport.label] = exc
            raise
        return transport

    def run_site(self, site_plan: SitePlan) -> SiteResult:
        try:
            return self._run_site(site_plan)
        except Exception as exc:  # a bug: record it for this site, keep the run and the change log going
            log.error("internal error on %s:\n%s", site_plan.site.name, traceback.format_exc())
            result = SiteResult(
                site_plan.site.name, SITE_FAILED, host=where(site_plan.site), internal_error=True
            )
            result.error = f"internal error: {type(exc).__name__}: {exc} (please report: {REPORT_URL})"
            return self._finish(result, time.monotonic())

    def _run_site(self, site_plan: SitePlan) -> SiteResult:
        site = site_plan.site
        # where we try to connect, known before connecting: unreachable sites show it too
        result = SiteResult(site.name, host=where(site), started=now_iso())
        started = time.monotonic()
        if self.cancel.is_set():
            result.status, result.error = SITE_SKIPPED, "not started: the run was interrupted"
            return result
        if self._window_closed(site_plan, result):
            return self._finish(result, started)
        self.reporter.site_started(site.name)
        try:
            transport = self._connect(site)
            result.host = transport.label
        except Unreachable as exc:
            result.status, result.error = SITE_UNREACHABLE, exc.reason
            return self._finish(result, started)
        except MaintainerError as exc:
            result.status, result.error = SITE_UNREACHABLE, str(exc)
            return self._finish(result, started)
        lock_info = {
            "holder": f"{self.plan.run.operator}@{socket.gethostname()}",
            "run_id": self.plan.run.id,
            "runbook": self.plan.runbook.ref,
            "since": now_iso(),
            "pid": os.getpid(),
        }
        try:
            lock = locks.acquire(
                transport,
                site.name,
                lock_info,
                lock_dir=str(site.vars.get("maintainer_lock_dir", self.project.settings.lock_dir)),
                ttl=self.project.settings.lock_ttl,
                wait=self.options.wait_lock,
                cancel=self.cancel,
            )
        except LockHeld as exc:
            if self.cancel.is_set():
                result.status, result.error = SITE_SKIPPED, "not started: the run was interrupted"
            else:
                result.status, result.error = SITE_LOCKED, str(exc)
            return self._finish(result, started)
        except MaintainerError as exc:
            result.status, result.error = SITE_FAILED, str(exc)
            return self._finish(result, started)
        if lock.broken:
            result.lock_broken = lock.broken
            self.reporter.message(site.name, f"broke a stale lock held by {lock.broken.get('holder')}")
        with self._held_lock:
            self._held.add(lock)
        try:
            self._run_steps(site_plan, transport, result)
        finally:
            with self._held_lock:
                self._held.discard(lock)
            try:
                locks.release(lock)
            except MaintainerError as exc:
                self.reporter.message(site.name, f"could not release lock: {exc}")
        return self._finish(result, started)

    def _window_closed(self, site_plan: SitePlan, result: SiteResult) -> bool:
        """Check the site's maintenance window now, at its turn: True when it must not run.

        Checked before connecting and locking, so a refused site is not touched at all. Only the
        start counts: a site that started inside its window finishes even if the window closes.
        """
        if site_plan.window is None:
            return False
        now = datetime.now(UTC)
        result.window = self.plan.window_state(site_plan, now)
        assert result.window is not None
        if result.window["open"]:
            return False
        message = site_plan.window.closed_message(now)
        if self.options.ignore_window:
            self.reporter.message(site_plan.site.name, f"{message}; running anyway (--ignore-window)")
            return False
        result.status = SITE_WINDOW_CLOSED
        result.error = f"not started: {message}. Run then, or give --ignore-window to run now"
        return True

    def _finish(self, result: SiteResult, started: float) -> SiteResult:
        result.duration = time.monotonic() - started
        if result.error:
            result.error = self.plan.redactor.text(result.error)
        self.reporter.site_finished(result)
        return result

    def _run_steps(self, site_plan: SitePlan, transport: Transport, result: SiteResult) -> None:
        site = site_plan.site
        steps_ctx: dict[str, Any] = {
            s.id: {"status": "pending", "outputs": {}} for _, s in self.plan.runbook.model.all_steps()
        }
        state: dict[str, Any] = {}
        done: list[tuple[PlannedStep, Any, ActionResult]] = []
        failure: str | None = None
        interrupted = False
        stopped: str | None = None  # the step a stop request killed while it ran
        for planned in site_plan.steps:
            if self.cancel.is_set():
                interrupted = True
                break
            step_result, args, action_result = self._run_step(planned, site, transport, steps_ctx, state)
            result.steps.append(step_result)
            if step_result.status == "ok" and action_result is not None:
                done.append((planned, args, action_result))
            if step_result.status == "interrupted":
                # SIGINT/SIGTERM killed the running command: the step did not fail on its own
                interrupted, stopped = True, planned.step.id
                break
            if step_result.status in ("failed", "timeout"):
                if step_result.error and step_result.error.startswith("internal error"):
                    result.internal_error = True
                if not planned.step.continue_on_error:
                    failure = f"step '{planned.step.id}' failed: {step_result.error}"
                    break
        if failure or interrupted:
            # rollback steps must not be cut short by the cancel that stopped the run
            undone, undo_ok = self._undo(done, site, transport, steps_ctx, state, result)
            rollback_failed = self._run_section(site_plan.rollback, site, transport, steps_ctx, state, result)
            if not undo_ok or rollback_failed:
                result.rollback = "failed"
            elif undone or site_plan.rollback:
                result.rollback = "ok"
        # every finally step runs, even after one failed; a failed one (without continue_on_error)
        # fails the site: it may be left e.g. in maintenance mode, which must not look healthy
        finally_failed = [
            f"finally step '{planned.step.id}' failed: {step_result.error}"
            for planned, step_result in self._run_section(
                site_plan.finally_, site, transport, steps_ctx, state, result
            )
            if not planned.step.continue_on_error
        ]
        if interrupted:
            result.status = SITE_INTERRUPTED
            # say "rolled back" only when something was
            undo = {"ok": "rolled back", "failed": "ROLLBACK FAILED: check the site now"}.get(
                result.rollback, "nothing to roll back"
            )
            result.error = (
                f"interrupted while step '{stopped}' ran (it was stopped); {undo}"
                if stopped
                else f"interrupted before the next step; {undo}"
            )
        elif failure:
            result.status, result.error = SITE_FAILED, failure
            if result.rollback == "failed":
                result.error += "; ROLLBACK FAILED: the site may be left in an unsafe state, check it now"
        elif finally_failed:
            result.status, result.error = SITE_FAILED, ""
        else:
            result.status = SITE_OK
        if finally_failed:
            result.error = "; ".join(filter(None, [result.error, *finally_failed]))

    def _undo(
        self,
        done: list[tuple[PlannedStep, Any, ActionResult]],
        site: Site,
        transport: Transport,
        steps_ctx: dict[str, Any],
        state: dict[str, Any],
        result: SiteResult,
    ) -> tuple[int, bool]:
        """Undo completed steps that can be undone, newest first: (how many, all ok)."""
        ok, undone = True, 0
        for planned, args, action_result in reversed(done):
            action = registry.get(planned.step.uses)
            if action is None or not action.undoable or not action_result.changed:
                continue
            step_result = StepResult(planned.step.id, "undo", planned.step.uses, "ok", started=now_iso())
            started = time.monotonic()
            ctx = self._ctx(planned.step, site, transport, steps_ctx, state, threading.Event())
            try:
                if action.undo(ctx, args, action_result) is False:
                    continue  # the step said no (e.g. undo: false: the rollback section does it)
            except Exception as exc:  # an undo failure must not stop the other undos
                ok = False
                step_result.status, step_result.error = "failed", self.plan.redactor.text(str(exc))
            step_result.duration = time.monotonic() - started
            result.steps.append(step_result)
            self.reporter.step_finished(site.name, step_result)
            undone += 1
        return undone, ok

    def _run_section(
        self,
        planned_steps: list[PlannedStep],
        site: Site,
        transport: Transport,
        steps_ctx: dict[str, Any],
        state: dict[str, Any],
        result: SiteResult,
    ) -> list[tuple[PlannedStep, StepResult]]:
        """Run every step of a rollback or finally section, whatever fails: the failed ones."""
        failed = []
        for planned in planned_steps:
            step_result, _, _ = self._run_step(
                planned, site, transport, steps_ctx, state, cancel=threading.Event()
            )
            result.steps.append(step_result)
            if step_result.status not in ("ok", "skipped"):
                failed.append((planned, step_result))
                if step_result.error and step_result.error.startswith("internal error"):
                    result.internal_error = True
        return failed

    def _ctx(
        self,
        step: Step,
        site: Site,
        transport: Transport,
        steps_ctx: dict[str, Any],
        state: dict[str, Any],
        cancel: threading.Event,
    ) -> StepContext:
        ctx = _step_context(self.plan, self.project, site, transport, step, self.options, steps_ctx)
        ctx.cancel = cancel
        ctx.state = state
        ctx.log = lambda text: self.reporter.message(site.name, self.plan.redactor.text(text))
        return ctx

    def _run_step(
        self,
        planned: PlannedStep,
        site: Site,
        transport: Transport,
        steps_ctx: dict[str, Any],
        state: dict[str, Any],
        cancel: threading.Event | None = None,
    ) -> tuple[StepResult, Any, ActionResult | None]:
        step = planned.step
        cancel = cancel or self.cancel
        outcome = StepResult(step.id, planned.section, step.uses, "ok", started=now_iso())
        started = time.monotonic()
        action = registry.get(step.uses)
        assert action is not None
        ctx = self._ctx(step, site, transport, steps_ctx, state, cancel)
        args: Any = None
        action_result: ActionResult | None = None
        try:
            if step.when is not None and not templating.evaluate(step.when, ctx.variables):
                outcome.status = "skipped"
            else:
                self.reporter.step_started(site.name, step.id, planned.section)
                raw = planned.args
                if raw is None:
                    rendered = templating.render(step.with_, ctx.variables)
                    raw = _validate_args(
                        self.plan.runbook, planned.section, planned.index, step, rendered, self.plan.redactor
                    )
                args = action.Args.model_validate(raw)
                action_result = self._attempts(action, ctx, args, step, outcome, cancel)
                outcome.outputs = self.plan.redactor(action_result.outputs)
                outcome.changes = self.plan.redactor(action_result.changes)
                outcome.changed = action_result.changed
        except StepFailed as exc:
            outcome.status = (
                "interrupted"
                if isinstance(exc, StepCancelled)
                else "timeout"
                if isinstance(exc, StepTimeout)
                else "failed"
            )
            outcome.error = self.plan.redactor.text(str(exc))
            outcome.outputs = self.plan.redactor(exc.outputs)
            outcome.changes = self.plan.redactor([{**c, "status": "failed"} for c in exc.changes])
        except (TemplateError, BadInput, ValidationError) as exc:
            outcome.status, outcome.error = "failed", self.plan.redactor.text(f"bad arguments: {exc}")
        except Unreachable as exc:
            outcome.status, outcome.error = "failed", f"lost connection: {exc.reason}"
        except MaintainerError as exc:
            outcome.status, outcome.error = "failed", self.plan.redactor.text(str(exc))
        except Exception as exc:  # a bug in an action: record it, keep the other sites going
            log.error("internal error in step %s on %s:\n%s", step.id, site.name, traceback.format_exc())
            outcome.status = "failed"
            outcome.error = self.plan.redactor.text(
                f"internal error in action '{step.uses}': {type(exc).__name__}: {exc} "
                f"(please report: {REPORT_URL})"
            )
        outcome.duration = time.monotonic() - started
        # later templates get the real outputs; only what is shown or recorded is redacted
        raw_outputs = action_result.outputs if action_result is not None else outcome.outputs
        steps_ctx[step.id] = {"status": outcome.status, "outputs": raw_outputs, "changed": outcome.changed}
        self.reporter.step_finished(site.name, outcome)
        return outcome, args, action_result

    def _attempts(
        self,
        action: Any,
        ctx: StepContext,
        args: Any,
        step: Step,
        outcome: StepResult,
        cancel: threading.Event,
    ) -> ActionResult:
        for attempt in range(1, step.retries + 2):
            outcome.attempts = attempt
            try:
                result: ActionResult = action.run(ctx, args)
                return result
            except StepFailed as exc:
                if attempt > step.retries or cancel.is_set():
                    raise
                ctx.log(f"step {step.id} attempt {attempt} failed: {exc}; retrying in {step.retry_delay:g}s")
                cancel.wait(step.retry_delay)
        raise AssertionError("unreachable")


# ------------------------------------------------------------------ the front door


def run(
    options: RunOptions,
    reporter: Reporter | None = None,
    cancel: threading.Event | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> RunResult:
    """Load, plan, execute and record one run. Raises BadInput before anything runs."""
    reporter = _Guarded(reporter or NullReporter())
    cancel = cancel or threading.Event()
    project, loaded, inventory, params = prepare(options)
    # pre-flight: a bad trigger or a change log that cannot take the entry is bad input now,
    # not after the sites were changed (dry runs record nothing, so they skip the log check)
    detect_trigger(options.trigger)
    if not options.dry_run:
        ChangeLog(project.settings.changelog).check_ready()
    the_plan = plan(project, loaded, inventory, params, options)
    connections = Connections()
    try:
        if options.dry_run:
            preview(the_plan, project, connections, options)
            if on_plan:
                on_plan(the_plan)
            stamp = now_iso()
            # a CI pre-flight must see the sites that the real run would not reach
            code = ExitCode.SITE_FAILED if unplanned(the_plan) else ExitCode.OK
            return RunResult(the_plan, "planned", {}, stamp, stamp, 0.0, code)
        if on_plan:
            on_plan(the_plan)
        started_iso, started = now_iso(), time.monotonic()
        results = Executor(the_plan, project, options, reporter, cancel, connections).execute()
    finally:
        connections.close()
    result = RunResult(
        plan=the_plan,
        status="",
        sites=results,
        started=started_iso,
        finished=now_iso(),
        duration=time.monotonic() - started,
        exit_code=ExitCode.OK,
    )
    result.status, result.exit_code = outcome_of(results, cancel.is_set())
    entry = change_log_entry(result, options)
    if result.status == "refused" and not any(r.status == SITE_WINDOW_CLOSED for r in results.values()):
        # refused before starting (every site locked by another run): nothing ran, nothing is
        # logged, as for bad input; the document still says who holds the locks. A site refused
        # for its maintenance window is a decision of the inventory: that refusal is recorded.
        result.unrecorded = {**entry, "recorded": False}
    else:
        result.entry = record(project, entry)
    return result


def record(project: Project, entry: dict[str, Any]) -> dict[str, Any]:
    """Append the run's entry; if the log refuses it, keep the entry beside it and say so loudly."""
    path = project.settings.changelog
    try:
        return ChangeLog(path).append(entry)
    except (MaintainerError, OSError) as exc:
        fallback = path.with_name(f"{path.name}.unrecorded-{entry['run_id']}.json")
        try:
            fallback.write_text(json.dumps(entry, indent=2, sort_keys=True, default=str))
            kept = f"the entry was saved to {fallback}"
        except OSError as write_exc:
            kept = f"the entry could not be saved either ({write_exc}); it follows:\n{json.dumps(entry)}"
        raise RecordFailed(
            f"the run {entry['run_id']} finished ({entry['status']}) but the change log {path} refused "
            f"its entry: {exc}. {kept}; fix the log (maintainer log verify) and append it by hand.",
            entry,
        ) from exc


def outcome_of(results: dict[str, SiteResult], interrupted: bool) -> tuple[str, ExitCode]:
    statuses = {r.status for r in results.values()}
    if interrupted:
        return "interrupted", ExitCode.INTERRUPTED
    if any(r.internal_error for r in results.values()):
        return "failed", ExitCode.INTERNAL
    if statuses and statuses <= {SITE_LOCKED, SITE_WINDOW_CLOSED}:
        return "refused", ExitCode.CANNOT_START  # nothing started anywhere
    if statuses & {SITE_FAILED, SITE_UNREACHABLE, SITE_SKIPPED, SITE_LOCKED, SITE_WINDOW_CLOSED}:
        # some sites ran: a locked one, or one whose window was closed, is a site not done
        return "failed", ExitCode.SITE_FAILED
    return "ok", ExitCode.OK


def _redacted(site_record: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """Mask what users and commands wrote (errors, changes), never our own fields.

    A short secret such as "17" must not turn a timestamp or a status into
    "********", so statuses, ids, times and durations are left as they are.
    """
    data = dict(site_record)
    for key in ("error", "changes", "lock_broken"):
        if key in data:
            data[key] = redactor(data[key])
    data["steps"] = [
        {**step, "error": redactor.text(step["error"])} if "error" in step else step for step in data["steps"]
    ]
    return data


def change_log_entry(result: RunResult, options: RunOptions) -> dict[str, Any]:
    plan = result.plan
    return {
        "run_id": plan.run.id,
        "started": result.started,
        "finished": result.finished,
        "duration": round(result.duration, 3),
        "operator": plan.run.operator,
        "controller": socket.gethostname(),
        "trigger": detect_trigger(options.trigger),
        "ticket": plan.run.ticket,
        "runbook": {
            "name": plan.runbook.model.name,
            "version": plan.runbook.model.version,
            "digest": plan.runbook.digest,
        },
        "inventory": {"sources": [str(s) for s in plan.inventory.sources], "digest": plan.inventory.digest},
        "limit": options.limit,
        **({"ignore_window": True} if options.ignore_window else {}),
        "params": plan.redactor(plan.params),
        "status": result.status,
        "exit_code": int(result.exit_code),
        "sites": {name: _redacted(site.record(), plan.redactor) for name, site in result.sites.items()},
    }
