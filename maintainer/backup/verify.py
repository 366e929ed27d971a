"""Check backups: every object a manifest needs is there with its size; with ``read_data``, every byte.

A pack shared by several backups is read once. What is damaged is named per
backup: the missing or corrupt object and the files (or dump) it holds.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackupDamaged, MaintainerError, ObjectMissing
from .manifest import Entry, Manifest, PackInfo, backup_ids, damaged_marker, load_manifest
from .restore import read_members
from .store import Store
from .streams import Deadline, pump


@dataclass
class BackupCheck:
    id: str
    ok: bool
    files: int = 0
    objects: int = 0
    problems: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ok": self.ok,
            "files": self.files,
            "objects": self.objects,
            "problems": self.problems,
        }


@dataclass
class VerifyReport:
    location: str
    read_data: bool
    backups: list[BackupCheck]
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.backups)

    def record(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "read_data": self.read_data,
            "ok": self.ok,
            "bytes_read": self.bytes_read,
            "backups": [b.record() for b in self.backups],
        }


def verify_backups(
    store: Store, wanted: list[str] | None, deadline: Deadline, *, read_data: bool
) -> VerifyReport:
    """Check the backups ``wanted`` (ids; all when None)."""
    ids = backup_ids(store)
    if wanted is not None:
        missing = [w for w in wanted if w not in ids]
        if missing:
            raise BackupDamaged(
                f"no backup {', '.join(missing)} in {store.location} (newest: {', '.join(ids[-3:])})"
            )
        ids = wanted
    sizes = {info.key: info.size for info in store.list("packs/")}
    sizes.update({info.key: info.size for info in store.list("db/")})
    report = VerifyReport(store.location, read_data, [])
    manifests: list[Manifest] = []
    for backup_id in ids:
        check = BackupCheck(backup_id, ok=True)
        report.backups.append(check)
        try:
            manifests.append(load_manifest(store, backup_id))
        except BackupDamaged as exc:
            check.ok = False
            check.problems.append(str(exc))
    # what each object holds, per backup, so damage is named where it matters
    bad_objects: dict[str, str] = {}
    for manifest in manifests:
        for pack_id, pack in manifest.packs.items():
            if pack.key not in sizes:
                bad_objects[pack.key] = "missing"
            elif sizes[pack.key] != pack.size:
                bad_objects[pack.key] = f"{sizes[pack.key]} bytes, expected {pack.size}"
            del pack_id
        for dump in manifest.databases:
            if dump.key not in sizes:
                bad_objects[dump.key] = "missing"
            elif sizes[dump.key] != dump.size:
                bad_objects[dump.key] = f"{sizes[dump.key]} bytes, expected {dump.size}"
    # pack key -> [(path, problem)] for files whose bytes do not match
    damaged_files: dict[str, list[tuple[str, str]]] = defaultdict(list)
    if read_data:
        report.bytes_read = _read_everything(store, manifests, bad_objects, damaged_files, deadline)
    for manifest in manifests:
        check = next(c for c in report.backups if c.id == manifest.id)
        check.files = sum(1 for _ in manifest.files())
        check.objects = len(manifest.packs) + len(manifest.databases)
        holds: dict[str, list[str]] = defaultdict(list)
        for entry in manifest.files():
            if entry.pack in manifest.packs:
                holds[manifest.packs[entry.pack].key].append(entry.path)
        for pack in manifest.packs.values():
            if pack.key in bad_objects:
                paths = holds.get(pack.key, [])
                shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
                check.problems.append(
                    f"{pack.key} {bad_objects[pack.key]}: damaged files: {shown or '(none)'}"
                )
            else:
                mine = set(holds.get(pack.key, []))
                check.problems += [
                    f"{path}: {why}" for path, why in damaged_files.get(pack.key, []) if path in mine
                ]
        for dump in manifest.databases:
            if dump.key in bad_objects:
                check.problems.append(
                    f"{dump.key} {bad_objects[dump.key]}: the dump of database '{dump.name}'"
                )
        check.ok = check.ok and not check.problems
    return report


def _read_everything(
    store: Store,
    manifests: list[Manifest],
    bad_objects: dict[str, str],
    damaged_files: dict[str, list[tuple[str, str]]],
    deadline: Deadline,
) -> int:
    """Re-hash every pack and dump once; record what does not match, and mark damaged packs.

    A pack found damaged gets a ``damaged/<pack-id>`` marker in the store: the next backup
    then sends the files it held again instead of pointing at broken bytes.
    """
    read = 0
    packs: dict[str, tuple[str, PackInfo]] = {}
    wanted: dict[str, dict[int, list[Entry]]] = defaultdict(lambda: defaultdict(list))
    for manifest in manifests:
        for entry in manifest.files():
            if entry.pack in manifest.packs and entry.offset is not None:
                pack = manifest.packs[entry.pack]
                packs[pack.key] = (entry.pack, pack)
                group = wanted[pack.key][entry.offset]
                if all(e.path != entry.path for e in group):
                    group.append(entry)
    for key, (_, pack) in packs.items():
        if key in bad_objects:
            _mark_damaged(store, key, bad_objects[key])
            continue
        stored = hashlib.sha256()
        try:
            for item in read_members(store, pack, wanted[key], deadline, stored=stored, emit_big=False):
                assert not isinstance(item, bytes)
                member, data = item
                read += member.size
                if not data.ok:
                    damaged_files[key] += [(e.path, f"content does not match its SHA-256 (pack {key})")
                                           for e in wanted[key][member.offset]]  # fmt: skip
        except BackupDamaged as exc:
            bad_objects[key] = str(exc)
        else:
            if stored.hexdigest() != pack.sha256 and not damaged_files[key]:
                bad_objects[key] = "corrupt (its bytes do not match their SHA-256; its files read correctly)"
        if key in bad_objects or damaged_files[key]:
            _mark_damaged(store, key, bad_objects.get(key) or "files do not match their SHA-256")
    dumps = {d.key: d for m in manifests for d in m.databases}
    for key, dump in dumps.items():
        if key in bad_objects:
            continue
        sha = hashlib.sha256()
        try:
            with store.open_read(key) as source:
                read += pump(source, sha.update, deadline)
        except ObjectMissing:
            bad_objects[key] = "missing"
            continue
        if sha.hexdigest() != dump.sha256:
            bad_objects[key] = "corrupt (its bytes do not match their SHA-256)"
            _mark_damaged(store, key, bad_objects[key])
    return read


def _mark_damaged(store: Store, key: str, why: str) -> None:
    with suppress(MaintainerError):
        store.put_bytes(damaged_marker(key), json.dumps({"object": key, "problem": why}).encode())
