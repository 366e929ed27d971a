"""Take one backup of one site: database dump, then the changed files, then the manifest.

The site's data streams through the transport (local or SSH) into the store:
compressed and hashed on the way, never held whole in memory nor written to
a local temp file. Only what changed since the previous backup is read and
sent: a file whose type, size, mtime and mode are unchanged points at its old
bytes; one whose mtime alone changed is hashed on the site first and is not
sent again if its content is the same.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shlex
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import BackupDamaged, MaintainerError, StepCancelled, StepFailed, StepTimeout, StoreError
from ..transport import Transport
from ..units import human_bytes
from . import tarstream
from .config import BackupSettings, SiteBackup
from .database import db_client
from .manifest import (
    DAMAGED,
    DumpInfo,
    Entry,
    Manifest,
    PackInfo,
    backup_ids,
    damaged_marker,
    load_manifest,
    lock_key,
    manifest_key,
    marked_key,
    new_backup_id,
    pack_key,
)
from .store import Store
from .streams import CompressedObject, Deadline, compressed_object, pump

Log = Callable[[str], None]
#: new files at least this big are hashed on the site first when their size matches a stored file
#: (or another new file): a copy or a rename is then not sent again
DEDUP_MIN_SIZE = 64 * 1024
#: an unchanged database shares the previous backup's dump, but is dumped afresh at least this often
DUMP_REUSE_DAYS = 7


@dataclass
class BackupResult:
    id: str
    location: str
    parent: str | None
    started: str
    duration: float
    #: bytes that came from the site (listing, tar stream, dumps)
    bytes_read: int
    #: bytes written to the store (packs, dumps, manifest)
    bytes_uploaded: int
    files: int
    total_bytes: int  # the size of every file in the backup
    new_files: int  # files whose content was sent this time
    new_bytes: int  # their size
    databases: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        dbs = f", database {', '.join(d['name'] for d in self.databases)}" if self.databases else ""
        new = f"{self.new_files} new, {human_bytes(self.new_bytes)}"
        sent = human_bytes(self.bytes_uploaded)
        warned = f"; {len(self.warnings)} warning(s): {self.warnings[0][:120]}" if self.warnings else ""
        return f"backup {self.id}: {self.files} files ({new}){dbs}, {sent} uploaded{warned}"

    def record(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "backup_id": self.id,
            "location": self.location,
            "parent": self.parent,
            "duration": round(self.duration, 3),
            "bytes_read": self.bytes_read,
            "bytes_uploaded": self.bytes_uploaded,
            "files": self.files,
            "total_bytes": self.total_bytes,
            "new_files": self.new_files,
            "new_bytes": self.new_bytes,
            "databases": self.databases,
            "warnings": self.warnings,
        }


def create_backup(
    transport: Transport,
    spec: SiteBackup,
    deadline: Deadline,
    *,
    log: Log = lambda _m: None,
    run_id: str | None = None,
) -> BackupResult:
    """Back up ``spec``'s site; the backup exists once this returns (its manifest is written)."""
    started = datetime.now(UTC)
    clock = time.monotonic()
    store = spec.store()
    store.check()
    backup_id = new_backup_id(started)
    job = _Job(transport, spec, store, deadline, log, backup_id)
    try:
        return _complete(job, transport, spec, store, deadline, started, clock, run_id)
    except (StepFailed, StoreError) as exc:
        # no backup came of it; what it read and wrote is still worth recording
        failed = exc if isinstance(exc, StepFailed) else StepFailed(str(exc))
        failed.changes = failed.changes or [
            {
                "what": "backup",
                "summary": f"backup {backup_id} failed: no backup was kept",
                "backup_id": None,
                "attempted_id": backup_id,
                "location": store.location,
                "bytes_read": job.read,
                "bytes_uploaded": job.uploaded,
                "duration": round(time.monotonic() - clock, 3),
                "warnings": job.warnings,
            }
        ]
        if failed is exc:
            raise
        raise failed from exc


