"""Restore a backup over the transport: files into the docroot (or elsewhere), the dump into a database.

Files: a fresh tar stream is built from the manifest (paths, modes, mtimes,
owners) with the bytes read from the packs, every file's SHA-256 checked on
the way, and fed to ``tar -x`` on the site. A full restore into the docroot
makes it equal to the backup: entries that were not in the backup are removed
first (excluded paths are left alone). A damaged or missing pack does not
stop the rest: the files it held are named and the restore fails (exit 1).

Database: the dump streams from the store through zstd into the site's
``mysql`` (or ``pg_restore``); afterwards each table's row count and checksum
is compared with what was recorded at backup time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import shlex
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..errors import BackupDamaged, ObjectMissing, StepFailed
from ..transport import Transport
from ..units import human_bytes
from . import tarstream
from .config import SiteBackup
from .database import db_client
from .manifest import Entry, Manifest, PackInfo
from .store import Store
from .streams import CHUNK, Deadline, decompressed, pump

Log = Callable[[str], None]


@dataclass
class RestoreResult:
    backup_id: str
    files_to: str | None = None
    files: int = 0
    bytes: int = 0
    removed: int = 0
    database: str | None = None
    tables: int = 0
    table_mismatches: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    duration: float = 0.0

    def summary(self) -> str:
        parts = []
        if self.files_to:
            removed = f", {self.removed} removed" if self.removed else ""
            parts.append(f"{self.files} files ({human_bytes(self.bytes)}) into {self.files_to}{removed}")
        if self.database:
            parts.append(f"database {self.database} ({self.tables} tables checked)")
        return f"restored backup {self.backup_id}: {'; '.join(parts) or 'nothing selected'}"

    def record(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "backup_id": self.backup_id,
            "files_to": self.files_to,
            "files": self.files,
            "bytes": self.bytes,
            "removed": self.removed,
            "database": self.database,
            "tables": self.tables,
            "table_mismatches": self.table_mismatches,
            "damaged": self.damaged,
            "duration": round(self.duration, 3),
        }


def select_entries(manifest: Manifest, globs: list[str]) -> list[Entry]:
    """Entries matching any glob (a match on a directory takes everything under it); all if none."""
    if not globs:
        return list(manifest.entries)
    patterns = [g.strip().strip("/") for g in globs if g.strip()]

    def wanted(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatchcase(p, g) for g in patterns for p in prefixes)

    return [e for e in manifest.entries if wanted(e.path)]


def restore_backup(
    transport: Transport,
    spec: SiteBackup,
    store: Store,
    manifest: Manifest,
    deadline: Deadline,
    *,
    to: str | None = None,
    paths: list[str] | None = None,
    files: bool = True,
    database: bool = True,
    db_name: str | None = None,
    log: Log = lambda _m: None,
) -> RestoreResult:
    clock = time.monotonic()
    result = RestoreResult(manifest.id)
    if files and manifest.docroot:
        dest = to or spec.docroot or manifest.docroot
        entries = select_entries(manifest, paths or [])
        if paths and not entries:
            raise BackupDamaged(f"no path in backup {manifest.id} matches {', '.join(paths)}")
        # only a full restore over the live docroot removes what the backup did not have
        exact = not paths and to is None
        log(f"restoring {sum(1 for e in entries if e.type == 'file')} files to {dest}")
        _restore_files(transport, spec, store, manifest, entries, dest, exact, deadline, result)
    if database and manifest.databases:
        if spec.db is None:
            raise StepFailed(
                f"backup {manifest.id} holds a database dump but the site has no 'db' settings "
                "to restore it to"
            )
        log(f"restoring database dump into {db_name or spec.db.name}")
        _restore_database(transport, spec, store, manifest, db_name, deadline, result)
    result.duration = time.monotonic() - clock
    if result.damaged:
        shown = "; ".join(result.damaged[:10])
        more = f" (and {len(result.damaged) - 10} more)" if len(result.damaged) > 10 else ""
        raise BackupDamaged(
            f"backup {manifest.id} is damaged: {shown}{more}. Everything else was restored; "
            "restore these from an older backup (backups list, restore --backup ID --path ...)"
        )
    return result


# ------------------------------------------------------------------ files


def _restore_files(
    transport: Transport,
    spec: SiteBackup,
    store: Store,
    manifest: Manifest,
    entries: list[Entry],
    dest: str,
    exact: bool,
    deadline: Deadline,
    result: RestoreResult,
) -> None:
    made = transport.run(["mkdir", "-p", "--", dest], cancel=deadline.cancel)
    if made.rc != 0:
        raise StepFailed(f"cannot create {dest} on {transport.label}: {made.stderr.strip()}")
    if exact:
        result.removed = _remove_extras(transport, spec, dest, entries, deadline)
    result.files_to = dest
    command = shlex.join(["tar", "-C", dest, "--numeric-owner", "-xf", "-"])
    with transport.stream_in(command) as sink:
        for chunk in tar_stream(store, manifest, entries, deadline, result):
            sink.write(chunk)
    outcome = sink.result
    assert outcome is not None
    if outcome.rc != 0:
        raise StepFailed(
            f"tar -x on {transport.label} failed (rc {outcome.rc}): {outcome.stderr.strip()[-600:]}",
            outputs={"rc": outcome.rc, "stderr": outcome.stderr[-2000:]},
        )


def tar_stream(
    store: Store, manifest: Manifest, entries: list[Entry], deadline: Deadline, result: RestoreResult
) -> Iterator[bytes]:
    """A tar archive of ``entries``: directories first, then files pack by pack, then symlinks."""
    out = _Batcher()
    for entry in sorted((e for e in entries if e.type == "dir"), key=lambda e: e.path):
        yield from out.add(_header(entry))
    by_pack: dict[str, dict[int, Entry]] = defaultdict(dict)
    for entry in entries:
        if entry.type == "file":
            if entry.pack is None or entry.offset is None or entry.pack not in manifest.packs:
                result.damaged.append(f"{entry.path}: the manifest does not say where its bytes are")
                continue
            by_pack[entry.pack][entry.offset] = entry
    for pack_id, wanted in by_pack.items():
        try:
            for piece in read_members(store, manifest.packs[pack_id], wanted, deadline, result.damaged):
                yield from out.add(piece)
        except BackupDamaged as exc:
            result.damaged.extend(f"{e.path}: {exc}" for e in wanted.values())
            continue
    result.files = sum(len(w) for w in by_pack.values())
    result.bytes = sum(e.size for w in by_pack.values() for e in w.values())
    for entry in sorted((e for e in entries if e.type == "symlink"), key=lambda e: e.path):
        yield from out.add(_header(entry))
    yield from out.add(tarstream.END_OF_ARCHIVE)
    yield from out.flush()


def read_members(
    store: Store,
    pack: PackInfo,
    wanted: dict[int, Entry],
    deadline: Deadline,
    damaged: list[str],
    *,
    stored: Any = None,
) -> Iterator[bytes]:
    """Header and content of each wanted member of one pack, each file's SHA-256 checked.

    A file whose bytes do not match is named in ``damaged`` (its member is still
    written, so the archive stays well-formed). A pack that is missing, not
    zstd, or not tar raises BackupDamaged. Reading stops once every wanted
    member was seen, unless ``stored`` (a hashlib object) is to hash the whole object.
    """
    left = dict(wanted)
    pieces: list[bytes] = []
    state: dict[str, Any] = {}

    def start(member: tarstream.Member) -> None:
        entry = left.pop(member.offset, None)
        state["entry"] = entry
        if entry is not None:
            if member.size != entry.size:
                damaged.append(
                    f"{entry.path}: the pack holds {member.size} bytes, the manifest says {entry.size}"
                )
            state["sha"] = hashlib.sha256()
            pieces.append(_header(entry, size=member.size))

    def data(member: tarstream.Member, piece: memoryview) -> None:
        if state.get("entry") is not None:
            state["sha"].update(piece)
            pieces.append(bytes(piece))

    def end(member: tarstream.Member) -> None:
        entry = state.pop("entry", None)
        if entry is not None:
            pieces.append(tarstream.padding(member.size))
            if state["sha"].hexdigest() != entry.sha256:
                damaged.append(f"{entry.path}: content does not match its SHA-256 (pack {pack.key})")

    reader = tarstream.TarReader(start, data, end)
    try:
        with store.open_read(pack.key) as raw, _zstd(_HashingReader(raw, stored), pack.key) as source:
            buffer = bytearray(CHUNK)
            # a member being copied keeps the loop going after the last one was found
            while left or state.get("entry") is not None or stored is not None:
                deadline.check()
                got = source.readinto(buffer)  # type: ignore[attr-defined]
                if not got:
                    break
                reader.feed(memoryview(buffer)[:got])
                if pieces:
                    yield b"".join(pieces)
                    pieces.clear()
    except tarstream.TarFormatError as exc:
        raise BackupDamaged(f"pack {pack.key} is corrupt ({exc})") from None
    except ObjectMissing:
        raise BackupDamaged(f"pack {pack.key} is missing from the store") from None
    for offset, entry in left.items():
        damaged.append(f"{entry.path}: not found in pack {pack.key} at offset {offset}")


@contextmanager
def _zstd(raw: Any, key: str) -> Iterator[BinaryIO]:
    import zstandard

    try:
        yield decompressed(raw)
    except zstandard.ZstdError as exc:
        raise BackupDamaged(f"pack {key} is corrupt (zstd: {exc})") from None


class _Batcher:
    """Joins small pieces into writes of about ``CHUNK`` bytes (thousands of tiny files)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, data: bytes) -> Iterator[bytes]:
        self._parts.append(data)
        self._size += len(data)
        if self._size >= CHUNK:
            yield from self.flush()

    def flush(self) -> Iterator[bytes]:
        if self._parts:
            yield b"".join(self._parts)
            self._parts.clear()
            self._size = 0


