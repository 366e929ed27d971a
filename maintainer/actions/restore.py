"""``restore``: restore a backup over the transport, whole or in part, in place or elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from ..backup.config import check_site_backup, site_backup
from ..backup.manifest import find_backup
from ..backup.restore import files_not_in_backup, normalized, restore_backup, select_entries
from ..backup.streams import Deadline
from ..errors import BackupDamaged, BadInput, StepFailed, StoreError
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
    #: the restore may overwrite the live docroot or database (what `maintainer restore` asks for)
    overwrite_live: bool = False

    @field_validator("to", "db", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("to")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"'to' must be an absolute path on the site's host, got '{value}'")
        return value


class RestoreAction(Action):
    name = "restore"
    Args = RestoreArgs
    summary = "restore a backup's files and/or database, in place or to another dir/database"

    def check_site(self, site: Site, args: RestoreArgs, project_dir: Path) -> None:
        spec, store = check_site_backup(site)
        live = []
        if (
            args.files
            and spec.docroot
            and (args.to is None or normalized(args.to) == normalized(spec.docroot))
        ):
            live.append("files")
        if args.database and spec.db and args.db in (None, spec.db.name):
            live.append("database")
        if live and not args.overwrite_live:
            raise BadInput(
                f"site '{site.name}': this restore would overwrite the live {' and '.join(live)}, and "
                "nothing said so.",
                key="overwrite_live",
                fix="add -p overwrite_live=true (or use 'maintainer restore SITE', which asks), or restore "
                "elsewhere with -p to=DIR / -p db=NAME.",
            )
        # a backup id or paths that match nothing are input mistakes: exit 2 before anything runs
        # (a store that cannot be read now is left to the run, which records the failure)
        try:
            manifest = find_backup(store, args.backup)
        except BackupDamaged as exc:
            raise BadInput(
                f"site '{site.name}': {exc}.", key="backup", fix="pick an id from 'backups list SITE'."
            ) from None
        except StoreError:
            return
        if args.files and args.paths and not select_entries(manifest, args.paths):
            raise BadInput(
                f"site '{site.name}': no path in backup {manifest.id} matches {', '.join(args.paths)}.",
                key="paths",
                fix="paths are relative to the docroot; '*' stays in one directory, '**' crosses them; "
                "write a literal '[' as '[[]'.",
            )

    def dry_run(self, ctx: StepContext, args: RestoreArgs) -> dict[str, Any]:
        spec = site_backup(ctx.site)
        manifest = find_backup(spec.store(), args.backup)
        entries = select_entries(manifest, args.paths) if args.files else []
        dest = normalized(args.to or spec.docroot or manifest.docroot)
        in_place = args.files and not args.paths and dest == normalized(spec.docroot or "")
        removed: list[str] = []
        if in_place:
            conflicts, extras = files_not_in_backup(
                ctx.transport, spec, manifest, dest, entries, Deadline(ctx.cancel, ctx.timeout)
            )
            removed = conflicts + [path for path, _ in extras]
        parts = []
        if args.files:
            gone = f" and remove {len(removed)} not in it ({', '.join(removed[:5])})" if removed else ""
            parts.append(f"{sum(1 for e in entries if e.type == 'file')} files into {dest}{gone}")
        if args.database and manifest.databases:
            parts.append(f"the database dump into {args.db or (spec.db.name if spec.db else '?')}")
        return {
            "summary": f"would restore backup {manifest.id} (taken {manifest.started}): {'; '.join(parts)}",
            "would_restore": manifest.id,
            "taken": manifest.started,
            "files": sum(1 for e in entries if e.type == "file"),
            "files_to": dest if args.files else None,
            "would_remove": removed,
            "database_to": (args.db or (spec.db.name if spec.db else None)) if args.database else None,
        }

    def run(self, ctx: StepContext, args: RestoreArgs) -> ActionResult:
        spec = site_backup(ctx.site)
        if args.files and args.to and spec.docroot and not args.overwrite_live:
            # '//srv/site' or a symlink to the docroot is the docroot all the same
            same = ctx.sh(["realpath", "-m", "--", args.to, spec.docroot])
            real_to, real_docroot = [*same.stdout.splitlines(), "", ""][:2]
            if real_to == real_docroot:
                raise StepFailed(
                    f"--to {args.to} is the live docroot ({real_docroot}); confirm with --yes "
                    "(-p overwrite_live=true)"
                )
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