def _complete(
    job: _Job,
    transport: Transport,
    spec: SiteBackup,
    store: Store,
    deadline: Deadline,
    started: datetime,
    clock: float,
    run_id: str | None,
) -> BackupResult:
    backup_id = job.id
    log = job.log
    with _in_progress(store, backup_id, run_id, started):
        parent = job.parent()
        dumps = [job.dump_database(parent)] if spec.db is not None else []
        entries = job.files(parent) if spec.docroot is not None else []
        manifest = Manifest(
            id=backup_id,
            site=spec.site,
            started=started.isoformat(timespec="milliseconds"),
            finished=datetime.now(UTC).isoformat(timespec="milliseconds"),
            host=transport.label,
            docroot=spec.docroot or "",
            parent=parent.id if parent else None,
            run_id=run_id,
            exclude=spec.settings.exclude,
            entries=entries,
            packs=job.referenced_packs(entries, parent),
            databases=dumps,
            stats=job.stats(entries),
            warnings=job.warnings,
            unreadable=sorted(set(job.unreadable)),
        )
        data = manifest.to_bytes()
        deadline.check()
        store.put_bytes(manifest_key(backup_id), data, if_absent=True)
        job.uploaded += len(data)
    log(f"backup {backup_id} complete: {job.new_files} new of {manifest.stats['files']} files")
    return BackupResult(
        id=backup_id,
        location=store.location,
        parent=manifest.parent,
        started=manifest.started,
        duration=time.monotonic() - clock,
        bytes_read=job.read,
        bytes_uploaded=job.uploaded,
        files=manifest.stats["files"],
        total_bytes=manifest.stats["bytes"],
        new_files=job.new_files,
        new_bytes=job.new_bytes,
        databases=[
            {
                "name": d.name,
                "engine": d.engine,
                "bytes": d.raw_size,
                "stored": d.size,
                "tables": len(d.tables),
                "dump": "new" if d.key.startswith(f"db/{backup_id}/") else f"unchanged since {d.dumped}",
            }
            for d in dumps
        ],
        warnings=job.warnings,
    )


