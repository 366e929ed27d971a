"""A restore drill: prove that a backup restores, and measure how long it takes (RTO) and how old it is (RPO).

The drill restores one backup (the latest, or a given id) into a scratch target that never touches
the live site: a directory ``<drill.scratch_dir or the docroot's parent>/.maintainer-drill-<site>-<token>``
and a database ``<db>_drill_<token>`` on the site's database server (or, with ``drill_host``, both
on that host and its database server). ``restore_backup`` writes the files and imports the dump;
as it writes, it checks every file against its SHA-256 in the manifest and afterwards every
table's row count and ``CHECKSUM TABLE`` against the figures recorded at backup time (tables
written to during the backup are skipped and counted). Then the restored docroot is served on a
free port of 127.0.0.1 on the drill host by PHP's built-in server and its home page
must answer 200, show the site's ``health_marker`` and no PHP fatal error. The copy is never
served against the live database: WordPress, Drupal and Joomla configs are rewritten to the scratch
database; any other site with a database must declare ``drill.config_rewrite`` / ``drill.smoke_env``,
or its smoke test is skipped (recorded with why).

Whatever happens, including a stop request, the scratch target is removed in ``finally``: the PHP
server by its process group (and, should the controller die, by the ``timeout`` it runs under),
the directory, the database; each removal is checked, and anything left behind is named. A drill
killed outright cannot clean up: the next drill of the site (under the site's lock) removes the
leftovers first and records that.

The result is one record (``DrillRecord.record()``), the change-log entry ``drills report`` reads.
"""

from __future__ import annotations

import itertools
import posixpath
import re
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import BackupDamaged, BadInput, MaintainerError, StepCancelled, StepFailed, StepTimeout
from ..inventory import Site
from ..transport import Transport
from .config import SiteBackup
from .database import DatabaseSettings, MySQLClient, db_client
from .manifest import Manifest, backup_ids, find_backup, time_of
from .restore import restore_backup
from .store import Store
from .streams import Deadline

Log = Callable[[str], None]

SCRATCH_PREFIX = ".maintainer-drill-"
#: where a drill on another host puts its scratch dir when nothing says where
DEFAULT_REMOTE_SCRATCH = "/var/tmp"
#: MySQL and PostgreSQL database names are at most this long (bytes; kept ASCII-safe below)
DB_NAME_MAX = 63
#: the PHP server dies by itself this long after it started, should the drill be killed outright
SERVER_LIFETIME = 900
#: the home page is read up to this size (markers and fatal errors are near the top)
BODY_LIMIT = 4 * 1024 * 1024
#: cleanup commands get this long each, whatever the step's deadline
CLEANUP_TIMEOUT = 120.0
FATAL = re.compile(r"(?:PHP )?(?:Fatal error|Parse error)\b[^\n<]*")

STAGES = ("fetch", "files", "database", "smoke", "cleanup")


# ------------------------------------------------------------------ inventory vars


@dataclass(frozen=True)
class Sla:
    """The site's targets (``sla: {rto: 30m, rpo: 24h}``), in seconds; None: no target."""

    rto: float | None
    rpo: float | None

    def record(self) -> dict[str, float | None]:
        return {"rto_seconds": self.rto, "rpo_seconds": self.rpo}


#: placeholders of ``drill.config_rewrite[].replace`` and ``drill.smoke_env`` values
PLACEHOLDERS = ("{db}", "{db_host}", "{db_port}", "{db_user}", "{db_password}", "{url}")


class ConfigRewrite(BaseModel):
    """One edit of the scratch copy: in ``file`` (relative to the docroot) ``search`` becomes ``replace``."""

    model_config = ConfigDict(extra="forbid")

    file: str
    search: str = Field(min_length=1)
    replace: str

    @field_validator("file")
    @classmethod
    def _inside(cls, value: str) -> str:
        parts = value.split("/")
        if not value or value.startswith("/") or ".." in parts:
            raise ValueError(f"must be a path relative to the docroot, without '..', got '{value}'")
        return value


