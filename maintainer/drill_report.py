"""``maintainer drills report``: what the change log proves about each site's restore drills.

An auditor asks three things per site: when was a backup last proven restorable, how fast (RTO)
and how fresh (RPO) against the SLA, and whether that evidence was left untouched. So the report
verifies the change log's hash chain first (as ``log verify`` does), then takes
the ``restore_drill`` records that the restore-drill runbook writes (one change of its ``drill``
step per site), and reduces them to one row per site. A site the inventory lists but no drill ever
reached is reported as ``never``: those are the ones that matter most.

The three renderings (a rich table, a JSON document, one self-contained HTML page) live here too,
so that cli.py only parses options and prints. docs/DRILLS.md documents the JSON schema.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .changelog import ChangeLog, VerifyReport, parse_since
from .errors import BadInput
from .inventory import Inventory, Site
from .runbook import parse_duration

#: the ``what`` of a drill's change record (written by the restore_drill action)
DRILL_WHAT = "restore_drill"
#: the shipped runbook: a site it failed before the drill step recorded anything still counts as a drill
DRILL_RUNBOOK = "restore-drill"
OUTCOMES = ("passed", "sla_missed", "failed")
#: a site's overall status, best first
STATUSES = ("ok", "sla_missed", "stale", "failed", "never")
#: a weekly drill plus a day's slack: older than this and the last verified restore is "stale"
DEFAULT_STALE_AFTER = "8d"
#: drills counted and pass rate: over this period ("all" for the whole log)
DEFAULT_PERIOD = "90d"
#: the JSON document's own version: new optional keys keep it, a changed meaning raises it
REPORT_SCHEMA = 1
#: site statuses that make ``--check`` exit 1
CHECK_FAILS = ("sla_missed", "stale", "failed", "never")
#: run statuses of a restore-drill site that mean a drill was attempted and did not happen
_ATTEMPT_FAILED = ("failed", "unreachable", "interrupted")
_DAY = 86400.0

STATUS_STYLE = {
    "ok": "green",
    "passed": "green",
    "sla_missed": "yellow",
    "stale": "magenta",
    "failed": "bold red",
    "never": "bold red",
}
STATUS_LABEL = {
    "ok": "OK",
    "sla_missed": "SLA MISSED",
    "stale": "STALE",
    "failed": "FAILED",
    "never": "NEVER DRILLED",
}


# ------------------------------------------------------------------ inputs


def parse_age(text: str, *, key: str = "--stale-after") -> float:
    """Seconds from ``8d``, ``36h``, ``2w`` or a plain number of seconds; BadInput names ``key``."""
    value = text.strip().lower()
    try:
        weeks = value.endswith("w")
        seconds = parse_duration(value[:-1]) * 7 * _DAY if weeks else parse_duration(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0 or not math.isfinite(seconds):
        raise BadInput(
            f"{key} {text!r} is not a positive age.",
            key=key,
            fix="give a number with a unit, such as 8d (the default: a weekly drill plus a day), 36h or 2w.",
        )
    return seconds


def parse_period(text: str | None, *, now: datetime) -> datetime | None:
    """The start of the period that drill counts and pass rates cover; None for the whole log."""
    if text is None or text.strip().lower() == "all":
        return None
    try:
        return parse_since(text, now=now)
    except BadInput as exc:
        raise BadInput(
            f"--since {text!r} is not a time or an age.",
            key="--since",
            fix="give an age such as 90d (the default) or 4w, an ISO date such as 2024-01-01, or 'all' "
            f"for the whole change log. ({exc.message})",
        ) from None


@dataclass(frozen=True)
class Target:
    """A site's SLA: RTO and RPO targets in seconds (None: no target), and where they came from."""

    rto_seconds: float | None
    rpo_seconds: float | None
    #: "inventory" (the site's current sla var, with -i) or "drill" (what the drill was measured against)
    source: str

    def record(self) -> dict[str, Any]:
        return {"rto_seconds": self.rto_seconds, "rpo_seconds": self.rpo_seconds, "source": self.source}


def inventory_target(site: Site, sources: str) -> Target | None:
    """The site's ``sla`` var (``{rto: 30m, rpo: 24h}``) as a Target, None without one.

    Read exactly as the drill reads it, so the report and the drill never disagree on a target or
    on what is malformed; BadInput names the key, and here the inventory too.
    """
    # imported here: it pulls in the backup machinery, which only a report with -i needs
    from .backup.drill import site_sla

    try:
        sla = site_sla(site)
    except BadInput as exc:
        exc.file = exc.file or sources
        raise
    return None if sla is None else Target(sla.rto, sla.rpo, "inventory")


