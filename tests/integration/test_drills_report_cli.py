"""`maintainer drills report` over a real change log, through the real CLI, in text, JSON and HTML.

The entries are written the way the engine writes them: site records from the engine's own
SiteResult/StepResult (which add the ``step`` key, and the ``status: failed`` of a failed step's
changes as the engine does), appended with ChangeLog.append, the engine's writer, so the hash chain
is the real one. The restore_drill records follow the drill action's documented record shape. The
HTML page is rendered by headless Chromium (skipped when it is not installed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from maintainer.changelog import ChangeLog
from maintainer.engine import SiteResult, StepResult
from tests.helpers import cli, local_site, make_project

NOW = datetime.now(UTC)
HOSTILE = "<script>alert('x')</script> & </td>"


def iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def drill_record(
    outcome: str,
    days_ago: float,
    *,
    backup: str = "20250101T000000Z-aaaa",
    rto: float | None = 300.0,
    rpo: float = 3600.0,
    sla: dict[str, float | None] | None = None,
    sla_missed: list[str] | None = None,
    failure: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A restore_drill record in the drill action's shape."""
    return {
        "what": "restore_drill",
        "outcome": outcome,
        "backup": backup,
        "backup_taken": iso(days_ago + rpo / 86400),
        "backup_finished": iso(days_ago + rpo / 86400 - 0.001),
        "started": iso(days_ago),
        "rto_seconds": rto,
        "rpo_seconds": rpo,
        "max_gap_seconds": 86000.0,
        "window_days": 7.0,
        "sla": sla if sla is not None else {"rto_seconds": 1800.0, "rpo_seconds": 86400.0},
        "sla_missed": sla_missed or [],
        "failure": failure,
        "files_verified": 1234,
        "bytes_restored": 5_000_000,
        "tables_verified": 12,
        "tables_skipped": 0,
        "smoke": None if failure else {"url": "http://127.0.0.1:40001/", "status": 200, "seconds": 0.4},
        "drill_host": "web1",
        "scratch": {"dir": "/tmp/drill-x", "db": "drill_x"},
        "cleanup": "ok",
        "timings": {"fetch": 10.0, "files": 100.0, "database": 150.0, "smoke": 1.0, "cleanup": 2.0},
    }


def site_result(
    name: str, days_ago: float, record: dict[str, Any] | None, *, error: str | None = None
) -> SiteResult:
    """What the engine records for one site of a restore-drill run."""
    failed = error is not None
    step = StepResult(
        "drill",
        "steps",
        "restore_drill",
        "failed" if failed else "ok",
        started=iso(days_ago),
        duration=300.0,
        error=error,
        # the engine marks a failed step's changes: {**c, "status": "failed"}
        changes=[] if record is None else [{**record, "status": "failed"} if failed else record],
    )
    return SiteResult(
        name,
        status="failed" if failed else "ok",
        host="web1",
        error=error,
        steps=[step],
        started=iso(days_ago),
        duration=301.0,
    )


def entry(days_ago: float, sites: list[SiteResult], *, runbook: str = "restore-drill") -> dict[str, Any]:
    """A run's entry as engine.change_log_entry builds it."""
    failed = any(s.status != "ok" for s in sites)
    return {
        "run_id": f"run-{days_ago}-{sites[0].name}",
        "started": iso(days_ago),
        "finished": iso(days_ago - 0.01),
        "duration": 800.0,
        "operator": "cron@ops",
        "controller": "ctl1",
        "trigger": {"kind": "cron", "ci_job_url": None},
        "ticket": None,
        "runbook": {"name": runbook, "version": "1.0.0", "digest": "d" * 64},
        "inventory": {"sources": ["inventories/test.yml"], "digest": "e" * 64},
        "limit": None,
        "params": {"backup": "latest"},
        "status": "failed" if failed else "ok",
        "exit_code": 1 if failed else 0,
        "sites": {s.name: s.record() for s in sites},
    }


