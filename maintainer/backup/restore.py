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

import hashlib
import posixpath
import re
import shlex
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import zstandard

from ..errors import BackupDamaged, BadInput, MaintainerError, ObjectMissing, StepFailed
from ..transport import StreamClosed, Transport
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
    db_problems: list[str] = field(default_factory=list)
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


@dataclass
class RestoreTarget:
    """What a restore command asks for, and what of the live site it overwrites."""

    files: bool
    database: bool
    live: list[str]  # "files", "database": what goes over the live site (needs confirmation)


def restore_target(
    spec: SiteBackup,
    *,
    to: str | None,
    db: str | None,
    paths: list[str] | tuple[str, ...],
    files_only: bool = False,
    db_only: bool = False,
) -> RestoreTarget:
    """``--to`` and ``--db`` send a restore elsewhere: then only what they name is restored.

    Nothing given: files and database, in place. ``--path`` picks files (add ``--db`` for the
    dump too). Naming the docroot itself as ``--to`` (or the site's database as ``--db``) is in place.
    """
    if files_only and db_only:
        raise BadInput("--files-only and --db-only exclude each other.", fix="give one of them, or neither.")
    if files_only or db_only:
        files, database = files_only, db_only
    elif to is not None or db is not None:
        files, database = to is not None or bool(paths), db is not None
    else:
        files, database = True, not paths
    live = []
    if files and spec.docroot and (to is None or normalized(to) == normalized(spec.docroot)):
        live.append("files")
    if database and spec.db and (db is None or db == spec.db.name):
        live.append("database")
    return RestoreTarget(files, database, live)


def normalized(path: str) -> str:
    # POSIX keeps a leading '//' apart; for a directory on a Linux host it is '/'
    return posixpath.normpath("/" + path.lstrip("/"))


def select_entries(manifest: Manifest, globs: list[str]) -> list[Entry]:
    """Entries matching any glob (a match on a directory takes everything under it); all if none.

    ``*`` and ``?`` stay within one path segment, ``**`` crosses them: ``*.php`` is the top
    level only, ``**/*.php`` every PHP file.
    """
    if not globs:
        return list(manifest.entries)
    patterns = [_glob(g.strip().strip("/")) for g in globs if g.strip().strip("/")]

    def wanted(path: str) -> bool:
        parts = path.split("/")
        return any(p.fullmatch("/".join(parts[: i + 1])) for p in patterns for i in range(len(parts)))

    return [e for e in manifest.entries if wanted(e.path)]


def _glob(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            close = pattern.index("]", i + 2)
            body = pattern[i + 1 : close]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = close + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.S)


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
    result = RestoreResult(manifest.id)
    try:
        return _restore(
            transport, spec, store, manifest, deadline, result, to, paths, files, database, db_name, log
        )
    except StepFailed as exc:
        if not exc.changes and (result.files or result.removed or result.database):
            # it got part-way: what it did is recorded with the failure
            exc.changes = [{"what": "restore", **result.record()}]
        raise


