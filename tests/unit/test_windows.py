"""Maintenance windows: parsing, errors, day ranges, midnight, time zones, DST, next_open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from maintainer.engine import SITE_LOCKED, SITE_OK, SITE_WINDOW_CLOSED, SiteResult, outcome_of
from maintainer.errors import ExitCode
from maintainer.windows import Window, format_local, parse_window

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")

# 2026: Berlin springs forward on Sun 29 Mar at 01:00 UTC and falls back on Sun 25 Oct at 01:00 UTC;
# New York springs forward on Sun 8 Mar at 07:00 UTC and falls back on Sun 1 Nov at 06:00 UTC.
MINUTE = timedelta(minutes=1)


def utc(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def open_spans(
    window: Window, start: datetime, end: datetime, step: timedelta = MINUTE
) -> list[tuple[str, str]]:
    """The spans (UTC, 'MM-DD HH:MM') in which the window is open, found minute by minute."""
    spans: list[tuple[str, str]] = []
    opened: datetime | None = None
    moment = start
    while moment <= end:
        is_open = window.is_open(moment)
        if is_open and opened is None:
            opened = moment
        elif not is_open and opened is not None:
            spans.append((f"{opened:%m-%d %H:%M}", f"{moment:%m-%d %H:%M}"))
            opened = None
        moment += step
    assert opened is None, "the sweep ended inside a window"
    return spans


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("spec", "described"),
    [
        ("sun 02:00-04:00 Europe/Berlin", "sun 02:00-04:00 Europe/Berlin"),
        ("mon-fri 22:00-23:30 UTC", "mon-fri 22:00-23:30 UTC"),
        ("Sun 02:00-04:00", "sun 02:00-04:00 UTC"),  # the fixtures' spelling: no zone means UTC
        ("daily 00:00-24:00", "daily 00:00-24:00 UTC"),
        ("* 1:00-2:30 utc", "daily 01:00-02:30 UTC"),
        ("SAT, Sun  22:00 - 02:00  europe/berlin", "sat,sun 22:00-02:00 Europe/Berlin"),
        ("saturday,sunday 03:00-05:00", "sat,sun 03:00-05:00 UTC"),
        ("fri-mon 10:00-11:00", "fri-mon 10:00-11:00 UTC"),
        ("mon-wed,fri 10:00-11:00", "mon-wed,fri 10:00-11:00 UTC"),
        ("sun-sat 10:00-11:00", "daily 10:00-11:00 UTC"),
        ("mon,daily 10:00-11:00", "daily 10:00-11:00 UTC"),
    ],
)
def test_parse_and_describe(spec: str, described: str) -> None:
    assert parse_window(spec).describe() == described


def test_a_list_is_open_when_any_of_its_windows_is() -> None:
    window = parse_window(["sat 01:00-02:00 UTC", "mon-fri 22:00-23:00 America/New_York"])
    assert window.describe() == "sat 01:00-02:00 UTC; mon-fri 22:00-23:00 America/New_York"
    assert window.is_open(utc(12, 5, 1, 30))  # Saturday 01:30 UTC
    assert window.is_open(utc(12, 3, 3, 30))  # Thursday 03:30 UTC = Wednesday 22:30 EST
    assert window.is_open(utc(12, 5, 3, 30))  # Saturday 03:30 UTC = Friday 22:30 EST
    assert not window.is_open(utc(12, 6, 3, 30))  # Sunday 03:30 UTC = Saturday 22:30 EST
    assert not window.is_open(utc(12, 5, 2, 0))  # Saturday 02:00 UTC: the UTC one just closed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        (None, "no value"),
        (42, "a number 42; it must be a string or a list of strings"),
        ({"days": "sun"}, "a mapping"),
        ([], "the list is empty"),
        (["sun 01:00-02:00", 3], "item 2 of the list is a number 3"),
        (["sun 01:00-02:00", "sun 01:00"], "item 2 of the list: 'sun 01:00': '01:00' is not a time range"),
        ("sun", "'sun' has no time range HH:MM-HH:MM"),
        ("02:00-04:00 Europe/Berlin", "has no days: start with them, e.g. 'daily 02:00-04:00 Europe/Berlin'"),
        ("sun 02:00-04:00 Europe/Berlin now", "has 4 parts, expected 2 or 3"),
        ("sunn 02:00-04:00", "'sunn' is not a day; did you mean 'sun'?"),
        ("weekdays 02:00-04:00", "'weekdays' is not a day"),
        ("mon-mon 02:00-04:00", "the range 'mon-mon' starts and ends on the same day; write 'mon'"),
        ("mon- 02:00-04:00", "a day range with a missing day"),
        ("sat,,sun 02:00-04:00", "an empty day in 'sat,,sun'"),
        ("sun 02:00", "'02:00' is not a time range"),
        ("sun 02:00-04:00-06:00", "'02:00-04:00-06:00' is not a time range"),
        ("sun 24:00-02:00", "the start '24:00' is not a time of day (HH:MM, 00:00 to 23:59)"),
        ("sun 02:00-24:30", "the end '24:30' is not a time of day (HH:MM, 00:00 to 23:59, or 24:00)"),
        ("sun 02:60-04:00", "the start '02:60' is not a time of day"),
        ("sun 2am-4am", "the start '2am' is not a time of day"),
        (
            "sun 02:00-02:00",
            "starts and ends at the same time, so it is never open; for the whole day write 00:00-24:00",
        ),
        ("sun 02:00-04:00 Europe/Berln", "'Europe/Berln' is not a time zone; did you mean 'Europe/Berlin'?"),
        ("sun 02:00-04:00 CEST", "'CEST' is not a time zone"),
        ("sun 02:00-04:00 +01:00", "'+01:00' is not a time zone"),
        ("sun 02:00-04:00 ../../etc/passwd", "is not a time zone"),
        # files of the zone database that ZoneInfo loads but that are no zone
        ("sun 02:00-04:00 localtime", "'localtime' is not a time zone name: it is whatever zone the machine"),
        ("sun 02:00-04:00 LocalTime", "'LocalTime' is not a time zone name"),
        ("sun 02:00-04:00 posixrules", "'posixrules' is not a time zone name"),
        ("sun 02:00-04:00 Factory", "'Factory' is not a time zone name"),
        ("sun 02:00-04:00 posix/Europe/Berlin", "is not a time zone name: the posix/ and right/ folders"),
        ("sun 02:00-04:00 right/UTC", "write 'UTC'"),
    ],
)
def test_errors_say_what_is_wrong(value: object, expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_window(value)
    assert expected in str(caught.value)


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        parse_window("daily 00:00-24:00").is_open(datetime(2026, 1, 1))


# ------------------------------------------------------------------ days, weeks, midnight


def test_a_day_range_and_its_edges() -> None:
    window = parse_window("mon-fri 22:00-23:30 UTC")
    assert open_spans(window, utc(11, 29), utc(12, 7)) == [  # Sun 29 Nov .. Mon 7 Dec
        (f"{d} 22:00", f"{d} 23:30") for d in ("11-30", "12-01", "12-02", "12-03", "12-04")
    ]
    assert window.is_open(utc(12, 4, 22, 0)) and not window.is_open(utc(12, 4, 23, 30))


def test_a_range_may_wrap_around_the_end_of_the_week() -> None:
    window = parse_window("fri-mon 10:00-11:00")
    days = [d for d in range(7) if window.is_open(utc(11, 30) + timedelta(days=d, hours=10, minutes=30))]
    assert days == [0, 4, 5, 6]  # from Monday 30 Nov: mon, fri, sat, sun


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts_on() -> None:
    window = parse_window("fri 22:00-02:00 UTC")
    assert open_spans(window, utc(11, 30), utc(12, 7)) == [("12-04 22:00", "12-05 02:00")]
    assert window.is_open(utc(12, 5, 1, 59))  # Saturday, but Friday's window
    assert not window.is_open(utc(12, 4, 1, 0))  # Friday early morning: Thursday has no window


def test_crossing_midnight_at_the_end_of_the_week() -> None:
    window = parse_window("sun 23:00-01:00")
    assert open_spans(window, utc(12, 5), utc(12, 8)) == [("12-06 23:00", "12-07 01:00")]


def test_crossing_midnight_with_a_day_range() -> None:
    window = parse_window("mon-fri 22:00-02:00")
    assert window.is_open(utc(12, 5, 1, 0))  # Saturday 01:00: Friday's window
    assert not window.is_open(utc(11, 30, 1, 0))  # Monday 01:00: Sunday has none


def test_the_whole_day_and_24_00() -> None:
    assert all(parse_window("daily 00:00-24:00").is_open(utc(12, 1) + timedelta(hours=h)) for h in range(48))
    window = parse_window("sat 20:00-24:00")
    assert open_spans(window, utc(12, 5), utc(12, 7)) == [("12-05 20:00", "12-06 00:00")]


def test_a_window_ending_at_midnight_is_not_a_24_hour_one() -> None:
    window = parse_window("sat 22:00-00:00")
    assert open_spans(window, utc(12, 5), utc(12, 7)) == [("12-05 22:00", "12-06 00:00")]


# ------------------------------------------------------------------ time zones


@pytest.mark.parametrize(
    ("spec", "spans"),
    [
        ("mon 09:00-10:00 Asia/Tokyo", [("11-30 00:00", "11-30 01:00")]),
        ("mon 00:30-01:30 Pacific/Auckland", [("11-29 11:30", "11-29 12:30")]),  # NZDT +13: Sunday in UTC
        ("mon 08:00-09:00 Asia/Kathmandu", [("11-30 02:15", "11-30 03:15")]),  # +05:45
        ("sun 20:00-22:00 America/Los_Angeles", [("11-30 04:00", "11-30 06:00")]),  # Monday in UTC
        ("sun 02:00-04:00 Europe/Berlin", [("11-29 01:00", "11-29 03:00")]),
    ],
)
def test_days_and_times_are_read_on_the_zones_wall_clock(spec: str, spans: list[tuple[str, str]]) -> None:
    assert open_spans(parse_window(spec), utc(11, 28), utc(12, 1)) == spans


def test_summer_and_winter_time_outside_the_switch_days() -> None:
    window = parse_window("sun 02:00-04:00 Europe/Berlin")
    assert window.is_open(utc(7, 5, 0, 0)) and not window.is_open(utc(7, 5, 2, 0))  # CEST: 00-02 UTC
    assert window.is_open(utc(1, 4, 1, 0)) and not window.is_open(utc(1, 4, 0, 59))  # CET: 01-03 UTC


# ------------------------------------------------------------------ DST


def test_berlin_spring_forward_opens_at_the_jump_and_lasts_one_hour() -> None:
    window = parse_window("sun 02:00-04:00 Europe/Berlin")
    # 02:00 CET does not exist: the window opens at 03:00 CEST (01:00 UTC) and closes at 04:00 CEST
    assert open_spans(window, utc(3, 28, 20), utc(3, 29, 6)) == [("03-29 01:00", "03-29 02:00")]
    assert format_local(window.next_open(utc(3, 28, 12))) == "sun 2026-03-29 03:00 CEST"


def test_berlin_fall_back_lasts_three_real_hours() -> None:
    window = parse_window("sun 02:00-04:00 Europe/Berlin")
    # opens at the first 02:00 (CEST, 00:00 UTC), closes at 04:00 CET (03:00 UTC)
    assert open_spans(window, utc(10, 24, 20), utc(10, 25, 6)) == [("10-25 00:00", "10-25 03:00")]
    assert format_local(window.next_open(utc(10, 24, 12))) == "sun 2026-10-25 02:00 CEST"


def test_new_york_spring_forward() -> None:
    # 02:00-03:00 EST does not exist on 8 Mar: 02:00-04:00 is 03:00-04:00 EDT (07:00-08:00 UTC)
    assert open_spans(parse_window("sun 02:00-04:00 America/New_York"), utc(3, 7, 20), utc(3, 8, 12)) == [
        ("03-08 07:00", "03-08 08:00")
    ]
    # a window whose start exists and whose end is after the jump loses the skipped hour
    assert open_spans(parse_window("sun 01:00-03:00 America/New_York"), utc(3, 7, 20), utc(3, 8, 12)) == [
        ("03-08 06:00", "03-08 07:00")
    ]


def test_new_york_fall_back() -> None:
    # 01:00 happens twice on 1 Nov: from the first 01:00 (EDT, 05:00 UTC) to 03:00 EST (08:00 UTC)
    assert open_spans(parse_window("sun 01:00-03:00 America/New_York"), utc(10, 31, 20), utc(11, 1, 12)) == [
        ("11-01 05:00", "11-01 08:00")
    ]
    # start and end both in the repeated hour: from the first 01:15 to the second 01:45
    assert open_spans(parse_window("sun 01:15-01:45 America/New_York"), utc(10, 31, 20), utc(11, 1, 12)) == [
        ("11-01 05:15", "11-01 06:45")
    ]


def test_a_window_inside_the_skipped_hour_does_not_open_that_day() -> None:
    window = parse_window("sun 02:15-02:45 America/New_York")
    assert open_spans(window, utc(3, 7), utc(3, 9)) == []
    assert format_local(window.next_open(utc(3, 7))) == "sun 2026-03-15 02:15 EDT"
    assert format_local(window.next_open(utc(3, 1))) == "sun 2026-03-01 02:15 EST"


def test_a_window_ending_inside_the_skipped_hour_ends_at_the_jump() -> None:
    window = parse_window("sun 01:00-02:30 Europe/Berlin")
    assert open_spans(window, utc(3, 28, 20), utc(3, 29, 6)) == [("03-29 00:00", "03-29 01:00")]


def test_crossing_midnight_into_the_spring_forward_night() -> None:
    window = parse_window("sat 23:00-03:00 Europe/Berlin")
    # Saturday 23:00 CET (22:00 UTC) to Sunday 03:00 CEST (01:00 UTC): three real hours
    assert open_spans(window, utc(3, 28, 12), utc(3, 29, 12)) == [("03-28 22:00", "03-29 01:00")]
    # and into the fall-back night: Saturday 23:00 CEST (21:00 UTC) to Sunday 03:00 CET (02:00 UTC)
    assert open_spans(window, utc(10, 24, 12), utc(10, 25, 12)) == [("10-24 21:00", "10-25 02:00")]


@pytest.mark.parametrize(
    "spec",
    [
        "sun 02:00-04:00 Europe/Berlin",
        "daily 01:30-02:30 Europe/Berlin",
        "sat-mon 23:00-02:30 America/New_York",
        "sun 02:15-02:45 America/New_York",
        "daily 00:00-24:00 Europe/Berlin",
        ["mon-fri 22:00-23:30 UTC", "sun 01:00-03:00 America/New_York"],
    ],
)
def test_next_open_is_the_first_open_minute(spec: str | list[str]) -> None:
    """Around both switch weekends, minute by minute: next_open is open, the minute before it is not."""
    window = parse_window(spec)
    for start in (utc(3, 6), utc(3, 27), utc(10, 23), utc(10, 30)):
        moment = start
        while moment < start + timedelta(days=3):
            first = window.next_open(moment)
            assert first >= moment and window.is_open(first), (spec, moment, first)
            if first > moment:
                # in UTC: arithmetic on a zoned datetime is wall-clock arithmetic (03:00 CEST - 1 s
                # is 02:59:59, a time that does not exist)
                assert not window.is_open(first.astimezone(UTC) - timedelta(seconds=1)), (spec, moment, first)
                assert not window.is_open(moment)
            moment += timedelta(minutes=7)


# ------------------------------------------------------------------ next_open, messages, state


def test_next_open_reads_as_the_sites_people_read_it() -> None:
    window = parse_window("sun 02:00-04:00 Europe/Berlin")
    saturday = utc(12, 5, 13, 3)
    assert format_local(window.next_open(saturday)) == "sun 2026-12-06 02:00 CET"
    assert window.closed_message(saturday) == (
        "maintenance window 'sun 02:00-04:00 Europe/Berlin' is closed (now sat 2026-12-05 14:03 CET); "
        "next window opens sun 2026-12-06 02:00 CET"
    )
    assert window.next_open(utc(12, 6, 1, 30)) == utc(12, 6, 1, 30)  # open: now
    assert format_local(window.next_open(utc(12, 6, 3, 0))) == "sun 2026-12-13 02:00 CET"  # just closed


def test_next_open_of_a_list_is_the_earliest_in_its_own_zone() -> None:
    window = parse_window(["sun 02:00-04:00 Europe/Berlin", "sat 19:00-20:00 America/New_York"])
    # Saturday 19:00 EST is Sunday 00:00 UTC, an hour before Berlin's Sunday 02:00 CET
    assert format_local(window.next_open(utc(12, 5, 12))) == "sat 2026-12-05 19:00 EST"
    # open: now, in the zone of the rule that is open
    assert format_local(window.next_open(utc(12, 6, 0, 30))) == "sat 2026-12-05 19:30 EST"


def test_summary_for_plans() -> None:
    window = parse_window("sun 02:00-04:00 Europe/Berlin")
    assert window.summary(utc(12, 5, 13, 3)) == "closed now (opens sun 2026-12-06 02:00 CET)"
    assert window.summary(utc(10, 25, 2, 30)) == "open now (closes sun 2026-10-25 04:00 CET)"  # fall-back


@pytest.mark.parametrize(
    "spec",
    [
        "daily 00:00-24:00",
        "daily 00:00-24:00 Europe/Berlin",
        ["daily 00:00-12:00", "daily 12:00-24:00"],  # no gap between the two
        ["mon-fri 00:00-24:00", "sat,sun 00:00-24:00"],
        ["daily 22:00-10:00", "daily 09:00-23:00 UTC"],  # overlapping, across midnight
    ],
)
def test_a_window_without_a_gap_says_it_is_always_open(spec: str | list[str]) -> None:
    window = parse_window(spec)
    for moment in (utc(12, 5, 13, 3), utc(3, 29, 0, 30), utc(10, 25, 1, 30)):  # DST days too
        assert window.summary(moment) == "always open"
        state = window.state(moment)
        assert state["open"] is True and state["always_open"] is True and "closes" not in state


def test_closes_follows_touching_rules_to_the_real_gap() -> None:
    window = parse_window(["sat 20:00-24:00", "sun 00:00-02:00"])
    assert window.summary(utc(12, 5, 21)) == "open now (closes sun 2026-12-06 02:00 UTC)"
    # a whole day in one zone, the next in another: open until the gap between them
    mixed = parse_window(["mon-fri 00:00-24:00 UTC", "sat,sun 00:00-24:00 Europe/Berlin"])
    assert mixed.state(utc(12, 6, 12))["closes"] == "2026-12-07T00:00+01:00"  # Sun 23:00 UTC
    assert not mixed.is_open(utc(12, 6, 23, 30)) and mixed.is_open(utc(12, 7, 0, 0))


def test_state_is_what_the_change_log_records() -> None:
    window = parse_window("sun 02:00-04:00 Europe/Berlin")
    assert window.state(utc(12, 5, 13, 3)) == {
        "spec": "sun 02:00-04:00 Europe/Berlin",
        "open": False,
        "checked": "2026-12-05T13:03:00Z",
        "next_open": "2026-12-06T02:00+01:00",
    }
    assert window.state(utc(12, 6, 1, 30)) == {
        "spec": "sun 02:00-04:00 Europe/Berlin",
        "open": True,
        "checked": "2026-12-06T01:30:00Z",
        "closes": "2026-12-06T04:00+01:00",
    }


# ------------------------------------------------------------------ the run's outcome


def _results(*statuses: str) -> dict[str, SiteResult]:
    return {f"s{n}": SiteResult(f"s{n}", status) for n, status in enumerate(statuses)}


def test_outcome_when_windows_refuse_sites() -> None:
    assert outcome_of(_results(SITE_WINDOW_CLOSED), False) == ("refused", ExitCode.CANNOT_START)
    assert outcome_of(_results(SITE_WINDOW_CLOSED, SITE_LOCKED), False) == ("refused", ExitCode.CANNOT_START)
    # some sites ran: a refused one is a site not done, as a locked one is
    assert outcome_of(_results(SITE_WINDOW_CLOSED, SITE_OK), False) == ("failed", ExitCode.SITE_FAILED)
    assert outcome_of(_results(SITE_WINDOW_CLOSED), True) == ("interrupted", ExitCode.INTERRUPTED)