# ------------------------------------------------------------------ drills from the log


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass
class Drill:
    """One drill of one site, as the change log recorded it."""

    site: str
    started: datetime
    outcome: str  # passed, sla_missed, failed
    seq: int | None
    run_id: str | None
    operator: str | None
    ticket: str | None
    trigger: str | None
    #: the restore_drill record; empty when the site failed before the drill step recorded anything
    record: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, str] | None = None

    @property
    def rto_seconds(self) -> float | None:
        return _number(self.record.get("rto_seconds"))

    @property
    def rpo_seconds(self) -> float | None:
        return _number(self.record.get("rpo_seconds"))

    @property
    def max_gap_seconds(self) -> float | None:
        return _number(self.record.get("max_gap_seconds"))

    @property
    def backup(self) -> str | None:
        return _str(self.record.get("backup"))

    @property
    def sla_missed(self) -> list[str]:
        missed = self.record.get("sla_missed")
        return [str(m) for m in missed] if isinstance(missed, list) else []

    def recorded_target(self) -> Target | None:
        sla = self.record.get("sla")
        if not isinstance(sla, Mapping):
            return None
        return Target(_number(sla.get("rto_seconds")), _number(sla.get("rpo_seconds")), "drill")

    def summary(self, now: datetime) -> dict[str, Any]:
        """The drill for the JSON report: who, when, what was restored, the figures, and why it failed."""
        rec = self.record
        smoke = rec.get("smoke")
        scratch = rec.get("scratch")
        timings = rec.get("timings")
        return {
            "started": self.started.isoformat(),
            "age_days": _days(now - self.started),
            "seq": self.seq,
            "run_id": self.run_id,
            "operator": self.operator,
            "ticket": self.ticket,
            "trigger": self.trigger,
            "outcome": self.outcome,
            "backup": self.backup,
            "backup_taken": _str(rec.get("backup_taken")),
            "backup_finished": _str(rec.get("backup_finished")),
            "rto_seconds": self.rto_seconds,
            "rpo_seconds": self.rpo_seconds,
            "max_gap_seconds": self.max_gap_seconds,
            "window_days": _number(rec.get("window_days")),
            "sla_recorded": (target.record() if (target := self.recorded_target()) else None),
            "sla_missed": self.sla_missed,
            "failure": self.failure,
            "files_verified": _int(rec.get("files_verified")),
            "bytes_restored": _int(rec.get("bytes_restored")),
            "tables_verified": _int(rec.get("tables_verified")),
            "tables_skipped": _int(rec.get("tables_skipped")),
            "smoke": dict(smoke) if isinstance(smoke, Mapping) else None,
            "drill_host": _str(rec.get("drill_host")),
            "scratch": dict(scratch) if isinstance(scratch, Mapping) else None,
            "cleanup": _str(rec.get("cleanup")),
            "timings": dict(timings) if isinstance(timings, Mapping) else None,
        }


def _days(delta: timedelta) -> float:
    return round(delta.total_seconds() / _DAY, 2)


def _failure(record: Mapping[str, Any], site_info: Mapping[str, Any]) -> dict[str, str] | None:
    failure = record.get("failure")
    if isinstance(failure, Mapping):
        return {"stage": str(failure.get("stage") or "?"), "message": str(failure.get("message") or "")}
    # a drill step that failed without naming a stage: the engine's error says why
    error = _drill_step_error(site_info) or site_info.get("error")
    return {"stage": "drill", "message": str(error or "the drill step failed without a message")}


def _drill_step_error(site_info: Mapping[str, Any]) -> str | None:
    for step in site_info.get("steps") or []:
        if isinstance(step, Mapping) and step.get("id") == "drill" and step.get("error"):
            return str(step["error"])
    return None


