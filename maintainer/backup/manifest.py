"""The backup set: one manifest per backup, and where it lives in the store.

Store layout, the same for S3 and a local directory (``docs/RESTORE.md``)::

    <target>/<site>/manifests/<backup-id>.json.zst   one per complete backup, written last
    <target>/<site>/packs/<xx>/<pack-id>.tar.zst     changed files: a zstd-compressed tar
    <target>/<site>/db/<backup-id>/<name>.<fmt>.zst  database dumps
    <target>/<site>/locks/<backup-id>.json           a backup in progress (prune leaves its data)

A manifest lists every entry of the docroot (path, kind, mode, mtime, size,
sha256) with the pack and the offset inside the uncompressed pack where its
bytes live; entries unchanged since the previous backup point into older
packs. A backup exists only once its manifest is written.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import zstandard

from ..errors import BackupDamaged, ObjectMissing
from .store import Store

FORMAT = "maintainer-backup"
VERSION = 1
MANIFESTS = "manifests/"
MANIFEST_SUFFIX = ".json.zst"
LOCKS = "locks/"
#: ``damaged/<key with '/' as '~'>``: verify found the object (a pack, a dump) damaged; the next
#: backup sends that pack's files again and makes a fresh dump
DAMAGED = "damaged/"


def damaged_marker(key: str) -> str:
    return DAMAGED + key.replace("/", "~")


def marked_key(marker: str) -> str:
    return marker.removeprefix(DAMAGED).replace("~", "/")
#: file names are bytes: undecodable ones are written back as the same bytes, not mangled
ERRORS = "surrogateescape"


def new_backup_id(now: datetime | None = None) -> str:
    """Sortable by time, to the millisecond: ``20261129T194500.123Z-3f9a1c``."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%S')}.{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def time_of(backup_id: str) -> datetime:
    """When the backup started, from its id."""
    return datetime.strptime(backup_id.split("-", 1)[0], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


def manifest_key(backup_id: str) -> str:
    return f"{MANIFESTS}{backup_id}{MANIFEST_SUFFIX}"


def pack_key(pack_id: str) -> str:
    return f"packs/{pack_id[:2]}/{pack_id}.tar.zst"


def lock_key(backup_id: str) -> str:
    return f"{LOCKS}{backup_id}.json"


@dataclass(slots=True)  # one per file of the site: slots keep a 100k-file manifest small
class Entry:
    path: str
    type: str  # file, dir, symlink
    mode: int
    mtime: str  # seconds since the epoch as find prints it (%T@): compared as text, exactly
    size: int = 0
    sha256: str | None = None  # files only
    pack: str | None = None  # files, dirs and symlinks that were sent: the pack holding the member
    offset: int | None = None  # where its header starts in the uncompressed pack
    target: str | None = None  # symlinks
    uid: int | None = None
    gid: int | None = None
    #: the member's name in the pack when it is not ``path``: the same bytes were already stored
    #: under another name (a copied or renamed file), so this entry shares them
    member: str | None = None

    def same_stat(self, other: Entry) -> bool:
        """Unchanged as far as the file system says (type, size, mtime, mode, link target)."""
        mine = (self.type, self.size, self.mtime, self.mode, self.target, self.uid, self.gid)
        return mine == (other.type, other.size, other.mtime, other.mode, other.target, other.uid, other.gid)

    def record(self) -> dict[str, Any]:
        return {name: value for name in self.__slots__ if (value := getattr(self, name)) is not None}


@dataclass
class PackInfo:
    key: str
    size: int  # bytes in the store (compressed)
    sha256: str  # of the stored bytes
    raw_size: int  # bytes of the tar inside


@dataclass
class DumpInfo:
    engine: str
    name: str
    key: str
    format: str  # sql (mysqldump), custom (pg_dump -Fc)
    size: int
    sha256: str  # of the stored bytes
    raw_size: int
    raw_sha256: str  # of the dump itself
    server_version: str = ""
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: of the schema at backup time (see DatabaseClient.schema_digest)
    schema_sha256: str = ""
    #: when the dump object was made: a database unchanged since the last backup shares its dump
    dumped: str = ""


@dataclass
class Manifest:
    id: str
    site: str
    started: str
    finished: str
    host: str
    docroot: str
    parent: str | None
    exclude: list[str]
    entries: list[Entry]
    packs: dict[str, PackInfo]
    databases: list[DumpInfo]
    stats: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    run_id: str | None = None
    #: paths the backup could not read (permissions, vanished): a restore never deletes them
    unreadable: list[str] = field(default_factory=list)

    def files(self) -> Iterator[Entry]:
        return (e for e in self.entries if e.type == "file")

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "id": self.id,
            "site": self.site,
            "started": self.started,
            "finished": self.finished,
            "host": self.host,
            "docroot": self.docroot,
            "parent": self.parent,
            "run_id": self.run_id,
            "exclude": self.exclude,
            "stats": self.stats,
            "warnings": self.warnings,
            "unreadable": self.unreadable,
            "packs": {pid: asdict(info) for pid, info in sorted(self.packs.items())},
            "databases": [asdict(d) for d in self.databases],
        }
        # entries one by one into the compressor: no whole JSON text of a 100k-file site in memory
        out = io.BytesIO()
        compressor = zstandard.ZstdCompressor(level=9, write_checksum=True)
        with compressor.stream_writer(out, closefd=False) as sink:
            head = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
            sink.write(head[:-1].encode("utf-8", ERRORS) + b',"entries":[')
            for index, entry in enumerate(self.entries):
                text = json.dumps(entry.record(), ensure_ascii=False, separators=(",", ":"))
                sink.write((b"," if index else b"") + text.encode("utf-8", ERRORS))
            sink.write(b"]}")
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> Manifest:
        try:
            text = zstandard.ZstdDecompressor().decompressobj().decompress(data).decode("utf-8", ERRORS)
            # entries become Entry objects as they are parsed: no second list of dicts in memory
            doc = json.loads(text, object_hook=_entry_or_dict)
            del text
        except (zstandard.ZstdError, ValueError, TypeError) as exc:
            raise BackupDamaged(f"manifest {key} is unreadable ({exc}): the backup cannot be used") from None
        if doc.get("format") != FORMAT:
            raise BackupDamaged(f"{key} is not a maintainer backup manifest")
        if int(doc.get("version", 0)) > VERSION:
            raise BackupDamaged(
                f"{key} was written by a newer maintainer (format {doc['version']}, this one reads up to "
                f"{VERSION}): upgrade maintainer to read it"
            )
        return cls(
            id=doc["id"],
            site=doc["site"],
            started=doc["started"],
            finished=doc["finished"],
            host=doc.get("host", ""),
            docroot=doc.get("docroot", ""),
            parent=doc.get("parent"),
            run_id=doc.get("run_id"),
            exclude=list(doc.get("exclude", [])),
            stats=dict(doc.get("stats", {})),
            warnings=list(doc.get("warnings", [])),
            unreadable=list(doc.get("unreadable", [])),
            packs={pid: PackInfo(**info) for pid, info in doc.get("packs", {}).items()},
            databases=[DumpInfo(**d) for d in doc.get("databases", [])],
            entries=list(doc.get("entries", [])),
        )