SLA = {"rto": "30m", "rpo": "24h"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    sites = {
        name: local_site(tmp_path, sla=SLA)
        for name in ("shop-ok", "shop-slow", "shop-broken", "shop-down", "shop-old", "shop-new")
    }
    root = make_project(tmp_path, {}, sites)
    log = ChangeLog(root / "changelog.jsonl")
    # oldest first, as runs append them
    log.append(entry(40, [site_result("shop-old", 40, drill_record("passed", 40))]))
    failure = {"stage": "database", "message": "table wp_posts: checksum 1 != 2"}
    log.append(
        entry(
            10,
            [
                site_result(
                    "shop-ok",
                    10,
                    drill_record("failed", 10, rto=None, failure=failure),
                    error="database: table wp_posts: checksum 1 != 2",
                )
            ],
        )
    )
    log.append(
        entry(20, [site_result("shop-old", 20, drill_record("passed", 20, backup="20250102T000000Z-old"))])
    )
    log.append(entry(3, [site_result("shop-ok", 2, None)], runbook="backup"))  # not a drill: ignored
    log.append(
        entry(
            2,
            [
                site_result(
                    "shop-ok", 2, drill_record("passed", 2, backup="20250301T000000Z-okok", rto=420.0)
                ),
                # the runbook's default sla_miss: fail fails the step; the engine marks the record failed
                site_result(
                    "shop-slow",
                    2,
                    drill_record("sla_missed", 2, rto=2700.0, sla_missed=["rto"]),
                    error="SLA missed: RTO 45m is 15m over the 30m target",
                ),
            ],
        )
    )
    broken = {"stage": "smoke", "message": f"home page answered 500: PHP Fatal error {HOSTILE}"}
    log.append(
        entry(
            1,
            [
                site_result(
                    "shop-broken",
                    1,
                    drill_record("failed", 1, rto=None, failure=broken),
                    error="smoke: home page answered 500",
                ),
                # failed before the drill step recorded anything: still a failed drill
                SiteResult(
                    "shop-down",
                    status="unreachable",
                    host="web9",
                    error="ssh: connection refused",
                    started=iso(1),
                    duration=5.0,
                ),
            ],
        )
    )
    return root


def set_sla(inventory: Path, site: str, sla: Any) -> None:
    data = yaml.safe_load(inventory.read_text())
    data["all"]["hosts"][site]["sla"] = sla
    inventory.write_text(yaml.safe_dump(data))


def sites_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {site["site"]: site for site in document["sites"]}


def test_json_report_over_the_whole_log(project: Path) -> None:
    result = cli(project, "drills", "report", "-o", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["changelog"] == {
        "path": str(project / "changelog.jsonl"),
        "verified": True,
        "entries": 6,
        "verified_entries": 6,
        "head_hash": ChangeLog(project / "changelog.jsonl").verify().head_hash,
        "first_bad_seq": None,
        "problem": None,
    }
    sites = sites_of(doc)
    # without -i: every site with a drill, by name; shop-new was never drilled, so it is not known
    assert list(sites) == ["shop-broken", "shop-down", "shop-ok", "shop-old", "shop-slow"]
    assert {name: s["status"] for name, s in sites.items()} == {
        "shop-broken": "failed",
        "shop-down": "failed",
        "shop-ok": "ok",
        "shop-old": "stale",
        "shop-slow": "sla_missed",
    }
    ok = sites["shop-ok"]
    assert ok["last_drill"]["backup"] == "20250301T000000Z-okok"
    assert ok["last_drill"]["operator"] == "cron@ops" and ok["last_drill"]["seq"] == 5
    assert ok["rto"] == {"seconds": 420.0, "target_seconds": 1800.0, "met": True}
    assert ok["sla"]["source"] == "drill"
    assert ok["period"] == {"drills": 2, "passed": 1, "sla_missed": 0, "failed": 1, "pass_rate": 0.5}
    assert 1.9 < ok["days_since_passed"] < 2.1
    slow = sites["shop-slow"]
    assert slow["rto"]["met"] is False and slow["rpo"]["met"] is True
    assert slow["days_since_passed"] is None  # an SLA miss is not a pass
    broken = sites["shop-broken"]
    assert broken["last_drill"]["failure"]["stage"] == "smoke"
    assert HOSTILE in broken["last_drill"]["failure"]["message"]
    down = sites["shop-down"]["last_drill"]
    assert down["failure"] == {"stage": "unreachable", "message": "ssh: connection refused"}
    old = sites["shop-old"]
    assert old["last_drill"]["backup"] == "20250102T000000Z-old" and 19.9 < old["days_since_passed"] < 20.1
    assert old["period"]["drills"] == 2  # 40 and 20 days ago: both in the default 90 days
    assert doc["summary"] == {"sites": 5, "ok": 1, "sla_missed": 1, "stale": 1, "failed": 2, "never": 0}


def test_the_period_and_stale_limit_are_options(project: Path) -> None:
    result = cli(project, "drills", "report", "-o", "json", "--since", "30d", "--stale-after", "3w")
    assert result.returncode == 0, result.stderr
    sites = sites_of(json.loads(result.stdout))
    assert sites["shop-old"]["period"]["drills"] == 1  # the one 40 days ago is before the period
    assert sites["shop-old"]["status"] == "ok"  # 20 days is within three weeks


def test_inventory_lists_never_drilled_sites_and_applies_its_current_sla(project: Path) -> None:
    inventory = project / "inventories" / "test.yml"
    # the SLA was tightened after shop-ok's drill (7 minutes against 5 now)
    set_sla(inventory, "shop-ok", {"rto": "5m", "rpo": "24h"})
    result = cli(
        project, "drills", "report", "-i", str(inventory), "-o", "json", "--limit", "shop-ok:shop-new"
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    sites = sites_of(doc)
    assert list(sites) == ["shop-new", "shop-ok"]  # inventory order (make_project writes them sorted)
    assert sites["shop-new"]["status"] == "never" and sites["shop-new"]["last_drill"] is None
    assert sites["shop-new"]["sla"] == {"rto_seconds": 1800.0, "rpo_seconds": 86400.0, "source": "inventory"}
    assert sites["shop-ok"]["sla"] == {"rto_seconds": 300.0, "rpo_seconds": 86400.0, "source": "inventory"}
    assert sites["shop-ok"]["status"] == "sla_missed" and sites["shop-ok"]["rto"]["met"] is False
    assert doc["inventory"]["sources"] == [str(inventory)]


def test_check_exits_1_for_cron_only_when_asked(project: Path) -> None:
    assert cli(project, "drills", "report").returncode == 0
    checked = cli(project, "drills", "report", "--check")
    assert checked.returncode == 1, checked.stderr
    # an inventory whose only site passed recently: healthy, exit 0 even with --check
    result = cli(project, "drills", "report", "-i", "inventories/test.yml", "--limit", "shop-ok", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_text_report_is_a_table_with_the_verdicts(project: Path) -> None:
    result = cli(project, "drills", "report", "-i", "inventories/test.yml")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in (
        "shop-new",
        "never",
        "shop-old",
        "stale",
        "shop-slow",
        "sla_missed",
        "45m / 30m ✗ missed",
        "20250301T000000Z-okok",
        "smoke: home page answered 500",
        "unreachable: ssh: connection refused",
        "6 site(s): 1 ok, 1 SLA missed, 2 failed, 1 stale, 1 never drilled",
        "hash chain verified: 6 entries intact",
    ):
        assert text in out, text


def tamper(project: Path) -> None:
    path = project / "changelog.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    # an edited drill: the failure of shop-ok 10 days ago turned into a pass, hash left as it was
    assert '"outcome":"failed"' in lines[1]
    lines[1] = lines[1].replace('"outcome":"failed"', '"outcome":"passed"', 1)
    path.write_text("".join(lines))


def test_a_tampered_log_is_reported_as_not_verified(project: Path) -> None:
    tamper(project)
    result = cli(project, "drills", "report", "-o", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["changelog"]["verified"] is False and doc["changelog"]["first_bad_seq"] == 2
    assert "edited" in doc["changelog"]["problem"]
    assert "NOT verified" in result.stderr
    text = cli(project, "drills", "report")
    assert "hash chain NOT verified at entry 2" in text.stdout
    # --check fails on an unverified log even when every listed site is fine
    result = cli(project, "drills", "report", "-i", "inventories/test.yml", "--limit", "shop-ok", "--check")
    assert result.returncode == 1


def test_an_expected_head_also_detects_a_cut_tail(project: Path) -> None:
    path = project / "changelog.jsonl"
    head = ChangeLog(path).verify().head_hash
    assert head is not None
    ok = json.loads(cli(project, "drills", "report", "-o", "json", "--expect-head", head).stdout)
    assert ok["changelog"]["verified"] is True
    # the last entry (shop-broken's failed drill) removed: the chain itself is still intact
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    assert ChangeLog(path).verify().ok
    result = cli(project, "drills", "report", "-o", "json", "--expect-head", head)
    cut = json.loads(result.stdout)
    assert cut["changelog"]["verified"] is False and "expected head" in cut["changelog"]["problem"]
    assert "shop-broken" not in sites_of(cut)  # what is left is still reported, flagged as unverified
    bad = cli(project, "drills", "report", "--expect-head", "nothex")
    assert bad.returncode == 2 and "expect_head" in bad.stderr


def test_bad_input_is_exit_2_naming_the_key(project: Path) -> None:
    result = cli(project, "drills", "report", "--stale-after", "soon")
    assert result.returncode == 2 and "--stale-after" in result.stderr and "8d" in result.stderr
    result = cli(project, "drills", "report", "--since", "yesterday", "-o", "json")
    assert result.returncode == 2 and json.loads(result.stdout)["exit_code"] == 2
    inventory = project / "inventories" / "test.yml"
    set_sla(inventory, "shop-slow", {"rto": "30m", "rpo": "a day"})
    result = cli(project, "drills", "report", "-i", str(inventory))
    assert result.returncode == 2
    assert (
        "sla.rpo" in result.stderr
        and "'a day' is not a duration" in result.stderr
        and "Fix:" in result.stderr
    )
    result = cli(project, "drills", "report", "--out", str(project / "r.txt"))
    assert result.returncode == 2 and "--output html" in result.stderr


# -- HTML, checked in a real browser --------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "HOME": profile},
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_html_report_is_self_contained_and_escaped(project: Path) -> None:
    out = project / "report.html"
    result = cli(project, "drills", "report", "-i", "inventories/test.yml", "-o", "html", "--out", str(out))
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    # self-contained: no scripts, no external resources
    for forbidden in ("<script", "src=", "href=", "@import", "url("):
        assert forbidden not in page, forbidden
    assert html_escaped(HOSTILE) in page
    assert "hash chain verified" in page and str(project / "changelog.jsonl") in page
    # the same document on stdout without --out
    stdout = cli(project, "drills", "report", "-i", "inventories/test.yml", "-o", "html")
    assert stdout.stdout.startswith("<!DOCTYPE html>") and "shop-new" in stdout.stdout


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_report_renders_in_headless_chromium(project: Path, tmp_path: Path) -> None:
    tamper(project)  # the auditor must see at once that the chain did not verify
    out = tmp_path / "report.html"
    result = cli(project, "drills", "report", "-i", "inventories/test.yml", "-o", "html", "--out", str(out))
    assert result.returncode == 0, result.stderr
    dom = chromium("--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr
    text = dom.stdout
    assert "Restore drill report" in text
    assert "hash chain NOT verified at entry 2" in text
    assert "6 site(s): 1 ok, 1 SLA missed, 2 failed, 1 stale, 1 never drilled" in text
    rows = {
        site: status
        for status, site in re.findall(
            r'<tr class="row-(\w+)(?: unverified)?"><td class="site"><strong>([^<]+)</strong>', text
        )
    }
    assert rows == {
        "shop-ok": "ok",
        "shop-slow": "sla_missed",
        "shop-broken": "failed",
        "shop-down": "failed",
        "shop-old": "stale",
        "shop-new": "never",
    }
    for label in ("NEVER DRILLED", "STALE", "SLA MISSED", "FAILED", "OK"):
        assert f">{label}</span>" in text, label
    # rows from the tampered entry on are marked, not shown as plain green evidence
    assert '<tr class="row-ok unverified">' in text and ">UNVERIFIED</span>" in text
    # the hostile failure message is text in the page, not markup the browser ran
    assert "<script>alert" not in text and "&lt;script&gt;alert('x')&lt;/script&gt; &amp; &lt;/td&gt;" in text
    png = tmp_path / "report.png"
    shot = chromium(f"--screenshot={png}", "--window-size=1200,900", out.as_uri())
    assert shot.returncode == 0, shot.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    keep = os.environ.get("DRILL_REPORT_SCREENSHOT")
    if keep:  # for a person to look at: DRILL_REPORT_SCREENSHOT=/tmp/drills.png pytest ...
        shutil.copy(png, keep)


# -- end to end: real drills by the shipped runbooks, then the report -------------------------------


@pytest.mark.slow
def test_report_of_real_drills_run_by_the_shipped_runbooks(tmp_path: Path) -> None:
    """backup, a drill that passes, a corrupted pack and a drill that fails: the report says so."""
    from tests.backup_helpers import make_site
    from tests.helpers import REPO, read_log

    runbooks = {
        f"{name}@1.0.0": (REPO / "runbooks" / name / "1.0.0.yml").read_text()
        for name in ("backup", "restore-drill")
    }
    store = tmp_path / "store"
    site_vars = local_site(
        tmp_path,
        docroot=str(make_site(tmp_path / "www" / "site", small=5, big_bytes=20_000)),
        cms="static",
        health_marker="Example Site",
        backup={"target": f"file://{store}"},
        sla={"rto": "10m", "rpo": "1d"},
    )
    project = make_project(tmp_path / "project", runbooks, {"web": site_vars, "shop": local_site(tmp_path)})
    assert cli(project, "run", "backup", "--limit", "web").returncode == 0
    drill = cli(project, "run", "restore-drill", "--limit", "web", timeout=300)
    assert drill.returncode == 0, drill.stdout + drill.stderr

    report = cli(project, "drills", "report", "-i", "inventories/test.yml", "-o", "json")
    assert report.returncode == 0, report.stderr
    doc = json.loads(report.stdout)
    sites = sites_of(doc)
    assert doc["changelog"]["verified"] is True and doc["changelog"]["entries"] == 2
    assert sites["shop"]["status"] == "never"
    web = sites["web"]
    recorded = next(
        c for c in read_log(project)[-1]["sites"]["web"]["changes"] if c.get("what") == "restore_drill"
    )
    assert web["status"] == "ok", web
    assert web["last_drill"]["backup"] == recorded["backup"] and web["last_drill"]["seq"] == 2
    assert web["last_drill"]["files_verified"] == recorded["files_verified"] > 0
    assert web["rto"] == {"seconds": recorded["rto_seconds"], "target_seconds": 600.0, "met": True}
    assert web["sla"]["source"] == "inventory" and web["days_since_passed"] < 0.01

    # damage every pack of the store: the next drill fails, and the report names the stage
    packs = [p for p in store.rglob("*") if p.is_file() and "pack" in str(p.relative_to(store))]
    assert packs, sorted(str(p) for p in store.rglob("*"))
    for pack in packs:
        pack.write_bytes(b"\0" * pack.stat().st_size)
    failed = cli(project, "run", "restore-drill", "--limit", "web", timeout=300)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    doc = json.loads(cli(project, "drills", "report", "-i", "inventories/test.yml", "-o", "json").stdout)
    web = sites_of(doc)["web"]
    assert web["status"] == "failed" and web["last_drill"]["seq"] == 3
    assert web["last_drill"]["failure"]["stage"] in ("fetch", "files"), web["last_drill"]["failure"]
    assert web["period"] == {"drills": 2, "passed": 1, "sla_missed": 0, "failed": 1, "pass_rate": 0.5}
    assert web["last_passed"]["seq"] == 2
    assert cli(project, "drills", "report", "-i", "inventories/test.yml", "--check").returncode == 1
    # a real failure message can be long: the table clips it, JSON keeps it whole
    text = cli(project, "drills", "report", "-i", "inventories/test.yml").stdout
    assert "full text: --output json" in text and len(web["last_drill"]["failure"]["message"]) > 400
