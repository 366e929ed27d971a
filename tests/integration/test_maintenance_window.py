"""Maintenance windows through the real CLI: refused sites (exit 3), --ignore-window, mixed runs, bad input.

The windows are built around the current time (closed: starting 3 hours from now; open: from 2 hours
ago to 2 hours from now), so the tests are deterministic whatever the day and hour.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from maintainer.windows import DAYS
from tests.helpers import cli, local_site, make_project, read_log

RUNBOOK = """
name: touch
version: 1.0.0
steps:
  - id: touch
    uses: shell
    with:
      command: "touch {{ site.marker | quote }}"
"""


def window(*, is_open: bool, tz: str = "UTC") -> str:
    """A window on ``tz``'s wall clock: open now (now -2h to +2h) or closed (+3h to +5h)."""
    now = datetime.now(UTC).astimezone(ZoneInfo(tz))
    start = now - timedelta(hours=2) if is_open else now + timedelta(hours=3)
    end = start + timedelta(hours=4 if is_open else 2)
    return f"{DAYS[start.weekday()]} {start:%H:%M}-{end:%H:%M} {tz}"


def project_with(tmp_path: Path, **windows: str | list[str] | None) -> Path:
    """One local site per keyword; its value is its maintenance_window (None: the site has none)."""
    sites: dict[str, dict[str, Any]] = {}
    for name, value in windows.items():
        extra: dict[str, Any] = {"marker": str(tmp_path / f"{name}.ran")}
        if value is not None:
            extra["maintenance_window"] = value
        sites[name] = local_site(tmp_path, **extra)
    return make_project(tmp_path, {"touch@1.0.0": RUNBOOK}, sites)


def ran(tmp_path: Path, name: str) -> bool:
    return (tmp_path / f"{name}.ran").exists()


def test_a_closed_window_refuses_the_site_with_exit_3_and_the_log_records_it(tmp_path: Path) -> None:
    # Asia/Kolkata has no DST, so wall-clock arithmetic around now is exact
    spec = window(is_open=False, tz="Asia/Kolkata")
    project = project_with(tmp_path, web1=spec)
    result = cli(project, "run", "touch", "-o", "json")
    assert result.returncode == 3, result.stderr
    assert not ran(tmp_path, "web1"), "nothing runs on a site whose window is closed"
    assert "web1: WINDOW_CLOSED" in result.stderr and "next window opens" in result.stderr
    [entry] = read_log(project)
    assert json.loads(result.stdout) == entry, "recorded, and the JSON document is the entry"
    assert entry["status"] == "refused" and entry["exit_code"] == 3
    assert "ignore_window" not in entry
    site = entry["sites"]["web1"]
    assert site["status"] == "window_closed" and site["steps"] == []
    assert f"maintenance window '{spec}' is closed" in site["error"] and "--ignore-window" in site["error"]
    assert site["window"]["spec"] == spec and site["window"]["open"] is False
    assert "ignored" not in site["window"]
    opens = datetime.fromisoformat(site["window"]["next_open"])
    assert timedelta(hours=2) < opens - datetime.now(UTC) < timedelta(hours=3, minutes=1)

    text = cli(project, "run", "touch")  # the summary names the refusal and the way around it
    assert text.returncode == 3 and "window_closed" in text.stderr and "REFUSED" in text.stderr
    assert not ran(tmp_path, "web1") and len(read_log(project)) == 2
    assert cli(project, "log", "show", "--status", "window_closed").returncode == 0


def test_ignore_window_runs_the_site_and_the_log_says_so(tmp_path: Path) -> None:
    spec = window(is_open=False)
    project = project_with(tmp_path, web1=spec)
    result = cli(project, "run", "touch", "--ignore-window")
    assert result.returncode == 0, result.stderr
    assert ran(tmp_path, "web1")
    assert "running anyway (--ignore-window)" in result.stderr
    [entry] = read_log(project)
    assert entry["status"] == "ok" and entry["ignore_window"] is True
    site = entry["sites"]["web1"]
    assert site["status"] == "ok"
    assert site["window"]["spec"] == spec
    assert site["window"]["open"] is False and site["window"]["ignored"] is True


