"""``backup_prune``: apply the site's retention policy (``backup.retention``) to its store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backup.config import check_site_backup, site_backup
from ..backup.prune import prune_backups
from ..backup.streams import Deadline
from .base import Action, ActionResult, Args, StepContext

if TYPE_CHECKING:
    from ..inventory import Site


class BackupPruneArgs(Args):
    pass


class BackupPruneAction(Action):
    name = "backup_prune"
    Args = BackupPruneArgs
    summary = "remove expired backups (backup.retention) and content no backup references"

    def check_site(self, site: Site, args: BackupPruneArgs, project_dir: Path) -> None:
        check_site_backup(site)

    def dry_run(self, ctx: StepContext, args: BackupPruneArgs) -> dict[str, Any]:
        spec = site_backup(ctx.site)
        report = prune_backups(spec.store(), spec.settings.retention, Deadline(ctx.cancel), dry_run=True)
        summary = (
            f"would remove {len(report.removed)} backup(s) ({', '.join(report.removed) or 'none'}) and "
            f"{report.objects_removed} unreferenced object(s), keep {len(report.kept)} ({report.policy})"
        )
        return {
            "summary": summary,
            "would_remove": report.removed,
            "would_keep": sorted(report.kept),
            "policy": report.policy,
        }

    def run(self, ctx: StepContext, args: BackupPruneArgs) -> ActionResult:
        spec = site_backup(ctx.site)
        report = prune_backups(spec.store(), spec.settings.retention, Deadline(ctx.cancel, ctx.timeout))
        record = report.record()
        changed = bool(report.removed or report.objects_removed)
        # recorded when it removed something, or when something stopped it (an unreadable backup)
        noteworthy = changed or report.unreadable or report.warnings
        changes = [{"what": "backups_pruned", **record}] if noteworthy else []
        return ActionResult(outputs=record, changes=changes, changed=changed)