def drills_of_entry(entry: Mapping[str, Any]) -> list[Drill]:
    """Every drill one change-log entry records (zero, one per site, or more).

    A restore_drill record is a drill. So is a site of a restore-drill run that failed before its
    drill step recorded anything (unreachable, a failed pre-flight): the drill was due and did not
    prove the backup, so it counts as failed. Locked, skipped and window-closed sites did not start.
    """
    sites = entry.get("sites")
    if not isinstance(sites, Mapping):
        return []
    runbook = entry.get("runbook")
    runbook_name = runbook.get("name") if isinstance(runbook, Mapping) else runbook
    trigger = entry.get("trigger")
    common: dict[str, Any] = {
        "seq": _int(entry.get("seq")),
        "run_id": _str(entry.get("run_id")),
        "operator": _str(entry.get("operator")),
        "ticket": _str(entry.get("ticket")),
        "trigger": _str(trigger.get("kind") if isinstance(trigger, Mapping) else trigger),
    }
    entry_started = _time(entry.get("started")) or datetime.fromtimestamp(0, UTC)
    found: list[Drill] = []
    for name, info in sites.items():
        if not isinstance(info, Mapping):
            continue
        site_started = _time(info.get("started")) or entry_started
        records = [
            c for c in info.get("changes") or [] if isinstance(c, Mapping) and c.get("what") == DRILL_WHAT
        ]
        for record in records:
            outcome = record.get("outcome")
            if outcome not in OUTCOMES or (outcome == "passed" and record.get("status") == "failed"):
                # the engine marks the changes of a failed step: that is no pass, whatever the record
                # says. An SLA miss fails the step too (sla_miss: fail) and stays an SLA miss.
                outcome = "failed"
            found.append(
                Drill(
                    site=str(name),
                    started=_time(record.get("started")) or site_started,
                    outcome=str(outcome),
                    record=dict(record),
                    failure=_failure(record, info) if outcome == "failed" else None,
                    **common,
                )
            )
        if not records and runbook_name == DRILL_RUNBOOK and info.get("status") in _ATTEMPT_FAILED:
            message = _drill_step_error(info) or info.get("error") or f"site {info.get('status')}"
            found.append(
                Drill(
                    site=str(name),
                    started=site_started,
                    outcome="failed",
                    failure={"stage": str(info.get("status")), "message": str(message)},
                    **common,
                )
            )
    return found


def collect_drills(entries: Iterable[Mapping[str, Any]]) -> dict[str, list[Drill]]:
    """Drills per site, oldest first (by drill start; the log's order breaks ties)."""
    per_site: dict[str, list[Drill]] = {}
    for entry in entries:
        for drill in drills_of_entry(entry):
            per_site.setdefault(drill.site, []).append(drill)
    for drills in per_site.values():
        drills.sort(key=lambda d: d.started)  # stable: same start keeps log order
    return per_site


# ------------------------------------------------------------------ one site


def _met(value: float | None, target: float | None) -> bool | None:
    from .backup.drill import sla_met  # the drill's own rule: drill and report never disagree

    return sla_met(target, value)


def _rpo_figure(drill: Drill) -> float | None:
    """What the rpo target is compared with: the drill's rule (the larger of backup age and max gap)."""
    from .backup.drill import rpo_exposure

    return rpo_exposure(drill.rpo_seconds, drill.max_gap_seconds)


@dataclass
class SiteReport:
    """One site's row: its status, the last drill and its figures against the SLA, and the period's record."""

    site: str
    status: str
    reason: str
    target: Target | None
    last: Drill | None
    last_passed: Drill | None
    rto_met: bool | None
    rpo_met: bool | None
    #: the last drill's entry is at or after the first entry the hash chain failed on
    unverified: bool
    drills: int
    passed: int
    sla_missed: int
    failed: int
    now: datetime

    @property
    def pass_rate(self) -> float | None:
        return round(self.passed / self.drills, 4) if self.drills else None

    @property
    def days_since_passed(self) -> float | None:
        return None if self.last_passed is None else _days(self.now - self.last_passed.started)

    def record(self) -> dict[str, Any]:
        last = self.last
        return {
            "site": self.site,
            "status": self.status,
            "reason": self.reason,
            "evidence_verified": not self.unverified,
            "sla": self.target.record() if self.target else None,
            "rto": {
                "seconds": last.rto_seconds if last else None,
                "target_seconds": self.target.rto_seconds if self.target else None,
                "met": self.rto_met,
            },
            "rpo": {
                "seconds": last.rpo_seconds if last else None,
                "max_gap_seconds": last.max_gap_seconds if last else None,
                "target_seconds": self.target.rpo_seconds if self.target else None,
                "met": self.rpo_met,
            },
            "last_drill": last.summary(self.now) if last else None,
            "last_passed": (
                None
                if self.last_passed is None
                else {
                    "started": self.last_passed.started.isoformat(),
                    "seq": self.last_passed.seq,
                    "run_id": self.last_passed.run_id,
                    "backup": self.last_passed.backup,
                }
            ),
            "days_since_passed": self.days_since_passed,
            "period": {
                "drills": self.drills,
                "passed": self.passed,
                "sla_missed": self.sla_missed,
                "failed": self.failed,
                "pass_rate": self.pass_rate,
            },
        }


