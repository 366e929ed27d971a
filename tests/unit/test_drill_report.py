"""The drill report's pure computations: which records are drills, each site's status, the figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from maintainer import drill_report as dr
from maintainer.changelog import VerifyReport
from maintainer.errors import BadInput
from maintainer.inventory import Site

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
WEEK = 8 * 86400.0
SLA = {"rto_seconds": 1800.0, "rpo_seconds": 86400.0}


def at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def record(outcome: str, days_ago: float, **extra: Any) -> dict[str, Any]:
    return {
        "step": "drill",
        "what": "restore_drill",
        "outcome": outcome,
        "backup": f"b-{days_ago}",
        "started": at(days_ago),
        "rto_seconds": None if outcome == "failed" else 600.0,
        "rpo_seconds": 7200.0,
        "max_gap_seconds": 80000.0,
        "sla": SLA,
        "sla_missed": [],
        "failure": {"stage": "files", "message": "wp-config.php: sha256 mismatch"}
        if outcome == "failed"
        else None,
        **extra,
    }


def entry(seq: int, sites: dict[str, dict[str, Any]], runbook: str = "restore-drill") -> dict[str, Any]:
    return {
        "seq": seq,
        "run_id": f"r{seq}",
        "started": at(30),
        "operator": "ops",
        "trigger": {"kind": "cron", "ci_job_url": None},
        "ticket": "OPS-1",
        "runbook": {"name": runbook, "version": "1.0.0"},
        "sites": sites,
    }


def site(status: str = "ok", changes: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"status": status, "started": at(30), "steps": [], "changes": changes or [], **extra}


def drills(*records: dict[str, Any]) -> list[dr.Drill]:
    found = dr.collect_drills([entry(n, {"s": site(changes=[r])}) for n, r in enumerate(records, 1)])
    return found.get("s", [])


def summarise(found: list[dr.Drill], **kwargs: Any) -> dr.SiteReport:
    return dr.summarise_site("s", found, now=NOW, stale_after=WEEK, since=None, **kwargs)


# -- inputs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("8d", 8 * 86400), ("36h", 36 * 3600), ("2w", 14 * 86400), ("90", 90)]
)
def test_parse_age(text: str, seconds: float) -> None:
    assert dr.parse_age(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0", "0d", "-1d", "w", ""])
def test_parse_age_rejects_with_the_key_and_an_example(text: str) -> None:
    with pytest.raises(BadInput) as caught:
        dr.parse_age(text)
    assert caught.value.key == "--stale-after" and "8d" in str(caught.value)


def test_parse_period() -> None:
    assert dr.parse_period(None, now=NOW) is None and dr.parse_period("all", now=NOW) is None
    assert dr.parse_period("30d", now=NOW) == NOW - timedelta(days=30)
    assert dr.parse_period("2025-01-01", now=NOW) == datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(BadInput) as caught:
        dr.parse_period("last tuesday", now=NOW)
    assert caught.value.key == "--since" and "'all'" in str(caught.value)


def inv_site(sla: Any) -> Site:
    return Site("shop1", {"sla": sla} if sla is not None else {}, [])


def test_inventory_sla_targets() -> None:
    assert dr.inventory_target(inv_site(None), "inv.yml") is None
    assert dr.inventory_target(inv_site({"rto": "30m", "rpo": "1d"}), "inv.yml") == dr.Target(
        1800, 86400, "inventory"
    )
    assert dr.inventory_target(inv_site({"rpo": 3600}), "inv.yml") == dr.Target(None, 3600, "inventory")


@pytest.mark.parametrize(
    ("sla", "key", "says"),
    [
        ("30m", "sla", "must be a mapping"),
        ({"rto": "half an hour"}, "sla.rto", "'half an hour' is not a duration"),
        ({"rto": 0}, "sla.rto", "above zero"),
        ({"rto": "30m", "rp0": "1d"}, "sla.rp0", "unknown key"),
    ],
)
def test_bad_inventory_sla_names_inventory_site_key_and_fix(sla: Any, key: str, says: str) -> None:
    with pytest.raises(BadInput) as caught:
        dr.inventory_target(inv_site(sla), "inv.yml")
    error = caught.value
    assert error.key == key and error.file == "inv.yml" and says in str(error)
    assert "shop1" in str(error) and "rto: 30m" in str(error)


# -- which records are drills -------------------------------------------------------------------------


def test_only_restore_drill_records_count_and_they_carry_the_run() -> None:
    other = {"step": "backup", "what": "backup", "id": "x"}
    found = dr.drills_of_entry(
        entry(7, {"a": site(changes=[other, record("passed", 2)]), "b": site(changes=[other])})
    )
    assert [(d.site, d.outcome, d.seq, d.run_id, d.operator, d.ticket, d.trigger) for d in found] == [
        ("a", "passed", 7, "r7", "ops", "OPS-1", "cron")
    ]
    assert found[0].started == NOW - timedelta(days=2)  # the drill's own start, not the run's


def test_an_sla_miss_that_failed_its_step_stays_an_sla_miss() -> None:
    # restore-drill's default sla_miss: fail makes the step fail; the engine marks the record
    missed = {**record("sla_missed", 1, sla_missed=["rpo"]), "status": "failed"}
    [drill] = dr.drills_of_entry(entry(1, {"a": site("failed", [missed], error="SLA missed: RPO")}))
    assert drill.outcome == "sla_missed" and drill.failure is None


def test_a_failed_step_is_a_failed_drill_whatever_the_record_claims() -> None:
    claimed = {**record("passed", 1), "status": "failed"}  # the engine marks a failed step's changes
    [drill] = dr.drills_of_entry(entry(1, {"a": site("failed", [claimed], error="cleanup: rm failed")}))
    assert drill.outcome == "failed"
    assert drill.failure == {"stage": "drill", "message": "cleanup: rm failed"}
    [odd] = dr.drills_of_entry(entry(1, {"a": site(changes=[record("maybe", 1)])}))
    assert odd.outcome == "failed"


def test_a_drill_run_that_never_reached_the_drill_step_is_a_failed_drill() -> None:
    sites = {
        "down": site("unreachable", error="ssh: connection refused"),
        "busy": site("locked", error="locked by run x"),
        "shut": site("window_closed"),
    }
    found = dr.drills_of_entry(entry(3, sites))
    assert [(d.site, d.outcome, d.failure) for d in found] == [
        ("down", "failed", {"stage": "unreachable", "message": "ssh: connection refused"})
    ]
    # a failed site of another runbook says nothing about restores
    assert dr.drills_of_entry(entry(4, {"down": site("failed", error="x")}, runbook="backup")) == []


@pytest.mark.parametrize(
    "garbage", [{}, {"sites": None}, {"sites": {"a": "x"}}, {"sites": {"a": {"changes": "x"}}}]
)
def test_odd_entries_are_skipped_not_fatal(garbage: dict[str, Any]) -> None:
    assert dr.drills_of_entry(garbage) == []


def test_drills_are_ordered_by_their_start() -> None:
    found = drills(record("passed", 1), record("failed", 5))  # logged out of time order
    assert [d.outcome for d in found] == ["failed", "passed"]


# -- a site's status ------------------------------------------------------------------------------------


def test_never() -> None:
    report = summarise([])
    assert (report.status, report.last, report.days_since_passed, report.pass_rate) == (
        "never",
        None,
        None,
        None,
    )


def test_ok_with_figures_against_the_recorded_sla() -> None:
    report = summarise(drills(record("failed", 20), record("passed", 2)))
    assert report.status == "ok" and report.reason == "last drill (2d ago) passed"
    assert (report.rto_met, report.rpo_met) == (True, True)
    assert report.target == dr.Target(1800, 86400, "drill")
    assert report.days_since_passed == 2.0
    assert (report.drills, report.passed, report.failed, report.pass_rate) == (2, 1, 1, 0.5)


def test_failed_beats_everything_and_names_the_stage() -> None:
    report = summarise(drills(record("passed", 2), record("failed", 1)))
    assert report.status == "failed" and "failed at files" in report.reason
    assert report.rto_met is None and report.days_since_passed == 2.0
    old_failure = summarise(drills(record("failed", 30)))
    assert old_failure.status == "failed"  # not merely stale: the last attempt failed


def test_stale_after_the_limit_even_when_the_last_drill_missed_an_sla() -> None:
    assert summarise(drills(record("passed", 7.9))).status == "ok"
    stale = summarise(drills(record("passed", 8.1)))
    assert stale.status == "stale" and "no drill for 8d 2h" in stale.reason
    assert summarise(drills(record("sla_missed", 9, sla_missed=["rto"]))).status == "stale"


def test_sla_missed_as_the_drill_recorded_it() -> None:
    report = summarise(drills(record("sla_missed", 1, rto_seconds=4000.0, sla_missed=["rto"])))
    assert report.status == "sla_missed" and report.reason.endswith("but missed RTO")
    assert (report.rto_met, report.rpo_met) == (False, True)
    assert report.days_since_passed is None  # an SLA miss is not a pass


def test_the_inventorys_current_sla_is_applied_to_the_last_drills_figures() -> None:
    found = drills(record("passed", 1))  # RTO 600 s, RPO 7200 s, max gap 80000 s
    tight_rto = summarise(found, inventory_sla=dr.Target(300, None, "inventory"))
    assert tight_rto.status == "sla_missed" and (tight_rto.rto_met, tight_rto.rpo_met) == (False, None)
    # the RPO target holds the largest gap between backups too, not only the restored backup's age
    tight_rpo = summarise(found, inventory_sla=dr.Target(None, 43200, "inventory"))
    assert tight_rpo.status == "sla_missed" and tight_rpo.rpo_met is False
    loose = summarise(found, inventory_sla=dr.Target(3600, 86400, "inventory"))
    assert loose.status == "ok" and loose.target is not None and loose.target.source == "inventory"


def test_a_recorded_sla_miss_stays_a_miss_when_the_inventory_loosened_the_target() -> None:
    found = drills(record("sla_missed", 1, rto_seconds=4000.0, sla_missed=["rto"]))
    report = summarise(found, inventory_sla=dr.Target(3 * 3600, None, "inventory"))
    assert report.rto_met is True  # against today's target
    assert report.status == "sla_missed"  # but the drill, as recorded, missed the target it had then


def test_the_period_limits_counts_but_not_the_last_drill() -> None:
    found = drills(record("passed", 100), record("failed", 50), record("passed", 3))
    report = dr.summarise_site("s", found, now=NOW, stale_after=WEEK, since=NOW - timedelta(days=60))
    assert (report.drills, report.passed, report.failed, report.pass_rate) == (2, 1, 1, 0.5)
    only_old = dr.summarise_site("s", found[:1], now=NOW, stale_after=WEEK, since=NOW - timedelta(days=60))
    assert only_old.status == "stale" and only_old.drills == 0 and only_old.pass_rate is None


# -- the whole report -------------------------------------------------------------------------------------


def verified(ok: bool = True) -> VerifyReport:
    if ok:
        return VerifyReport(True, 3, "a" * 64, None, None)
    return VerifyReport(False, 1, "a" * 64, 2, "entry 2 was edited: its hash does not match its content")


def make(sites: list[tuple[str, dr.Target | None]] | None, ok: bool = True) -> dr.Report:
    entries = [
        entry(1, {"a": site(changes=[record("passed", 1)])}),
        entry(2, {"b": site(changes=[record("failed", 1)]), "c": site(changes=[record("passed", 1)])}),
    ]
    return dr.build_report(
        entries, verified(ok), Path("/x/log.jsonl"), now=NOW, stale_after=WEEK, since=None, sites=sites
    )


def test_sites_listed_come_in_that_order_and_unknown_ones_are_never() -> None:
    report = make([("z", None), ("a", None)])
    assert [(s.site, s.status) for s in report.sites] == [("z", "never"), ("a", "ok")]
    assert [s.site for s in make(None).sites] == ["a", "b", "c"]
    assert make(None).summary_line() == "3 site(s): 2 ok, 0 SLA missed, 1 failed, 0 stale, 0 never drilled"


def test_check_fails_on_any_bad_site_or_an_unverified_chain() -> None:
    assert make([("a", None)]).check_failed() is False
    assert make([("a", None)], ok=False).check_failed() is True
    assert make([("a", None), ("b", None)]).check_failed() is True
    assert make([("a", None), ("new", None)]).check_failed() is True


def test_json_document_keys() -> None:
    doc = make([("a", None)], ok=False).record()
    assert doc["changelog"] == {
        "path": "/x/log.jsonl",
        "verified": False,
        "entries": 2,
        "verified_entries": 1,
        "head_hash": "a" * 64,
        "first_bad_seq": 2,
        "problem": "entry 2 was edited: its hash does not match its content",
    }
    assert doc["summary"] == {"sites": 1, "ok": 1, "sla_missed": 0, "stale": 0, "failed": 0, "never": 0}
    [row] = doc["sites"]
    assert set(row) == {
        "site",
        "status",
        "reason",
        "evidence_verified",
        "sla",
        "rto",
        "rpo",
        "last_drill",
        "last_passed",
        "days_since_passed",
        "period",
    }
    assert row["last_drill"]["backup"] == "b-1" and row["last_passed"]["run_id"] == "r1"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (4.25, "4.2s"),
        (42, "42s"),
        (60, "1m"),
        (75, "1m 15s"),
        (5400, "1h 30m"),
        (7200, "2h"),
        (90000, "1d 1h"),
        (86400 * 3, "3d"),
    ],
)
def test_human_seconds(seconds: float | None, text: str) -> None:
    assert dr.human_seconds(seconds) == text


def test_html_escapes_every_value_and_loads_nothing() -> None:
    hostile = '<img src=x onerror="alert(1)">'
    entries = [
        entry(
            1, {hostile: site(changes=[record("failed", 1, failure={"stage": "smoke", "message": hostile})])}
        )
    ]
    report = dr.build_report(
        entries, verified(False), Path("/x/<b>.jsonl"), now=NOW, stale_after=WEEK, since=None
    )
    page = dr.render_html(report)
    assert (
        "<img" not in page and "<b>" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    )
    assert "<script" not in page and "http" not in page
    assert "hash chain NOT verified at entry 2" in page and "1 site(s): 0 ok, 0 SLA missed, 1 failed" in page


# -- issue 4 review: one RPO rule, unverified rows, drill hosts -------------------------------------------


def test_an_old_backup_never_passes_the_rpo_target_even_if_the_drill_recorded_no_miss() -> None:
    """Drills before the fix compared only the capped max gap: the report applies the drill's rule."""
    old = record("passed", 1, rpo_seconds=10 * 86400.0, max_gap_seconds=7 * 86400.0)
    report = summarise(drills(old))
    assert report.rpo_met is False and report.status == "sla_missed"
    cells = dr._cells(report)
    assert "✓" not in cells["rpo"] and "missed" in cells["rpo"]
    # the same rule whatever the target's source
    current = summarise(drills(old), inventory_sla=dr.Target(None, 86400, "inventory"))
    assert current.rpo_met is False