def _restore(
    transport: Transport,
    spec: SiteBackup,
    store: Store,
    manifest: Manifest,
    deadline: Deadline,
    result: RestoreResult,
    to: str | None,
    paths: list[str] | None,
    files: bool,
    database: bool,
    db_name: str | None,
    log: Log,
) -> RestoreResult:
    clock = time.monotonic()
    files = files and bool(manifest.docroot)
    if database and not manifest.databases and (not files or db_name):
        raise StepFailed(
            f"backup {manifest.id} has no database dump (the site had no 'db' settings then, or the backup "
            "was taken with -p database=false)"
        )
    if not files and not (database and manifest.databases):
        raise StepFailed(f"nothing to restore: backup {manifest.id} has no files and no database selected")
    if database and manifest.databases and spec.db is None:
        raise StepFailed(
            f"backup {manifest.id} holds a database dump but the site has no 'db' settings to restore it to"
        )
    jobs: list[Callable[[], None]] = []
    if files:
        dest = normalized(to or spec.docroot or manifest.docroot)
        entries = select_entries(manifest, paths or [])
        if paths and not entries:
            raise StepFailed(f"no path in backup {manifest.id} matches {', '.join(paths)}")
        # only a full restore over the live docroot removes what the backup did not have
        exact = not paths and dest == normalized(spec.docroot or manifest.docroot)
        log(f"restoring {sum(1 for e in entries if e.type == 'file')} files to {dest}")
        jobs.append(
            _part(
                "files",
                lambda: _restore_files(
                    transport, spec, store, manifest, entries, dest, exact, deadline, result
                ),
            )
        )
    if database and manifest.databases:
        assert spec.db is not None
        log(f"restoring database dump into {db_name or spec.db.name}")
        jobs.append(
            _part(
                "database",
                lambda: _restore_database(transport, spec, store, manifest, db_name, deadline, result),
            )
        )
    _together(jobs)
    result.duration = time.monotonic() - clock
    problems = []
    if result.damaged:
        shown = "; ".join(result.damaged[:10])
        more = f" (and {len(result.damaged) - 10} more)" if len(result.damaged) > 10 else ""
        problems.append(
            f"damaged files: {shown}{more}. Those were not written (what was there is unchanged); the "
            "other files were restored. Restore them from an older backup (backups list, then "
            "restore --backup ID --path ...)"
        )
    problems += result.db_problems
    if problems:
        record = result.record()
        raise BackupDamaged(
            f"restore of backup {manifest.id} is incomplete: " + " ".join(problems),
            outputs=record,
            changes=[{"what": "restore", **record}],
        )
    return result


def _part(name: str, job: Callable[[], None]) -> Callable[[], None]:
    """A failure says which part it came from (``outputs["part"]``: files or database)."""

    def run() -> None:
        try:
            job()
        except StepFailed as exc:
            exc.outputs.setdefault("part", name)
            raise

    return run


def _together(jobs: list[Callable[[], None]]) -> None:
    """Files and database at the same time (the site's disk and its database server work apart).

    Both always run to their end; the first failure is raised afterwards.
    """
    if len(jobs) == 1:
        jobs[0]()
        return
    with ThreadPoolExecutor(len(jobs), thread_name_prefix="restore") as pool:
        futures = [pool.submit(job) for job in jobs]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]


# ------------------------------------------------------------------ files

#: files up to this size are checked against their SHA-256 in memory before tar writes them;
#: bigger ones go to a temporary name and are moved into place once checked
VERIFY_IN_MEMORY = 4 * 1024 * 1024
PARTIAL = ".maintainer-partial"


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
    conflicts, extras = files_not_in_backup(transport, spec, manifest, dest, entries, deadline, whole=exact)
    _run_ops(transport, dest, [("rm", p, "") for p in conflicts], deadline)  # e.g. a symlink where a dir goes
    result.removed += len(conflicts)
    result.files_to = dest
    stream = _TarBuilder(store, manifest, entries, deadline, result)
    command = shlex.join(["tar", "-C", dest, "--numeric-owner", "-xf", "-"])
    with transport.stream_in(command) as sink:
        for chunk in stream.chunks():
            sink.write(chunk)
    outcome = sink.result
    assert outcome is not None
    if outcome.rc != 0:
        raise StepFailed(
            f"tar -x on {transport.label} failed (rc {outcome.rc}): "
            + " | ".join(outcome.stderr.strip().splitlines()[-5:]),
            outputs={"rc": outcome.rc, "stderr": outcome.stderr[-2000:]},
        )
    # big files were written under a temporary name: checked ones take their place, others go;
    # that touched their directories, whose mtimes are then set again
    if stream.finishing:
        dirs = {e.path: e for e in manifest.entries if e.type == "dir"}
        touched = {op[2].rpartition("/")[0] for op in stream.finishing if op[0] in ("mv", "cp")}
        touched |= {op[1].rpartition("/")[0] for op in stream.finishing if op[0] == "rm"}
        again = [("meta", d, "", dirs[d]) for d in sorted(touched, key=lambda p: -p.count("/")) if d in dirs]
        _run_ops(transport, dest, stream.finishing + again, deadline)
    if extras:
        # one by one, deepest first: a directory goes only once empty, so what it holds that the
        # backup never saw (excluded, unreadable) keeps it
        extras.sort(key=lambda item: item[0].count("/"), reverse=True)
        _run_ops(transport, dest, [("rmdir" if t == "dir" else "rm", p, "") for p, t in extras], deadline)
        result.removed += len(extras)