def summarise_site(
    site: str,
    drills: list[Drill],
    *,
    now: datetime,
    stale_after: float,
    since: datetime | None,
    inventory_sla: Target | None = None,
    verified_before: int | None = None,
) -> SiteReport:
    """One site's status from its drills (oldest first).

    Status, worst reason first: ``never`` (no drill at all); ``failed`` (the last drill failed);
    ``stale`` (the last drill verified the restore but is older than ``stale_after``: the weekly
    drill stopped running); ``sla_missed`` (the last drill verified the restore but missed a target,
    as recorded or against the inventory's current ``sla``); else ``ok``.

    Whatever the target's source, a figure is judged by the drill's own rule (RPO: the larger of the
    backup's age and the max gap), so a figure above its target is never met; a recorded miss stays
    a miss. ``verified_before``: drills from entries at or after this seq are not verified evidence
    (-1: none is; None: all are).
    """
    last = drills[-1] if drills else None
    passed = [d for d in drills if d.outcome == "passed"]
    in_period = [d for d in drills if since is None or d.started >= since]
    target = inventory_sla or (last.recorded_target() if last else None)
    rto_met = rpo_met = None
    if last is not None and last.outcome != "failed" and target is not None:
        rto_met, rpo_met = (
            _met(last.rto_seconds, target.rto_seconds),
            _met(_rpo_figure(last), target.rpo_seconds),
        )
        if target.source == "drill":  # a miss the drill recorded against these targets stays a miss
            rto_met = False if "rto" in last.sla_missed and target.rto_seconds is not None else rto_met
            rpo_met = False if "rpo" in last.sla_missed and target.rpo_seconds is not None else rpo_met
    unverified = (
        last is not None
        and verified_before is not None
        and (verified_before < 0 or last.seq is None or last.seq >= verified_before)
    )
    status, reason = _status(last, rto_met, rpo_met, now=now, stale_after=stale_after)
    if unverified:
        reason += " (UNVERIFIED: its change-log entry is not covered by the verified hash chain)"
    return SiteReport(
        site=site,
        status=status,
        reason=reason,
        target=target,
        last=last,
        last_passed=passed[-1] if passed else None,
        rto_met=rto_met,
        rpo_met=rpo_met,
        unverified=unverified,
        drills=len(in_period),
        passed=sum(d.outcome == "passed" for d in in_period),
        sla_missed=sum(d.outcome == "sla_missed" for d in in_period),
        failed=sum(d.outcome == "failed" for d in in_period),
        now=now,
    )


def _status(
    last: Drill | None, rto_met: bool | None, rpo_met: bool | None, *, now: datetime, stale_after: float
) -> tuple[str, str]:
    if last is None:
        return "never", "no restore drill in the change log"
    when = f"{human_age(now - last.started)} ago"
    if last.outcome == "failed":
        # the message is in the failure column and in last_drill.failure: the reason stays one line
        return "failed", f"last drill ({when}) failed at {(last.failure or {}).get('stage', '?')}"
    if (now - last.started).total_seconds() > stale_after:
        limit = human_age(timedelta(seconds=stale_after))
        return "stale", f"no drill for {human_age(now - last.started)} (more than {limit})"
    missed = [name for name, met in (("RTO", rto_met), ("RPO", rpo_met)) if met is False]
    if last.outcome == "sla_missed" or missed:
        what = " and ".join(missed or [m.upper() for m in last.sla_missed]) or "the SLA"
        return "sla_missed", f"last drill ({when}) restored and verified, but missed {what}"
    return "ok", f"last drill ({when}) passed"


# ------------------------------------------------------------------ the report


