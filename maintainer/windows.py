"""Maintenance windows: when a site may be worked on (the inventory var ``maintenance_window``).

A window is one string or a list of strings (the window is open when any of them is)::

    DAYS HH:MM-HH:MM [TZ]

``DAYS`` is ``daily`` (or ``*``), a day (``sun``; full names and any case are accepted), a range
(``mon-fri``; it may wrap around the week: ``fri-mon`` is fri, sat, sun, mon) or a comma list of
days and ranges (``sat,sun``, ``mon-wed,fri``). The end may be ``24:00``. An end at or before the
start crosses midnight: ``fri 22:00-02:00`` runs from Friday 22:00 to Saturday 02:00, i.e. a window
belongs to the day it starts on. ``TZ`` is an IANA time zone name (``Europe/Berlin``; default ``UTC``);
days and times are read on that zone's wall clock. Names that are files of the zone database but no
zone are refused: ``localtime`` (whatever zone the machine reading it is set to, so the window would
move with the controller), ``posixrules``, ``Factory``, and the ``posix/`` and ``right/`` copies.

A window whose rules leave no gap (``daily 00:00-24:00``, or ``daily 00:00-12:00`` with
``daily 12:00-24:00``) is always open: it never closes, and plans and the change log say so.

Daylight saving time. Each occurrence of a window is one span of real time, from the moment the
zone's clock reads the start to the moment it reads the end:

- a wall-clock time that does not exist (skipped when the clocks spring forward) is moved to the
  first instant that exists after it, the moment of the jump: ``02:00-04:00 Europe/Berlin`` on the
  spring-forward Sunday opens at 03:00 CEST and lasts one real hour (01:00-02:00 UTC). A window that
  lies entirely inside the skipped hour (``02:15-02:45``) does not open that day;
- a wall-clock time that happens twice (when the clocks fall back) opens at its first occurrence and
  closes at its second: ``02:00-04:00 Europe/Berlin`` on the fall-back Sunday lasts three real hours
  (00:00-03:00 UTC). A window never gets shorter on a fall-back day.

This module is pure logic: ``parse_window`` raises ``ValueError`` with a message meant for people,
and the caller turns it into bad input naming the site.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from .errors import did_you_mean

#: the inventory var that holds a site's window
VAR = "maintenance_window"
DEFAULT_TZ = "UTC"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NUMBER = {**{name: n for n, name in enumerate(DAYS)}, **{name: n for n, name in enumerate(_FULL_DAYS)}}
_EVERY_DAY = ("daily", "*")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_DAY_MINUTES = 24 * 60
#: names ZoneInfo accepts (files of the zone database) that are no zone a site's people live in
_NOT_ZONES = {
    "localtime": "it is whatever zone the machine reading it is set to, so the window would move with "
    "the controller",
    "posixrules": "it is the zone database's template for POSIX TZ strings, not a place",
    "factory": "it is a placeholder zone with no offset meant for unconfigured machines",
}
_NOT_ZONE_PREFIXES = ("posix/", "right/")
#: an open span that runs on (rule after rule) for longer than this never closes
_ALWAYS_OPEN = timedelta(days=8)
#: how far ahead next_open looks: every weekday twice, so a day whose window a DST jump swallowed
#: is followed by its next week
_LOOKAHEAD_DAYS = 16

EXAMPLES = "'sun 02:00-04:00 Europe/Berlin' or 'mon-fri 22:00-23:30 UTC'"
SYNTAX = f"'DAYS HH:MM-HH:MM [TZ]' (or a list of them), e.g. {EXAMPLES}"


@dataclass(frozen=True)
class Rule:
    """One ``DAYS HH:MM-HH:MM TZ`` of a window."""

    days: frozenset[int]  # 0 = Monday, as date.weekday()
    days_text: str  # as written, normalised: 'mon-fri', 'sat,sun', 'daily'
    start: int  # minutes after midnight, 0..1439
    end: int  # minutes after midnight, 1..1440; at or before start: on the next day
    tz: ZoneInfo

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def describe(self) -> str:
        return f"{self.days_text} {_hhmm(self.start)}-{_hhmm(self.end)} {self.tz.key}"

    def occurrence(self, day: date) -> tuple[datetime, datetime] | None:
        """The span (in UTC) of the occurrence starting on the local ``day``.

        None when the rule does not run that day, or when a spring-forward jump swallowed it.
        UTC, because Python compares two datetimes of the same zone by their wall-clock reading,
        which is wrong across a fall-back.
        """
        if day.weekday() not in self.days:
            return None
        midnight = datetime.combine(day, dtime())
        start = _instant(midnight + timedelta(minutes=self.start), self.tz, last=False)
        end_day = 1 if self.crosses_midnight else 0
        end = _instant(midnight + timedelta(days=end_day, minutes=self.end), self.tz, last=True)
        return (start, end) if start < end else None

    def spans(self, now: datetime, before: int, after: int) -> Iterable[tuple[datetime, datetime]]:
        """Occurrences (UTC) starting on local days from ``before`` days before ``now`` to ``after`` after."""
        today = now.astimezone(self.tz).date()
        for offset in range(-before, after + 1):
            span = self.occurrence(today + timedelta(days=offset))
            if span is not None:
                yield span


@dataclass(frozen=True)
class Window:
    """A site's maintenance window: open when any of its rules is."""

    rules: tuple[Rule, ...]

    def describe(self) -> str:
        """The window in canonical form, time zones spelt out: 'sun 02:00-04:00 Europe/Berlin'."""
        return "; ".join(rule.describe() for rule in self.rules)

    def current(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence that contains ``now`` (the one that closes last, if several), else None.

        Aware, in the zone of that occurrence's rule.
        """
        now = _utc(now)
        # an occurrence ends by the next day's end; 2 days back also covers a zone that falls back
        # across midnight (its previous day's wall-clock hour comes again after midnight)
        containing = [
            (end, start, rule.tz)
            for rule in self.rules
            for start, end in rule.spans(now, 2, 0)
            if start <= now < end
        ]
        if not containing:
            return None
        end, start, tz = max(containing, key=lambda found: found[0])
        return start.astimezone(tz), end.astimezone(tz)

    def closes(self, now: datetime) -> datetime | None:
        """When the window, open at ``now``, next closes: the end of the open stretch, following one
        rule's occurrence into the next when they touch or overlap. None: it never closes.

        ``now`` must be inside the window. Aware, in the zone of the rule whose occurrence ends last.
        """
        span = self.current(now)
        assert span is not None, "closes() of a window that is closed now"
        end = span[1]
        limit = _utc(now) + _ALWAYS_OPEN
        while (following := self.current(end)) is not None:
            end = following[1]
            if end >= limit:
                return None
        return end

    def is_open(self, now: datetime) -> bool:
        """Whether the window is open at ``now`` (an aware datetime; naive ones are refused)."""
        return self.current(now) is not None

    def next_open(self, now: datetime) -> datetime:
        """The earliest instant at or after ``now`` when the window is open (``now`` when it is open).

        Aware, in the zone of the rule that opens first, so that it reads as the site's people read it
        (for arithmetic convert it to UTC first: Python adds to a zoned datetime on its wall clock).
        """
        span = self.current(now)
        if span is not None:
            return now.astimezone(span[0].tzinfo)
        now = _utc(now)
        starts = [
            (start, rule.tz)
            for rule in self.rules
            for start, _ in rule.spans(now, 0, _LOOKAHEAD_DAYS)
            if start > now
        ]
        if not starts:  # a parsed window has days and a non-empty time range: it always opens again
            raise AssertionError(f"window {self.describe()!r} never opens after {now.isoformat()}")
        start, tz = min(starts, key=lambda found: found[0])
        return start.astimezone(tz)

    def closed_message(self, now: datetime) -> str:
        """Why a site is not run now: 'maintenance window ... is closed (now ...); next window opens ...'."""
        local_now = format_local(_utc(now).astimezone(self.rules[0].tz))
        return (
            f"maintenance window '{self.describe()}' is closed (now {local_now}); "
            f"next window opens {format_local(self.next_open(now))}"
        )

    def summary(self, now: datetime) -> str:
        """'open now (closes sun 2026-12-06 04:00 CET)', 'closed now (opens sun 2026-12-06 02:00 CET)'
        or 'always open' (a window that never closes)."""
        if self.current(now) is None:
            return f"closed now (opens {format_local(self.next_open(now))})"
        closes = self.closes(now)
        return "always open" if closes is None else f"open now (closes {format_local(closes)})"

    def state(self, now: datetime) -> dict[str, Any]:
        """What the change log and plans record: spec, open, and when it next opens or closes
        (``always_open: true`` instead when it never closes)."""
        data: dict[str, Any] = {"spec": self.describe(), "open": self.is_open(now), "checked": _utc_iso(now)}
        if not data["open"]:
            data["next_open"] = self.next_open(now).isoformat(timespec="minutes")
        elif (closes := self.closes(now)) is None:
            data["always_open"] = True
        else:
            data["closes"] = closes.isoformat(timespec="minutes")
        return data


def format_local(moment: datetime) -> str:
    """'sun 2026-12-06 02:00 CET': the weekday, the date and the time on that zone's wall clock."""
    return f"{DAYS[moment.weekday()]} {moment:%Y-%m-%d %H:%M} {moment.tzname()}"


# ------------------------------------------------------------------ parsing


def parse_window(value: Any) -> Window:
    """A window from the inventory var's value: a string or a list of strings. ValueError if invalid."""
    if value is None:
        raise ValueError("it has no value; give a window, or remove the variable for no restriction")
    if isinstance(value, str):
        return Window((parse_rule(value),))
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(
                "the list is empty, so the site could never be maintained; give at least one window, "
                "or remove the variable for no restriction"
            )
        rules = []
        for number, item in enumerate(value, 1):
            if not isinstance(item, str):
                raise ValueError(f"item {number} of the list is {_kind(item)} {item!r}, not a string")
            try:
                rules.append(parse_rule(item))
            except ValueError as exc:
                raise ValueError(f"item {number} of the list: {exc}") from None
        return Window(tuple(rules))
    raise ValueError(f"it is {_kind(value)} {value!r}; it must be a string or a list of strings")


def parse_rule(text: str) -> Rule:
    """One ``DAYS HH:MM-HH:MM [TZ]``; ValueError naming what is wrong."""
    quoted = repr(text)
    if not text.strip():
        raise ValueError("it is empty; give a window, or remove the variable for no restriction")
    # 'sat, sun' and '22:00 - 02:00' are read as 'sat,sun' and '22:00-02:00'
    normal = re.sub(r"\s*,\s*", ",", text.strip())
    normal = re.sub(r"(?<=\d)\s*-\s*(?=\d)", "-", normal)
    parts = normal.split()
    if _TIME.match(parts[0]):
        raise ValueError(f"{quoted} has no days: start with them, e.g. 'daily {normal}' or 'sun {normal}'")
    if len(parts) < 2:
        raise ValueError(f"{quoted} has no time range HH:MM-HH:MM after its days")
    if len(parts) > 3:
        raise ValueError(
            f"{quoted} has {len(parts)} parts, expected 2 or 3 (days, time range, optional time zone)"
        )
    days, days_text = _parse_days(parts[0], quoted)
    start, end = _parse_range(parts[1], quoted)
    tz = _parse_tz(parts[2] if len(parts) == 3 else DEFAULT_TZ, quoted)
    return Rule(days=days, days_text=days_text, start=start, end=end, tz=tz)


def _parse_days(text: str, quoted: str) -> tuple[frozenset[int], str]:
    lowered = text.lower()
    if lowered in _EVERY_DAY:
        return frozenset(range(7)), "daily"
    days: set[int] = set()
    words: list[str] = []
    for item in lowered.split(","):
        if not item:
            raise ValueError(f"{quoted} has an empty day in '{text}' (two commas, or one at an end)")
        if item in _EVERY_DAY:
            return frozenset(range(7)), "daily"
        first, dash, last = item.partition("-")
        if not dash:
            day = _day(item, quoted)
            days.add(day)
            words.append(DAYS[day])
            continue
        a, b = _day(first, quoted), _day(last, quoted)
        if a == b:
            raise ValueError(f"{quoted}: the range '{item}' starts and ends on the same day; write '{first}'")
        days.update((a + n) % 7 for n in range((b - a) % 7 + 1))  # fri-mon wraps around the week
        words.append(f"{DAYS[a]}-{DAYS[b]}")
    return frozenset(days), ("daily" if len(days) == 7 else ",".join(words))


def _day(word: str, quoted: str) -> int:
    if word in _DAY_NUMBER:
        return _DAY_NUMBER[word]
    if not word:
        raise ValueError(f"{quoted} has a day range with a missing day (write e.g. 'mon-fri')")
    hint = did_you_mean(word, [*DAYS, *_FULL_DAYS, "daily"])
    raise ValueError(f"{quoted}: '{word}' is not a day; {hint}days are {', '.join(DAYS)}, daily or *")


def _parse_range(text: str, quoted: str) -> tuple[int, int]:
    start_text, dash, end_text = text.partition("-")
    if not dash or "-" in end_text:
        raise ValueError(f"{quoted}: '{text}' is not a time range; write HH:MM-HH:MM, e.g. 02:00-04:00")
    start = _minutes(start_text, quoted, end=False)
    end = _minutes(end_text, quoted, end=True)
    if start == end:
        raise ValueError(
            f"{quoted}: the time range '{text}' starts and ends at the same time, so it is never open; "
            "for the whole day write 00:00-24:00"
        )
    return start, end


def _minutes(text: str, quoted: str, *, end: bool) -> int:
    match = _TIME.fullmatch(text)
    hours, minutes = (int(match[1]), int(match[2])) if match else (-1, -1)
    if match and hours == 24 and minutes == 0 and end:
        return _DAY_MINUTES
    if not match or hours > 23 or minutes > 59:
        what = "the start" if not end else "the end"
        limit = "00:00 to 23:59" + (", or 24:00" if end else "")
        raise ValueError(f"{quoted}: {what} '{text}' is not a time of day (HH:MM, {limit})")
    return hours * 60 + minutes


def _parse_tz(name: str, quoted: str) -> ZoneInfo:
    """The zone of an IANA name (any case); the zone database's files that are no zone are refused."""
    lowered = name.lower()
    if lowered.startswith(_NOT_ZONE_PREFIXES):
        plain = name.split("/", 1)[1]
        raise ValueError(
            f"{quoted}: '{name}' is not a time zone name: the posix/ and right/ folders of the zone "
            f"database are copies kept for old software; write '{plain}'"
        )
    if lowered in _NOT_ZONES:
        raise ValueError(
            f"{quoted}: '{name}' is not a time zone name: {_NOT_ZONES[lowered]}; write the site's zone as an "
            "IANA name such as Europe/Berlin, America/New_York or UTC"
        )
    known = _zone_names()
    if name in known:
        return ZoneInfo(name)
    by_lower = {key.lower(): key for key in known}
    if lowered in by_lower:  # 'utc', 'europe/berlin'
        return ZoneInfo(by_lower[lowered])
    hint = did_you_mean(name, known)
    raise ValueError(
        f"{quoted}: '{name}' is not a time zone; {hint}use an IANA name such as Europe/Berlin, "
        "America/New_York or UTC"
    )


@functools.cache
def _zone_names() -> frozenset[str]:
    """The IANA zone names (``available_timezones()`` reads the whole database: once per process)."""
    return frozenset(
        name
        for name in available_timezones()
        if name.lower() not in _NOT_ZONES and not name.lower().startswith(_NOT_ZONE_PREFIXES)
    )


# ------------------------------------------------------------------ time arithmetic


def _instant(wall: datetime, tz: ZoneInfo, *, last: bool) -> datetime:
    """The instant (UTC) at which ``tz``'s clock reads ``wall`` (naive).

    A time that happens twice (fall-back) is its first occurrence, or with ``last`` its second.
    A time that does not exist (spring-forward) is the moment of the jump: the first existing
    instant after it.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return first
    if first < second:  # ambiguous (PEP 495: fold=0 is the earlier offset, before the fall-back)
        return second if last else first
    # skipped: fold=1 reads it with the offset after the jump (an instant before the jump),
    # fold=0 with the offset before it (an instant after the jump); find the jump between them
    before, after = int(second.timestamp()), int(first.timestamp())
    offset = second.astimezone(tz).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == offset:
            before = middle
        else:
            after = middle
    return datetime.fromtimestamp(after, UTC)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone: pass an aware datetime")
    return moment.astimezone(UTC)


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", dict: "a mapping"}.get(
        type(value), f"a {type(value).__name__}"
    )