_ID = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$")


def _entry_or_dict(obj: dict[str, Any]) -> Any:
    if "path" in obj and "type" in obj and "mtime" in obj:
        if obj.get("pack"):
            obj["pack"] = sys.intern(obj["pack"])  # thousands of entries share a few packs
        obj["type"] = sys.intern(obj["type"])
        return Entry(**obj)
    return obj


def backup_ids(store: Store) -> list[str]:
    """Ids of the complete backups (those with a manifest), oldest first; other files are ignored."""
    ids = []
    for info in store.list(MANIFESTS):
        name = info.key[len(MANIFESTS) :]
        if name.endswith(MANIFEST_SUFFIX) and _ID.match(name[: -len(MANIFEST_SUFFIX)]):
            ids.append(name[: -len(MANIFEST_SUFFIX)])
    return sorted(ids)


def load_manifest(store: Store, backup_id: str) -> Manifest:
    key = manifest_key(backup_id)
    try:
        data = store.get_bytes(key)
    except ObjectMissing:
        raise BackupDamaged(f"backup '{backup_id}' does not exist in {store.location}") from None
    return Manifest.from_bytes(data, key)


def latest_manifest(store: Store) -> Manifest | None:
    ids = backup_ids(store)
    return load_manifest(store, ids[-1]) if ids else None


def find_backup(store: Store, wanted: str | None) -> Manifest:
    """``None`` or ``latest`` is the newest backup; otherwise an id or a unique prefix of one."""
    ids = backup_ids(store)
    if not ids:
        raise BackupDamaged(f"there is no backup in {store.location} yet: run the backup runbook first")
    if wanted in (None, "", "latest"):
        return load_manifest(store, ids[-1])
    assert wanted is not None
    matches = [i for i in ids if i == wanted] or [i for i in ids if i.startswith(wanted)]
    if len(matches) != 1:
        shown = ", ".join(ids[-5:])
        what = "matches several backups" if matches else "matches no backup"
        raise BackupDamaged(f"'{wanted}' {what} in {store.location} (newest: {shown})")
    return load_manifest(store, matches[0])