def test_a_figure_above_its_target_never_gets_a_tick() -> None:
    for rpo, gap in ((90000.0, 100.0), (100.0, 90000.0), (90000.0, None)):
        report = summarise(drills(record("passed", 1, rpo_seconds=rpo, max_gap_seconds=gap)))
        assert report.rpo_met is False and "✓" not in dr._cells(report)["rpo"], (rpo, gap)


def test_rows_from_entries_after_the_first_bad_one_are_marked_unverified() -> None:
    report = make(None, ok=False)  # entry 2 was edited: b and c come from it, a from entry 1
    marks = {row.site: row.unverified for row in report.sites}
    assert marks == {"a": False, "b": True, "c": True}
    c = next(row for row in report.sites if row.site == "c")
    assert c.status == "ok" and "UNVERIFIED" in c.reason
    assert c.record()["evidence_verified"] is False
    page = dr.render_html(report)
    assert page.count(">UNVERIFIED</span>") == 2 and 'class="row-ok unverified"' in page
    assert all(not row.unverified for row in make(None).sites)


def test_the_html_legend_does_not_claim_a_skipped_smoke_test_and_says_where_the_gap_ends() -> None:
    page = dr.render_html(make(None))
    assert "unless the smoke test was turned off or skipped" in page
    assert "from the newest backup to now" in page


def test_hosts_that_only_serve_as_drill_hosts_are_not_listed(tmp_path: Path) -> None:
    from maintainer.inventory import Inventory
    from maintainer.redact import Redactor

    log = tmp_path / "changelog.jsonl"
    log.write_text("")
    target = {"target": "file:///b"}
    inventory = Inventory(
        sources=[tmp_path / "inv.yml"],
        sites=[
            Site(name="shop", vars={"backup": target, "drill_host": "drills01"}, groups=[]),
            Site(name="drills01", vars={}, groups=[]),
        ],
        digest="d",
        redactor=Redactor(),
    )
    report = dr.make_report(log, inventory=inventory, now=NOW)
    assert [row.site for row in report.sites] == ["shop"]
