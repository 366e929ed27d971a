"""How runs look to people: live progress, plans and summaries.

On a terminal progress is live (rich); without one (cron) it is plain
timestamped lines. Everything here writes to stderr, so stdout stays free
for ``--output json``.

Every piece of text that comes from users, inventories, runbooks, commands,
files or the change log is printed literally: it goes into rich ``Text``
objects, never into a markup string, so ``[/]`` cannot crash a printer,
``[app]`` cannot vanish and ``:warning:`` stays as written. Our own styles are
applied with ``Text(style=...)`` only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from .engine import Plan, RunResult, SiteResult, StepResult
from .errors import MaintainerError
from .inventory import Site
from .transport import host_key
from .units import human_bytes

STATUS_STYLE = {
    "ok": "green",
    "failed": "bold red",
    "timeout": "bold red",
    "unreachable": "red",
    "locked": "yellow",
    "window_closed": "yellow",
    "skipped": "dim",
    "interrupted": "yellow",
    "refused": "yellow",
}


def status_text(status: object, width: int = 0) -> Text:
    """A status, styled when we know it, printed as it is when we do not."""
    label = str(status)
    return Text(label.rjust(width), style=STATUS_STYLE.get(label, ""))


def connection_label(site: Site) -> str:
    """Where a site connects: 'local' or user@host:port, exactly as its transport will be labelled."""
    try:
        key = host_key(site.vars, site.name)
    except (MaintainerError, KeyError, OSError, TypeError, ValueError):
        return f"{site.vars.get('ansible_connection', '?')} (not supported)"
    if key.connection == "local":
        return "local"
    return f"{key.user}@{key.host}:{key.port}"


class _PlanDumper(yaml.SafeDumper):
    """Multi-line strings (scripts) as literal blocks, as they were written."""


_PlanDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    ),
)


#: width for output without a terminal: wide enough that rich never wraps a line
UNWRAPPED_WIDTH = 400


def silence(stream: IO[str]) -> None:
    """The reader of ``stream`` went away: later writes go to /dev/null instead of failing."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


