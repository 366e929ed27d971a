"""The change log: append-only JSON Lines, one entry per run, chained by hashes.

Every record carries ``schema``, ``seq`` (1, 2, 3, ...), ``prev_hash`` (the
previous record's ``hash``, 64 zeros for the first) and ``hash``: the sha256
of the record's canonical JSON without ``hash``::

    json.dumps(record_without_hash, sort_keys=True, separators=(",", ":"),
               ensure_ascii=False).encode()

Each line is written as ``{"hash":"<64 hex>",`` followed by the canonical JSON
minus its opening brace. So the hashed bytes are simply ``{`` plus the rest of
the line, and an auditor can re-check a line with ``sha256sum`` alone. No JSON
re-serialiser (jq prints ``1.0`` as ``1``) can break that check.
docs/CHANGELOG-FORMAT.md is the auditor's reference.

Writers take an exclusive ``flock`` on a sidecar ``<log>.lock``. Readers take a
shared lock for a moment only, to read the size up to which every line is
complete. Then they stream without holding the lock, so a slow ``log show``
never blocks a run that needs to record itself.
"""

from __future__ import annotations

import csv
import fcntl
import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, TypeGuard

from maintainer.errors import BadInput, ExitCode, MaintainerError

SCHEMA_VERSION = 1
ZERO_HASH = "0" * 64
FILE_MODE = 0o640  # group-readable so auditors can verify without being the operator
DIR_MODE = 0o750

