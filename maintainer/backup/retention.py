"""Backup retention: which backups ``prune`` keeps, restic's ``forget`` policy as pure logic.

The policy is the inventory var ``backup.retention``::

    backup:
      retention:
        keep_last: 3
        keep_daily: 7
        keep_weekly: 5
        keep_monthly: 12
        keep_within: 2d
        timezone: Europe/Berlin

``select`` applies it to a list of snapshots (anything with ``.id`` and an aware
``.time``) and returns a ``Decision``: the ids to keep, each with the reasons it
is kept, and the ids to remove. Nothing here touches a store.

Semantics are restic's (``internal/restic/snapshot_policy.go``):

- snapshots are sorted newest first (equal times: by id, descending, so the
  result does not depend on the input order);
- ``keep_last N`` keeps the N newest;
- ``keep_hourly/daily/weekly/monthly/yearly N`` walk newest to oldest and keep
  a snapshot whenever its period (hour, day, ISO week Monday-Sunday, month,
  year, *in the policy's timezone*) differs from the period of the snapshot last
  kept by that rule, until N periods are kept. Only periods that have a
  snapshot count, so N daily keeps the newest snapshot of each of the N most
  recent days *with a backup*, however far apart they are;
- like restic (since 0.17), if a counted rule still has periods left when it
  reaches the oldest snapshot, it keeps the oldest one too, even though its
  period is already covered (reason ``"<rule> <period> (oldest)"``): a young
  backup set keeps its very first backup;
- ``keep_within D`` keeps every snapshot strictly younger than D measured back
  from the **newest snapshot that is not in the future** (relative to ``now``),
  not from ``now``: a site whose backups stopped a month ago does not lose them
  all to ``keep_within: 7d``. If every snapshot is in the future, ``now`` is
  the reference. Years, months and days are calendar steps in the policy's
  timezone (as Go's ``AddDate``), hours are exact;
- the rules are ORed: a snapshot kept by any rule is kept, with the reasons of
  every rule that kept it;
- a count of 0 (or ``keep_within`` of zero length) is the same as leaving the
  rule out, as in restic.

Two rules of our own: a policy without any rule keeps everything (``prune``
then removes nothing), and the newest snapshot is always kept, reason
``"newest"``, whatever the policy says, because the next incremental backup
builds on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

__all__ = [
    "Decision",
    "KeepWithin",
    "RetentionPolicy",
    "Snapshot",
    "SnapshotLike",
    "describe",
    "parse_keep_within",
    "select",
]

Period = Literal["hourly", "daily", "weekly", "monthly", "yearly"]
Rule = Literal["last", "hourly", "daily", "weekly", "monthly", "yearly"]
_PERIODS: tuple[Period, ...] = ("hourly", "daily", "weekly", "monthly", "yearly")
_COUNTED: tuple[Rule, ...] = ("last", *_PERIODS)

REASON_NEWEST = "newest"
REASON_NO_RULE = "no retention rule (keep all)"

_DURATION_PART = re.compile(r"(\d+)([ymwdh])")
_UNIT_ORDER = "ymwdh"
_DURATION_HELP = (
    "a number and a unit, largest unit first, e.g. '7d', '36h', '2w', '1y6m', '3d12h' "
    "(y = years, m = months, w = weeks, d = days, h = hours)"
)


# --- keep_within -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepWithin:
    """A parsed ``keep_within``: calendar years, months, days (weeks folded in) and exact hours."""

    text: str
    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    @property
    def is_zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def cutoff(self, reference: datetime, tz: ZoneInfo) -> datetime | None:
        """``reference`` minus this duration (restic: ``AddDate(-y, -m, -d).Add(-h)``), in ``tz``.

        Returns None if the result would be before year 1, i.e. everything is within.
        Day overflow rolls over like Go's ``AddDate``: March 31 minus one month is March 3 (or 2).
        """
        local = reference.astimezone(tz)
        month_index = local.year * 12 + (local.month - 1) - (self.years * 12 + self.months)
        year, month0 = divmod(month_index, 12)
        try:
            first = datetime(
                year,
                month0 + 1,
                1,
                local.hour,
                local.minute,
                local.second,
                local.microsecond,
                tzinfo=tz,
                fold=local.fold,
            )
            # aware + timedelta is wall-clock arithmetic in tz; the offset is recomputed afterwards
            shifted = first + timedelta(days=local.day - 1 - self.days)
            return shifted.astimezone(UTC) - timedelta(hours=self.hours)
        except (ValueError, OverflowError):
            return None

    def __str__(self) -> str:
        return self.text


def parse_keep_within(text: str) -> KeepWithin:
    """Parse '7d', '36h', '2w', '1y6m', '3d12h' (restic's format plus weeks); ValueError if it is not one."""
    cleaned = text.strip()
    parts = _DURATION_PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"'{text}' is not a duration: use {_DURATION_HELP}")
    units = [u for _, u in parts]
    if units != sorted(units, key=_UNIT_ORDER.index) or len(set(units)) != len(units):
        raise ValueError(
            f"'{text}' is not a duration: give each unit once, largest first, e.g. '2w3d', '1d12h'"
        )
    amount = {u: int(n) for n, u in parts}
    return KeepWithin(
        text=cleaned,
        years=amount.get("y", 0),
        months=amount.get("m", 0),
        days=amount.get("w", 0) * 7 + amount.get("d", 0),
        hours=amount.get("h", 0),
    )