class _TarBuilder:
    """The tar archive fed to ``tar -x``: files pack by pack, then symlinks, then directories.

    Directories come last (deepest first) so their modes and mtimes are not changed again by
    what is created inside them. A file whose bytes do not match its SHA-256 is never written
    over what is there: small ones are held and checked before their member is written, big
    ones are written to ``.NAME.maintainer-partial`` and only moved into place when checked
    (``finishing`` lists those moves, and the removals of the bad ones).
    """

    def __init__(
        self,
        store: Store,
        manifest: Manifest,
        entries: list[Entry],
        deadline: Deadline,
        result: RestoreResult,
    ) -> None:
        self.store = store
        self.manifest = manifest
        self.entries = entries
        self.deadline = deadline
        self.result = result
        self.finishing: list[Any] = []

    def chunks(self) -> Iterator[bytes]:
        out = _Batcher()
        by_pack: dict[str, dict[int, list[Entry]]] = defaultdict(lambda: defaultdict(list))
        for entry in self.entries:
            if entry.type != "file":
                continue
            if entry.pack is None or entry.offset is None or entry.pack not in self.manifest.packs:
                self.result.damaged.append(f"{entry.path}: the manifest does not say where its bytes are")
                continue
            by_pack[entry.pack][entry.offset].append(entry)
        for pack_id, wanted in by_pack.items():
            pack = self.manifest.packs[pack_id]
            try:
                for piece in self._members(pack, wanted):
                    yield from out.add(piece)
            except BackupDamaged as exc:
                missing = [e for group in wanted.values() for e in group if e.path not in self._done]
                self.result.damaged.extend(f"{e.path}: {exc}" for e in missing)
        for entry in sorted((e for e in self.entries if e.type == "symlink"), key=lambda e: e.path):
            yield from out.add(_header(entry))
        dirs = sorted(
            (e for e in self.entries if e.type == "dir"), key=lambda e: e.path.count("/"), reverse=True
        )
        for entry in dirs:
            yield from out.add(_header(entry))
        yield from out.add(tarstream.END_OF_ARCHIVE)
        yield from out.flush()

    _done: set[str]

    def _members(self, pack: PackInfo, wanted: dict[int, list[Entry]]) -> Iterator[bytes]:
        self._done = set()
        for item in read_members(self.store, pack, wanted, self.deadline):
            if isinstance(item, bytes):  # a big member's header and content, on their way
                yield item
                continue
            member, data = item
            group = wanted[member.offset]
            first = group[0]
            if member.size != first.size:
                self._bad(group, f"the pack holds {member.size} bytes, the manifest says {first.size}")
            if data.ok is False:
                self._bad(group, f"content does not match its SHA-256 (pack {pack.key})")
            if isinstance(data.body, list):  # small: checked already, written only when good
                if data.ok:
                    for entry in group:
                        yield _header(entry, size=member.size)
                        yield from data.body
                        yield tarstream.padding(member.size)
                        self._count(entry)
                continue
            # big: the header went out under a temporary name before the check; now decide
            temp = _partial_name(first.path)
            if data.ok:
                self.finishing.append(("mv", temp, first.path))
                self._count(first)
                for entry in group[1:]:
                    self.finishing.append(("cp", first.path, entry.path, entry))
                    self._count(entry)
            else:
                self.finishing.append(("rm", temp, ""))

    def _bad(self, group: list[Entry], why: str) -> None:
        for entry in group:
            self._done.add(entry.path)
            self.result.damaged.append(f"{entry.path}: {why}")

    def _count(self, entry: Entry) -> None:
        self._done.add(entry.path)
        self.result.files += 1
        self.result.bytes += entry.size