@dataclass
class Report:
    generated: datetime
    changelog_path: Path
    verify: VerifyReport
    entries_read: int
    stale_after: float
    since: datetime | None
    sites: list[SiteReport]
    inventory_sources: list[str] | None = None
    inventory_digest: str | None = None

    @property
    def verified(self) -> bool:
        return self.verify.ok

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for site in self.sites:
            counts[site.status] += 1
        return counts

    def summary_line(self) -> str:
        c = self.counts()
        return (
            f"{len(self.sites)} site(s): {c['ok']} ok, {c['sla_missed']} SLA missed, {c['failed']} failed, "
            f"{c['stale']} stale, {c['never']} never drilled"
        )

    def check_failed(self) -> bool:
        """What ``--check`` exits 1 on: a site that is not ok, or a log whose chain did not verify."""
        return not self.verified or any(site.status in CHECK_FAILS for site in self.sites)

    def chain_line(self) -> str:
        v = self.verify
        if v.ok:
            head = f"; head {v.head_hash}" if v.head_hash else ""
            return f"hash chain verified: {v.entries} entries intact{head}"
        bad = f" at entry {v.first_bad_seq}" if v.first_bad_seq is not None else ""
        return f"hash chain NOT verified{bad}: {v.reason}. The figures in this report may have been altered."

    def record(self) -> dict[str, Any]:
        """The JSON document (schema in docs/DRILLS.md): stable keys, new ones only added."""
        return {
            "schema": REPORT_SCHEMA,
            "generated": self.generated.isoformat(timespec="seconds"),
            "changelog": {
                "path": str(self.changelog_path),
                "verified": self.verify.ok,
                "entries": self.entries_read,
                "verified_entries": self.verify.entries,
                "head_hash": self.verify.head_hash,
                "first_bad_seq": self.verify.first_bad_seq,
                "problem": self.verify.reason,
            },
            "inventory": (
                None
                if self.inventory_sources is None
                else {"sources": self.inventory_sources, "digest": self.inventory_digest}
            ),
            "stale_after_seconds": self.stale_after,
            "period": {"since": self.since.isoformat() if self.since else None},
            "summary": {"sites": len(self.sites), **self.counts()},
            "sites": [site.record() for site in self.sites],
        }


def build_report(
    entries: Iterable[Mapping[str, Any]],
    verify: VerifyReport,
    changelog_path: Path,
    *,
    now: datetime,
    stale_after: float,
    since: datetime | None,
    sites: list[tuple[str, Target | None]] | None = None,
) -> Report:
    """The report over ``entries`` (streamed: only the drills are kept). ``sites`` (name, inventory
    SLA) limits and orders it; every listed site without a drill is ``never``. Without ``sites``:
    every site with a drill, by name."""
    read = 0

    def counted() -> Iterator[Mapping[str, Any]]:
        nonlocal read
        for entry in entries:
            read += 1
            yield entry

    per_site = collect_drills(counted())
    wanted = sites if sites is not None else [(name, None) for name in sorted(per_site)]
    # entries from the first bad one on are not evidence; a chain that failed without naming an
    # entry (e.g. a wrong --expect-head) vouches for none
    verified_before = (
        None if verify.ok else (verify.first_bad_seq if verify.first_bad_seq is not None else -1)
    )
    rows = [
        summarise_site(
            name,
            per_site.get(name, []),
            now=now,
            stale_after=stale_after,
            since=since,
            inventory_sla=sla,
            verified_before=verified_before,
        )
        for name, sla in wanted
    ]
    return Report(
        generated=now,
        changelog_path=changelog_path,
        verify=verify,
        entries_read=read,
        stale_after=stale_after,
        since=since,
        sites=rows,
    )


def make_report(
    changelog_path: Path,
    *,
    inventory: Inventory | None = None,
    limit: str | None = None,
    stale_after: str = DEFAULT_STALE_AFTER,
    since: str | None = DEFAULT_PERIOD,
    expect_head: str | None = None,
    now: datetime | None = None,
) -> Report:
    """Read and verify the change log, then report on the inventory's sites (or every drilled site).

    ``expect_head`` is a head hash kept outside the log, as for ``log verify --expect-head``: with
    it, entries cut from the end (or a rewritten last entry) also show as not verified.
    """
    now = now or datetime.now(UTC)
    stale_seconds = parse_age(stale_after)
    period_start = parse_period(since, now=now)
    wanted: list[tuple[str, Target | None]] | None = None
    if inventory is not None:
        sources = ", ".join(str(s) for s in inventory.sources)
        # bad SLA vars are bad input before the (possibly long) log is read; hosts that only serve as
        # other sites' drill_host have nothing to drill (the runbook skips them): not listed
        from .backup.drill import drill_only_hosts

        helpers = drill_only_hosts(inventory.sites)
        wanted = [
            (site.name, inventory_target(site, sources))
            for site in inventory.select(limit)
            if site.name not in helpers
        ]
    changelog_path = changelog_path.absolute()  # the auditor must know exactly which file this was
    log = ChangeLog(changelog_path)
    verify = log.verify(expect_head=expect_head)
    entries: Iterable[Mapping[str, Any]]
    if verify.ok:
        # streamed, only the drills kept: a second pass costs less than holding every entry; and only
        # the entries just verified, not one a run appended in between
        entries = itertools.islice(log.entries(), verify.entries)
    else:
        # a damaged log: read on past the bad line (unreadable lines skipped), to show what is there
        # (verify's report stands: it also checked the expected head)
        entries, _ = log.query_checked()
    report = build_report(
        entries, verify, changelog_path, now=now, stale_after=stale_seconds, since=period_start, sites=wanted
    )
    if inventory is not None:
        report.inventory_sources = [str(s) for s in inventory.sources]
        report.inventory_digest = inventory.digest
    return report


