"""What a site's store holds: the backups (complete, running, interrupted), for ``backups list``."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import BackupDamaged, BadInput, MaintainerError, did_you_mean
from ..inventory import Site, load_inventory
from ..project import load_project
from .config import SiteBackup, site_backup
from .manifest import LOCKS, MANIFESTS, backup_ids, load_manifest, manifest_key, time_of
from .prune import LOCK_STALE
from .store import Store


def find_site(
    project_dir: Path, inventory: list[str] | tuple[str, ...], name: str, vault_password_file: str | None
) -> tuple[Site, SiteBackup]:
    """One site of the inventory by its exact name, with its backup settings (BadInput otherwise)."""
    project = load_project(project_dir)
    sources = project.inventory_sources(list(inventory))
    inv = load_inventory(sources, vault_password_file=vault_password_file)
    for site in inv.sites:
        if site.name == name:
            try:
                return site, site_backup(site)
            except BadInput as exc:
                exc.file = exc.file or ", ".join(str(s) for s in inv.sources)
                raise
    names = [s.name for s in inv.sites]
    raise BadInput(
        f"no site '{name}' in {', '.join(str(s) for s in inv.sources)}.",
        fix=f"{did_you_mean(name, names)}known sites: {', '.join(names[:10]) or '(none)'}.",
    )


@dataclass
class BackupRow:
    id: str
    time: str
    status: str  # complete, running, interrupted
    files: int | None = None
    size: int | None = None  # files plus database dumps, before compression
    new_bytes: int | None = None
    uploaded: int | None = None
    databases: list[str] | None = None
    duration: float | None = None
    warnings: int = 0
    problem: str | None = None  # why a backup is damaged

    def record(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_backups(store: Store, *, now: datetime | None = None) -> list[BackupRow]:
    """Every backup, oldest first; a backup still running (or that died) shows by its lock."""
    now = now or datetime.now(UTC)
    rows = []
    manifest_sizes = {info.key: info.size for info in store.list(MANIFESTS)}
    for backup_id in backup_ids(store):
        try:
            m = load_manifest(store, backup_id)
        except BackupDamaged as exc:
            rows.append(BackupRow(id=backup_id, time=time_of(backup_id).isoformat(timespec="seconds"),
                                  status="damaged", problem=str(exc)))  # fmt: skip
            continue
        started = datetime.fromisoformat(m.started)
        finished = datetime.fromisoformat(m.finished)
        rows.append(
            BackupRow(
                id=m.id,
                time=m.started,
                status="complete",
                files=m.stats.get("files", 0),
                size=m.stats.get("bytes", 0) + sum(d.raw_size for d in m.databases),
                # a database unchanged since the backup before shares that backup's dump
                new_bytes=m.stats.get("new_bytes", 0)
                + sum(d.raw_size for d in m.databases if d.key.startswith(f"db/{m.id}/")),
                uploaded=m.stats.get("bytes_uploaded", 0) + manifest_sizes.get(manifest_key(m.id), 0),
                databases=[d.name for d in m.databases],
                duration=(finished - started).total_seconds(),
                warnings=len(m.warnings),
            )
        )
    complete = {r.id for r in rows}
    for info in store.list(LOCKS):
        backup_id = info.key[len(LOCKS) :].removesuffix(".json")
        if backup_id in complete:
            continue
        try:
            lock = json.loads(store.get_bytes(info.key))
            started = datetime.fromisoformat(lock["started"])
        except (MaintainerError, ValueError, KeyError, TypeError):
            lock, started = {}, info.modified
        dead = lock.get("controller") == socket.gethostname() and not _alive(lock.get("pid"))
        status = "interrupted" if dead or now - started > LOCK_STALE else "running"
        rows.append(BackupRow(id=backup_id, time=started.isoformat(timespec="seconds"), status=status))
    return sorted(rows, key=lambda r: r.id)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