class _Console(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        if self.stderr:
            # progress lost its reader (2>&1 | head): only the progress goes quiet; the run goes on,
            # finishes (or rolls back) and is recorded
            silence(sys.stderr)
            return
        # rich exits 1 here, which cron and CI would read as "a site failed"; the reader
        # went away (| head), so exit as a tool killed by SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(128 + signal.SIGPIPE)


def make_console(*, stderr: bool = False) -> Console:
    """A rich console; without a terminal (cron mail, CI logs, a pipe) nothing is wrapped.

    rich assumes 80 columns off a terminal and would break a plan's commands
    and a log's timestamps mid-word; a reader of a log file wants each
    command exactly as it runs, on one line.
    """
    console = _Console(stderr=stderr, highlight=False)
    if console.is_terminal:
        return console
    return _Console(stderr=stderr, highlight=False, width=UNWRAPPED_WIDTH, soft_wrap=True)


class PlainReporter:
    """One timestamped line per event: for cron mail and CI logs."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            try:
                self.stream.write(f"{stamp} {text}\n")
                self.stream.flush()
            except OSError:  # the reader went away (| head) or the terminal hung up: progress only
                silence(self.stream)

    def site_started(self, site: str) -> None:
        self._line(f"{site}: started")

    def step_started(self, site: str, step: str, section: str) -> None:
        pass

    def step_finished(self, site: str, result: StepResult) -> None:
        extra = f" - {result.error}" if result.error else ""
        label = result.id if result.section == "steps" else f"{result.section}:{result.id}"
        self._line(f"{site}: {label} {result.status} ({result.duration:.2f}s){extra}")

    def site_finished(self, result: SiteResult) -> None:
        extra = f" - {result.error}" if result.error else ""
        self._line(f"{result.name}: {result.status.upper()} in {result.duration:.2f}s{extra}")

    def message(self, site: str | None, text: str) -> None:
        self._line(f"{site or 'run'}: {text}")


class LiveReporter:
    """A live progress bar, a line naming what runs now, and one line per finished site (rich).

    The live area keeps a fixed height (two lines): adding and removing a row
    per site while other threads print made rich leave stale lines behind.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.overall = self.progress.add_task("sites", total=None)
        self.running = Text("", style="dim", overflow="ellipsis", no_wrap=True)
        self.live = Live(Group(self.progress, self.running), console=console, transient=True)
        self._current: dict[str, str] = {}
        self._lock = threading.Lock()

    def start(self, plan: Plan) -> None:
        """Show the display, now that the plan knows how many sites there are."""
        self.progress.update(self.overall, total=len(plan.sites))
        self.live.start()

    def __enter__(self) -> LiveReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def _show_running(self) -> None:
        items = [f"{site}: {step}" for site, step in self._current.items()]
        text = ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
        self.running.plain = f"  {text}"

    def site_started(self, site: str) -> None:
        with self._lock:
            self._current[site] = "connecting"
            self._show_running()

    def step_started(self, site: str, step: str, section: str) -> None:
        with self._lock:
            self._current[site] = step if section == "steps" else f"{section}:{step}"
            self._show_running()

    def step_finished(self, site: str, result: StepResult) -> None:
        if result.status in ("failed", "timeout"):
            line = Text("  ✗ ", style="red")
            line.append(f"{site} {result.id}: {result.error}")
            self.live.console.print(line)

    def site_finished(self, result: SiteResult) -> None:
        with self._lock:
            self._current.pop(result.name, None)
            self._show_running()
            self.progress.advance(self.overall)
        line = status_text(result.status, 11)
        line.append(f" {result.name} ")
        line.append(f"{result.duration:.2f}s", style="dim")
        self.live.console.print(line)

    def message(self, site: str | None, text: str) -> None:
        line = Text(f"  {site or 'run'}: ", style="dim")
        line.append(text)
        self.live.console.print(line)


#: a plan lists at most this many batches one per line; the batches in between are summarised
MAX_BATCH_LINES = 8
#: and names at most this many sites per batch line (each site's own heading names the rest)
MAX_BATCH_SITES = 6


def _count(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def _site_list(names: list[str], connections: dict[str, str], limit: int = MAX_BATCH_SITES) -> Text:
    """The first few sites with their connections: 'web1 (local), web2 (deploy@10.0.0.2:22) and 8 more'.

    When every site of the list connects the same way it is said once: 'web1, web2 and 8 more (all local)'.
    """
    shared = {connections[name] for name in names}
    text = Text()
    for n, name in enumerate(names[:limit]):
        if n:
            text.append(", ")
        text.append(name)
        if len(shared) > 1:
            text.append(f" ({connections[name]})", style="dim")
    if len(names) > limit:
        text.append(f" and {len(names) - limit} more")
    if len(shared) == 1:
        text.append(f" ({'all ' if len(names) > 1 else ''}{connections[names[0]]})", style="dim")
    return text


def _batch_lines(plan: Plan, connections: dict[str, str]) -> list[Text]:
    """One line per batch (the first is the canary); a long list keeps its head and tail."""
    batches = [[plan.sites[i].site.name for i in batch] for batch in plan.batches]
    if len(batches) == 1:
        line = Text(f"  one batch ({_count(len(batches[0]), 'site')}, no canary): ")
        return [line + _site_list(batches[0], connections)]

    def one(number: int, names: list[str]) -> Text:
        line = Text(f"  batch {number} (")
        if number == 1:
            line.append("canary", style="bold")
            line.append(", ")
        line.append(f"{_count(len(names), 'site')}): ")
        return line + _site_list(names, connections)

    if len(batches) <= MAX_BATCH_LINES:
        return [one(n, names) for n, names in enumerate(batches, 1)]
    head = MAX_BATCH_LINES - 2
    middle = batches[head:-1]
    sites = [name for names in middle for name in names]
    summary = Text(
        f"  batches {head + 1}-{len(batches) - 1} ({_count(len(middle), 'batch', 'batches')}, "
        f"{_count(len(sites), 'site')}): ",
        style="dim",
    )
    summary.append(f"{sites[0]} ... {sites[-1]}" if len(sites) > 1 else sites[0])
    return [
        *(one(n, names) for n, names in enumerate(batches[:head], 1)),
        summary,
        one(len(batches), batches[-1]),
    ]


def print_plan(plan: Plan, console: Console) -> None:
    record = plan.record()
    connections = {sp.site.name: plan.redactor.text(connection_label(sp.site)) for sp in plan.sites}
    batch_of = {name: n for n, names in enumerate(record["batches"], 1) for name in names}
    several = len(plan.batches) > 1
    windows_of = {sp.site.name: sp.window for sp in plan.sites}

    header = Text()
    header.append("Plan", style="bold")
    header.append(f" {record['runbook']['name']}@{record['runbook']['version']} ")
    header.append(f"(sha256 {record['runbook']['digest'][:12]})", style="dim")
    header.append(
        f" for {len(plan.sites)} site(s), {len(plan.batches)} batch(es), concurrency {plan.concurrency}"
        + (f", max_fail {plan.max_fail}" if plan.max_fail is not None else "")
    )
    console.print(header)
    if several:
        console.print(Text("batches run one after another; the first is the canary:"))
    for batch_line in _batch_lines(plan, connections):
        console.print(batch_line)
    if record["params"]:
        console.print(Text("params: " + ", ".join(f"{k}={v}" for k, v in record["params"].items())))
    for name, site in record["sites"].items():
        console.print()
        heading = Text(name, style="bold")
        heading.append(f"  {connections[name]}  ")
        heading.append(f"batch {batch_of[name]} of {len(plan.batches)}", style="dim")
        if several and batch_of[name] == 1:
            heading.append(" (canary)", style="bold")
        console.print(heading)
        if site.get("error"):
            console.print(Text(f"  cannot preview: {site['error']}", style="red"))
        window, site_window = site.get("window"), windows_of.get(name)
        if window and site_window:
            # as the record says it, at the moment it was checked
            state = site_window.summary(datetime.fromisoformat(window["checked"]))
            if not window["open"]:
                state += "; run anyway: --ignore-window" if window.get("ignored") else ": a real run skips it"
            style = "green" if window["open"] else "yellow"
            console.print(Text(f"  maintenance window {window['spec']}: ").append(state, style=style))
        for section in ("steps", "rollback", "finally"):
            if not site[section]:
                continue
            if section != "steps":
                console.print(Text(f"  {section}:", style="dim"))
            for step in site[section]:
                when = f" when {step['when']}" if "when" in step else ""
                console.print(Text(f"  - {step['id']} ({step['uses']}){when}"))
                if step.get("rendered_at_run_time"):
                    console.print(
                        Text("      (arguments rendered at run time from earlier outputs)", style="dim")
                    )
                # never folded: the plan shows each command exactly as it will run
                args = yaml.dump(
                    step["with"], Dumper=_PlanDumper, default_flow_style=False, sort_keys=False, width=1 << 16
                )
                for line in args.rstrip().splitlines():
                    console.print(Text(f"      {line}"))
                summary = (step.get("preview") or {}).get("summary")
                if summary:
                    console.print(Text(f"      => {summary}", style="cyan"))
                diff = (step.get("preview") or {}).get("diff")
                if diff:
                    for line in str(diff).splitlines():
                        color = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
                        console.print(Text(f"      {line}", style=color))
    console.print()
    console.print(Text("dry run: nothing was changed", style="dim"))


def print_summary(result: RunResult, console: Console) -> None:
    table = Table(title=Text(f"{result.plan.runbook.ref}  run {result.plan.run.id}"), title_justify="left")
    table.add_column("site")
    table.add_column("status")
    table.add_column("host", style="dim")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold")
    for name, site in result.sites.items():
        # what the site's changes say of themselves (a backup's id and size), when nothing failed
        detail = site.error or "; ".join(str(c["summary"]) for c in site.changes if c.get("summary"))
        if site.rollback != "none":
            detail = f"{detail} (rollback {site.rollback})".strip()
        table.add_row(
            Text(name), status_text(site.status), Text(site.host), Text(f"{site.duration:.2f}s"), Text(detail)
        )
    console.print(table)
    counts: dict[str, int] = {}
    for site in result.sites.values():
        counts[site.status] = counts.get(site.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    seq = f" as entry {result.entry['seq']} (hash {result.entry['hash'][:16]})" if result.entry else ""
    console.print(Text(f"{result.status.upper()}: {summary} in {result.duration:.2f}s; recorded{seq}"))


def print_log(entries: list[dict[str, Any]], console: Console) -> None:
    table = Table(title=Text(f"change log: {len(entries)} run(s)"), title_justify="left")
    for column in ("seq", "started", "runbook", "operator", "trigger", "ticket", "status", "sites"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        runbook = entry.get("runbook") or {}
        sites = entry.get("sites") or {}
        site_text = Text()
        for n, (name, info) in enumerate(list(sites.items())[:6]):
            if n:
                site_text.append(", ")
            site_text.append(f"{name}:")
            site_text.append(status_text((info or {}).get("status", "?")))
        if len(sites) > 6:
            site_text.append(f", +{len(sites) - 6} more")
        # what happened, in the changes' own words (a backup's id and size), or why a site failed
        for name, info in list(sites.items())[:6]:
            info = info or {}
            # health checks are evidence, not what changed: the JSON output has them
            said = [
                str(c["summary"])
                for c in info.get("changes") or []
                if c.get("summary") and c.get("what") != "health_check"
            ][:4]
            if info.get("error") and info.get("status") != "ok":
                said.append(str(info["error"])[:300])
            if info.get("rollback") not in (None, "none"):
                said.append(f"rollback {info['rollback']}")
            for line in said:
                site_text.append(f"\n  {name}: {line}", style="dim")
        if entry.get("ignore_window"):
            site_text.append("\n  --ignore-window", style="yellow")
        table.add_row(
            Text(str(entry.get("seq", ""))),
            Text(str(entry.get("started", ""))[:19]),
            Text(f"{runbook.get('name', '?')}@{runbook.get('version', '?')}"),
            Text(str(entry.get("operator", ""))),
            Text(str((entry.get("trigger") or {}).get("kind", ""))),
            Text(str(entry.get("ticket") or "")),
            status_text(entry.get("status", "?")),
            site_text,
        )
    console.print(table)


def print_details(result: RunResult, console: Console, max_lines: int = 20) -> None:
    """Each step's outputs (secrets masked): what an engineer reads after a health check."""
    for name, site in result.sites.items():
        console.print()
        console.print(Text(name, style="bold"))
        for step in site.steps:
            label = step.id if step.section == "steps" else f"{step.section}:{step.id}"
            line = Text("  ") + status_text(step.status, 8)
            line.append(f" {label} ")
            line.append(f"{step.duration:.2f}s", style="dim")
            console.print(line)
            for key in ("stdout", "stderr", "msg"):
                text = str(step.outputs.get(key) or "").rstrip()
                lines = text.splitlines()
                for output_line in lines[:max_lines]:
                    console.print(Text(f"           {key if key != 'stdout' else '|'} {output_line}"))
                if len(lines) > max_lines:
                    console.print(Text(f"           ... {len(lines) - max_lines} more lines", style="dim"))
            shown = ("stdout", "stderr", "msg", "rc", "seconds")
            extra = {k: v for k, v in step.outputs.items() if k not in shown}
            if extra and step.uses != "shell":
                console.print(Text(f"           {json.dumps(extra, default=str, sort_keys=True)}"))


def print_backups(site: str, location: str, rows: list[Any], console: Console) -> None:
    """``backups list``: one row per backup (``BackupRow``), oldest first."""
    table = Table(title=Text(f"{site}: {location}"), title_justify="left")
    numbers = ("files", "size", "new", "uploaded", "took")
    for column in ("id", "time", "status", *numbers[:4], "db", "took"):
        table.add_column(column, justify="right" if column in numbers else "left")
    for row in rows:
        table.add_row(
            Text(row.id),
            Text(row.time),
            status_text(row.status).append(
                f" ({row.warnings} warnings)" if row.warnings else ""
            ),
            Text("-" if row.files is None else str(row.files)),
            Text(human_bytes(row.size)),
            Text(human_bytes(row.new_bytes)),
            Text(human_bytes(row.uploaded)),
            Text(", ".join(row.databases or []) or "-"),
            Text("-" if row.duration is None else f"{row.duration:.1f}s"),
        )
    if not rows:
        console.print(Text(f"{site}: no backups in {location} yet"))
        return
    console.print(table)


def print_verify(site: str, report: Any, console: Console) -> None:
    """``backups verify``: one line per backup, then each problem."""
    how = "every byte re-hashed" if report.read_data else "objects present with their sizes"
    console.print(Text(f"{site}: {report.location} ({how})"))
    for check in report.backups:
        line = Text("  ").append(status_text("ok" if check.ok else "failed")).append(
            f" {check.id}  {check.files} files, {check.objects} objects"
        )
        console.print(line)
        for problem in check.problems:
            # a file name may hold a newline: one problem, one line
            shown = problem.replace("\n", "\\n").replace("\r", "\\r")
            console.print(Text(f"      {shown}", style="red"))
    if not report.backups:
        console.print(Text("  no backups yet"))