def _header(entry: Entry, size: int | None = None) -> bytes:
    return tarstream.header(
        entry.path,
        entry.type,
        size=entry.size if size is None else size,
        mode=entry.mode,
        mtime=float(entry.mtime),
        linkname=entry.target or "",
        uid=entry.uid,
        gid=entry.gid,
    )


def _remove_extras(
    transport: Transport, spec: SiteBackup, dest: str, entries: list[Entry], deadline: Deadline
) -> int:
    """Remove what is in ``dest`` but not in the backup (or is there with another type)."""
    from .create import list_docroot  # the same listing (and excludes) the backup used

    kinds = {e.path: e.type for e in entries}
    extra: list[str] = []
    gone: set[str] = set()  # removed directories: what is under them goes with them
    for current in list_docroot(transport, dest, spec.settings, deadline).entries:
        parts = current.path.split("/")
        under_gone = any("/".join(parts[:i]) in gone for i in range(1, len(parts)))
        if kinds.get(current.path) != current.type and not under_gone:
            extra.append(current.path)
            gone.add(current.path)
    if extra:
        command = f"cd -- {shlex.quote(dest)} && xargs -0 -r rm -rf --"
        with transport.stream_in(command) as sink:
            for path in extra:
                sink.write(path.encode("utf-8", tarstream.ERRORS) + b"\0")
        outcome = sink.result
        assert outcome is not None
        if outcome.rc != 0:
            raise StepFailed(
                f"could not remove files that are not in the backup: {outcome.stderr.strip()[-400:]}"
            )
    return len(extra)