# ------------------------------------------------------------------ figures as people read them


def human_seconds(seconds: float | None) -> str:
    """``75`` -> ``1m 15s``, ``5400`` -> ``1h 30m``, ``90000`` -> ``1d 1h``; None -> ``-``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m {secs}s" if secs else f"{minutes}m"


def human_age(delta: timedelta) -> str:
    return human_seconds(max(delta.total_seconds(), 0.0))


def _vs(value: float | None, target: float | None, met: bool | None) -> str:
    """'12m 5s / 30m' with a mark: within, missed, or no target."""
    if value is None:
        return "-"
    text = human_seconds(value)
    if target is None:
        return f"{text} (no target)"
    mark = "" if met is None else " ✓" if met else " ✗ missed"
    return f"{text} / {human_seconds(target)}{mark}"


#: a failure message in the table and the page: enough to name the cause; JSON keeps every word
MAX_FAILURE_CHARS = 300


def _clip(text: str, limit: int = MAX_FAILURE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()}… ({len(text) - limit} more characters; full text: --output json)"


def _short_time(value: object) -> str:
    parsed = _time(value)
    return "-" if parsed is None else f"{parsed:%Y-%m-%d %H:%M}Z"


def _cells(site: SiteReport) -> dict[str, str]:
    """The text of one row, shared by the table and the HTML page."""
    last, target = site.last, site.target
    cells = dict.fromkeys(("when", "age", "outcome", "run", "backup", "taken", "gap", "failure"), "")
    rto_target, rpo_target = (target.rto_seconds, target.rpo_seconds) if target else (None, None)
    cells["rto"] = _vs(last.rto_seconds if last else None, rto_target, site.rto_met)
    cells["rpo"] = _vs(last.rpo_seconds if last else None, rpo_target, site.rpo_met)
    cells["since_passed"] = "no pass"
    if site.last_passed is not None:
        cells["since_passed"] = f"{human_age(site.now - site.last_passed.started)} ago"
    cells["period"] = "-"
    if site.pass_rate is not None:
        cells["period"] = f"{site.drills} drill{'s' if site.drills != 1 else ''}, {site.pass_rate:.0%} passed"
    if last is None:
        return cells
    cells["when"] = f"{last.started:%Y-%m-%d %H:%M}Z"
    cells["age"] = f"{human_age(site.now - last.started)} ago"
    cells["outcome"] = last.outcome
    cells["run"] = f"seq {last.seq} · {last.operator or '?'} · run {last.run_id or '?'}"
    cells["backup"] = last.backup or "-"
    if last.record.get("backup_taken"):
        cells["taken"] = f"taken {_short_time(last.record.get('backup_taken'))}"
    if last.max_gap_seconds is not None:
        cells["gap"] = f"max gap {human_seconds(last.max_gap_seconds)}"
    if last.failure:
        cells["failure"] = _clip(f"{last.failure['stage']}: {last.failure['message']}")
    return cells


def print_report(report: Report, console: Console) -> None:
    """The rich table: one row per site, then the summary and whether the chain verified."""
    period = f"since {report.since:%Y-%m-%d}" if report.since else "whole log"
    table = Table(
        title=Text(f"restore drills: {report.changelog_path} ({report.entries_read} entries)"),
        title_justify="left",
    )
    for column in ("site", "status", "last drill", "backup", "RTO / target", "RPO / target", "since pass"):
        table.add_column(column, overflow="fold")
    table.add_column(f"drills ({period})", overflow="fold")
    table.add_column("failure", overflow="fold")
    for site in report.sites:
        cells = _cells(site)
        last = Text("-")
        if site.last is not None:
            last = Text(f"{cells['when']} ({cells['age']}) ")
            last.append(cells["outcome"], style=STATUS_STYLE.get(cells["outcome"], ""))
            last.append(f"\n{cells['run']}", style="dim")
        rpo = Text(cells["rpo"], style="red" if site.rpo_met is False else "")
        if cells["gap"]:
            rpo.append(f"\n{cells['gap']}", style="dim")
        plain = site.unverified and site.status == "ok"
        status = Text(site.status, style="" if plain else STATUS_STYLE.get(site.status, ""))
        if site.unverified:
            status.append("\nUNVERIFIED", style="bold red")
        table.add_row(
            Text(site.site),
            status,
            last,
            Text(cells["backup"] or "-"),
            Text(cells["rto"], style="red" if site.rto_met is False else ""),
            rpo,
            Text(cells["since_passed"]),
            Text(cells["period"]),
            Text(cells["failure"], style="red"),
        )
    if not report.verified:  # before the figures, not after them
        console.print(Text(report.chain_line(), style="bold red"))
    if report.sites:
        console.print(table)
    else:
        console.print(
            Text(f"no restore drills in {report.changelog_path}; pass -i INV to list the sites never drilled")
        )
    console.print(Text(report.summary_line(), style="bold"))
    console.print(Text(report.chain_line(), style="green" if report.verified else "bold red"))


# ------------------------------------------------------------------ HTML

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1c1f23; margin: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
p.meta { margin: 2px 0; color: #4a5058; }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }
.chain { margin: 12px 0; padding: 8px 12px; border-radius: 4px; border: 1px solid; }
.chain.ok { background: #e9f6ec; border-color: #7cc48d; }
.chain.bad { background: #fdecea; border-color: #e0796f; font-weight: 600; }
.summary { font-size: 16px; margin: 14px 0; }
.summary span { display: inline-block; margin-right: 14px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border: 1px solid #c9ced4; padding: 5px 7px; text-align: left; vertical-align: top; }
th { background: #eef0f3; }
td.site, .nowrap { white-space: nowrap; }
td code { white-space: nowrap; word-break: normal; font-size: 11px; }
td.period { min-width: 90px; }
td.fail { overflow-wrap: anywhere; min-width: 170px; }
.o-passed { color: #17652b; font-weight: 600; }
.o-sla_missed { color: #7a5400; font-weight: 600; }
.o-failed { color: #9b1c12; font-weight: 600; }
.small { color: #5a6068; font-size: 11px; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 3px; font-weight: 700; font-size: 12px;
         white-space: nowrap; border: 1px solid; }
.s-ok { background: #dff3e4; color: #17652b; border-color: #7cc48d; }
.s-sla_missed { background: #fff3d6; color: #7a5400; border-color: #e5b84b; }
.s-stale { background: #efe3f7; color: #5d2a7d; border-color: #b78ad3; }
.s-failed, .s-never { background: #fbe0dd; color: #9b1c12; border-color: #e0796f; }
tr.row-failed td:first-child, tr.row-never td:first-child { border-left: 5px solid #c62828; }
tr.row-stale td:first-child { border-left: 5px solid #8e44ad; }
tr.row-sla_missed td:first-child { border-left: 5px solid #e0a800; }
tr.row-ok td:first-child { border-left: 5px solid #2e7d32; }
tr.unverified td:first-child { border-left: 5px dashed #c62828; }
.s-unverified, [class*="s-unverified-"] { background: #f1f1f1; color: #333; border-color: #888;
       border-style: dashed; }
.miss { color: #9b1c12; font-weight: 600; }
.fail { color: #9b1c12; }
dl.legend { font-size: 12px; color: #4a5058; margin-top: 18px; }
dl.legend dt { font-weight: 700; float: left; clear: left; width: 120px; }
dl.legend dd { margin: 0 0 3px 130px; }
@media print {
  body { margin: 10mm; font-size: 11px; }
  table { font-size: 10px; }
  tr { page-break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _small(text: str) -> str:
    return f'<div class="small">{_e(text)}</div>' if text else ""


def _html_row(site: SiteReport) -> str:
    cells = _cells(site)
    status = site.status
    last = "-"
    if site.last is not None:
        outcome = cells["outcome"]
        last = (
            f'<span class="nowrap">{_e(cells["when"])}</span><br>{_e(cells["age"])}, '
            f'<span class="o-{_e(outcome)}">{_e(outcome)}</span>{_small(cells["run"])}'
        )
    counted = ""
    if site.drills:
        counted = f"{site.passed} passed, {site.sla_missed} SLA missed, {site.failed} failed"
    unverified = ' <span class="badge s-unverified">UNVERIFIED</span>' if site.unverified else ""
    # an unverified OK is not shown green: nothing vouches for it
    badge = f"unverified-{_e(status)}" if site.unverified and status == "ok" else _e(status)
    rto_class = "num miss" if site.rto_met is False else "num"
    rpo_class = "num miss" if site.rpo_met is False else "num"
    return (
        f'<tr class="row-{_e(status)}{" unverified" if site.unverified else ""}">'
        f'<td class="site"><strong>{_e(site.site)}</strong></td>'
        f'<td><span class="badge s-{badge}">'
        f"{_e(STATUS_LABEL.get(status, status))}</span>{unverified}"
        f"{_small(site.reason)}</td>"
        f"<td>{last}</td>"
        f"<td><code>{_e(cells['backup'] or '-')}</code>{_small(cells['taken'])}</td>"
        f'<td class="{rto_class}">{_e(cells["rto"])}</td>'
        f'<td class="{rpo_class}">{_e(cells["rpo"])}{_small(cells["gap"])}</td>'
        f'<td class="num">{_e(cells["since_passed"])}</td>'
        f'<td class="period">{_e(cells["period"])}{_small(counted)}</td>'
        f'<td class="fail">{_e(cells["failure"])}</td>'
        "</tr>"
    )


def render_html(report: Report) -> str:
    """One self-contained page (inline CSS, no scripts, no external resources), every value escaped."""
    counts = report.counts()
    period = f"since {report.since:%Y-%m-%d}" if report.since else "(whole log)"
    chain_class = "ok" if report.verified else "bad"
    inventory = ""
    if report.inventory_sources is not None:
        inventory = (
            f'<p class="meta">Sites of the inventory {_e(", ".join(report.inventory_sources))} '
            f"(digest <code>{_e(report.inventory_digest)}</code>); "
            "SLA targets from its <code>sla</code> vars.</p>"
        )
    summary = "".join(
        f'<span><span class="badge s-{key}">{_e(STATUS_LABEL[key])}</span> {counts[key]}</span>'
        for key in ("ok", "sla_missed", "failed", "stale", "never")
    )
    rows = "\n".join(_html_row(site) for site in report.sites) or (
        '<tr><td colspan="9">No restore drill in the change log, and no inventory given to list sites '
        "never drilled.</td></tr>"
    )
    headers = "".join(
        f"<th>{_e(h)}</th>"
        for h in (
            "Site",
            "Status",
            "Last drill",
            "Backup restored",
            "RTO / target",
            "RPO / target",
            "Since last pass",
            f"Drills {period}",
            "Failure cause",
        )
    )
    stale = human_seconds(report.stale_after)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Restore drill report, {_e(f"{report.generated:%Y-%m-%d %H:%M}")} UTC</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Restore drill report</h1>
<p class="meta">Generated {_e(f"{report.generated:%Y-%m-%d %H:%M:%S}")} UTC by maintainer drills report,
from the change log <code>{_e(report.changelog_path)}</code> ({report.entries_read} entries).</p>
{inventory}
<div class="chain {chain_class}">{_e(report.chain_line())}</div>
<p class="summary"><strong>{_e(report.summary_line())}</strong><br>{summary}</p>
<table>
<thead><tr>{headers}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
<dl class="legend">
<dt>OK</dt><dd>the last drill restored the backup and verified every file and table, and served its
home page unless the smoke test was turned off or skipped (see the JSON's smoke_skipped), within the SLA.</dd>
<dt>SLA MISSED</dt><dd>the last drill restored and verified the backup but missed its RTO or RPO target.</dd>
<dt>FAILED</dt><dd>the last drill failed: the backup was not proven restorable (see the failure cause).</dd>
<dt>STALE</dt><dd>no drill for more than {_e(stale)}: the scheduled drill stopped running.</dd>
<dt>NEVER DRILLED</dt><dd>no restore drill of this site is in the change log.</dd>
<dt>UNVERIFIED</dt><dd>the row's drill comes from a change-log entry at or after the first entry the hash
chain failed on: it may have been altered, whatever its colour says.</dd>
<dt>RTO</dt><dd>from drill start to a verified, serving restored site (or verified, without a smoke test).
RPO: age of the restored backup, from when it was taken (started); max gap: the longest time without a
backup, between two backups or from the newest backup to now, among the gaps reaching into the policy
window. The RPO target is compared with the larger of the two.</dd>
<dt>Evidence</dt><dd>re-check the change log with <code>maintainer log verify</code>; every figure above
comes from its entries (seq and run id given per drill).</dd>
</dl>
</body>
</html>
"""