@contextmanager
def _in_progress(store: Store, backup_id: str, run_id: str | None, started: datetime) -> Iterator[None]:
    """A lock object while the backup runs: prune keeps everything it may reference."""
    info = {
        "backup_id": backup_id,
        "run_id": run_id,
        "started": started.isoformat(timespec="seconds"),
        "controller": socket.gethostname(),
        "pid": os.getpid(),
        "operator": _login(),
    }
    store.put_bytes(lock_key(backup_id), json.dumps(info).encode())
    try:
        yield
    finally:
        with suppress(MaintainerError):
            store.delete([lock_key(backup_id)])


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class _Job:
    def __init__(
        self,
        transport: Transport,
        spec: SiteBackup,
        store: Store,
        deadline: Deadline,
        log: Log,
        backup_id: str,
    ) -> None:
        self.transport = transport
        self.spec = spec
        self.store = store
        self.deadline = deadline
        self.log = log
        self.id = backup_id
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.read = 0
        self.uploaded = 0
        self.new_files = 0
        self.new_bytes = 0
        self.warnings: list[str] = []
        self.unreadable: list[str] = []
        self.packs: dict[str, PackInfo] = {}

    def parent(self) -> Manifest | None:
        """The newest readable backup: what this one is incremental to."""
        for backup_id in reversed(backup_ids(self.store)):
            try:
                return load_manifest(self.store, backup_id)
            except BackupDamaged as exc:
                self.warn(f"skipping an unreadable previous backup: {exc}")
        return None

    # ------------------------------------------------------------ database

    def dump_database(self, parent: Manifest | None) -> DumpInfo:
        db = self.spec.db
        assert db is not None
        fmt = "custom" if db.engine == "postgresql" else "sql"
        key = f"db/{self.id}/{_safe_name(db.name)}.{fmt}.zst"
        with db_client(self.transport, db, self.deadline.cancel) as client:
            version = client.server_version()
            before = client.table_stats()
            try:
                schema = client.schema_digest()
            except (StepCancelled, StepTimeout):
                raise
            except StepFailed:
                schema = None  # only an optimisation: without it the database is dumped again
            self.deadline.check()
            reused = self._unchanged_dump(parent, db.engine, db.name, before, schema)
            if reused is not None:
                return reused
            self.log(f"dumping database {db.name}")
            with compressed_object(self.store, key, self.spec.settings.compression_level) as obj:
                tail = _Tail()
                with self.transport.stream_out(client.dump_command()) as stream:
                    self.read += pump(stream, _both(obj.write, tail.add), self.deadline)
                # an error here leaves the block: the object is aborted, no partial dump is kept
                client.check(stream.result, f"the dump of database '{db.name}' (after {obj.raw_size} bytes)")
                if fmt == "sql" and b"-- Dump completed" not in tail.data:
                    raise StepFailed(
                        f"the dump of database '{db.name}' ended early after {obj.raw_size} bytes "
                        "(no 'Dump completed' line) although the dump tool exited 0"
                    )
            # figures that did not move during the dump are the dump's own; the others were
            # written to meanwhile (a live site): a restore cannot be checked against them
            try:
                after = client.table_stats()
            except (StepCancelled, StepTimeout):
                raise
            except StepFailed as exc:  # the dump is good; only its figures cannot be trusted
                self.warn(f"table figures after the dump could not be read ({exc}): none is checkable")
                after = {}
        tables: dict[str, dict[str, Any]] = {}
        for name, stat in before.items():
            tables[name] = {**stat, "stable": after.get(name) == stat}
        moving = [name for name, stat in tables.items() if not stat["stable"]]
        if moving and after:
            shown = ", ".join(moving[:20])
            self.warn(f"tables written to during the dump (not checkable after a restore): {shown}")
        written = obj.written
        assert written is not None
        self.uploaded += written.size
        return DumpInfo(
            engine=db.engine,
            name=db.name,
            key=key,
            format=fmt,
            size=written.size,
            sha256=written.sha256,
            raw_size=written.raw_size,
            raw_sha256=written.raw_sha256,
            server_version=version,
            tables=tables,
            schema_sha256=schema or "",
            dumped=self.started,
        )

    def _unchanged_dump(
        self, parent: Manifest | None, engine: str, name: str, now: dict[str, Any], schema: str | None
    ) -> DumpInfo | None:
        """The previous backup's dump when the database has not changed since: same schema, and
        every table with the same rows and checksum as then (figures the dump itself had).

        A database unchanged for ``DUMP_REUSE_DAYS`` is dumped afresh all the same.
        """
        previous = (
            next((d for d in parent.databases if (d.engine, d.name) == (engine, name)), None)
            if parent
            else None
        )
        if previous is None or not schema or previous.schema_sha256 != schema or not previous.dumped:
            return None
        if datetime.now(UTC) - datetime.fromisoformat(previous.dumped) > timedelta(days=DUMP_REUSE_DAYS):
            return None
        if not all(t.get("stable") for t in previous.tables.values()):
            return None
        then = {t: (v["rows"], v["checksum"]) for t, v in previous.tables.items()}
        if then != {t: (v["rows"], v["checksum"]) for t, v in now.items()}:
            return None
        stored = self.store.head(previous.key)
        if stored is None or stored.size != previous.size or self.store.head(damaged_marker(previous.key)):
            self.warn(f"the previous dump {previous.key} is missing or damaged: the database is dumped again")
            return None
        self.log(f"database {name} unchanged since {previous.dumped}: its dump is kept, not made again")
        return previous

    # ------------------------------------------------------------ files

    def files(self, parent: Manifest | None) -> list[Entry]:
        docroot = self.spec.docroot
        assert docroot is not None
        current = self._list(docroot)
        usable = self._usable_packs(parent) if parent and parent.docroot == docroot else set()
        known = {e.path: e for e in parent.entries if e.pack in usable} if parent and usable else {}
        by_hash = {e.sha256: e for e in known.values() if e.sha256}
        known_sizes = {e.size for e in known.values() if e.type == "file" and e.size >= DEDUP_MIN_SIZE}
        entries: dict[str, Entry] = {}
        send: list[Entry] = []
        maybe_known: list[Entry] = []  # hashed on the site first: their bytes may be stored already
        fresh: list[Entry] = []
        for entry in current:
            old = known.get(entry.path)
            entries[entry.path] = entry
            if old is not None and old.same_stat(entry):
                entries[entry.path] = old
            elif old is not None and old.type == entry.type == "file" and old.size == entry.size:
                maybe_known.append(entry)  # same size, new mtime, mode or owner: maybe the same bytes
            elif entry.type == "file" and entry.size >= DEDUP_MIN_SIZE:
                fresh.append(entry)
            else:
                send.append(entry)
        # a big new file may be a copy or a rename of one already stored, or of another new one
        sizes = Counter(e.size for e in fresh)
        for entry in fresh:
            (maybe_known if entry.size in known_sizes or sizes[entry.size] > 1 else send).append(entry)
        first_of: dict[str, Entry] = {}  # content sent this time: its first path
        copies: list[tuple[Entry, Entry]] = []  # (entry, the entry whose bytes it shares)
        for entry, digest in self._hash_on_site(docroot, maybe_known):
            stored = by_hash.get(digest) if digest else None
            if stored is not None:
                entries[entry.path] = _sharing(entry, stored, digest)
            elif digest and digest in first_of:
                copies.append((entry, first_of[digest]))
            else:
                if digest:
                    first_of[digest] = entry
                send.append(entry)
        if send:
            self._send(docroot, send, entries)
        for entry, source in copies:
            if source.path in entries and source.pack is not None:
                entries[entry.path] = _sharing(entry, source, source.sha256)
            else:  # its twin could not be read after all
                entries.pop(entry.path, None)
                self.unreadable.append(entry.path)
        return sorted(entries.values(), key=lambda e: e.path)

    def _usable_packs(self, parent: Manifest) -> set[str]:
        """The parent's packs that are in the store with their size and not found damaged by verify."""
        sizes = {info.key: info.size for info in self.store.list("packs/")}
        damaged = {marked_key(info.key) for info in self.store.list(DAMAGED)}
        usable = {
            pid
            for pid, pack in parent.packs.items()
            if sizes.get(pack.key) == pack.size and pack.key not in damaged
        }
        lost = [pack.key for pid, pack in parent.packs.items() if pid not in usable]
        if lost:
            self.warn(
                f"{len(lost)} pack(s) of the previous backup are missing or damaged ({', '.join(lost[:3])}): "
                "the files they held are sent again"
            )
        return usable

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log(f"warning: {message}")

    def _list(self, docroot: str) -> list[Entry]:
        listing = list_docroot(self.transport, docroot, self.spec.settings, self.deadline)
        self.read += listing.bytes_read
        for warning in listing.warnings:
            self.warn(warning)
        self.unreadable += listing.unreadable
        return listing.entries

    @contextmanager
    def _path_list(self, paths: list[str]) -> Iterator[str]:
        """The paths, NUL-separated, in a private temp file on the site (for tar -T / xargs)."""
        # lists left by killed runs (they name the site's files) go first, as the credentials dirs do
        made = self.transport.run(
            'find "${TMPDIR:-/tmp}" -maxdepth 1 -type f -name "maintainer-backup.????????" -user "$(id -u)" '
            "-mmin +360 -delete 2>/dev/null; umask 077 && mktemp -t maintainer-backup.XXXXXXXX",
            cancel=self.deadline.cancel,
        )
        if made.rc != 0:
            raise StepFailed(f"cannot create a temp file on {self.transport.label}: {made.stderr.strip()}")
        name = made.stdout.strip()
        try:
            with self.transport.stream_in(f"cat > {shlex.quote(name)}") as sink:
                for path in paths:
                    sink.write(path.encode("utf-8", tarstream.ERRORS) + b"\0")
            yield name
        finally:
            self.transport.run(["rm", "-f", name])

    def _hash_on_site(self, docroot: str, entries: list[Entry]) -> Iterator[tuple[Entry, str | None]]:
        if not entries:
            return
        by_path = {e.path: e for e in entries}
        found: dict[str, str] = {}
        with self._path_list(list(by_path)) as listing:
            command = f"cd -- {shlex.quote(docroot)} && xargs -0 -r sha256sum -z -- < {shlex.quote(listing)}"
            buffer = bytearray()
            with self.transport.stream_out(command) as stream:
                self.read += pump(stream, buffer.extend, self.deadline)
        for line in bytes(buffer).split(b"\0"):
            if len(line) > 66:
                found[line[66:].decode("utf-8", tarstream.ERRORS)] = line[:64].decode()
        for path, entry in by_path.items():
            yield entry, found.get(path)

    def _send(self, docroot: str, send: list[Entry], entries: dict[str, Entry]) -> None:
        files = [e for e in send if e.type == "file"]
        size = human_bytes(sum(e.size for e in files))
        others = len(send) - len(files)
        self.log(f"sending {len(files)} new or changed files ({size}) and {others} directories/links")
        expected = {e.path: e for e in send}
        packer = _Packer(self.store, self.spec.settings.compression_level, self.spec.settings.pack_size)
        current: dict[str, Any] = {}

        def start(member: tarstream.Member) -> None:
            pack_id, offset = packer.member_start()
            current.update(member=member, pack=pack_id, offset=offset, sha=hashlib.sha256())

        def data(member: tarstream.Member, piece: memoryview) -> None:
            current["sha"].update(piece)

        def end(member: tarstream.Member) -> None:
            entry = expected.pop(member.path, None)
            if entry is None:
                return  # not asked for (cannot happen with --no-recursion); its bytes stay unreferenced
            if entry.type == "file":
                if int(float(entry.mtime)) != int(member.mtime) or entry.size != member.size:
                    # changed between the listing and tar's read: record what tar read, so the
                    # next backup sees a difference and sends it again
                    entry.mtime, entry.size = str(int(member.mtime)), member.size
                entry.sha256 = current["sha"].hexdigest()
                self.new_files += 1
                self.new_bytes += member.size
            entry.pack, entry.offset = current["pack"], current["offset"]
            entries[entry.path] = entry

        reader = tarstream.TarReader(start, data, end, on_raw=packer.raw, boundary=packer.boundary)
        with self._path_list([e.path for e in send]) as listing:
            command = shlex.join([
                "tar", "-C", docroot, "--null", "--verbatim-files-from", "--no-recursion",
                "--hard-dereference", "--ignore-failed-read", "--format=gnu", "-T", listing, "-cf", "-",
            ])  # fmt: skip
            try:
                with self.transport.stream_out(command) as stream:
                    self.read += pump(stream, reader.feed, self.deadline)
                result = stream.result
                assert result is not None
                if result.rc not in (0, 1) or result.timed_out:  # 1: a file changed while tar read it
                    raise StepFailed(
                        f"tar on {self.transport.label} failed (rc {result.rc}): "
                        f"{result.stderr.strip()[-600:]}",
                        outputs={"rc": result.rc, "stderr": result.stderr[-2000:]},
                    )
                try:
                    reader.close()
                except tarstream.TarFormatError as exc:
                    raise StepFailed(f"the tar stream from {self.transport.label} is broken: {exc}") from None
            except BaseException:
                packer.abort()
                raise
        self.packs.update(packer.finish())
        self.uploaded += sum(p.size for p in packer.written.values())
        if result.rc == 1 or result.stderr.strip():
            self.warn("tar: " + " | ".join(result.stderr.strip().splitlines()[-5:]) or "tar exited 1")
        for path in expected:  # vanished or unreadable since the listing
            entries.pop(path, None)
        if expected:
            shown = ", ".join(sorted(expected)[:5])
            self.warn(f"{len(expected)} entries could not be read and are not in the backup: {shown}")
            self.unreadable += sorted(expected)

    def referenced_packs(self, entries: list[Entry], parent: Manifest | None) -> dict[str, PackInfo]:
        known = dict(parent.packs) if parent else {}
        known.update(self.packs)
        return {pid: known[pid] for pid in sorted({e.pack for e in entries if e.pack})}

    def stats(self, entries: list[Entry]) -> dict[str, int]:
        files = [e for e in entries if e.type == "file"]
        return {
            "files": len(files),
            "dirs": sum(1 for e in entries if e.type == "dir"),
            "symlinks": sum(1 for e in entries if e.type == "symlink"),
            "bytes": sum(e.size for e in files),
            "new_files": self.new_files,
            "new_bytes": self.new_bytes,
            "bytes_read": self.read,
            "bytes_uploaded": self.uploaded,
        }


