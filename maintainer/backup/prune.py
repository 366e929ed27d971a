"""Apply a site's retention policy: remove expired backups, then content nothing references.

Order matters for safety: an expired backup's manifest goes first (the backup
no longer exists), then packs and dumps that no remaining manifest references.
Content a running backup may still reference is never removed:

- the newest backup is always kept, and a backup only reuses the packs of the
  newest complete backup (its parent);
- a backup in progress holds a lock object from before it writes anything:
  nothing modified after the oldest such lock started is removed;
- nothing modified in the last ``GRACE`` is removed either (a backup that
  started after prune listed the locks, clocks that disagree).

A lock older than ``LOCK_STALE`` belongs to a backup that died; it is removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import BackupDamaged, MaintainerError, StoreError
from ..units import human_bytes
from .manifest import DAMAGED, LOCKS, backup_ids, load_manifest, manifest_key, marked_key, time_of
from .retention import RetentionPolicy, Snapshot, describe, select
from .store import Store
from .streams import Deadline

GRACE = timedelta(hours=1)
LOCK_STALE = timedelta(hours=24)


@dataclass
class PruneReport:
    location: str
    policy: str
    dry_run: bool
    kept: dict[str, list[str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    objects_removed: int = 0
    bytes_freed: int = 0
    objects_held: int = 0  # unreferenced but too new (a backup may be running)
    stale_locks: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # kept backups whose manifest is unreadable
    incomplete_removed: int = 0
    warnings: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        held = f"; {self.objects_held} unreferenced object(s) held (too new)" if self.objects_held else ""
        bad = (
            f"; {len(self.unreadable)} unreadable backup(s), so no content was removed"
            if self.unreadable
            else ""
        )
        return {
            "summary": f"removed {len(self.removed)} backup(s) and {self.objects_removed} object(s) "
            f"({human_bytes(self.bytes_freed)}), kept {len(self.kept)} ({self.policy}){held}{bad}",
            "location": self.location,
            "policy": self.policy,
            "dry_run": self.dry_run,
            "kept": self.kept,
            "removed": self.removed,
            "objects_removed": self.objects_removed,
            "bytes_freed": self.bytes_freed,
            "objects_held": self.objects_held,
            "stale_locks": self.stale_locks,
            "unreadable": self.unreadable,
            "incomplete_removed": self.incomplete_removed,
            "warnings": self.warnings,
        }


def prune_backups(
    store: Store,
    policy: RetentionPolicy,
    deadline: Deadline,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PruneReport:
    now = now or datetime.now(UTC)
    report = PruneReport(store.location, describe(policy), dry_run)
    # locks first: whatever a backup that is running now writes is newer than its lock
    hold_after = now - GRACE
    for info in store.list(LOCKS):
        started = _lock_start(store, info.key) or info.modified
        if now - started > LOCK_STALE:
            report.stale_locks.append(info.key)
        else:
            hold_after = min(hold_after, started - GRACE)
    ids = backup_ids(store)
    snapshots = [Snapshot(i, time_of(i)) for i in ids]
    decision = select(snapshots, policy, now)
    report.kept, report.removed = decision.keep, decision.remove
    deadline.check()
    if not dry_run and decision.remove:
        store.delete([manifest_key(i) for i in decision.remove])
    referenced: set[str] = set()
    for backup_id in decision.keep:
        try:
            manifest = load_manifest(store, backup_id)
        except BackupDamaged as exc:
            # damaged, or written by a newer maintainer: what it references is unknown, so no
            # content is removed while it is kept
            report.unreadable.append(f"{backup_id}: {exc}")
            continue
        referenced.update(p.key for p in manifest.packs.values())
        referenced.update(d.key for d in manifest.databases)
    doomed = []
    for prefix in ("packs/", "db/") if not report.unreadable else ():
        for info in store.list(prefix):
            if info.key in referenced:
                continue
            if info.modified >= hold_after:
                report.objects_held += 1
                continue
            doomed.append(info.key)
            report.bytes_freed += info.size
    report.objects_removed = len(doomed)
    # damaged-pack markers of packs that are gone
    markers = [i.key for i in store.list(DAMAGED) if marked_key(i.key) not in referenced]
    deadline.check()
    if not dry_run:
        store.delete(doomed + report.stale_locks + markers)
        # what killed writers left: temp files, unfinished multipart uploads
        try:
            report.incomplete_removed = store.cleanup_incomplete(hold_after)
        except StoreError as exc:  # e.g. no s3:ListBucketMultipartUploads permission: not worth failing
            report.warnings.append(f"unfinished uploads were not cleaned up: {exc}")
    return report


def _lock_start(store: Store, key: str) -> datetime | None:
    try:
        started = json.loads(store.get_bytes(key))["started"]
        return datetime.fromisoformat(started)
    except (MaintainerError, ValueError, KeyError, TypeError):
        return None