class DrillSettings(BaseModel):
    """The inventory var ``drill`` of a site (every key optional)."""

    model_config = ConfigDict(extra="forbid")

    #: the directory the scratch dir is made in (default: the docroot's parent on the site's host)
    scratch_dir: str | None = None
    #: serve the restored copy and fetch its home page
    smoke: bool = True
    #: the page the smoke test fetches
    smoke_path: str = "/"
    #: how long the restored site may take to answer
    smoke_timeout: float = Field(default=60.0, gt=0)
    #: edits that point a custom site's scratch copy at the scratch database (placeholders: PLACEHOLDERS)
    config_rewrite: list[ConfigRewrite] = Field(default_factory=list)
    #: environment of the PHP server serving the scratch copy (for sites that read their db from it)
    smoke_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("smoke_env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"'{name}' is not an environment variable name")
        return value

    @field_validator("scratch_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"must be an absolute path on the drill host, got '{value}'")
        return value

    @field_validator("smoke_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError(f"must be a URL path starting with '/' without spaces, got '{value}'")
        return value


def parse_duration(value: Any) -> float:
    from ..runbook import parse_duration as parse  # the one duration syntax of the code base

    return parse(value)


def site_sla(site: Site) -> Sla | None:
    """The site's ``sla`` var, or None; BadInput naming the key when it is malformed."""
    raw = site.vars.get("sla")
    if raw is None:
        return None
    fix = "write it as sla: {rto: 30m, rpo: 24h} (durations: seconds or 90s, 30m, 4h, 1d)."
    if not isinstance(raw, dict):
        raise BadInput(
            f"site '{site.name}': 'sla' must be a mapping, got {type(raw).__name__}.", key="sla", fix=fix
        )
    unknown = sorted(set(raw) - {"rto", "rpo"})
    if unknown:
        raise BadInput(
            f"site '{site.name}': unknown key 'sla.{unknown[0]}'.", key=f"sla.{unknown[0]}", fix=fix
        )
    targets: dict[str, float | None] = {}
    for name in ("rto", "rpo"):
        value = raw.get(name)
        if value is None:
            targets[name] = None
            continue
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise BadInput(f"site '{site.name}': 'sla.{name}': {exc}.", key=f"sla.{name}", fix=fix) from None
        if seconds <= 0:
            raise BadInput(
                f"site '{site.name}': 'sla.{name}' must be above zero.", key=f"sla.{name}", fix=fix
            )
        targets[name] = seconds
    return Sla(rto=targets["rto"], rpo=targets["rpo"])


def drill_settings(site: Site) -> DrillSettings:
    raw = site.vars.get("drill")
    if raw is None:
        return DrillSettings()
    if not isinstance(raw, dict):
        raise BadInput(
            f"site '{site.name}': 'drill' must be a mapping, got {type(raw).__name__}.",
            key="drill",
            fix="write it as drill: {scratch_dir: /var/tmp, smoke_path: /, smoke: true}.",
        )
    try:
        return DrillSettings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(["drill", *(str(p) for p in err["loc"])])
        known = ", ".join(sorted(DrillSettings.model_fields))
        message = f"unknown key '{key}'" if err["type"] == "extra_forbidden" else f"'{key}': {err['msg']}"
        raise BadInput(
            f"site '{site.name}': {message}.", key=key, fix=f"the keys of drill are {known}."
        ) from None


def drill_host_name(site: Site) -> str | None:
    """The inventory host named by ``drill_host``, or None (drill on the site's own host)."""
    raw = site.vars.get("drill_host")
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        raise BadInput(
            f"site '{site.name}': 'drill_host' must name an inventory host, got {type(raw).__name__}.",
            key="drill_host",
            fix="set drill_host to a host name of the inventory, or remove it to drill on the site's host.",
        )
    return None if raw == site.name else raw


def drill_only_hosts(sites: list[Site]) -> dict[str, list[str]]:
    """Hosts that serve only as other sites' ``drill_host`` (no backup of their own): name -> those sites.

    They are not drilled (there is nothing of theirs to restore), and ``drills report`` leaves them out.
    """
    named: dict[str, list[str]] = {}
    for site in sites:
        host = site.vars.get("drill_host")
        if isinstance(host, str) and host and host != site.name:
            named.setdefault(host, []).append(site.name)
    by_name = {site.name: site for site in sites}
    return {
        name: users
        for name, users in named.items()
        if name in by_name and not _has_backup_target(by_name[name])
    }


def _has_backup_target(site: Site) -> bool:
    raw = site.vars.get("backup")
    return raw is not None and not (isinstance(raw, dict) and "target" not in raw)


def drill_database(site: Site, host: Site | None, spec: SiteBackup) -> DatabaseSettings | None:
    """Where the scratch database goes: the drill host's ``db`` server if it has one, else the site's."""
    if host is not None and isinstance(host.vars.get("db"), dict):
        from .config import _parse

        return _parse(host.name, "db", DatabaseSettings, host.vars["db"])
    return spec.db


# ------------------------------------------------------------------ figures


def max_gap(starts: list[datetime], now: datetime, window: timedelta) -> float:
    """The longest time without a newer recovery point, among the gaps that reach into ``window``.

    A backup's recovery point is its start (the dump is taken then). Gaps run between the starts
    of consecutive complete backups, and from the newest start to ``now``. A gap that ended
    before the window is left out; one that reaches into it counts whole (not cut at the window's
    start: a week without backups is a week, whatever the window). No backup at all: the window.
    """
    window_start = now - window
    ordered = sorted(starts)
    if not ordered:
        return window.total_seconds()
    intervals = [*itertools.pairwise(ordered), (ordered[-1], now)]
    longest = 0.0
    for begin, end in intervals:
        if end <= window_start:
            continue
        longest = max(longest, (end - begin).total_seconds())
    return longest


def rpo_exposure(rpo_seconds: float | None, max_gap_seconds: float | None) -> float | None:
    """The figure the SLA's ``rpo`` target is compared with, by the drill and by ``drills report`` alike.

    The worst data loss the evidence shows: the restored backup's age (now - its start), or the
    longest gap without a backup, whichever is larger. None when neither is known.
    """
    figures = [v for v in (rpo_seconds, max_gap_seconds) if v is not None]
    return max(figures) if figures else None


def sla_met(target: float | None, figure: float | None) -> bool | None:
    """Whether a figure is within its target; None without a target or a figure."""
    if target is None or figure is None:
        return None
    return figure <= target


def sla_misses(sla: Sla | None, rto: float | None, rpo: float | None) -> list[tuple[str, str]]:
    """``[(target, why)]`` for each target missed: ``("rto", "RTO 45.1s is 15.1s over the 30s target")``."""
    misses: list[tuple[str, str]] = []
    if sla is None:
        return misses
    for name, target, got in (("rto", sla.rto, rto), ("rpo", sla.rpo, rpo)):
        if sla_met(target, got) is False:
            assert target is not None and got is not None
            misses.append(
                (
                    name,
                    f"{name.upper()} {human_span(got)} is {human_span(got - target)} over the "
                    f"{human_span(target)} target",
                )
            )
    return misses


def human_span(seconds: float) -> str:
    """``45.1s``, ``3.3m``, ``25.0h``, ``8.0d``: figures in messages."""
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------ the drill


@dataclass
class DrillPlace:
    """Where the scratch copy goes: a host (its transport) and a database server."""

    transport: Transport
    host: str  # the inventory name of the drill host (the site's own name by default)
    db: DatabaseSettings | None
    #: the directory the scratch dir is made in
    scratch_root: str
    #: the database settings differ from the site's (the copy's wp-config gets their credentials)
    other_db_server: bool = False


@dataclass
class DrillRecord:
    """The drill's figures, as the change log keeps them (see docs/DRILLS.md)."""

    backup: str | None = None
    backup_taken: str | None = None
    backup_finished: str | None = None
    started: str = ""
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    max_gap_seconds: float | None = None
    window_days: float = 7.0
    sla: Sla | None = None
    sla_missed: list[str] = field(default_factory=list)
    failure: dict[str, str] | None = None
    files_verified: int = 0
    bytes_restored: int = 0
    tables_verified: int = 0
    tables_skipped: int = 0
    smoke: dict[str, Any] | None = None
    #: why the smoke test did not run (None: it ran, or was turned off by drill.smoke / -p smoke=false)
    smoke_skipped: str | None = None
    #: what was left of earlier drills of the site that were killed outright, removed by this one
    leftovers_removed: list[str] = field(default_factory=list)
    drill_host: str = ""
    scratch: dict[str, str | None] = field(default_factory=lambda: {"dir": None, "db": None})
    cleanup: str = "ok"
    timings: dict[str, float] = field(default_factory=dict)
    #: why each missed target was missed (goes into the step's message, not the record)
    sla_reasons: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.failure is not None or self.cleanup != "ok":
            return "failed"
        return "sla_missed" if self.sla_missed else "passed"

    def fail(self, stage: str, message: str) -> None:
        if self.failure is None:  # the first failure is the cause; later ones follow from it
            self.failure = {"stage": stage, "message": message}

    def summary(self) -> str:
        where = f"on {self.drill_host}"
        if self.failure is not None:
            return (
                f"restore drill of backup {self.backup or '?'} {where} failed at {self.failure['stage']}: "
                + (self.failure["message"])
            )
        rto = f"RTO {human_span(self.rto_seconds)}" if self.rto_seconds is not None else "RTO -"
        rpo = f"RPO {human_span(self.rpo_seconds or 0)}"
        gap = f", max gap {human_span(self.max_gap_seconds)}" if self.max_gap_seconds is not None else ""
        text = (
            f"restore drill of backup {self.backup} {where}: {self.files_verified} files and "
            f"{self.tables_verified} tables verified"
            + (f" ({self.tables_skipped} skipped)" if self.tables_skipped else "")
            + (
                f", home page {self.smoke['status']}"
                if self.smoke
                else f", smoke test skipped ({self.smoke_skipped})"
                if self.smoke_skipped
                else ", smoke test skipped"
            )
            + f"; {rto}, {rpo}{gap}"
        )
        if self.leftovers_removed:
            text += "; " + leftovers_note(self.leftovers_removed)
        if self.sla_missed:
            text += "; SLA missed: " + "; ".join(self.sla_reasons)
        return text

    def record(self) -> dict[str, Any]:
        return {
            "what": "restore_drill",
            "outcome": self.outcome,
            "backup": self.backup,
            "backup_taken": self.backup_taken,
            "backup_finished": self.backup_finished,
            "started": self.started,
            "rto_seconds": _round(self.rto_seconds),
            "rpo_seconds": _round(self.rpo_seconds),
            "max_gap_seconds": _round(self.max_gap_seconds),
            "window_days": round(self.window_days, 6),
            "sla": self.sla.record() if self.sla is not None else None,
            "sla_missed": list(self.sla_missed),
            "failure": dict(self.failure) if self.failure is not None else None,
            "files_verified": self.files_verified,
            "bytes_restored": self.bytes_restored,
            "tables_verified": self.tables_verified,
            "tables_skipped": self.tables_skipped,
            "smoke": dict(self.smoke) if self.smoke is not None else None,
            "smoke_skipped": self.smoke_skipped,
            "leftovers_removed": list(self.leftovers_removed),
            "drill_host": self.drill_host,
            "scratch": dict(self.scratch),
            "cleanup": self.cleanup,
            "timings": {stage: round(seconds, 3) for stage, seconds in self.timings.items()},
        }


def leftovers_note(removed: list[str]) -> str:
    return "removed leftovers of an earlier interrupted drill: " + "; ".join(removed)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass
class DrillResult:
    record: DrillRecord
    #: the drill was stopped (a stop request or the step's timeout), not failed on its own
    stopped: StepFailed | None = None


def run_drill(
    spec: SiteBackup,
    store: Store,
    place: DrillPlace,
    deadline: Deadline,
    *,
    backup: str | None = "latest",
    window: float = 7 * 86400,
    smoke: bool = True,
    settings: DrillSettings | None = None,
    sla: Sla | None = None,
    cms: str | None = None,
    health_marker: str | None = None,
    log: Log = lambda _m: None,
) -> DrillResult:
    """Run one drill; it never raises for a failed drill (see the record), always cleans up."""
    return _Drill(spec, store, place, deadline, backup, window, smoke, settings or DrillSettings(), sla,
                  cms, health_marker, log).run()  # fmt: skip


class _Drill:
    def __init__(
        self,
        spec: SiteBackup,
        store: Store,
        place: DrillPlace,
        deadline: Deadline,
        backup: str | None,
        window: float,
        smoke: bool,
        settings: DrillSettings,
        sla: Sla | None,
        cms: str | None,
        health_marker: str | None,
        log: Log,
    ) -> None:
        self.spec, self.store, self.place, self.deadline = spec, store, place, deadline
        self.wanted, self.window, self.smoke_on, self.settings = backup, window, smoke, settings
        self.cms, self.marker, self.log = (cms or "").lower(), health_marker, log
        self.token = secrets.token_hex(3)
        self.record = DrillRecord(sla=sla, drill_host=place.host, window_days=window / 86400)
        self.transport = place.transport
        self.scratch_dir: str | None = None  # made by us: removed in cleanup
        self.scratch_db: str | None = None  # may exist: dropped in cleanup
        self.server_group: int | None = None  # the PHP server's process group
        self.port = 0
        self.url = ""
        self.clock = 0.0

    # -- the stages ------------------------------------------------------------------

    def run(self) -> DrillResult:
        now = datetime.now(UTC)
        self.clock = time.monotonic()
        self.record.started = _iso(now)
        stopped: StepFailed | None = None
        try:
            self._stage("leftovers", self._remove_leftovers)
            manifest = self._stage("fetch", lambda: self._fetch(now))
            verified = self._stage("restore", lambda: self._restore(manifest))
            if self.smoke_on and self.settings.smoke and self.spec.docroot and manifest.docroot:
                skip = self._stage("prepare", lambda: self._prepare(manifest))
                if skip is None:
                    self._stage("smoke", self._smoke)
                    verified = time.monotonic() - self.clock  # verified and serving
                else:
                    self.record.smoke_skipped = skip
                    self.log(f"smoke: skipped: {skip}")
            else:
                self.log("smoke test skipped (drill.smoke / -p smoke=false, or no docroot in the backup)")
            self.record.rto_seconds = verified
        except _Failed:
            pass  # in the record already
        except (StepCancelled, StepTimeout) as exc:
            stopped = exc
            text = str(exc)
            self.record.fail(self._stage_of(exc), text if text.startswith("stopped") else f"stopped: {text}")
        except MaintainerError as exc:  # a store that cannot be read, a lost connection
            self.record.fail(self._stage_of(exc), str(exc))
        finally:
            started = time.monotonic()
            self._cleanup()
            self.record.timings["cleanup"] = time.monotonic() - started
        if self.record.failure is None:
            misses = sla_misses(
                self.record.sla,
                self.record.rto_seconds,
                rpo_exposure(self.record.rpo_seconds, self.record.max_gap_seconds),
            )
            self.record.sla_missed = [name for name, _ in misses]
            self.record.sla_reasons = [why for _, why in misses]
        else:
            self.record.rto_seconds = None  # it never was verified and serving
        return DrillResult(self.record, stopped)

    _current = "fetch"

    def _stage_of(self, exc: MaintainerError) -> str:
        """The record's stage for an error raised in the stage under way."""
        part = exc.outputs.get("part") if isinstance(exc, StepFailed) else None
        if self._current == "restore":
            return str(part) if part in ("files", "database") else "files"
        return {"prepare": "smoke", "leftovers": "fetch"}.get(self._current, self._current)

    def _stage(self, name: str, work: Callable[[], Any]) -> Any:
        self._current = name
        started = time.monotonic()
        try:
            return work()
        finally:
            self.record.timings[name] = time.monotonic() - started

    # -- leftovers of a drill killed outright ---------------------------------------

    @property
    def _dir_prefix(self) -> str:
        """``<scratch root>/.maintainer-drill-<site>-``: this site's scratch dirs, and no other site's."""
        return posixpath.join(self.place.scratch_root, f"{SCRATCH_PREFIX}{_name_part(self.spec.site)}-")

    def _remove_leftovers(self) -> None:
        """Remove what a drill of this site that was killed outright (SIGKILL, OOM) left behind.

        Safe: the drill holds the site's lock, so no other drill of this site runs; scratch dirs
        carry the site's name, and scratch databases the site's database name.
        """
        removed: list[str] = []
        prefix = self._dir_prefix
        if self.spec.docroot is not None:
            found = self.transport.run(
                ["find", self.place.scratch_root, "-mindepth", "1", "-maxdepth", "1", "-type", "d",
                 "-name", posixpath.basename(prefix) + "??????"],
                timeout=60, cancel=self.deadline.cancel,
            )  # fmt: skip
            dirs = [d for d in found.stdout.splitlines() if _SCRATCH_TOKEN.fullmatch(d.removeprefix(prefix))]
            groups = self._leftover_servers(prefix)
            for group in groups:
                still_there = self._stop_server(group)
                if not still_there:
                    removed.append(f"PHP server (process group {group}) killed")
            for path in dirs:
                if self._run(f"rm -rf -- {shlex.quote(path)}; test ! -e {shlex.quote(path)}"):
                    removed.append(f"scratch dir {path} removed")
                else:
                    self.log(f"could not remove the leftover scratch dir {path} on {self.transport.label}")
        db = self.place.db
        if self.spec.db is not None and db is not None:
            head = scratch_db_name(self.spec.db.name, "")
            with db_client(self.transport, db, self.deadline.cancel, timeout=60) as client:
                for name in _scratch_databases(client, head):
                    client.drop_database(name)
                    if client.database_exists(name):
                        self.log(f"could not drop the leftover scratch database '{name}' on {db.where()}")
                    else:
                        removed.append(f"scratch database '{name}' dropped")
        if removed:
            self.record.leftovers_removed = removed
            self.log(leftovers_note(removed))

    def _leftover_servers(self, prefix: str) -> list[int]:
        """Process groups of PHP servers that serve one of this site's scratch dirs."""
        # -ww: a COLUMNS=80 in the environment would cut the command lines (and hide the path)
        argv = ["ps", "-ww", "-eo", "pgid=,args="]
        listed = self.transport.run(argv, timeout=60, cancel=self.deadline.cancel)
        groups: set[int] = set()
        for line in listed.stdout.splitlines():
            group, _, args = line.strip().partition(" ")
            if prefix in args and "php" in args and group.isdigit() and int(group) > 1:
                groups.add(int(group))
        return sorted(groups)

    # -- fetch and restore ----------------------------------------------------------

    def _fetch(self, now: datetime) -> Manifest:
        try:
            manifest = find_backup(self.store, self.wanted)
        except BackupDamaged as exc:
            raise _Failed.at(self.record, "fetch", str(exc)) from None
        record = self.record
        record.backup = manifest.id
        record.backup_taken = manifest.started
        record.backup_finished = manifest.finished
        # the recovery point is when the backup started: the dump holds the data of that moment
        taken = datetime.fromisoformat(manifest.started)
        record.rpo_seconds = max(0.0, (now - taken).total_seconds())
        starts = [time_of(i) for i in backup_ids(self.store)]
        record.max_gap_seconds = max_gap(starts, now, timedelta(seconds=self.window))
        self.log(f"drilling backup {manifest.id} (taken {manifest.started}) on {self.place.host}")
        return manifest

    def _restore(self, manifest: Manifest) -> float:
        """Files into the scratch dir, the dump into the scratch database; seconds since the start."""
        place, record = self.place, self.record
        files = bool(manifest.docroot) and self.spec.docroot is not None
        database = bool(manifest.databases) and place.db is not None
        if manifest.databases and place.db is None:
            raise _Failed.at(
                record, "database",
                f"backup {manifest.id} holds a database dump but the site has no 'db' settings to "
                "restore it with",
            )  # fmt: skip
        if files:
            self.scratch_dir = self._dir_prefix + self.token
            record.scratch["dir"] = self.scratch_dir
            made = self.transport.run(
                ["mkdir", "-m", "700", "--", self.scratch_dir], timeout=60, cancel=self.deadline.cancel
            )
            if made.rc != 0:
                self.scratch_dir = None  # not ours
                raise _Failed.at(
                    record, "files",
                    f"cannot make the scratch dir {record.scratch['dir']} on {self.transport.label}: "
                    f"{made.stderr.strip() or made.stdout.strip()}. "
                    "Set drill.scratch_dir to a writable directory.",
                )  # fmt: skip
        if database:
            assert place.db is not None
            self.scratch_db = scratch_db_name(manifest.databases[0].name, self.token)
            record.scratch["db"] = self.scratch_db
        if not files and not database:
            raise _Failed.at(record, "fetch", f"backup {manifest.id} holds neither files nor a database")
        spec = replace(self.spec, db=place.db)
        try:
            result = restore_backup(
                self.transport, spec, self.store, manifest, self.deadline,
                to=self._site_dir if files else None, files=files, database=database,
                db_name=self.scratch_db, log=self.log,
            )  # fmt: skip
        except (StepCancelled, StepTimeout):
            self._count({}, manifest)
            raise
        except BackupDamaged as exc:
            self._count(exc.outputs, manifest)
            raise _Failed.at(record, _damage_stage(exc), _damage_message(exc, manifest)) from None
        except StepFailed as exc:
            self._count(exc.outputs, manifest)
            part = str(exc.outputs.get("part") or ("database" if database and not files else "files"))
            message = str(exc)
            if part == "database" and self.scratch_db and _denied(message):
                message += ". " + self._grant_hint(manifest.databases[0].name)
            raise _Failed.at(record, part, message) from None
        self._count(result.record(), manifest)
        return time.monotonic() - self.clock

    def _grant_hint(self, source: str) -> str:
        db = self.place.db
        assert db is not None
        pattern = scratch_db_name(source, "").replace("_", "\\_") + "%"
        return (
            f"The drill needs its database user '{db.user}' to create and drop scratch databases "
            f"'{scratch_db_name(source, '')}*' on {db.where()}: "
            f"GRANT ALL ON `{pattern}`.* TO '{db.user}'@... "
            "(see docs/DRILLS.md, 'Where the scratch target goes')"
        )

    def _count(self, done: dict[str, Any], manifest: Manifest) -> None:
        record = self.record
        record.files_verified = int(done.get("files") or 0)
        record.bytes_restored = int(done.get("bytes") or 0)
        if done.get("database"):
            dump = manifest.databases[0]
            record.bytes_restored += dump.raw_size
            record.tables_skipped = sum(1 for t in dump.tables.values() if t.get("stable") is False)
            mismatched = len(done.get("table_mismatches") or [])
            record.tables_verified = max(0, int(done.get("tables") or 0) - mismatched)

    @property
    def _site_dir(self) -> str:
        """Where the backed-up tree is restored."""
        assert self.scratch_dir is not None
        return posixpath.join(self.scratch_dir, "site")

    @property
    def _web_dir(self) -> str:
        """The restored docroot: served, and where the CMS's config is (below _site_dir with backup.root)."""
        sub = self.spec.web_subdir()
        return posixpath.join(self._site_dir, sub) if sub else self._site_dir

    # -- pointing the copy at the scratch database -------------------------------------

    def _prepare(self, manifest: Manifest) -> str | None:
        """Point the scratch copy at the scratch database (and its own URL); why not to serve it, or None.

        The copy must never be served against the live database: a request would read and write
        live data. WordPress, Drupal and Joomla are rewritten here; any other site with a database
        must say how (drill.config_rewrite / drill.smoke_env), or its smoke test is skipped.
        """
        self.port = self._free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        declared = bool(self.settings.config_rewrite or self.settings.smoke_env)
        has_db = self.spec.db is not None
        if has_db and self.scratch_db is None:
            # no dump restored: the copy's config can only name the live database
            return "the backup holds no database, so the copy's config would use the live database"
        rewrite = {"wordpress": self._wordpress, "drupal": self._drupal, "joomla": self._joomla}.get(self.cms)
        if rewrite is not None and has_db:
            rewrite()
        elif has_db and not declared:
            return (
                f"the copy's config would use the live database (cms '{self.cms or 'unset'}': the drill "
                "cannot rewrite it by itself); set drill.config_rewrite (or drill.smoke_env) in the site's "
                "inventory vars to point it at the scratch database {db}, see docs/DRILLS.md"
            )
        for index, edit in enumerate(self.settings.config_rewrite):
            self._rewrite(index, edit)
        return None

    def _values(self) -> dict[str, str]:
        """What the placeholders stand for: the scratch database (on the drill's server), the copy's URL."""
        db = self.place.db
        values = {"{db}": self.scratch_db or "", "{url}": self.url}
        if db is not None:
            values.update({
                "{db_host}": db.host, "{db_port}": str(db.port or ""), "{db_user}": db.user,
                "{db_password}": db.password or "",
            })  # fmt: skip
        return values

    def _fill(self, text: str) -> str:
        for token, value in self._values().items():
            text = text.replace(token, value)
        return text

    def _read_config(self, relative: str) -> tuple[str, str] | None:
        path = posixpath.join(self._web_dir, relative)
        data = self.transport.read_file(path)
        return None if data is None else (path, data.decode("utf-8", "surrogateescape"))

    def _write_config(self, path: str, text: str) -> None:
        self.transport.write_file(path, text.encode("utf-8", "surrogateescape"), mode=0o600)

    def _rewrite(self, index: int, edit: ConfigRewrite) -> None:
        found = self._read_config(edit.file)
        key = f"drill.config_rewrite[{index}]"
        if found is None:
            raise _Failed.at(self.record, "smoke", f"{key}: the restored copy has no file '{edit.file}'")
        path, text = found
        if edit.search not in text:
            raise _Failed.at(
                self.record, "smoke", f"{key}: '{edit.search}' is not in {edit.file} of the restored copy, "
                "so the copy would keep its live settings; fix the search text",
            )  # fmt: skip
        self._write_config(path, text.replace(edit.search, self._fill(edit.replace)))

    def _wordpress(self) -> None:
        """wp-config.php: DB_NAME (and credentials), WP_HOME/WP_SITEURL; the options siteurl/home."""
        found = self._read_config("wp-config.php")
        if found is None:
            raise _Failed.at(
                self.record, "smoke", f"the restored copy has no wp-config.php (in {self._web_dir})"
            )
        path, config = found
        prefix_match = re.search(r"""\$table_prefix\s*=\s*(['"])([A-Za-z0-9_]*)\1""", config)
        prefix = prefix_match.group(2) if prefix_match else "wp_"
        assert self.scratch_db is not None and self.place.db is not None
        values = {"DB_NAME": self.scratch_db}
        if self.place.other_db_server:
            values.update(_wp_credentials(self.place.db))
        for name, value in values.items():
            config, found_it = _set_define(config, name, value)
            if not found_it:
                raise _Failed.at(
                    self.record, "smoke", f"the restored wp-config.php does not define {name} in a form "
                    f"the drill can point at the scratch database (define('{name}', '...');)",
                )  # fmt: skip
        for name in ("WP_HOME", "WP_SITEURL"):  # else every page redirects to the live site
            config, _ = _set_define(config, name, self.url)
        self._write_config(path, config)
        options = f"{prefix}options"
        with db_client(self.transport, self.place.db, self.deadline.cancel, timeout=60) as client:
            assert isinstance(client, MySQLClient)
            client.query(
                f"UPDATE `{options}` SET option_value = '{self.url}'"
                " WHERE option_name IN ('siteurl', 'home')",
                f"pointing siteurl/home of the scratch copy at {self.url}",
                database=self.scratch_db,
            )

    def _drupal(self) -> None:
        """sites/default/settings.php (and settings.local.php): each connection's 'database' (credentials)."""
        assert self.scratch_db is not None and self.place.db is not None
        keys = {"database": self.scratch_db}
        if self.place.other_db_server:
            db = self.place.db
            keys.update({"username": db.user, "password": db.password or "", "host": db.host})
            if db.port is not None:
                keys["port"] = str(db.port)
        rewritten = False
        for relative in ("sites/default/settings.php", "sites/default/settings.local.php"):
            found = self._read_config(relative)
            if found is None:
                continue
            path, text = found
            count = 0
            for key, value in keys.items():
                text, n = _set_array_key(text, key, value)
                count += n if key == "database" else 0
            if count:
                self._write_config(path, text)
                rewritten = True
        if not rewritten:
            raise _Failed.at(
                self.record, "smoke", "the restored sites/default/settings.php does not set the database "
                "as 'database' => '...' (or $databases['default']['default']['database'] = '...'), so the "
                "drill cannot point the copy at the scratch database; set drill.config_rewrite",
            )  # fmt: skip

    def _joomla(self) -> None:
        """configuration.php: ``public $db`` (and credentials); ``$live_site`` emptied (no redirects)."""
        assert self.scratch_db is not None and self.place.db is not None
        found = self._read_config("configuration.php")
        if found is None:
            raise _Failed.at(self.record, "smoke", "the restored copy has no configuration.php")
        path, text = found
        fields = {"db": self.scratch_db, "live_site": ""}
        if self.place.other_db_server:
            db = self.place.db
            host = f"{db.host}:{db.port}" if db.port is not None else db.host
            fields.update({"user": db.user, "password": db.password or "", "host": host})
        for name, value in fields.items():
            text, n = _set_property(text, name, value)
            if not n and name == "db":
                raise _Failed.at(
                    self.record, "smoke", "the restored configuration.php does not set public $db = '...';, "
                    "so the drill cannot point the copy at the scratch database; set drill.config_rewrite",
                )  # fmt: skip
        self._write_config(path, text)

    def _free_port(self) -> int:
        result = self.transport.run(["php", "-r", _FREE_PORT], timeout=60, cancel=self.deadline.cancel)
        if result.rc != 0 or not result.stdout.strip().isdigit():
            raise _Failed.at(
                self.record, "smoke",
                f"cannot run php on {self.transport.label} to serve the restored copy (rc {result.rc}: "
                f"{(result.stderr or result.stdout).strip()[-300:] or 'no output'}). Install php-cli there, "
                "or set drill.smoke: false.",
            )  # fmt: skip
        return int(result.stdout.strip())

    def _smoke(self) -> None:
        assert self.scratch_dir is not None
        started = time.monotonic()
        log_file = posixpath.join(self.scratch_dir, "php-server.log")
        pid_file = shlex.quote(posixpath.join(self.scratch_dir, "server.pid"))
        env = " ".join(shlex.quote(f"{k}={self._fill(v)}") for k, v in self.settings.smoke_env.items())
        # its own session (so its process group is killed as one), under a timeout that ends it
        # even if the drill is killed outright; on a line of its own ('a && b &' backgrounds both)
        script = (
            f"cd {shlex.quote(self.scratch_dir)} || exit 1\n"
            f'setsid bash -c \'echo $$ > "$2"; dir=$1; shift 3; exec env "$@" timeout -k 5 {SERVER_LIFETIME} '
            f'php -S 127.0.0.1:"$0" -t "$dir"\' {self.port} {shlex.quote(self._web_dir)} {pid_file} - {env}'
            f" </dev/null >{shlex.quote(log_file)} 2>&1 &\n"
            f"for _ in $(seq 500); do [ -s {pid_file} ] && break; sleep 0.01; done; cat {pid_file}"
        )
        started_server = self.transport.run(script, timeout=60, cancel=self.deadline.cancel)
        pid = started_server.stdout.strip()
        if not pid.isdigit():
            raise _Failed.at(
                self.record, "smoke", f"the PHP server did not start on {self.transport.label}: "
                f"{(started_server.stderr or started_server.stdout).strip()[-300:] or 'no output'}",
            )  # fmt: skip
        self.server_group = int(pid)
        url = self.url + self.settings.smoke_path
        fetched = self.transport.run(
            [
                "php",
                "-r",
                _FETCH,
                "--",
                url,
                str(self.port),
                str(self.settings.smoke_timeout),
                str(BODY_LIMIT),
            ],
            timeout=self.settings.smoke_timeout * 2 + 30,
            cancel=self.deadline.cancel,
        )
        seconds = time.monotonic() - started
        head, _, body = fetched.stdout.partition("\n")
        status = int(head) if head.strip().isdigit() else 0
        self.record.smoke = {"url": url, "status": status, "seconds": round(seconds, 3)}
        if fetched.cancelled:
            raise StepCancelled("stopped: the run was interrupted during the smoke test")
        if fetched.rc != 0 or status == 0:
            self.record.smoke = None
            raise _Failed.at(
                self.record, "smoke", f"the restored site did not answer on {url} within "
                f"{self.settings.smoke_timeout:g}s: {(fetched.stderr or head).strip()[-300:]}"
                + self._server_log_hint(log_file),
            )  # fmt: skip
        problems = []
        if status != 200:
            problems.append(f"{url} answered HTTP {status}, not 200")
            if 300 <= status < 400 and "Location:" in fetched.stderr:
                problems[-1] += f" ({fetched.stderr.strip()[-200:]})"
        fatal = FATAL.search(body)
        if fatal:
            problems.append(f"the page shows '{_flat(fatal.group(0))}'")
        elif status >= 500:
            problems[-1] += self._server_log_hint(log_file)
        if self.marker and self.marker not in body:
            problems.append(f"the health marker '{self.marker}' is not on the page")
        if problems:
            raise _Failed.at(self.record, "smoke", "; ".join(problems))
        self.log(f"the restored copy answers {status} on {url} ({seconds:.2f}s)")

    def _server_log_hint(self, log_file: str) -> str:
        data = self.transport.read_file(log_file) or b""
        fatal = FATAL.findall(data.decode("utf-8", "replace"))
        return f"; the PHP server logged '{_flat(fatal[-1])}'" if fatal else ""

    # -- cleanup -------------------------------------------------------------------

    def _cleanup(self) -> None:
        """Remove everything the drill made; check each removal; name what is left."""
        left: list[str] = []
        if self.server_group is not None:
            left += self._stop_server(self.server_group)
        if self.scratch_dir is not None:
            gone = self._run(
                f"rm -rf -- {shlex.quote(self.scratch_dir)}; test ! -e {shlex.quote(self.scratch_dir)}"
            )
            if not gone:
                left.append(f"the scratch dir {self.scratch_dir} on {self.transport.label} (rm -rf it)")
        if self.scratch_db is not None and self.place.db is not None:
            try:
                with db_client(self.transport, self.place.db, None, timeout=CLEANUP_TIMEOUT) as client:
                    # only what exists: a database the drill could not create (no CREATE grant) was
                    # never there, and dropping it would fail on the same missing grant
                    if client.database_exists(self.scratch_db):
                        client.drop_database(self.scratch_db)
                        if client.database_exists(self.scratch_db):
                            raise StepFailed("it still exists after DROP DATABASE")
            except MaintainerError as exc:
                left.append(f"the scratch database '{self.scratch_db}' on {self.place.db.where()} "
                            f"(drop it: {exc})")  # fmt: skip
        if left:
            self.record.cleanup = "failed"
            message = "SCRATCH LEFT BEHIND: " + "; ".join(left)
            self.log(message)
            if self.record.failure is None:
                self.record.fail("cleanup", message)
            else:
                self.record.failure["message"] += f" (and cleanup failed: {message})"

    def _stop_server(self, group: int) -> list[str]:
        # TERM, then KILL, to the whole group; then make sure nothing of it is left. A zombie of the
        # group (its 'timeout', reparented to an init that reaps late) is dead: 'kill -0' would count it
        alive = (
            f"ps -eo pgid=,stat= | awk -v g={group} "
            "'$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'"
        )
        script = (
            f"kill -TERM -- -{group} 2>/dev/null;"
            f" for _ in $(seq 100); do {alive} || exit 0; sleep 0.02; done;"
            f" kill -KILL -- -{group} 2>/dev/null; sleep 0.2; ! {alive}"
        )
        if self._run(script):
            return []
        return [f"the PHP server (process group {group}) on {self.transport.label} (kill -- -{group})"]

    def _run(self, script: str) -> bool:
        try:
            return self.transport.run(script, timeout=CLEANUP_TIMEOUT).rc == 0
        except MaintainerError as exc:
            self.log(f"cleanup on {self.transport.label}: {exc}")
            return False


class _Failed(Exception):
    """A drill failure already put into the record (stage and message)."""

    @classmethod
    def at(cls, record: DrillRecord, stage: str, message: str) -> _Failed:
        record.fail(stage, message)
        return cls(message)


def scratch_db_name(source: str, token: str) -> str:
    """``<db>_drill_<token>``, the source name shortened to fit the engines' name limit."""
    suffix = f"_drill_{token}"
    head = source.encode("utf-8")[: DB_NAME_MAX - len(suffix)].decode("utf-8", "ignore")
    return head + suffix


def _damage_stage(exc: BackupDamaged) -> str:
    """fetch: an object is missing; files: a pack is damaged; database: the dump or the tables."""
    damaged = [str(d) for d in _items(exc.outputs.get("damaged"))]
    if "is missing" in str(exc) and (not damaged or all("missing from the store" in d for d in damaged)):
        return "fetch"
    if damaged:
        return "files"
    return "database" if _items(exc.outputs.get("table_mismatches")) or "dump" in str(exc) else "files"


def _items(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _damage_message(exc: BackupDamaged, manifest: Manifest) -> str:
    damaged = [str(d) for d in _items(exc.outputs.get("damaged"))]
    mismatches = [str(m) for m in _items(exc.outputs.get("table_mismatches"))]
    if not damaged and not mismatches:
        return str(exc)
    parts = []
    if damaged:
        packs = sorted({m.group(1) for d in damaged for m in [_PACK.search(d)] if m})
        where = f" (pack {', '.join(packs)})" if packs else ""
        parts.append(f"{len(damaged)} file(s) of backup {manifest.id} failed verification{where}: "
                     f"{_grouped(damaged)}")  # fmt: skip
    if mismatches:
        shown = "; ".join(mismatches[:10]) + (
            f" (and {len(mismatches) - 10} more)" if len(mismatches) > 10 else ""
        )
        parts.append(f"{len(mismatches)} table(s) differ from the backup's figures: {shown}")
    return ". ".join(parts)


def _grouped(damaged: list[str], limit: int = 10) -> str:
    """``path: why`` lines grouped by why (a missing pack is named once, not once per file)."""
    by_reason: dict[str, list[str]] = {}
    for line in damaged:
        cut = line.rfind(": pack ")
        path, reason = (line[:cut], line[cut + 2 :]) if cut >= 0 else (line, "")
        by_reason.setdefault(reason, []).append(path)
    shown = []
    for reason, paths in itertools.islice(by_reason.items(), limit):
        if not reason:
            shown.extend(paths[:limit])
            continue
        names = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        shown.append(f"{reason} ({len(paths)} file{'s' if len(paths) != 1 else ''}: {names})")
    more = len(by_reason) - limit
    return "; ".join(shown[: limit * 2]) + (f" (and {more} more problems)" if more > 0 else "")


_PACK = re.compile(r"pack (\S+?)(?: |\)|$)")


#: a PHP string literal in either quoting style
_PHP_LITERAL = r"'(?:[^'\\]|\\.)*'" + "|" + r'"(?:[^"\\]|\\.)*"'
#: the token at the end of a scratch dir or database name
_SCRATCH_TOKEN = re.compile(r"[0-9a-f]{6}")


def _name_part(site: str) -> str:
    """The site's name as it goes into a scratch dir's name (safe in a path and a glob)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", site)[:60] or "site"


def _scratch_databases(client: Any, head: str) -> list[str]:
    """Databases named ``<head><6 hex>``: this site's scratch databases (``head`` is ``<db>_drill_``)."""
    from .database import mysql_literal, pg_literal

    like = head.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    if isinstance(client, MySQLClient):
        rows = client.query(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA"
            f" WHERE SCHEMA_NAME LIKE {mysql_literal(like)}",
            "listing scratch databases",
        )
    else:
        rows = client.query(
            f"SELECT datname FROM pg_database WHERE datname LIKE {pg_literal(like)}",
            "listing scratch databases",
            database=client.MAINTENANCE_DB,
        )
    names = [row[0] for row in rows if row]
    return [n for n in names if n.startswith(head) and _SCRATCH_TOKEN.fullmatch(n[len(head) :])]


def _denied(message: str) -> bool:
    lowered = message.lower()
    return "denied" in lowered or "permission" in lowered


def _set_array_key(config: str, key: str, value: str) -> tuple[str, int]:
    """Drupal's settings: ``'KEY' => '...'`` and ``[...]['KEY'] = '...'`` set to ``value``; how many."""
    literal = lambda m: f"{m.group(1)}{_php_string(value)}"  # noqa: E731
    quoted = r"""['"]""" + re.escape(key) + r"""['"]"""
    value_pattern = _PHP_LITERAL + (r"|\d+" if key == "port" else "")
    config, a = re.subn(r"(" + quoted + r"\s*=>\s*)(?:" + value_pattern + ")", literal, config)
    config, b = re.subn(
        r"(\$databases(?:\s*\[[^\]]*\])*\s*\[\s*" + quoted + r"\s*\]\s*=\s*)(?:" + value_pattern + ")",
        literal,
        config,
    )
    return config, a + b


def _set_property(config: str, name: str, value: str) -> tuple[str, int]:
    """Joomla's configuration.php: ``public $NAME = '...';`` (or ``var``) set to ``value``."""
    pattern = r"((?:public|var)\s+\$" + re.escape(name) + r"\s*=\s*)(?:" + _PHP_LITERAL + r")(\s*;)"
    return re.subn(pattern, lambda m: f"{m.group(1)}{_php_string(value)}{m.group(2)}", config)


def _set_define(config: str, name: str, value: str) -> tuple[str, bool]:
    """wp-config.php with ``define('NAME', '...')`` set to ``value``; whether it was there."""
    pattern = re.compile(
        r"(define\(\s*['\"]" + name + r"['\"]\s*,\s*)('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")(\s*\))"
    )
    new, count = pattern.subn(lambda m: f"{m.group(1)}{_php_string(value)}{m.group(3)}", config, count=1)
    return new, bool(count)


def _wp_credentials(db: DatabaseSettings) -> dict[str, str]:
    host = db.host
    if db.port is not None:
        host = f"{host}:{db.port}"
    elif db.socket:
        host = f"{host}:{db.socket}"
    return {"DB_USER": db.user, "DB_PASSWORD": db.password or "", "DB_HOST": host}


def _php_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _flat(text: str) -> str:
    return " ".join(text.split())[:300]


#: prints a free TCP port of 127.0.0.1
_FREE_PORT = (
    '$s = stream_socket_server("tcp://127.0.0.1:0", $e, $m); if (!$s) { fwrite(STDERR, $m); exit(1); }'
    ' $n = stream_socket_get_name($s, false); echo substr($n, strrpos($n, ":") + 1);'
)

#: waits for the port, fetches the URL (no redirects: they would lead to the live site), prints the
#: status on the first line and the body after it; a Location header goes to stderr
_FETCH = r"""
[$url, $port, $wait, $limit] = array_slice($argv, 1);
$until = microtime(true) + (float) $wait;
while (true) {
    $c = @fsockopen('127.0.0.1', (int) $port, $errno, $errstr, 0.5);
    if ($c) { fclose($c); break; }
    if (microtime(true) > $until) { fwrite(STDERR, "nothing listens on port $port: $errstr"); exit(3); }
    usleep(20000);
}
$ctx = stream_context_create(['http' => ['ignore_errors' => true, 'follow_location' => 0,
    'timeout' => max(1.0, $until - microtime(true)), 'header' => "Connection: close\r\n"]]);
$body = @file_get_contents($url, false, $ctx, 0, (int) $limit);
if ($body === false || empty($http_response_header)) {
    $e = error_get_last(); fwrite(STDERR, $e ? $e['message'] : 'no answer'); exit(4);
}
preg_match('{^HTTP/\S+\s+(\d{3})}', $http_response_header[0], $m);
foreach ($http_response_header as $h) { if (stripos($h, 'Location:') === 0) { fwrite(STDERR, $h); } }
echo ($m[1] ?? '0'), "\n", $body;
"""
