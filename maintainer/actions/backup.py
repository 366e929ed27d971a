"""``backup``: back up the site's files and database into its store (``backup.target``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backup.config import check_site_backup, site_backup
from ..backup.create import create_backup
from ..backup.manifest import backup_ids
from ..backup.streams import Deadline
from .base import Action, ActionResult, Args, StepContext

if TYPE_CHECKING:
    from ..inventory import Site


class BackupArgs(Args):
    files: bool = True
    database: bool = True


class BackupAction(Action):
    name = "backup"
    Args = BackupArgs
    summary = "back up the docroot (incremental) and the database into backup.target; outputs backup_id"

    def check_site(self, site: Site, args: BackupArgs, project_dir: Path) -> None:
        check_site_backup(site)

    def dry_run(self, ctx: StepContext, args: BackupArgs) -> dict[str, Any]:
        spec = site_backup(ctx.site)
        store = spec.store()
        ids = backup_ids(store)
        what = [
            w
            for w, on in (
                (f"files of {spec.docroot}", spec.docroot and args.files),
                (f"database {spec.db.name if spec.db else ''}", spec.db and args.database),
            )
            if on
        ]
        since = f"only what changed since {ids[-1]}" if ids else "a first, full backup"
        return {
            "summary": f"would back up {' and '.join(what) or 'nothing'} into {store.location} ({since})",
            "would_back_up": {
                "docroot": spec.docroot if args.files else None,
                "database": spec.db.name if spec.db and args.database else None,
                "exclude": spec.settings.exclude,
            },
            "to": store.location,
            "incremental_from": ids[-1] if ids else None,
        }

    def run(self, ctx: StepContext, args: BackupArgs) -> ActionResult:
        spec = site_backup(ctx.site)
        if not args.files:
            spec.docroot = None
        if not args.database:
            spec.db = None
        result = create_backup(
            ctx.transport, spec, Deadline(ctx.cancel, ctx.timeout), log=ctx.log, run_id=ctx.run.id
        )
        record = result.record()
        return ActionResult(outputs=record, changes=[{"what": "backup", **record}], changed=True)
