"""``restore``: restore a backup over the transport, whole or in part, in place or elsewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from ..backup.config import check_site_backup, site_backup
from ..backup.manifest import find_backup
from ..backup.restore import restore_backup, select_entries
from ..backup.streams import Deadline
from .base import Action, ActionResult, Args, StepContext

if TYPE_CHECKING:
    from ..inventory import Site


class RestoreArgs(Args):
    #: a backup id (or a unique prefix of one), or "latest"
    backup: str = "latest"
    #: restore the files here instead of the docroot (a directory on the site's host)
    to: str | None = None
    #: only these paths (globs relative to the docroot; a directory takes what is under it)
    paths: list[str] = Field(default_factory=list)
    files: bool = True
    database: bool = True
    #: import the dump into this database instead of the site's own
    db: str | None = None

    @field_validator("to", "db", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class RestoreAction(Action):
    name = "restore"
    Args = RestoreArgs
    summary = "restore a backup's files and/or database, in place or to another dir/database"

    def check_site(self, site: Site, args: RestoreArgs) -> None:
        check_site_backup(site)

    def dry_run(self, ctx: StepContext, args: RestoreArgs) -> dict[str, Any]:
        spec = site_backup(ctx.site)
        manifest = find_backup(spec.store(), args.backup)
        entries = select_entries(manifest, args.paths) if args.files else []
        in_place = args.to is None and not args.paths
        parts = []
        if args.files:
            where = args.to or spec.docroot
            parts.append(
                f"{sum(1 for e in entries if e.type == 'file')} files into {where}"
                + (" (removing files that are not in the backup)" if in_place else "")
            )
        if args.database and manifest.databases:
            parts.append(f"the database dump into {args.db or (spec.db.name if spec.db else '?')}")
        return {
            "summary": f"would restore backup {manifest.id} (taken {manifest.started}): {'; '.join(parts)}",
            "would_restore": manifest.id,
            "taken": manifest.started,
            "files": sum(1 for e in entries if e.type == "file"),
            "files_to": (args.to or spec.docroot) if args.files else None,
            "removes_files_not_in_backup": in_place and args.files,
            "database_to": (args.db or (spec.db.name if spec.db else None)) if args.database else None,
        }

    def run(self, ctx: StepContext, args: RestoreArgs) -> ActionResult:
        spec = site_backup(ctx.site)
        store = spec.store()
        manifest = find_backup(store, args.backup)
        result = restore_backup(
            ctx.transport,
            spec,
            store,
            manifest,
            Deadline(ctx.cancel, ctx.timeout),
            to=args.to,
            paths=args.paths,
            files=args.files,
            database=args.database,
            db_name=args.db,
            log=ctx.log,
        )
        record = result.record()
        return ActionResult(outputs=record, changes=[{"what": "restore", **record}], changed=True)
