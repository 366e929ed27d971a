"""Backup retention: restic's forget policy (buckets, keep_within), timezones and DST, validation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from maintainer.backup.retention import (
    REASON_NEWEST,
    REASON_NO_RULE,
    Decision,
    RetentionPolicy,
    Snapshot,
    describe,
    parse_keep_within,
    select,
)

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2030, 1, 1, tzinfo=UTC)  # after every test snapshot unless a test says otherwise


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def snap(when: datetime, id_: str | None = None) -> Snapshot:
    return Snapshot(id=id_ or when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"), time=when)


def snaps(times: Iterable[datetime]) -> list[Snapshot]:
    return [snap(t) for t in times]


def sid(when: datetime) -> str:
    return snap(when).id


def run(snapshots: Sequence[Snapshot], now: datetime = NOW, **policy: Any) -> Decision:
    decision = select(snapshots, RetentionPolicy(**policy), now)
    # every snapshot is in exactly one list, keep newest first, remove oldest first
    ids = {s.id for s in snapshots}
    assert set(decision.keep) | set(decision.remove) == ids
    assert not set(decision.keep) & set(decision.remove)
    by_id = {s.id: s.time for s in snapshots}
    kept_times = [by_id[i] for i in decision.keep]
    assert kept_times == sorted(kept_times, reverse=True)
    removed_times = [by_id[i] for i in decision.remove]
    assert removed_times == sorted(removed_times)
    return decision


def daily_at(first: date, last: date, hour: int = 11) -> list[Snapshot]:
    days = (last - first).days + 1
    return snaps(utc(first.year, first.month, first.day, hour) + timedelta(days=n) for n in range(days))


# --- restic's documented examples ------------------------------------------------------------------------


RESTIC_DOC_SUNDAYS = [
    ("0a1f9759", utc(2019, 9, 1, 11)),
    ("46cfe4d5", utc(2019, 9, 8, 11)),
    ("f6b1f037", utc(2019, 9, 15, 11)),
    ("eb430a5d", utc(2019, 9, 22, 11)),
    ("8cf1cb9a", utc(2019, 9, 29, 11)),
    ("5d33b116", utc(2019, 10, 6, 11)),
    ("b9553125", utc(2019, 10, 13, 11)),
    ("e1a7b58b", utc(2019, 10, 20, 11)),
    ("8f8018c0", utc(2019, 10, 27, 11)),
    ("59403279", utc(2019, 11, 3, 11)),
    ("dfee9fb4", utc(2019, 11, 10, 11)),
    ("e1ae2f40", utc(2019, 11, 17, 11)),
]


def test_restic_doc_keep_daily_4_on_weekly_backups() -> None:
    # doc/060_forget.rst: one backup every Sunday for 12 weeks, `forget --keep-daily 4`
    # keeps the last four (days that *have* a backup count, not calendar days)
    decision = run([Snapshot(i, t) for i, t in RESTIC_DOC_SUNDAYS], keep_daily=4)
    assert list(decision.keep) == ["e1ae2f40", "dfee9fb4", "59403279", "8f8018c0"]
    assert decision.remove == [i for i, _ in RESTIC_DOC_SUNDAYS[:8]]
    assert decision.keep["dfee9fb4"] == ["daily 2019-11-10"]
    assert decision.keep["e1ae2f40"] == ["daily 2019-11-17", REASON_NEWEST]


def test_restic_keep_daily_7_weekly_5_on_daily_backups_ending_sunday() -> None:
    # `--keep-daily 7 --keep-weekly 5` on one backup a day: the 7 dailies plus 4 more
    # last-day-of-the-week (Sunday) snapshots, "since the 7 dailies already include 1 weekly"
    snapshots = daily_at(date(2019, 6, 1), date(2019, 11, 17))  # 2019-11-17 is a Sunday
    decision = run(snapshots, keep_daily=7, keep_weekly=5)
    dailies = [sid(utc(2019, 11, d, 11)) for d in range(17, 10, -1)]
    sundays = [sid(utc(2019, m, d, 11)) for m, d in [(11, 10), (11, 3), (10, 27), (10, 20)]]
    assert list(decision.keep) == dailies + sundays
    assert decision.keep[dailies[0]] == ["daily 2019-11-17", "weekly 2019-W46", REASON_NEWEST]
    assert decision.keep[dailies[1]] == ["daily 2019-11-16"]
    assert decision.keep[sundays[0]] == ["weekly 2019-W45"]
    assert decision.keep[sundays[-1]] == ["weekly 2019-W42"]
    assert len(decision.remove) == len(snapshots) - 11


def test_restic_keep_daily_7_weekly_5_ending_midweek_shares_two_weeklies() -> None:
    # ending on a Wednesday, the 7 dailies reach back into last week and include its Sunday too:
    # weekly keeps Wed (this week, a daily), Sun 11-17 (a daily), and 3 older Sundays
    snapshots = daily_at(date(2019, 6, 1), date(2019, 11, 20))
    decision = run(snapshots, keep_daily=7, keep_weekly=5)
    assert len(decision.keep) == 7 + 3
    assert decision.keep[sid(utc(2019, 11, 17, 11))] == ["daily 2019-11-17", "weekly 2019-W46"]
    assert [i for i, r in decision.keep.items() if r[0].startswith("weekly")] == [
        sid(utc(2019, 11, 10, 11)),
        sid(utc(2019, 11, 3, 11)),
        sid(utc(2019, 10, 27, 11)),
    ]


def test_restic_doc_hundred_years_of_daily_backups() -> None:
    # doc: daily backups for 100 years, `--keep-daily 7 --keep-weekly 5 --keep-monthly 12
    # --keep-yearly 75` keeps 7 dailies, 4 more weeklies, 12 or 11 monthlies and 75 or 74 yearlies
    # (fewer when they coincide with an already kept one)
    snapshots = daily_at(date(1919, 11, 18), date(2019, 11, 17))
    decision = run(snapshots, keep_daily=7, keep_weekly=5, keep_monthly=12, keep_yearly=75)

    def kept_by(rule: str) -> set[str]:
        return {i for i, reasons in decision.keep.items() if any(r.startswith(rule) for r in reasons)}

    assert len(kept_by("daily")) == 7
    assert len(kept_by("weekly") - kept_by("daily")) == 4
    assert len(kept_by("monthly") - kept_by("daily") - kept_by("weekly")) == 11  # Nov is a daily
    yearly_only = kept_by("yearly") - kept_by("daily") - kept_by("weekly") - kept_by("monthly")
    assert len(yearly_only) == 73  # 2019 is the newest daily, 2018-12-31 is also a monthly
    assert len(decision.keep) == 7 + 4 + 11 + 73
    assert decision.keep[sid(utc(1945, 12, 31, 11))] == ["yearly 1945"]
    assert sid(utc(1944, 12, 31, 11)) in decision.remove


# --- calendar buckets ------------------------------------------------------------------------------------


def test_daily_keeps_newest_of_each_day_with_a_backup() -> None:
    times = [
        utc(2026, 11, 28, 22),
        utc(2026, 11, 28, 3),
        utc(2026, 11, 27, 12),
        utc(2026, 11, 20, 12),  # a week without backups in between: not counted
        utc(2026, 11, 19, 12),
    ]
    decision = run(snaps(times), keep_daily=3)
    assert list(decision.keep) == [sid(times[0]), sid(times[2]), sid(times[3])]
    assert decision.keep[sid(times[3])] == ["daily 2026-11-20"]
    assert decision.remove == [sid(times[4]), sid(times[1])]


def test_monthly_keeps_last_backup_of_each_month_skipping_empty_months() -> None:
    times = [utc(2026, 5, 2), utc(2026, 3, 31, 23), utc(2026, 3, 1), utc(2026, 2, 28), utc(2026, 1, 31)]
    decision = run(snaps(times), keep_monthly=3)  # April has no backup
    assert decision.keep == {
        sid(times[0]): ["monthly 2026-05", REASON_NEWEST],
        sid(times[1]): ["monthly 2026-03"],
        sid(times[3]): ["monthly 2026-02"],
    }
    assert decision.remove == [sid(times[4]), sid(times[2])]


def test_yearly_counts_calendar_years() -> None:
    times = [utc(2026, 3, 1), utc(2025, 12, 31), utc(2025, 1, 1), utc(2024, 12, 29), utc(2023, 6, 1)]
    decision = run(snaps(times), keep_yearly=3)
    assert [decision.keep[sid(t)][0] for t in (times[0], times[1], times[3])] == [
        "yearly 2026",
        "yearly 2025",
        "yearly 2024",
    ]
    assert decision.remove == [sid(times[4]), sid(times[2])]


def test_hourly() -> None:
    times = [
        utc(2026, 11, 28, 14, 50),
        utc(2026, 11, 28, 14, 5),
        utc(2026, 11, 28, 13, 0),
        utc(2026, 11, 28, 11),
    ]
    decision = run(snaps(times), keep_hourly=2)
    assert decision.keep == {
        sid(times[0]): ["hourly 2026-11-28 14:00", REASON_NEWEST],
        sid(times[2]): ["hourly 2026-11-28 13:00"],
    }


def test_iso_week_across_year_boundary() -> None:
    # Mon 2024-12-30 .. Sun 2025-01-05 is ISO week 2025-W01; Sun 2024-12-29 ends 2024-W52
    times = [utc(2025, 1, 5), utc(2025, 1, 1), utc(2024, 12, 30), utc(2024, 12, 29), utc(2024, 12, 23)]
    decision = run(snaps(times), keep_weekly=2)
    assert decision.keep == {
        sid(times[0]): ["weekly 2025-W01", REASON_NEWEST],
        sid(times[3]): ["weekly 2024-W52"],
    }
    # the same snapshots by calendar year: 2024-12-30 is in 2024 although its ISO week is 2025's
    decision = run(snaps(times), keep_yearly=2)
    assert decision.keep[sid(times[2])] == ["yearly 2024"]


def test_iso_week_53() -> None:
    # 2020 has 53 ISO weeks: Thu 2020-12-31 and Sun 2021-01-03 are both in 2020-W53
    times = [utc(2021, 1, 4), utc(2021, 1, 3), utc(2020, 12, 31), utc(2020, 12, 27)]
    decision = run(snaps(times), keep_weekly=3)
    assert decision.keep == {
        sid(times[0]): ["weekly 2021-W01", REASON_NEWEST],
        sid(times[1]): ["weekly 2020-W53"],
        sid(times[3]): ["weekly 2020-W52"],
    }


def test_keep_last() -> None:
    times = [utc(2026, 1, d) for d in range(10, 0, -1)]
    decision = run(snaps(times), keep_last=3)
    assert decision.keep == {
        sid(times[0]): ["last 1", REASON_NEWEST],
        sid(times[1]): ["last 2"],
        sid(times[2]): ["last 3"],
    }
    assert decision.remove == [sid(t) for t in reversed(times[3:])]


def test_rule_with_periods_left_keeps_the_oldest_too() -> None:
    # restic >= 0.17: if a rule still has counts left at the oldest snapshot, that one is kept too,
    # so a young backup set keeps its first backup
    times = [utc(2026, 11, 28, 20), utc(2026, 11, 28, 12), utc(2026, 11, 28, 4)]
    decision = run(snaps(times), keep_daily=7)
    assert decision.keep == {
        sid(times[0]): ["daily 2026-11-28", REASON_NEWEST],
        sid(times[2]): ["daily 2026-11-28 (oldest)"],
    }
    assert decision.remove == [sid(times[1])]
    # no count left: no extra
    assert run(snaps(times), keep_daily=1).remove == [sid(times[2]), sid(times[1])]


def test_input_order_does_not_matter() -> None:
    times = [utc(2026, 1, d, h) for d in range(1, 15) for h in (3, 15)]
    forward = run(snaps(times), keep_daily=5, keep_weekly=2, keep_last=3)
    backward = run(snaps(reversed(times)), keep_daily=5, keep_weekly=2, keep_last=3)
    assert forward == backward


def test_snapshot_protocol_accepts_other_objects() -> None:
    class Backup(NamedTuple):
        id: str
        time: datetime
        size: int

    decision = select(
        [Backup("a", utc(2026, 1, 1), 10), Backup("b", utc(2026, 1, 2), 20)],
        RetentionPolicy(keep_last=1),
        NOW,
    )
    assert decision == Decision(keep={"b": ["last 1", REASON_NEWEST]}, remove=["a"])


# --- time zones and DST ----------------------------------------------------------------------------------


def test_timezone_decides_the_day_of_a_2330_utc_backup() -> None:
    late = utc(2026, 11, 27, 23, 30)  # 00:30 on the 28th in Berlin (CET, +1)
    earlier = utc(2026, 11, 27, 22, 0)  # 23:00 on the 27th in Berlin
    next_day = utc(2026, 11, 28, 10)
    snapshots = snaps([next_day, late, earlier])

    in_utc = run(snapshots, keep_daily=2)
    assert in_utc.keep[sid(late)] == ["daily 2026-11-27"]
    assert in_utc.remove == [sid(earlier)]

    in_berlin = run(snapshots, keep_daily=2, timezone="Europe/Berlin")
    assert in_berlin.keep[sid(next_day)] == ["daily 2026-11-28", REASON_NEWEST]
    assert in_berlin.keep[sid(earlier)] == ["daily 2026-11-27"]
    assert in_berlin.remove == [sid(late)]

    # west of UTC (EST, -5) 23:30 UTC is the evening of the 27th, as in UTC
    in_new_york = run(snapshots, keep_daily=2, timezone="America/New_York")
    assert in_new_york.keep[sid(late)] == ["daily 2026-11-27"]
    assert in_new_york.remove == [sid(earlier)]


def test_timezone_decides_week_and_year() -> None:
    # Sun 2026-10-25 23:30 UTC is Mon 2026-10-26 00:30 in Berlin: a new ISO week there
    sunday_night = utc(2026, 10, 25, 23, 30)
    sunday_noon = utc(2026, 10, 25, 12)
    weeks_ago = utc(2026, 10, 7)  # 2026-W41 either way
    snapshots = snaps([sunday_night, sunday_noon, weeks_ago])
    assert run(snapshots, keep_weekly=2).keep == {
        sid(sunday_night): ["weekly 2026-W43", REASON_NEWEST],
        sid(weeks_ago): ["weekly 2026-W41"],
    }
    assert run(snapshots, keep_weekly=2, timezone="Europe/Berlin").keep == {
        sid(sunday_night): ["weekly 2026-W44", REASON_NEWEST],
        sid(sunday_noon): ["weekly 2026-W43"],
    }
    # New Year's Eve 23:30 UTC is already next year in Berlin
    nye = utc(2025, 12, 31, 23, 30)
    before = utc(2025, 12, 31, 12)
    years_ago = utc(2020, 6, 1)
    snapshots = snaps([nye, before, years_ago])
    assert run(snapshots, keep_yearly=2).keep == {
        sid(nye): ["yearly 2025", REASON_NEWEST],
        sid(years_ago): ["yearly 2020"],
    }
    assert run(snapshots, keep_yearly=2, timezone="Europe/Berlin").keep == {
        sid(nye): ["yearly 2026", REASON_NEWEST],
        sid(before): ["yearly 2025"],
    }


def test_dst_spring_forward_berlin_hourly() -> None:
    # 2026-03-29 (last Sunday in March): 02:00 CET -> 03:00 CEST at 01:00 UTC; local 02:xx never happens
    times = [
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 28, 23, 30),
    ]
    decision = run(snaps(times), keep_hourly=3, timezone="Europe/Berlin")
    assert decision.keep == {
        sid(times[0]): ["hourly 2026-03-29 03:00", REASON_NEWEST],  # 03:30 CEST
        sid(times[2]): ["hourly 2026-03-29 01:00"],  # 01:30 CET
        sid(times[3]): ["hourly 2026-03-29 00:00"],  # 00:30 CET
    }


def test_dst_spring_forward_backups_at_0230_local() -> None:
    # daily 02:30 Berlin; on 2026-03-29 02:30 does not exist: zoneinfo reads the non-existent wall time
    # with the pre-transition offset (01:30 UTC = 03:30 CEST). Every day still has exactly one backup.
    times = [datetime(2026, 3, d, 2, 30, tzinfo=BERLIN) for d in range(31, 25, -1)]
    decision = run(snaps(times), keep_daily=7, timezone="Europe/Berlin")
    assert [r[0] for r in decision.keep.values()] == [f"daily 2026-03-{d}" for d in range(31, 25, -1)]
    assert decision.remove == []


def test_dst_fall_back_berlin_0230_twice() -> None:
    # 2026-10-25 (last Sunday in October): 03:00 CEST -> 02:00 CET at 01:00 UTC; 02:30 local happens twice
    first_0230 = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=0)  # CEST, 00:30 UTC
    second_0230 = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=1)  # CET, 01:30 UTC
    assert second_0230.astimezone(UTC) - first_0230.astimezone(UTC) == timedelta(hours=1)
    earlier = [datetime(2026, 10, d, 2, 30, tzinfo=BERLIN) for d in (24, 23, 22)]
    snapshots = snaps([first_0230, second_0230, *earlier])

    daily = run(snapshots, keep_daily=3, timezone="Europe/Berlin")
    assert list(daily.keep) == [sid(second_0230), sid(earlier[0]), sid(earlier[1])]
    assert daily.remove == [sid(earlier[2]), sid(first_0230)]

    # both are in local hour 02 of that day: the repeated hour is one hourly period (as in restic)
    hourly = run(snapshots, keep_hourly=2, timezone="Europe/Berlin")
    assert hourly.keep == {
        sid(second_0230): ["hourly 2026-10-25 02:00", REASON_NEWEST],
        sid(earlier[0]): ["hourly 2026-10-24 02:00"],
    }
    # in UTC they are two hours, 00:00 and 01:00
    assert run(snapshots, keep_hourly=2).keep[sid(first_0230)] == ["hourly 2026-10-25 00:00"]


def test_keep_within_days_are_calendar_days_in_the_timezone() -> None:
    # 2026-10-25 in Berlin has 25 hours: "1d" back from 12:00 CET on the 25th is 12:00 CEST on the 24th
    newest = datetime(2026, 10, 25, 12, tzinfo=BERLIN)  # 11:00 UTC
    older = utc(2026, 10, 24, 10, 30)  # 12:30 CEST, 24.5 hours before newest
    snapshots = snaps([newest, older])
    assert run(snapshots, keep_within="1d", timezone="Europe/Berlin").keep[sid(older)] == ["within 1d"]
    assert run(snapshots, keep_within="1d").remove == [sid(older)]  # UTC days have 24 hours
    assert run(snapshots, keep_within="24h", timezone="Europe/Berlin").remove == [sid(older)]


# --- keep_within -----------------------------------------------------------------------------------------


def test_keep_within_is_relative_to_the_newest_snapshot_not_now() -> None:
    # backups stopped long ago: keep_within still keeps the last week of them
    times = [
        utc(2020, 5, 10, 12),
        utc(2020, 5, 4, 12),
        utc(2020, 5, 3, 12, 0, 1),
        utc(2020, 5, 3, 12),
        utc(2020, 4, 1),
    ]
    decision = run(snaps(times), keep_within="7d")
    assert decision.keep == {
        sid(times[0]): ["within 7d", REASON_NEWEST],
        sid(times[1]): ["within 7d"],
        sid(times[2]): ["within 7d"],
    }
    # exactly 7 days before the newest is not within (restic: strictly after the cutoff)
    assert decision.remove == [sid(times[4]), sid(times[3])]


def test_keep_within_ignores_future_snapshots_as_reference() -> None:
    now = utc(2026, 6, 1)
    future = utc(2027, 1, 1)  # a clock that was wrong
    times = [future, utc(2026, 5, 31), utc(2026, 5, 25), utc(2026, 5, 1)]
    decision = run(snaps(times), now=now, keep_within="1w")
    assert decision.keep == {
        sid(future): ["within 1w", REASON_NEWEST],  # future snapshots are never removed by keep_within
        sid(times[1]): ["within 1w"],
        sid(times[2]): ["within 1w"],
    }
    assert decision.remove == [sid(times[3])]


def test_keep_within_all_in_the_future_uses_now() -> None:
    times = [utc(2027, 1, 1), utc(2026, 12, 1)]
    decision = run(snaps(times), now=utc(2026, 6, 1), keep_within="2d")
    assert decision.remove == []


def test_future_and_equal_times_without_keep_within_do_not_crash() -> None:
    same = utc(2026, 1, 1)
    snapshots = [
        Snapshot("a", same),
        Snapshot("c", same),
        Snapshot("b", same),
        Snapshot("z", utc(2099, 1, 1)),
    ]
    decision = run(snapshots, now=utc(2026, 6, 1), keep_last=2, keep_daily=5)
    assert decision.keep == {
        "z": ["last 1", "daily 2099-01-01", REASON_NEWEST],
        "c": ["last 2", "daily 2026-01-01"],
        "a": ["daily 2026-01-01 (oldest)"],
    }
    assert decision.remove == ["b"]
    # equal times with no other snapshot: the tie is broken by id, whatever the input order
    assert run([Snapshot("a", same), Snapshot("b", same)], keep_last=1).keep == {
        "b": ["last 1", REASON_NEWEST]
    }
    assert run([Snapshot("b", same), Snapshot("a", same)], keep_last=1).keep == {
        "b": ["last 1", REASON_NEWEST]
    }


def test_times_in_other_offsets_compare_by_instant() -> None:
    a = Snapshot("a", datetime(2026, 1, 1, 12, tzinfo=ZoneInfo("Asia/Tokyo")))  # 03:00 UTC
    b = Snapshot("b", utc(2026, 1, 1, 4))
    assert run([a, b], keep_last=1).keep == {"b": ["last 1", REASON_NEWEST]}


@pytest.mark.parametrize(
    ("text", "reference", "cutoff"),
    [
        ("7d", utc(2026, 3, 10, 12), utc(2026, 3, 3, 12)),
        ("2w", utc(2026, 3, 15), utc(2026, 3, 1)),
        ("36h", utc(2026, 3, 10, 12), utc(2026, 3, 9)),
        ("3d12h", utc(2026, 3, 10, 12), utc(2026, 3, 7)),
        # months and years step like Go's AddDate: Feb 31 rolls over to Mar 3, Feb 29 2023 to Mar 1
        ("1m", utc(2026, 3, 31, 12), utc(2026, 3, 3, 12)),
        ("1y", utc(2024, 2, 29), utc(2023, 3, 1)),
        ("1y6m", utc(2026, 7, 15), utc(2025, 1, 15)),
        ("14m", utc(2026, 2, 1), utc(2024, 12, 1)),
    ],
)
def test_keep_within_cutoff(text: str, reference: datetime, cutoff: datetime) -> None:
    assert parse_keep_within(text).cutoff(reference, ZoneInfo("UTC")) == cutoff


def test_keep_within_longer_than_history_keeps_everything() -> None:
    assert parse_keep_within("5000y").cutoff(utc(2026, 1, 1), ZoneInfo("UTC")) is None
    times = [utc(2026, 1, 1), utc(1, 1, 2)]
    assert run(snaps(times), keep_within="5000y").remove == []


# --- combining rules, the newest, empty input ------------------------------------------------------------


def test_rules_are_ored_and_reasons_accumulate() -> None:
    times = [
        utc(2026, 11, 28, 20),
        utc(2026, 11, 28, 8),
        utc(2026, 11, 27, 20),
        utc(2026, 11, 20, 20),
        utc(2026, 10, 31, 20),
        utc(2026, 10, 1),
    ]
    decision = run(snaps(times), keep_last=2, keep_daily=2, keep_monthly=2, keep_within="1d")
    assert decision.keep == {
        sid(times[0]): ["last 1", "daily 2026-11-28", "monthly 2026-11", "within 1d", REASON_NEWEST],
        sid(times[1]): ["last 2", "within 1d"],
        sid(times[2]): ["daily 2026-11-27"],  # exactly 1d before the newest: not within
        sid(times[4]): ["monthly 2026-10"],
    }
    assert decision.remove == [sid(times[5]), sid(times[3])]


def test_newest_is_always_kept() -> None:
    only = utc(2026, 1, 1)
    assert run(snaps([only]), keep_within="1h").keep == {sid(only): ["within 1h", REASON_NEWEST]}
    decision = run(snaps([utc(2026, 1, 2), utc(2026, 1, 1)]), keep_yearly=1)
    assert decision.keep == {sid(utc(2026, 1, 2)): ["yearly 2026", REASON_NEWEST]}


def test_empty_policy_keeps_everything() -> None:
    times = [utc(2026, 1, 3), utc(2026, 1, 2), utc(2026, 1, 1)]
    policies: list[dict[str, Any]] = [
        {},
        {"keep_daily": 0, "keep_last": 0, "keep_within": "0d", "timezone": "Europe/Berlin"},
    ]
    for policy in policies:
        decision = run(snaps(times), **policy)
        assert decision.remove == []
        assert decision.keep == {
            sid(times[0]): [REASON_NO_RULE, REASON_NEWEST],
            sid(times[1]): [REASON_NO_RULE],
            sid(times[2]): [REASON_NO_RULE],
        }
    assert RetentionPolicy().keeps_everything
    assert not RetentionPolicy(keep_last=1).keeps_everything


def test_no_snapshots() -> None:
    assert select([], RetentionPolicy(keep_daily=7), NOW) == Decision(keep={}, remove=[])
    assert select([], RetentionPolicy(), NOW) == Decision()


def test_naive_times_and_duplicate_ids_are_programming_errors() -> None:
    policy = RetentionPolicy(keep_last=1)
    with pytest.raises(ValueError, match="naive"):
        select([Snapshot("a", datetime(2026, 1, 1))], policy, NOW)
    with pytest.raises(ValueError, match="naive"):
        select([Snapshot("a", utc(2026, 1, 1))], policy, datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="twice"):
        select([Snapshot("a", utc(2026, 1, 1)), Snapshot("a", utc(2026, 1, 2))], policy, NOW)


# --- the policy model ------------------------------------------------------------------------------------


def test_policy_from_inventory_values() -> None:
    policy = RetentionPolicy.model_validate(
        {"keep_daily": 7, "keep_weekly": "5", "keep_within": " 2w ", "timezone": "Europe/Berlin"}
    )
    assert policy.keep_weekly == 5
    assert policy.keep_within == "2w"
    assert policy.within is not None and policy.within.days == 14
    assert policy.tz == BERLIN
    assert RetentionPolicy().timezone == "UTC"


def _error(data: dict[str, Any]) -> tuple[tuple[int | str, ...], str]:
    with pytest.raises(ValidationError) as info:
        RetentionPolicy.model_validate(data)
    errors = info.value.errors()
    assert len(errors) == 1
    return errors[0]["loc"], errors[0]["msg"]


@pytest.mark.parametrize(
    "key", ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]
)
def test_negative_counts_are_rejected(key: str) -> None:
    loc, msg = _error({key: -1})
    assert loc == (key,)
    assert "greater than or equal to 0" in msg


@pytest.mark.parametrize("value", [True, 1.5, "seven", [7]])
def test_non_integer_counts_are_rejected(value: Any) -> None:
    loc, _ = _error({"keep_daily": value})
    assert loc == ("keep_daily",)


def test_unknown_key_is_rejected() -> None:
    loc, msg = _error({"keep_dialy": 7})
    assert loc == ("keep_dialy",)
    assert "Extra inputs are not permitted" in msg


@pytest.mark.parametrize(
    "value", ["7", "7 days", "7D", "1.5d", "-1d", "d", "", "7dd", "3d2w", "1d1d", "7s", 7, 7.0]
)
def test_bad_keep_within_is_rejected(value: Any) -> None:
    loc, msg = _error({"keep_within": value})
    assert loc == ("keep_within",)
    assert "is not a duration" in msg
    assert "e.g." in msg  # says what a duration looks like


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("7d", (0, 0, 7, 0)),
        ("36h", (0, 0, 0, 36)),
        ("2w", (0, 0, 14, 0)),
        ("2w3d", (0, 0, 17, 0)),
        ("1y5m7d2h", (1, 5, 7, 2)),
        ("0d", (0, 0, 0, 0)),
    ],
)
def test_parse_keep_within(text: str, parts: tuple[int, int, int, int]) -> None:
    within = parse_keep_within(text)
    assert (within.years, within.months, within.days, within.hours) == parts
    assert str(within) == text


@pytest.mark.parametrize(
    "value", ["Mars/Olympus", "Europe", "CET+1", "", "/etc/localtime", "../zoneinfo/UTC", 1]
)
def test_bad_timezone_is_rejected(value: Any) -> None:
    loc, msg = _error({"timezone": value})
    assert loc == ("timezone",)
    assert "IANA" in msg


# --- describe --------------------------------------------------------------------------------------------


def test_describe() -> None:
    policy = RetentionPolicy(keep_last=7, keep_daily=14, keep_weekly=8, keep_monthly=12, keep_yearly=3)
    assert describe(policy) == "last 7, daily 14, weekly 8, monthly 12, yearly 3"
    assert (
        describe(RetentionPolicy(keep_hourly=24, keep_daily=0, keep_within="3d12h"))
        == "hourly 24, within 3d12h"
    )
    assert describe(RetentionPolicy(keep_daily=7, timezone="Europe/Berlin")) == "daily 7 (Europe/Berlin)"
    assert describe(RetentionPolicy()) == "keep everything (no retention rule set)"
    assert describe(RetentionPolicy(keep_last=0)) == "keep everything (no retention rule set)"