@dataclass
class MemberData:
    """What ``read_members`` found for one wanted member."""

    #: small members: their bytes; big members: the header and pieces were already yielded
    body: list[bytes] | None
    ok: bool | None = None  # SHA-256 matches (None: not known yet)


def read_members(
    store: Store,
    pack: PackInfo,
    wanted: dict[int, list[Entry]],
    deadline: Deadline,
    *,
    stored: Any = None,
    emit_big: bool = True,
) -> Iterator[bytes | tuple[tarstream.Member, MemberData]]:
    """The wanted members of one pack, each checked against its SHA-256.

    Yields ``(member, data)`` once a member is complete. A big member (over
    ``VERIFY_IN_MEMORY``) is not held: with ``emit_big`` its header (under the
    temporary name) and its pieces are yielded as bytes before it completes. A pack that
    is missing, not zstd, or not tar raises BackupDamaged. Reading stops once every
    wanted member was seen, unless ``stored`` (a hashlib object) is to hash the whole object.
    """
    left = set(wanted)
    ready: list[Any] = []
    state: dict[str, Any] = {}

    def start(member: tarstream.Member) -> None:
        group = wanted.get(member.offset) if member.offset in left else None
        state["group"] = group
        if group is not None:
            left.discard(member.offset)
            state["sha"] = hashlib.sha256()
            state["member"], state["emitted"] = member, 0
            big = member.size > VERIFY_IN_MEMORY
            state["data"] = MemberData(None if big else [])
            if big and emit_big:
                ready.append(_header(group[0], size=member.size, name=_partial_name(group[0].path)))

    def data(member: tarstream.Member, piece: memoryview) -> None:
        if state.get("group") is not None:
            state["sha"].update(piece)
            body = state["data"].body
            if body is not None:
                body.append(bytes(piece))
            elif emit_big:
                ready.append(bytes(piece))
                state["emitted"] += len(piece)

    def end(member: tarstream.Member) -> None:
        group = state.pop("group", None)
        if group is not None:
            found: MemberData = state["data"]
            found.ok = state["sha"].hexdigest() == group[0].sha256
            if found.body is None and emit_big:
                ready.append(tarstream.padding(member.size))
            ready.append((member, found))

    reader = tarstream.TarReader(start, data, end)
    problem = None
    try:
        with store.open_read(pack.key) as raw, _zstd(_HashingReader(raw, stored), pack.key) as source:
            buffer = bytearray(CHUNK)
            # a member being copied keeps the loop going after the last one was found
            while left or state.get("group") is not None or stored is not None:
                deadline.check()
                got = source.readinto(buffer)  # type: ignore[attr-defined]
                if not got:
                    break
                reader.feed(memoryview(buffer)[:got])
                yield from _drain(ready)
    except zstandard.ZstdError as exc:
        problem = f"pack {pack.key} is corrupt (zstd: {exc})"
    except tarstream.TarFormatError as exc:
        problem = f"pack {pack.key} is corrupt ({exc})"
    except ObjectMissing:
        problem = f"pack {pack.key} is missing from the store"
    yield from _drain(ready)
    if state.get("group") is not None:  # the pack stopped inside a member
        problem = problem or f"pack {pack.key} is truncated"
        member, found = state["member"], state["data"]
        if found.body is None and emit_big:
            # that member's header is out: fill it up so tar's stream stays whole, and let it go
            missing = member.size - state["emitted"]
            while missing > 0:
                step = min(missing, CHUNK)
                yield b"\0" * step
                missing -= step
            yield tarstream.padding(member.size)
        found.ok = False
        yield (member, found)
    if problem:
        raise BackupDamaged(problem)
    if left:
        raise BackupDamaged(f"pack {pack.key} ends before {len(left)} of its files")


def _drain(ready: list[Any]) -> Iterator[Any]:
    items = list(ready)
    ready.clear()
    yield from items


def _partial_name(path: str) -> str:
    head, _, name = path.rpartition("/")
    return f"{head}/.{name}{PARTIAL}" if head else f".{name}{PARTIAL}"