# ------------------------------------------------------------------ database


def _restore_database(
    transport: Transport,
    spec: SiteBackup,
    store: Store,
    manifest: Manifest,
    db_name: str | None,
    deadline: Deadline,
    result: RestoreResult,
) -> None:
    assert spec.db is not None
    dump = manifest.databases[0]
    target = db_name or spec.db.name
    with db_client(transport, spec.db, deadline.cancel) as client:
        if target != spec.db.name:
            client.create_database(target)
        stored = hashlib.sha256()
        with store.open_read(dump.key) as raw:
            hashed = _HashingReader(raw, stored)
            with (
                _zstd(hashed, dump.key) as source,
                transport.stream_in(client.restore_command(target)) as sink,
            ):
                pump(source, sink.write, deadline)
        if stored.hexdigest() != dump.sha256:
            result.damaged.append(f"database dump {dump.key}: content does not match its SHA-256")
        client.check(sink.result, f"importing the dump into database '{target}'")
        result.database = target
        now = client.table_stats(database=target) if target != spec.db.name else client.table_stats()
    result.tables = len(dump.tables)
    for table, expected in sorted(dump.tables.items()):
        got = now.get(table)
        if got != expected:
            result.table_mismatches.append(f"{table}: expected {expected}, restored {got}")


class _HashingReader:
    """Hashes what is read through it (the stored bytes of a dump)."""

    def __init__(self, inner: BinaryIO, sha: Any) -> None:
        self._inner = inner
        self._sha = sha

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        if self._sha is not None:
            self._sha.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