def test_mixed_sites_run_where_the_window_is_open_and_exit_1(tmp_path: Path) -> None:
    project = project_with(
        tmp_path,
        open1=window(is_open=True),  # may cross midnight: it belongs to the day it starts on
        closed=window(is_open=False),
        listed=[window(is_open=False), window(is_open=True, tz="America/Sao_Paulo")],
        always=None,
    )
    result = cli(project, "run", "touch")
    # like a locked site among sites that ran: a site not done, exit 1 (3 would claim nothing started)
    assert result.returncode == 1, result.stderr
    assert [ran(tmp_path, n) for n in ("open1", "closed", "listed", "always")] == [True, False, True, True]
    [entry] = read_log(project)
    assert entry["status"] == "failed" and entry["exit_code"] == 1
    sites = entry["sites"]
    assert {name: info["status"] for name, info in sites.items()} == {
        "open1": "ok",
        "closed": "window_closed",
        "listed": "ok",
        "always": "ok",
    }
    assert sites["open1"]["window"]["open"] is True and "closes" in sites["open1"]["window"]
    assert sites["closed"]["window"]["open"] is False
    assert "; " in sites["listed"]["window"]["spec"] and sites["listed"]["window"]["open"] is True
    assert "window" not in sites["always"], "no maintenance_window: always open, nothing to record"


def test_dry_run_shows_each_sites_window_and_exits_as_before(tmp_path: Path) -> None:
    closed = window(is_open=False)
    project = project_with(tmp_path, open1=window(is_open=True), closed=closed, always=None)
    text = cli(project, "run", "touch", "--dry-run")
    assert text.returncode == 0, text.stderr
    assert f"maintenance window {closed}: closed now (opens " in text.stdout
    assert ": a real run skips it" in text.stdout and "open now (closes " in text.stdout
    as_json = cli(project, "run", "touch", "--dry-run", "-o", "json", "--ignore-window")
    assert as_json.returncode == 0, as_json.stderr
    plan = json.loads(as_json.stdout)
    assert plan["exit_code"] == 0 and plan["ignore_window"] is True
    assert plan["sites"]["closed"]["window"]["open"] is False and plan["sites"]["closed"]["window"]["ignored"]
    assert (
        plan["sites"]["open1"]["window"]["open"] is True and "ignored" not in plan["sites"]["open1"]["window"]
    )
    assert "window" not in plan["sites"]["always"]
    assert not any(ran(tmp_path, n) for n in ("open1", "closed", "always")) and read_log(project) == []


def test_an_invalid_window_is_bad_input_and_nothing_runs(tmp_path: Path) -> None:
    project = project_with(tmp_path, web1=window(is_open=True), web2="sundays 2am-4am Europe/Berlin")
    for args in (("run", "touch"), ("run", "touch", "--dry-run"), ("run", "touch", "--ignore-window")):
        result = cli(project, *args)
        assert result.returncode == 2, result.stderr
        assert "site 'web2' has an invalid maintenance_window" in result.stderr
        assert "key 'maintenance_window'" in result.stderr and "'sundays' is not a day" in result.stderr
        assert "Fix: write it as 'DAYS HH:MM-HH:MM [TZ]'" in result.stderr
    as_json = cli(project, "run", "touch", "-o", "json")
    assert as_json.returncode == 2 and "web2" in json.loads(as_json.stdout)["error"]
    assert not ran(tmp_path, "web1") and read_log(project) == []


def test_localtime_is_no_zone_name_bad_input_and_nothing_runs(tmp_path: Path) -> None:
    # ZoneInfo loads 'localtime' (the controller's own zone): a window in it would move with the controller
    project = project_with(tmp_path, web1=window(is_open=True), web2="daily 00:00-24:00 localtime")
    result = cli(project, "run", "touch")
    assert result.returncode == 2, result.stderr
    assert "site 'web2' has an invalid maintenance_window" in result.stderr
    assert "'localtime' is not a time zone name" in result.stderr and "Europe/Berlin" in result.stderr
    assert not ran(tmp_path, "web1") and read_log(project) == []


def test_an_always_open_window_says_so_instead_of_when_it_closes(tmp_path: Path) -> None:
    project = project_with(tmp_path, web1="daily 00:00-24:00 Europe/Berlin")
    text = cli(project, "run", "touch", "--dry-run")
    assert text.returncode == 0, text.stderr
    assert "maintenance window daily 00:00-24:00 Europe/Berlin: always open" in text.stdout
    assert "closes" not in text.stdout
    result = cli(project, "run", "touch", "-o", "json")
    assert result.returncode == 0, result.stderr
    state = read_log(project)[-1]["sites"]["web1"]["window"]
    assert state["always_open"] is True and "closes" not in state