# --- the policy ------------------------------------------------------------------------------------------


def _no_bool(value: Any) -> Any:
    # `keep_daily: yes` would otherwise be read as 1
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true/false")
    return value


Count = Annotated[int, BeforeValidator(_no_bool), Field(ge=0)]


class RetentionPolicy(BaseModel):
    """The inventory var ``backup.retention``: which backups ``prune`` keeps.

    Every rule is optional; None (left out) and 0 both mean "rule not used". A policy
    without any rule keeps **everything**: ``prune`` then removes nothing. Whatever the
    rules, the newest backup is always kept. Hours, days, ISO weeks, months and years
    are counted in ``timezone`` (an IANA name, default UTC).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_last: Count | None = None
    keep_hourly: Count | None = None
    keep_daily: Count | None = None
    keep_weekly: Count | None = None
    keep_monthly: Count | None = None
    keep_yearly: Count | None = None
    keep_within: str | None = None
    timezone: str = "UTC"

    @field_validator("keep_within", mode="before")
    @classmethod
    def _within(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"'{value}' is not a duration: use {_DURATION_HELP}")
        return parse_keep_within(value).text

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("must be an IANA time zone name such as 'UTC' or 'Europe/Berlin'")
        name = value.strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"'{value}' is not a known time zone: use an IANA name such as 'UTC' or 'Europe/Berlin'"
            ) from None
        return name

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def within(self) -> KeepWithin | None:
        """``keep_within`` parsed; None if not used (left out or zero)."""
        if self.keep_within is None:
            return None
        parsed = parse_keep_within(self.keep_within)
        return None if parsed.is_zero else parsed

    def count(self, rule: Rule) -> int:
        """The number a counted rule keeps (0 if not used)."""
        value: int | None = getattr(self, f"keep_{rule}")
        return value or 0

    @property
    def keeps_everything(self) -> bool:
        """True if no rule is in use: the policy keeps every snapshot."""
        return self.within is None and not any(self.count(rule) for rule in _COUNTED)


# --- snapshots and the decision --------------------------------------------------------------------------


class SnapshotLike(Protocol):
    """What ``select`` needs of a backup: an id and a timezone-aware time."""

    @property
    def id(self) -> str: ...

    @property
    def time(self) -> datetime: ...


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: datetime  # timezone-aware


@dataclass
class Decision:
    """What a policy keeps and removes.

    ``keep`` maps id -> reasons (e.g. ``["last 1", "daily 2026-11-28", "within 7d", "newest"]``),
    newest first; ``remove`` lists ids oldest first. Every snapshot is in exactly one of them.
    """

    keep: dict[str, list[str]] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)


def _period(rule: Period, local: datetime) -> tuple[tuple[int, ...], str]:
    """The period ``local`` falls in for ``rule``: a comparable key and a label for reasons."""
    if rule == "hourly":
        return (local.year, local.month, local.day, local.hour), f"{local:%Y-%m-%d %H}:00"
    if rule == "daily":
        return (local.year, local.month, local.day), f"{local:%Y-%m-%d}"
    if rule == "weekly":
        iso = local.isocalendar()
        return (iso.year, iso.week), f"{iso.year}-W{iso.week:02d}"
    if rule == "monthly":
        return (local.year, local.month), f"{local:%Y-%m}"
    return (local.year,), f"{local.year:04d}"


def _check_aware(what: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} has a naive time {value.isoformat()}: retention needs timezone-aware times")


def select(snapshots: Iterable[SnapshotLike], policy: RetentionPolicy, now: datetime) -> Decision:
    """Apply ``policy`` to ``snapshots``; ``now`` only tells which snapshots are in the future.

    See the module docstring for the rules. Raises ValueError for a naive time or a
    duplicate id (programming errors, not user input).
    """
    _check_aware("now", now)
    items = list(snapshots)
    seen: set[str] = set()
    for snap in items:
        _check_aware(f"snapshot {snap.id}", snap.time)
        if snap.id in seen:
            raise ValueError(f"snapshot id {snap.id} appears twice")
        seen.add(snap.id)
    if not items:
        return Decision()

    ordered = sorted(items, key=lambda s: (s.time, s.id), reverse=True)
    reasons: dict[str, list[str]] = {s.id: [] for s in ordered}

    if policy.keeps_everything:
        for snap in ordered:
            reasons[snap.id].append(REASON_NO_RULE)
    else:
        tz = policy.tz
        local = {s.id: s.time.astimezone(tz) for s in ordered}

        for number, snap in enumerate(ordered[: policy.count("last")], start=1):
            reasons[snap.id].append(f"last {number}")

        for rule in _PERIODS:
            left = policy.count(rule)
            last_key: tuple[int, ...] | None = None
            for index, snap in enumerate(ordered):
                if left == 0:
                    break
                key, label = _period(rule, local[snap.id])
                if key != last_key:
                    reasons[snap.id].append(f"{rule} {label}")
                elif index == len(ordered) - 1:
                    reasons[snap.id].append(f"{rule} {label} (oldest)")
                else:
                    continue
                last_key = key
                left -= 1

        within = policy.within
        if within is not None:
            past = [s.time for s in ordered if s.time <= now]
            reference = past[0] if past else now
            cutoff = within.cutoff(reference, tz)
            for snap in ordered:
                if cutoff is None or snap.time > cutoff:
                    reasons[snap.id].append(f"within {within}")

    reasons[ordered[0].id].append(REASON_NEWEST)

    return Decision(
        keep={s.id: reasons[s.id] for s in ordered if reasons[s.id]},
        remove=[s.id for s in reversed(ordered) if not reasons[s.id]],
    )


def describe(policy: RetentionPolicy) -> str:
    """One line for humans: 'last 7, daily 14, weekly 8, monthly 12, yearly 3, within 7d'."""
    if policy.keeps_everything:
        return "keep everything (no retention rule set)"
    parts = [f"{rule} {policy.count(rule)}" for rule in _COUNTED if policy.count(rule)]
    within = policy.within
    if within is not None:
        parts.append(f"within {within}")
    text = ", ".join(parts)
    return text if policy.timezone == "UTC" else f"{text} ({policy.timezone})"
