"""How runs look to people: live progress, plans and summaries.

On a terminal progress is live (rich); without one (cron) it is plain
timestamped lines. Everything here writes to stderr, so stdout stays free
for ``--output json``.
"""

from __future__ import annotations

import json
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

STATUS_STYLE = {
    "ok": "green",
    "failed": "bold red",
    "timeout": "bold red",
    "unreachable": "red",
    "locked": "yellow",
    "skipped": "dim",
    "interrupted": "yellow",
}


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


def make_console(*, stderr: bool = False) -> Console:
    """A rich console; without a terminal (cron mail, CI logs, a pipe) nothing is wrapped.

    rich assumes 80 columns off a terminal and would break a plan's commands
    and a log's timestamps mid-word; a reader of a log file wants each
    command exactly as it runs, on one line.
    """
    console = Console(stderr=stderr, highlight=False)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, highlight=False, width=UNWRAPPED_WIDTH, soft_wrap=True)


class PlainReporter:
    """One timestamped line per event: for cron mail and CI logs."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            self.stream.write(f"{stamp} {text}\n")
            self.stream.flush()

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
            TextColumn("{task.description}"),
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
        line = Text(f"{result.status:>11}", style=STATUS_STYLE.get(result.status, ""))
        line.append(f" {result.name} ")
        line.append(f"{result.duration:.2f}s", style="dim")
        self.live.console.print(line)

    def message(self, site: str | None, text: str) -> None:
        line = Text(f"  {site or 'run'}: ", style="dim")
        line.append(text)
        self.live.console.print(line)


def print_plan(plan: Plan, console: Console) -> None:
    record = plan.record()
    console.print(
        f"[bold]Plan[/] {record['runbook']['name']}@{record['runbook']['version']} "
        f"[dim](sha256 {record['runbook']['digest'][:12]})[/] for {len(plan.sites)} site(s), "
        f"{len(plan.batches)} batch(es), concurrency {plan.concurrency}"
        + (f", max_fail {plan.max_fail}" if plan.max_fail is not None else "")
    )
    if record["params"]:
        console.print("params: " + ", ".join(f"{k}={v}" for k, v in record["params"].items()), markup=False)
    for name, site in record["sites"].items():
        console.print(f"\n[bold]{name}[/]", markup=True)
        if site.get("error"):
            console.print(f"  [red]cannot preview: {site['error']}[/]")
        for section in ("steps", "rollback", "finally"):
            if not site[section]:
                continue
            if section != "steps":
                console.print(f"  [dim]{section}:[/]")
            for step in site[section]:
                when = f" when {step['when']}" if "when" in step else ""
                console.print(f"  - {step['id']} ({step['uses']}){when}", markup=False)
                if step.get("rendered_at_run_time"):
                    console.print("      (arguments rendered at run time from earlier outputs)", style="dim")
                # never folded: the plan shows each command exactly as it will run
                args = yaml.dump(
                    step["with"], Dumper=_PlanDumper, default_flow_style=False, sort_keys=False, width=1 << 16
                )
                for line in args.rstrip().splitlines():
                    console.print(f"      {line}", markup=False)
                diff = (step.get("preview") or {}).get("diff")
                if diff:
                    for line in diff.splitlines():
                        color = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
                        console.print(f"      [{color}]{line}[/]", markup=True, highlight=False)
    console.print("\n[dim]dry run: nothing was changed[/]")


def print_summary(result: RunResult, console: Console) -> None:
    table = Table(title=f"{result.plan.runbook.ref}  run {result.plan.run.id}", title_justify="left")
    table.add_column("site")
    table.add_column("status")
    table.add_column("host", style="dim")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold")
    for name, site in result.sites.items():
        style = STATUS_STYLE.get(site.status, "")
        detail = site.error or ""
        if site.rollback != "none":
            detail = f"{detail} (rollback {site.rollback})".strip()
        table.add_row(name, f"[{style}]{site.status}[/]", site.host, f"{site.duration:.2f}s", detail)
    console.print(table)
    counts: dict[str, int] = {}
    for site in result.sites.values():
        counts[site.status] = counts.get(site.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    seq = f" as entry {result.entry['seq']} (hash {result.entry['hash'][:16]})" if result.entry else ""
    console.print(
        f"{result.status.upper()}: {summary} in {result.duration:.2f}s; recorded{seq}", markup=False
    )


def print_log(entries: list[dict[str, Any]], console: Console) -> None:
    table = Table(title=f"change log: {len(entries)} run(s)", title_justify="left")
    for column in ("seq", "started", "runbook", "operator", "trigger", "ticket", "status", "sites"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        runbook = entry.get("runbook") or {}
        sites = entry.get("sites") or {}
        site_text = ", ".join(
            f"{name}:{(info or {}).get('status', '?')}" for name, info in list(sites.items())[:6]
        )
        if len(sites) > 6:
            site_text += f", +{len(sites) - 6} more"
        status = str(entry.get("status", "?"))
        table.add_row(
            str(entry.get("seq", "")),
            str(entry.get("started", ""))[:19],
            f"{runbook.get('name', '?')}@{runbook.get('version', '?')}",
            str(entry.get("operator", "")),
            str((entry.get("trigger") or {}).get("kind", "")),
            str(entry.get("ticket") or ""),
            f"[{STATUS_STYLE.get(status, '')}]{status}[/]",
            site_text,
        )
    console.print(table)


def print_details(result: RunResult, console: Console, max_lines: int = 20) -> None:
    """Each step's outputs (secrets masked): what an engineer reads after a health check."""
    for name, site in result.sites.items():
        console.print(f"\n[bold]{name}[/]", markup=True)
        for step in site.steps:
            style = STATUS_STYLE.get(step.status, "")
            label = step.id if step.section == "steps" else f"{step.section}:{step.id}"
            console.print(f"  [{style}]{step.status:>8}[/] {label} [dim]{step.duration:.2f}s[/]", markup=True)
            for key in ("stdout", "stderr", "msg"):
                text = str(step.outputs.get(key) or "").rstrip()
                lines = text.splitlines()
                for line in lines[:max_lines]:
                    console.print(f"           {key if key != 'stdout' else '|'} {line}", markup=False)
                if len(lines) > max_lines:
                    console.print(f"           ... {len(lines) - max_lines} more lines", style="dim")
            shown = ("stdout", "stderr", "msg", "rc", "seconds")
            extra = {k: v for k, v in step.outputs.items() if k not in shown}
            if extra and step.uses != "shell":
                console.print(f"           {json.dumps(extra, default=str, sort_keys=True)}", markup=False)
