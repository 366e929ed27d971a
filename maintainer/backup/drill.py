"""A restore drill: prove that a backup restores, and measure how long it takes (RTO) and how old it is (RPO).

The drill restores one backup (the latest, or a given id) into a scratch target that never touches
the live site: a directory ``<drill.scratch_dir or the docroot's parent>/.maintainer-drill-<token>``
and a database ``<db>_drill_<token>`` on the site's database server (or, with ``drill_host``, both
on that host and its database server). ``restore_backup`` writes the files and imports the dump;
as it writes, it checks every file against its SHA-256 in the manifest and afterwards every
table's row count and ``CHECKSUM TABLE`` against the figures recorded at backup time (tables
written to during the backup are skipped and counted). Then the restored docroot is served on a
free port of 127.0.0.1 on the drill host by PHP's built-in server (WordPress: its scratch copy's
wp-config.php and ``siteurl``/``home`` point at the scratch database and port) and its home page
must answer 200, show the site's ``health_marker`` and no PHP fatal error.

Whatever happens, including a stop request, the scratch target is removed in ``finally``: the PHP
server by its process group (and, should the controller die, by the ``timeout`` it runs under),
the directory, the database; each removal is checked, and anything left behind is named.

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
from .manifest import Manifest, backup_ids, find_backup, load_manifest, time_of
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


def drill_database(site: Site, host: Site | None, spec: SiteBackup) -> DatabaseSettings | None:
    """Where the scratch database goes: the drill host's ``db`` server if it has one, else the site's."""
    if host is not None and isinstance(host.vars.get("db"), dict):
        from .config import _parse

        return _parse(host.name, "db", DatabaseSettings, host.vars["db"])
    return spec.db


# ------------------------------------------------------------------ figures


def max_gap(starts: list[datetime], newest_finished: datetime, now: datetime, window: timedelta) -> float:
    """The longest time within ``window`` before ``now`` without a newer recovery point, in seconds.

    Gaps run between the start times of consecutive complete backups (each one's point in
    time), and from the newest backup's finish to ``now``; each is clipped to the window. A
    backup older than the window only anchors the first gap.
    """
    window_start = now - window
    ordered = sorted(starts)
    intervals = [*itertools.pairwise(ordered), (newest_finished, now)]
    longest = 0.0
    for begin, end in intervals:
        if end <= window_start:
            continue
        longest = max(longest, (end - max(begin, window_start)).total_seconds())
    return longest


def sla_misses(sla: Sla | None, rto: float | None, rpo: float | None) -> list[tuple[str, str]]:
    """``[(target, why)]`` for each target missed: ``("rto", "RTO 45.1s is 15.1s over the 30s target")``."""
    misses: list[tuple[str, str]] = []
    if sla is None:
        return misses
    for name, target, got in (("rto", sla.rto, rto), ("rpo", sla.rpo, rpo)):
        if target is not None and got is not None and got > target:
            misses.append(
                (
                    name,
                    f"{name.upper()} {_span(got)} is {_span(got - target)} over the {_span(target)} target",
                )
            )
    return misses


def _span(seconds: float) -> str:
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
        rto = f"RTO {_span(self.rto_seconds)}" if self.rto_seconds is not None else "RTO -"
        rpo = f"RPO {_span(self.rpo_seconds or 0)}"
        gap = f", max gap {_span(self.max_gap_seconds)}" if self.max_gap_seconds is not None else ""
        text = (
            f"restore drill of backup {self.backup} {where}: {self.files_verified} files and "
            f"{self.tables_verified} tables verified"
            + (f" ({self.tables_skipped} skipped)" if self.tables_skipped else "")
            + (f", home page {self.smoke['status']}" if self.smoke else ", smoke test skipped")
            + f"; {rto}, {rpo}{gap}"
        )
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
            "drill_host": self.drill_host,
            "scratch": dict(self.scratch),
            "cleanup": self.cleanup,
            "timings": {stage: round(seconds, 3) for stage, seconds in self.timings.items()},
        }


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
            manifest = self._stage("fetch", lambda: self._fetch(now))
            verified = self._stage("restore", lambda: self._restore(manifest))
            if self.smoke_on and self.settings.smoke and self.spec.docroot and manifest.docroot:
                self._stage("prepare", lambda: self._prepare(manifest))
                self._stage("smoke", self._smoke)
                verified = time.monotonic() - self.clock  # verified and serving
            else:
                self.log("smoke test skipped (drill.smoke / -p smoke=false, or no docroot in the backup)")
            self.record.rto_seconds = verified
        except _Failed:
            pass  # in the record already
        except (StepCancelled, StepTimeout) as exc:
            stopped = exc
            self.record.fail(self._stage_of(exc), f"stopped: {exc}")
        except MaintainerError as exc:  # a store that cannot be read, a lost connection
            self.record.fail(self._stage_of(exc), str(exc))
        finally:
            started = time.monotonic()
            self._cleanup()
            self.record.timings["cleanup"] = time.monotonic() - started
        if self.record.failure is None:
            rpo = self.record.max_gap_seconds
            misses = sla_misses(
                self.record.sla, self.record.rto_seconds, self.record.rpo_seconds if rpo is None else rpo
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
        return {"prepare": "smoke"}.get(self._current, self._current)

    def _stage(self, name: str, work: Callable[[], Any]) -> Any:
        self._current = name
        started = time.monotonic()
        try:
            return work()
        finally:
            self.record.timings[name] = time.monotonic() - started

    def _fetch(self, now: datetime) -> Manifest:
        try:
            manifest = find_backup(self.store, self.wanted)
        except BackupDamaged as exc:
            raise _Failed.at(self.record, "fetch", str(exc)) from None
        record = self.record
        record.backup = manifest.id
        record.backup_taken = manifest.started
        record.backup_finished = manifest.finished
        finished = datetime.fromisoformat(manifest.finished)
        record.rpo_seconds = max(0.0, (now - finished).total_seconds())
        ids = backup_ids(self.store)
        newest_finished = finished
        if ids and ids[-1] != manifest.id:
            newest_finished = datetime.fromisoformat(load_manifest(self.store, ids[-1]).finished)
        record.max_gap_seconds = max_gap(
            [time_of(i) for i in ids], newest_finished, now, timedelta(seconds=self.window)
        )
        self.log(f"drilling backup {manifest.id} (finished {manifest.finished}) on {self.place.host}")
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
            self.scratch_dir = posixpath.join(place.scratch_root, SCRATCH_PREFIX + self.token)
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
            raise _Failed.at(record, part, str(exc)) from None
        self._count(result.record(), manifest)
        return time.monotonic() - self.clock

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
        assert self.scratch_dir is not None
        return posixpath.join(self.scratch_dir, "site")

    def _prepare(self, manifest: Manifest) -> None:
        """WordPress: the scratch copy's wp-config.php and siteurl/home point at the scratch target."""
        self.port = self._free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if self.cms != "wordpress":
            return
        path = posixpath.join(self._site_dir, "wp-config.php")
        text = self.transport.read_file(path)
        if text is None:
            raise _Failed.at(self.record, "smoke", f"the restored copy has no wp-config.php ({path})")
        config = text.decode("utf-8", "surrogateescape")
        prefix_match = re.search(r"""\$table_prefix\s*=\s*(['"])([A-Za-z0-9_]*)\1""", config)
        prefix = prefix_match.group(2) if prefix_match else "wp_"
        if self.scratch_db is not None:
            values = {"DB_NAME": self.scratch_db}
            if self.place.other_db_server and self.place.db is not None:
                values.update(_wp_credentials(self.place.db))
            for name, value in values.items():
                config, found = _set_define(config, name, value)
                if not found:
                    raise _Failed.at(
                        self.record, "smoke", f"the restored wp-config.php does not define {name} in a form "
                        f"the drill can point at the scratch database (define('{name}', '...');)",
                    )  # fmt: skip
            self.transport.write_file(path, config.encode("utf-8", "surrogateescape"), mode=0o600)
            assert self.place.db is not None
            options = f"{prefix}options"
            with db_client(self.transport, self.place.db, self.deadline.cancel, timeout=60) as client:
                assert isinstance(client, MySQLClient)
                client.query(
                    f"UPDATE `{options}` SET option_value = '{self.url}'"
                    " WHERE option_name IN ('siteurl', 'home')",
                    f"pointing siteurl/home of the scratch copy at {self.url}",
                    database=self.scratch_db,
                )

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
        # its own session (so its process group is killed as one), under a timeout that ends it
        # even if the drill is killed outright; on a line of its own ('a && b &' backgrounds both)
        script = (
            f"cd {shlex.quote(self.scratch_dir)} || exit 1\n"
            f'setsid bash -c \'echo $$ > "$2"; exec timeout -k 5 {SERVER_LIFETIME} '
            f'php -S 127.0.0.1:"$0" -t "$1"\' {self.port} {shlex.quote(self._site_dir)} {pid_file}'
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
        # TERM, then KILL, to the whole group; then make sure nothing of it is left
        script = (
            f"kill -TERM -- -{group} 2>/dev/null; for _ in $(seq 50); do kill -0 -- -{group} 2>/dev/null"
            f" || exit 0; sleep 0.05; done; kill -KILL -- -{group} 2>/dev/null; sleep 0.2;"
            f" ! kill -0 -- -{group} 2>/dev/null"
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
        shown = "; ".join(damaged[:10]) + (f" (and {len(damaged) - 10} more)" if len(damaged) > 10 else "")
        parts.append(f"{len(damaged)} file(s) of backup {manifest.id} failed verification"
                     + (f" (pack {', '.join(packs)})" if packs else "") + f": {shown}")  # fmt: skip
    if mismatches:
        shown = "; ".join(mismatches[:10]) + (
            f" (and {len(mismatches) - 10} more)" if len(mismatches) > 10 else ""
        )
        parts.append(f"{len(mismatches)} table(s) differ from the backup's figures: {shown}")
    return ". ".join(parts)


_PACK = re.compile(r"pack (\S+?)(?: |\)|$)")


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