@contextmanager
def _zstd(raw: Any, key: str) -> Iterator[BinaryIO]:
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


def _header(entry: Entry, size: int | None = None, name: str | None = None) -> bytes:
    return tarstream.header(
        name or entry.path,
        entry.type,
        size=entry.size if size is None else size,
        mode=entry.mode,
        mtime=entry.mtime,
        linkname=entry.target or "",
        uid=entry.uid,
        gid=entry.gid,
    )


def files_not_in_backup(
    transport: Transport,
    spec: SiteBackup,
    manifest: Manifest,
    dest: str,
    selected: list[Entry],
    deadline: Deadline,
    *,
    whole: bool = True,
) -> tuple[list[str], list[tuple[str, str]]]:
    """What is in ``dest`` and in the way: (conflicts, extras).

    Conflicts are paths the restore writes (or their parent directories) that exist with
    another type, e.g. a symlink where the backup has a directory: tar would follow it. With
    ``whole`` (a full restore in place), extras are the (path, type) of what the backup did not
    have, to be removed one by one. Excluded paths (the backup's excludes and today's) and what
    the backup could not read are never listed: the backup knows nothing about them.
    """
    from .create import list_docroot  # the same listing the backup used

    settings = spec.settings.model_copy(
        update={"exclude": sorted({*manifest.exclude, *spec.settings.exclude})}
    )
    kinds = {e.path: e.type for e in manifest.entries}
    written = {e.path for e in selected}
    for path in list(written):
        parts = path.split("/")
        written.update("/".join(parts[:i]) for i in range(1, len(parts)))
    protected = set(manifest.unreadable)
    conflicts: list[str] = []
    extras: list[tuple[str, str]] = []
    gone: set[str] = set()  # removed in a whole: what is under them goes with them
    for current in list_docroot(transport, dest, settings, deadline).entries:
        parts = current.path.split("/")
        ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if (
            current.path in protected
            or any(a in protected for a in ancestors)
            or any(a in gone for a in ancestors)
        ):
            continue
        kind = kinds.get(current.path)
        if kind is not None and kind != current.type and current.path in written:
            conflicts.append(current.path)
            gone.add(current.path)
        elif whole and kind is None and not any(p.startswith(current.path + "/") for p in protected):
            extras.append((current.path, current.type))
    return conflicts, extras


_OPS_SCRIPT = """set -u
root=0; [ "$(id -u)" = 0 ] && root=1
meta() {  # path mode mtime owner: a path gets its own metadata from the manifest
  chmod -- "$2" "$1" && touch -h -m -d "@$3" -- "$1" || return 1
  if [ "$root" = 1 ] && [ -n "$4" ]; then chown -h -- "$4" "$1"; fi
}
while IFS= read -r -d '' op && IFS= read -r -d '' a && IFS= read -r -d '' b \\
    && IFS= read -r -d '' mode && IFS= read -r -d '' mtime && IFS= read -r -d '' owner; do
  case "$op" in
    rm) rm -rf -- "$a" ;;
    rmdir) rmdir -- "$a" 2>/dev/null || true ;;
    mv) mv -f -- "$a" "$b" ;;
    cp) cp -- "$a" "$b" && meta "$b" "$mode" "$mtime" "$owner" ;;
    meta) meta "$a" "$mode" "$mtime" "$owner" ;;
  esac || failed=1
done
exit ${failed:-0}
"""