class _Packer:
    """Cuts the incoming tar stream into pack objects of about ``pack_size`` bytes, between members.

    The header blocks of a member are held until the member is known, so a member
    never spans two packs; every pack ends with tar's end-of-archive blocks.
    """

    def __init__(self, store: Store, level: int, pack_size: int) -> None:
        self.store = store
        self.level = level
        self.pack_size = pack_size
        self.written: dict[str, PackInfo] = {}
        self._pending = bytearray()
        self._in_header = False
        self._open: tuple[str, Any, CompressedObject] | None = None  # (id, context, object)

    def boundary(self) -> None:
        self._in_header = True

    def raw(self, view: memoryview) -> None:
        if self._in_header:
            if len(self._pending) < 64 * 1024:  # tar's trailing record padding may follow the end
                self._pending += view
        else:
            assert self._open is not None
            self._open[2].write(view)

    def member_start(self) -> tuple[str, int]:
        if self._open is not None and self._open[2].raw_size >= self.pack_size:
            self._close()
        if self._open is None:
            pack_id = os.urandom(16).hex()
            context = compressed_object(self.store, pack_key(pack_id), self.level, hash_raw=False)
            self._open = (pack_id, context, context.__enter__())
        pack_id, _, obj = self._open
        offset = obj.raw_size
        obj.write(self._pending)
        self._pending.clear()
        self._in_header = False
        return pack_id, offset

    def _close(self) -> None:
        assert self._open is not None
        pack_id, context, obj = self._open
        self._open = None
        obj.write(tarstream.END_OF_ARCHIVE)
        context.__exit__(None, None, None)
        written = obj.written
        assert written is not None
        self.written[pack_id] = PackInfo(written.key, written.size, written.sha256, written.raw_size)

    def finish(self) -> dict[str, PackInfo]:
        if self._open is not None:
            self._close()
        return self.written

    def abort(self) -> None:
        if self._open is not None:
            _, context, _ = self._open
            self._open = None
            with suppress(Exception):
                context.__exit__(StepFailed, StepFailed("aborted"), None)