_TAIL_BLOCK = 64 * 1024
_LINE_PREFIX = b'{"hash":"'
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RELATIVE = re.compile(r"(\d+)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

CSV_COLUMNS = (
    "seq",
    "started",
    "finished",
    "runbook",
    "version",
    "operator",
    "trigger",
    "ticket",
    "site",
    "site_status",
    "run_status",
    "hash",
)

#: every status an entry records: a run's (ok, failed, interrupted, refused) or a site's. A run is
#: "refused" when no site started; it is recorded when a site's maintenance window refused it
#: ("window_closed"), not when every site was locked (logs of earlier versions may hold those too)
STATUSES = ("ok", "failed", "unreachable", "locked", "window_closed", "skipped", "interrupted", "refused")
#: how a run was started, as recorded in ``trigger.kind``
TRIGGER_KINDS = ("manual", "cron", "ci", "systemd", "script", "api")


class ChangeLogError(MaintainerError):
    """The change log cannot be read or extended as it is."""

    exit_code = ExitCode.BAD_INPUT


class ChangeLogCorrupt(ChangeLogError):
    """A line that is not a change-log record. ``position`` is its seq, or its line number."""

    def __init__(self, position: int, message: str, *, path: Path | None = None) -> None:
        self.position = position
        self.path = path
        self.message = message
        where = f"{path}: " if path is not None else ""
        super().__init__(
            f"{where}{message}. Run 'maintainer log verify' to find the first bad entry; "
            "the log is evidence, so copy it before repairing anything by hand."
        )


class ChangeLogSchemaTooNew(ChangeLogError):
    """The log was written by a newer maintainer: we do not guess what its fields mean."""

    def __init__(self, schema: int, *, path: Path | None = None) -> None:
        self.schema = schema
        self.path = path
        where = f"{path}: " if path is not None else ""
        super().__init__(
            f"{where}the change log's last entry uses schema {schema}, but this maintainer "
            f"writes schema {SCHEMA_VERSION}. Upgrade maintainer on this controller."
        )


@dataclass
class VerifyReport:
    ok: bool
    #: entries checked and found good (all of them when ok)
    entries: int
    #: hash of the last good entry: auditors keep it elsewhere to detect truncation
    head_hash: str | None
    #: first seq (or line number if the seq is unreadable) where the chain breaks; None when ok,
    #: and when every entry is intact but the expected head is missing (a cut tail: see reason)
    first_bad_seq: int | None
    reason: str | None


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes that ``hash`` covers: canonical JSON of the record without ``hash``."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def _line_for(canonical: bytes, digest: str) -> bytes:
    # hash first, then the hashed bytes minus their "{": verifiable with cut + sha256sum
    return _LINE_PREFIX + digest.encode() + b'",' + canonical[1:] + b"\n"


def _normalise(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON round trip of ``entry``, so the record we return is exactly what a reader reads.

    Tuples become lists, non-JSON values (Path, datetime) become strings, int keys become
    strings (otherwise sort_keys would fail on mixed keys), and lone surrogates (from
    undecodable file names) become '?' (otherwise ``.encode()`` would fail).
    """
    try:
        text = json.dumps(entry, ensure_ascii=False, allow_nan=False, default=str)
    except (TypeError, ValueError) as exc:  # NaN/inf, circular references, odd keys
        raise ValueError(f"change-log entry cannot be stored as JSON: {exc}") from exc
    record = json.loads(text.encode("utf-8", "replace"))
    if not isinstance(record, dict):
        raise TypeError(f"change-log entry must be a mapping, not {type(entry).__name__}")
    return record


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class ChangeLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    # -- writing -----------------------------------------------------------------------------

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one record and return it with schema, seq, prev_hash and hash set.

        ``entry`` itself is not modified. The line is on disk (fsync) when this returns.
        """
        record = _normalise(entry)
        for key in ("hash", "seq", "prev_hash", "schema"):
            record.pop(key, None)  # the log owns these
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            created = not self.path.exists()  # under the lock: no other appender can race us
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                if created:
                    os.fchmod(fd, FILE_MODE)  # exactly 0o640, whatever the umask
                last_seq, last_hash, needs_newline = self._tail_state(fd)
                record["schema"] = SCHEMA_VERSION
                record["seq"] = last_seq + 1
                record["prev_hash"] = last_hash
                canonical = canonical_bytes(record)
                digest = hashlib.sha256(canonical).hexdigest()
                data = (b"\n" if needs_newline else b"") + _line_for(canonical, digest)
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.path.parent)  # the new file's directory entry must survive a crash too
        finally:
            os.close(lock_fd)  # closing releases the flock
        record["hash"] = digest
        return record

    def _tail_state(self, fd: int) -> tuple[int, str, bool]:
        """(last seq, last hash, whether a newline must be written first), from the tail only."""
        raw, terminated = _read_last_line(fd)
        if not raw and terminated:
            if os.fstat(fd).st_size == 0:
                return 0, ZERO_HASH, False
            # an empty last line: chaining from zero would restart the log at seq 1
            raise ChangeLogCorrupt(0, "the last line is empty; nothing can be chained to it", path=self.path)
        try:
            last = json.loads(raw)
        except ValueError:
            hint = "" if terminated else " (incomplete: a write was interrupted)"
            raise ChangeLogCorrupt(
                0, f"the last line is not valid JSON{hint}; nothing can be chained to it", path=self.path
            ) from None
        if not isinstance(last, dict):
            raise ChangeLogCorrupt(0, "the last line is not a JSON object", path=self.path)
        schema = last.get("schema")
        if _is_int(schema) and schema > SCHEMA_VERSION:
            raise ChangeLogSchemaTooNew(schema, path=self.path)
        seq, digest = last.get("seq"), last.get("hash")
        if not _is_int(seq) or not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ChangeLogCorrupt(0, "the last entry has no valid seq or hash", path=self.path)
        # a complete record whose newline alone was lost: terminate it rather than glue onto it
        return seq, digest, not terminated

    def check_ready(self) -> None:
        """Pre-flight before a run: raise BadInput unless an entry could be appended right now.

        The directory must exist (it is created, as ``append`` would) and be writable, the log
        (if any) writable, and its last entry must parse with its hash intact. A run calls this
        before touching any site, so a broken log stops it with nothing changed instead of after
        the fact; ``append`` can still fail at the end (disk full, a concurrent edit).
        """
        where = "set changelog in maintainer.toml to a file in a writable directory"
        if not self.path.parent.is_dir():
            # a typo in the path must not quietly start a second audit log somewhere else
            raise BadInput(
                f"the change log's directory {self.path.parent} does not exist. Nothing was run.",
                file=self.path,
                key="changelog",
                fix=f"create that directory (mkdir -p {self.path.parent}) or {where}.",
            )
        try:
            lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise BadInput(
                f"the change log cannot be written: {exc.strerror or exc} ({self.lock_path.parent}). "
                "Nothing was run.",
                file=self.path,
                key="changelog",
                fix=f"{where}, or make that directory writable for this user.",
            ) from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_SH)  # an append in flight finishes its line first
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC))
            except FileNotFoundError:
                return  # the first run creates it; the directory took our lock file
            except OSError as exc:
                raise BadInput(
                    f"the change log cannot be opened for appending: {exc.strerror or exc}. Nothing was run.",
                    file=self.path,
                    key="changelog",
                    fix=f"{where}, or give this user write access to the file.",
                ) from None
            try:
                self._check_tail(fd)
            finally:
                os.close(fd)
        finally:
            os.close(lock_fd)

    def _check_tail(self, fd: int) -> None:
        verify_fix = (
            "run 'maintainer log verify' to find the first bad entry; the log is evidence, so copy it "
            "before repairing anything by hand."
        )
        try:
            self._tail_state(fd)
        except ChangeLogSchemaTooNew as exc:
            raise BadInput(
                f"the last entry uses change-log schema {exc.schema}, newer than this maintainer writes "
                f"({SCHEMA_VERSION}). Nothing was run.",
                file=self.path,
                fix="upgrade maintainer on this controller.",
            ) from None
        except ChangeLogCorrupt as exc:
            raise BadInput(
                f"{exc.message}, so this run could not be recorded. Nothing was run.",
                file=self.path,
                fix=verify_fix,
            ) from None
        raw, _terminated = _read_last_line(fd)
        if not raw:
            return
        record = _parse(raw)
        problem = None if isinstance(record, str) else _entry_problem(raw, record)
        if problem:
            seq = record.get("seq") if isinstance(record, dict) else None
            raise BadInput(
                f"the last entry (seq {seq}) {problem}, so a new entry would chain onto a tampered one. "
                "Nothing was run.",
                file=self.path,
                fix=verify_fix,
            )

    # -- reading -----------------------------------------------------------------------------

    def _snapshot_size(self, fd: int) -> int:
        """The file size at a moment when no append was in flight: every line before it is whole."""
        try:
            lock_fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # no lock file (a copied log, a read-only auditor): nobody is writing
            return os.fstat(fd).st_size
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_SH)
            return os.fstat(fd).st_size
        finally:
            os.close(lock_fd)

    def _raw_lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, bytes without the newline), streamed; only '\\n' ends a line."""
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed by the with below, after the snapshot
        except FileNotFoundError:
            return
        with fh:
            remaining = self._snapshot_size(fh.fileno())
            line_no = 0
            while remaining > 0:
                raw = fh.readline(remaining)
                if not raw:
                    break
                remaining -= len(raw)
                line_no += 1
                yield line_no, raw[:-1] if raw.endswith(b"\n") else raw

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every record in order, streamed. A line that is not a JSON object raises ChangeLogCorrupt."""
        for line_no, raw in self._raw_lines():
            record = _parse(raw)
            if isinstance(record, str):
                raise ChangeLogCorrupt(line_no, f"line {line_no} {record}", path=self.path)
            yield record

    def verify(self, expect_head: str | None = None) -> VerifyReport:
        """Check the whole chain, streaming; stop at the first problem.

        Without ``expect_head``, removing entries from the END of the log cannot be seen,
        and neither can rewriting the last entry with a recomputed hash, because nothing
        after it chains to it. ``expect_head`` is a head hash recorded earlier, outside the
        log. It must be the hash of some entry in the log (the log may have grown since).
        """
        if expect_head is not None:
            expect_head = expect_head.strip().lower()
            if not _HEX64.fullmatch(expect_head):
                raise BadInput(
                    f"expected head hash {expect_head!r} is not a sha256 hex digest",
                    key="expect_head",
                    fix="pass the 64-character head_hash printed by an earlier 'maintainer log verify'.",
                )
        chain = _Chain(expect_head)
        for line_no, raw in self._raw_lines():
            chain.feed(line_no, raw, _parse(raw))
            if chain.problem is not None:
                break
        return chain.report()

    def query(
        self,
        *,
        site: str | None = None,
        runbook: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Entries matching every given filter; ``site`` and ``runbook`` may be glob patterns.

        ``runbook`` may carry a version: ``name@1.1.0`` exactly, ``name@1`` or ``name@1.1`` as a
        prefix, like runbook refs. With ``site``, ``status`` is matched against the run's status
        and the statuses of the matching sites only. A line that is not a record raises
        ChangeLogCorrupt; ``query_checked`` reads on and reports instead.
        """
        match = _Filter(site, runbook, since, status)
        return [entry for entry in self.entries() if match(entry)]

    def query_checked(
        self,
        *,
        site: str | None = None,
        runbook: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
    ) -> tuple[list[dict[str, Any]], VerifyReport]:
        """Like ``query``, verifying the hash chain in the same pass.

        Unreadable lines are skipped (the report names the first problem), so a damaged log can
        still be shown; the report is ``verify()``'s for the whole log.
        """
        match = _Filter(site, runbook, since, status)
        chain = _Chain(None)
        found = []
        for line_no, raw in self._raw_lines():
            record = _parse(raw)
            if chain.problem is None:
                chain.feed(line_no, raw, record)
            if isinstance(record, dict) and match(record):
                found.append(record)
        return found, chain.report()


class _Chain:
    """The hash-chain check of ``verify``, one line at a time; ``problem`` is set at the first fault."""

    def __init__(self, expect_head: str | None) -> None:
        self.expect_head = expect_head
        self.seen_expected = expect_head is None
        self.count = 0
        self.prev = ZERO_HASH
        self.head: str | None = None
        self.problem: tuple[int, str] | None = None

    def feed(self, line_no: int, raw: bytes, record: dict[str, Any] | str) -> None:
        if self.problem is None:
            self.problem = self._check(line_no, raw, record)

    def _check(self, line_no: int, raw: bytes, record: dict[str, Any] | str) -> tuple[int, str] | None:
        expected = self.count + 1
        if isinstance(record, str):
            return line_no, f"line {line_no} {record}"
        seq = record.get("seq")
        position = seq if _is_int(seq) else line_no
        name = f"entry {seq}" if _is_int(seq) else f"line {line_no}"
        if _is_int(seq) and seq != line_no:
            name += f" (line {line_no})"
        problem = _entry_problem(raw, record)
        if problem:
            return position, f"{name} {problem}"
        if not _is_int(seq):
            return line_no, f"line {line_no} has no valid seq"
        if seq != expected:
            return (
                expected,
                f"entry {expected} is missing or out of order: expected seq {expected}, found {seq}",
            )
        if record.get("prev_hash") != self.prev:
            if seq == 1:
                return 1, "entry 1 does not start the chain (its prev_hash is not 64 zeros)"
            return (
                seq,
                f"entry {seq} does not chain to entry {seq - 1} (prev_hash mismatch): entry {seq - 1} "
                "was rewritten with a recomputed hash, or entries were inserted or removed",
            )
        claimed = record["hash"]
        self.prev = self.head = claimed
        self.count += 1
        if claimed == self.expect_head:
            self.seen_expected = True
        return None

    def report(self) -> VerifyReport:
        if self.problem is not None:
            return VerifyReport(False, self.count, self.head, *self.problem)
        if not self.seen_expected:
            # every entry checked is intact, so none is named as bad: a cut tail (or a rewritten
            # last entry, which looks the same) is told by where the log ends now
            ends = (
                f"the log ends at entry {self.count} (hash {self.head})"
                if self.count
                else "the log has no entries"
            )
            return VerifyReport(
                False,
                self.count,
                self.head,
                None,
                f"{ends}, and the expected head {self.expect_head} is not the hash of any entry: "
                "entries were removed from the end (or the last entry was rewritten, "
                "or the head is from another log)",
            )
        return VerifyReport(True, self.count, self.head, None, None)


def _entry_problem(raw: bytes, record: Mapping[str, Any]) -> str | None:
    """What is wrong with one record on its own (schema, hash, layout), to follow its name."""
    # schema first: a future schema may hash differently, so do not call it "edited"
    schema = record.get("schema")
    if not _is_int(schema) or schema < 1:
        return f"has no valid schema number (found {schema!r})"
    if schema > SCHEMA_VERSION:
        return (
            f"uses change-log schema {schema}, newer than this maintainer understands "
            f"(up to {SCHEMA_VERSION}): upgrade maintainer to verify it"
        )
    claimed = record.get("hash")
    if not isinstance(claimed, str) or not _HEX64.fullmatch(claimed):
        return "has no valid hash"
    try:
        canonical: bytes | None = canonical_bytes(record)
    except (ValueError, TypeError):  # e.g. a lone surrogate escape that cannot be UTF-8
        canonical = None
    if canonical is None or hashlib.sha256(canonical).hexdigest() != claimed:
        return "was edited: its hash does not match its content"
    # keeps us in step with the sha256sum recipe, which hashes the raw bytes
    if raw != _line_for(canonical, claimed)[:-1]:
        return (
            "was rewritten: its content matches its hash, but the line is not laid out "
            "as maintainer writes it (hash first, then canonical JSON)"
        )
    return None


class _Filter:
    """The ``query`` filters as one predicate over an entry."""

    def __init__(
        self, site: str | None, runbook: str | None, since: datetime | None, status: str | None
    ) -> None:
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        self.site, self.since, self.status = site, since, status
        self.runbook: str | None = None
        self.version: tuple[int, ...] | None = None
        if runbook is not None:
            self.runbook, self.version = parse_runbook_filter(runbook)

    def __call__(self, entry: Mapping[str, Any]) -> bool:
        sites = _site_items(entry)
        if self.site is not None:
            sites = [(name, info) for name, info in sites if fnmatch.fnmatchcase(name, self.site)]
            if not sites:
                return False
        if self.runbook is not None and not fnmatch.fnmatchcase(_runbook_field(entry, "name"), self.runbook):
            return False
        if self.version is not None and not _version_matches(_runbook_field(entry, "version"), self.version):
            return False
        if self.since is not None:
            started = _parse_time(entry.get("started"))
            if started is None or started < self.since:
                return False
        return (
            self.status is None
            or entry.get("status") == self.status
            or any(info.get("status") == self.status for _, info in sites)
        )


def parse_runbook_filter(text: str) -> tuple[str, tuple[int, ...] | None]:
    """``name`` (a glob) and the version prefix of ``name@1``, ``name@1.1``, ``name@1.1.0``."""
    name, sep, wanted = text.partition("@")
    if not sep:
        return name, None
    try:
        prefix = tuple(int(part) for part in wanted.split("."))
        if not 1 <= len(prefix) <= 3 or not name:
            raise ValueError
    except ValueError:
        raise BadInput(
            f"{text!r} is not a runbook filter.",
            key="--runbook",
            fix="write NAME (a glob such as 'cms-*'), NAME@MAJOR, NAME@MAJOR.MINOR "
            "or NAME@MAJOR.MINOR.PATCH.",
        ) from None
    return name, prefix


def _version_matches(version: str, prefix: tuple[int, ...]) -> bool:
    try:
        parts = tuple(int(part) for part in version.split("+")[0].split("-")[0].split("."))
    except ValueError:
        return False
    return parts[: len(prefix)] == prefix


def only_sites(entry: Mapping[str, Any], pattern: str | None) -> dict[str, Any]:
    """A copy of ``entry`` whose ``sites`` keeps only the sites matching ``pattern`` (all if None).

    For display only: the copy no longer matches its ``hash``.
    """
    copy = dict(entry)
    if pattern is None:
        return copy
    sites = entry.get("sites")
    if isinstance(sites, Mapping):
        copy["sites"] = {
            name: info for name, info in sites.items() if fnmatch.fnmatchcase(str(name), pattern)
        }
    elif isinstance(sites, list):
        copy["sites"] = [
            item
            for item in sites
            if fnmatch.fnmatchcase(str(item.get("name") if isinstance(item, Mapping) else item), pattern)
        ]
    return copy


def _parse(raw: bytes) -> dict[str, Any] | str:
    """The record, or what is wrong with the line (to follow 'line N ')."""
    if not raw.strip():
        return "is empty, so it is not valid JSON"
    try:
        record = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return "is not valid JSON"
    if not isinstance(record, dict):
        return "is not a JSON object"
    return record


def _read_last_line(fd: int) -> tuple[bytes, bool]:
    """The last line (without newline) and whether the file ends with one, reading backwards."""
    size = os.fstat(fd).st_size
    if size == 0:
        return b"", True
    terminated = os.pread(fd, 1, size - 1) == b"\n"
    pos = size - 1 if terminated else size
    chunks: list[bytes] = []
    while pos > 0:
        step = min(_TAIL_BLOCK, pos)
        pos -= step
        chunk = os.pread(fd, step, pos)
        cut = chunk.rfind(b"\n")
        if cut != -1:
            chunks.append(chunk[cut + 1 :])
            break
        chunks.append(chunk)
    return b"".join(reversed(chunks)), terminated


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# -- query helpers: tolerant of older or partial entries ---------------------------------------


def _site_items(entry: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    sites = entry.get("sites")
    items: list[tuple[str, dict[str, Any]]] = []
    if isinstance(sites, Mapping):
        for name, info in sites.items():
            items.append((str(name), dict(info) if isinstance(info, Mapping) else {"status": info}))
    elif isinstance(sites, list):
        for item in sites:
            if isinstance(item, str):
                items.append((item, {}))
            elif isinstance(item, Mapping) and "name" in item:
                items.append((str(item["name"]), dict(item)))
    return items


def _runbook_field(entry: Mapping[str, Any], key: str) -> str:
    runbook = entry.get("runbook")
    if isinstance(runbook, Mapping):
        value = runbook.get(key)
        return "" if value is None else str(value)
    if key == "name" and isinstance(runbook, str):
        return runbook
    return ""


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """An aware UTC datetime from an ISO date/datetime (UTC if no zone) or an age like 7d, 12h, 30m, 2w."""
    value = text.strip()
    relative = _RELATIVE.fullmatch(value)
    parsed: datetime | None = None
    try:
        if relative:
            amount, unit = int(relative.group(1)), relative.group(2)
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        pass  # both end up in the one error below
    if parsed is None:
        raise BadInput(
            f"cannot read {text!r} as a time",
            key="--since",
            fix="give an ISO date or time such as 2024-05-01 or 2024-05-01T12:00:00Z (UTC if no zone), "
            "or an age such as 30m, 12h, 7d or 2w.",
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # spreadsheets run cells starting with these as formulas (CSV injection via --ticket, names)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def to_csv(entries: Iterable[Mapping[str, Any]], fh: TextIO, *, site: str | None = None) -> None:
    """One row per (entry, site); an entry without sites still gets one row. Open ``fh`` with newline=''.

    With ``site`` (a glob), only the rows of matching sites.
    """
    writer = csv.writer(fh)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        trigger = entry.get("trigger")
        kind = trigger.get("kind") if isinstance(trigger, Mapping) else trigger
        common = {
            "seq": entry.get("seq"),
            "started": entry.get("started"),
            "finished": entry.get("finished"),
            "runbook": _runbook_field(entry, "name"),
            "version": _runbook_field(entry, "version"),
            "operator": entry.get("operator"),
            "trigger": kind,
            "ticket": entry.get("ticket"),
            "run_status": entry.get("status"),
            "hash": entry.get("hash"),
        }
        sites = _site_items(entry)
        if site is not None:
            sites = [(name, info) for name, info in sites if fnmatch.fnmatchcase(name, site)]
        sites = sites or [("", {})]
        for name, info in sites:
            row = {**common, "site": name, "site_status": info.get("status")}
            writer.writerow([_cell(row[column]) for column in CSV_COLUMNS])
