"""Every printer of maintainer.output prints every status, and any text, literally."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from maintainer import output
from maintainer.engine import SiteResult, StepResult

STATUSES = ["ok", "failed", "unreachable", "locked", "skipped", "interrupted", "refused", "timeout"]
ODD = ["pending", "planned", "[/]", "[bold]x", "", ":warning:"]
NASTY = "fatal: [web-01]: FAILED! [/] see [docs] [bold]x[/bold] :warning:"


def _console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=400, force_terminal=terminal, highlight=False), buffer


@pytest.mark.parametrize("status", STATUSES + ODD)
def test_log_table_prints_any_status_and_ticket(status: str) -> None:
    console, buffer = _console()
    entry: dict[str, Any] = {
        "seq": 1,
        "started": "2026-01-01T00:00:00Z",
        "runbook": {"name": "hello", "version": "1.0.0"},
        "operator": "[red]eve",
        "trigger": {"kind": "manual"},
        "ticket": NASTY,
        "status": status,
        "sites": {"[web]": {"status": status}},
    }
    output.print_log([entry], console)
    text = buffer.getvalue()
    assert NASTY in text and "[red]eve" in text and f"[web]:{status}" in text


@pytest.mark.parametrize("status", STATUSES + ODD)
def test_summary_and_details_print_any_status(status: str) -> None:
    step = StepResult(
        id="check", section="steps", uses="shell", status=status, outputs={"stderr": NASTY, "stdout": "[/]"}
    )
    site = SiteResult(name="[web]", status=status, host="deploy@[::1]:22", error=NASTY, steps=[step])
    result: Any = SimpleNamespace(
        plan=SimpleNamespace(runbook=SimpleNamespace(ref="[x]@1.0.0"), run=SimpleNamespace(id="r1")),
        sites={"[web]": site},
        status=status,
        duration=1.0,
        entry={"seq": 3, "hash": "ab" * 32},
    )
    console, buffer = _console()
    output.print_details(result, console)
    output.print_summary(result, console)
    text = buffer.getvalue()
    assert f"stderr {NASTY}" in text and "| [/]" in text
    assert f"{status:>8} check" in text
    assert NASTY in text.split("[x]@1.0.0  run r1")[1]
    assert "deploy@[::1]:22" in text and f"1 {status} in 1.00s" in text


@pytest.mark.parametrize("terminal", [True, False])
def test_reporters_print_any_status_literally(terminal: bool) -> None:
    console, buffer = _console(terminal)
    stream = io.StringIO()
    plain = output.PlainReporter(stream)
    with output.LiveReporter(console) as live:
        live.start(SimpleNamespace(sites=[None] * len(STATUSES + ODD)))  # type: ignore[arg-type]
        for status in STATUSES + ODD:
            step = StepResult(id="s", section="steps", uses="shell", status="failed", error=NASTY)
            site = SiteResult(name=f"[{status}]", status=status, error=NASTY)
            for reporter in (live, plain):
                reporter.site_started(site.name)
                reporter.step_started(site.name, "s", "steps")
                reporter.step_finished(site.name, step)
                reporter.message(site.name, NASTY)
                reporter.site_finished(site)
    for text in (buffer.getvalue(), stream.getvalue()):
        assert NASTY in text
        for status in STATUSES + ODD:
            assert f"[{status}]" in text, status


def test_log_table_says_what_changed_and_the_rollback_not_the_health_checks() -> None:
    console, buffer = _console()
    changes = [
        {"what": "health_check", "summary": "2 URLs healthy"},
        {"what": "backup", "summary": "backup 20260101T000000.000Z-abcdef: 3 files"},
        {"what": "restore", "summary": "restored backup 20260101T000000.000Z-abcdef"},
    ]
    entry: dict[str, Any] = {
        "seq": 1, "started": "2026-01-01T00:00:00Z", "runbook": {"name": "cms-update", "version": "1.0.0"},
        "operator": "eve", "trigger": {"kind": "manual"}, "status": "failed",
        "sites": {"shop": {"status": "failed", "error": "step 'post_check' failed: 500", "rollback": "ok",
                           "changes": changes}},
    }  # fmt: skip
    output.print_log([entry], console)
    text = buffer.getvalue()
    assert "backup 20260101T000000.000Z-abcdef" in text and "restored backup" in text
    assert "2 URLs healthy" not in text
    assert "post_check" in text and "rollback ok" in text