class _Tail:
    """The last bytes of a stream (a dump's completion line)."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.data = b""

    def add(self, view: memoryview) -> None:
        self.data = (self.data + bytes(view[-self.limit :]))[-self.limit :]


def _sharing(entry: Entry, stored: Entry, digest: str | None) -> Entry:
    """``entry`` (its own path and metadata) pointing at bytes already stored for ``stored``."""
    member = stored.member or stored.path
    return Entry(
        path=entry.path,
        type=entry.type,
        mode=entry.mode,
        mtime=entry.mtime,
        size=entry.size,
        sha256=digest,
        pack=stored.pack,
        offset=stored.offset,
        uid=entry.uid,
        gid=entry.gid,
        member=None if member == entry.path else member,
    )


def _both(
    first: Callable[[memoryview], object], second: Callable[[memoryview], object]
) -> Callable[[memoryview], None]:
    def call(view: memoryview) -> None:
        first(view)
        second(view)

    return call


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "db"


@dataclass
class Listing:
    entries: list[Entry]
    bytes_read: int
    warnings: list[str]
    #: directories find could not enter (their content is unknown)
    unreadable: list[str]


def _records(buffer: bytearray) -> Iterator[tuple[bytes, bytes, bytes]]:
    """find's NUL-separated (meta, path, link target) triples, one at a time (no list of them all)."""
    pos, end = 0, len(buffer)
    while pos < end:
        first = buffer.find(b"\0", pos)
        second = buffer.find(b"\0", first + 1)
        third = buffer.find(b"\0", second + 1)
        if min(first, second, third) < 0:
            return  # a torn last record (the listing was cut): not an entry
        yield bytes(buffer[pos:first]), bytes(buffer[first + 1 : second]), bytes(buffer[second + 1 : third])
        pos = third + 1