def _run_ops(transport: Transport, dest: str, ops: list[Any], deadline: Deadline) -> None:
    """File operations in ``dest`` on the site (rm, rmdir, mv, cp, meta), one command for them all.

    Each op is ``(op, a, b)`` or ``(op, a, b, entry)``: ``cp`` and ``meta`` give the path the
    entry's mode, mtime and owner.
    """
    if not ops:
        return
    deadline.check()
    with transport.stream_in(f"cd -- {shlex.quote(dest)} && {_OPS_SCRIPT}") as sink:
        for op, a, b, *rest in ops:
            entry: Entry | None = rest[0] if rest else None
            mode = f"{entry.mode:o}" if entry else ""
            mtime = entry.mtime if entry else ""
            owner = f"{entry.uid}:{entry.gid}" if entry and entry.uid is not None else ""
            fields = (op, a, b, mode, mtime, owner)
            sink.write(b"\0".join(x.encode("utf-8", tarstream.ERRORS) for x in fields) + b"\0")
    outcome = sink.result
    assert outcome is not None
    if outcome.rc != 0:
        raise StepFailed(
            f"restoring in {dest} on {transport.label}: some files could not be moved or removed: "
            + " | ".join(outcome.stderr.strip().splitlines()[-5:])
        )


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
    in_place = target == spec.db.name
    # the stored dump is checked whole before a byte of it reaches a database
    stored = hashlib.sha256()
    try:
        with store.open_read(dump.key) as raw:
            pump(raw, stored.update, deadline)
    except ObjectMissing:
        raise BackupDamaged(f"the database dump {dump.key} of backup {manifest.id} is missing") from None
    if stored.hexdigest() != dump.sha256:
        raise BackupDamaged(
            f"the database dump {dump.key} of backup {manifest.id} is corrupt (its SHA-256 does not match); "
            "nothing was imported"
        )
    with db_client(transport, spec.db, deadline.cancel) as client:
        created = False
        if not in_place:
            if client.database_exists(target):
                raise StepFailed(
                    f"database '{target}' already exists: a restore into another database needs a new one. "
                    f"Drop it first, or pick another name with --db"
                )
            client.create_database(target)
            created = True
        try:
            _import_dump(transport, client, store, dump.key, target, deadline, source_db=dump.name)
        except StepFailed as exc:
            if created:
                with suppress(MaintainerError):
                    client.drop_database(target)  # a half-made copy is worth nothing
                raise
            if client.atomic_restore:  # PostgreSQL: one transaction, rolled back
                raise type(exc)(
                    f"{exc} Nothing of it was kept: the live database '{target}' is as it was.",
                    outputs=exc.outputs,
                ) from exc
            result.database = target
            raise type(exc)(
                f"{exc} The live database '{target}' is now only partly restored: fix the cause and "
                "restore again (or restore an older backup).",
                outputs=exc.outputs,
            ) from exc
        except BaseException:
            if created:
                with suppress(MaintainerError):
                    client.drop_database(target)  # a half-made copy is worth nothing
                raise
            if in_place:
                result.database = target
            raise
        result.database = target
        now = client.table_stats(database=target)
    result.tables = sum(1 for t in dump.tables.values() if t.get("stable") is not False)
    for table, expected in sorted(dump.tables.items()):
        got = now.get(table)
        if expected.get("stable") is False:
            continue  # written to during the dump: the recorded figures are not the dump's
        if got is None or (got["rows"], got["checksum"]) != (expected["rows"], expected["checksum"]):
            result.table_mismatches.append(
                f"{table}: expected {_figures(expected)}, restored {_figures(got)}"
            )
    if result.table_mismatches:
        shown = "; ".join(result.table_mismatches[:5])
        result.db_problems.append(f"database '{target}' does not match the backup: {shown}")


def _import_dump(
    transport: Transport,
    client: Any,
    store: Store,
    key: str,
    target: str,
    deadline: Deadline,
    *,
    source_db: str | None = None,
) -> None:
    try:
        with (
            store.open_read(key) as raw,
            _zstd(raw, key) as source,
            transport.stream_in(client.restore_command(target)) as sink,
        ):
            # definers other than the importing user would need SUPER: objects become the user's
            writer = client.restore_filter(sink.write, source=source_db, target=target)
            pump(source, writer.write if writer else sink.write, deadline)
            if writer:
                writer.close()
    except StreamClosed as exc:  # the client stopped at an error before it had read the whole dump
        client.check(exc.result, f"importing the dump into database '{target}'")
        raise
    client.check(sink.result, f"importing the dump into database '{target}'")


def _figures(stat: Any) -> str:
    return "nothing" if stat is None else f"{stat['rows']} rows, checksum {stat['checksum']}"


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