#: "find: './privdir': Permission denied" (GNU find quotes with U+2018/U+2019 in a UTF-8 locale)
_FIND_DENIED = re.compile("^find: [\u2018'](.+?)[\u2019']: ", re.M)


def list_docroot(transport: Transport, docroot: str, settings: BackupSettings, deadline: Deadline) -> Listing:
    """Every file, directory and symlink under ``docroot`` except the excluded ones (``find`` on the site)."""
    prune: list[str] = []
    for raw in settings.exclude:
        pattern = raw.strip().rstrip("/")
        test = ["-path", "./" + pattern.lstrip("/")] if "/" in pattern else ["-name", pattern]
        prune += (["-o"] if prune else []) + test
    parts = ["find", "."]
    if settings.one_file_system:
        parts.append("-xdev")
    if prune:
        parts += ["(", *prune, ")", "-prune", "-o"]
    parts += ["(", "-type", "f", "-o", "-type", "d", "-o", "-type", "l", ")"]
    parts += ["-printf", r"%y %s %T@ %m %U %G\0%P\0%l\0"]
    command = f"cd -- {shlex.quote(docroot)} || exit 3\n{shlex.join(parts)}"
    buffer = bytearray()
    with transport.stream_out(command) as stream:
        read = pump(stream, buffer.extend, deadline)
    result = stream.result
    assert result is not None
    if result.rc == 3:
        raise StepFailed(f"cannot read docroot {docroot} on {transport.label}: {result.stderr.strip()}")
    warnings = []
    unreadable = [m.group(1).removeprefix("./") for m in _FIND_DENIED.finditer(result.stderr)]
    if result.rc != 0:
        shown = " | ".join(result.stderr.strip().splitlines()[-5:])
        warnings.append(f"find reported problems (rc {result.rc}): {shown}")
    entries = []
    kinds = {"f": "file", "d": "dir", "l": "symlink"}
    for meta, raw_path, raw_target in _records(buffer):
        if not raw_path:
            continue  # the docroot itself
        kind, size, mtime, mode, uid, gid = meta.decode().split(" ")
        entries.append(
            Entry(
                path=raw_path.decode("utf-8", tarstream.ERRORS),
                type=kinds[kind],
                mode=int(mode, 8),
                mtime=mtime,
                size=int(size) if kind == "f" else 0,
                target=raw_target.decode("utf-8", tarstream.ERRORS) if kind == "l" else None,
                uid=int(uid),
                gid=int(gid),
            )
        )
    return Listing(entries, read, warnings, unreadable)
