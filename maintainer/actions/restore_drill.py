"""``restore_drill``: restore a backup into a scratch target, verify it, serve it, measure RTO/RPO, clean up.

The live site is never written to: the step reports ``changed: false``, and its record (see
docs/DRILLS.md) goes into the change log as the step's change all the same, passed or failed,
so ``maintainer drills report`` finds every drill there.
"""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import field_validator

from ..backup.config import check_site_backup, site_backup
from ..backup.drill import (
    DEFAULT_REMOTE_SCRATCH,
    SCRATCH_PREFIX,
    DrillPlace,
    drill_database,
    drill_host_name,
    drill_settings,
    max_gap,
    parse_duration,
    run_drill,
    scratch_db_name,
    site_sla,
)
from ..backup.manifest import backup_ids, find_backup, time_of
from ..backup.streams import Deadline
from ..errors import BackupDamaged, BadInput, StepFailed, StoreError
from ..inventory import load_inventory
from ..transport import Transport, host_key, make_transport
from .base import Action, ActionResult, Args, StepContext, Text

if TYPE_CHECKING:
    from ..inventory import Site


class RestoreDrillArgs(Args):
    #: a backup id (or a unique prefix of one), or "latest"
    backup: Text = "latest"
    #: the policy window for the largest gap between backups (a duration: 7d, 36h, ...)
    window: Text = "7d"
    #: serve the restored copy and fetch its home page (the site's drill.smoke can turn it off too)
    smoke: bool = True
    #: a drill that verified but missed an SLA target fails the step (fail) or only says so (report)
    sla_miss: Literal["fail", "report"] = "fail"

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("the window must be longer than zero")
        return value

    @property
    def window_seconds(self) -> float:
        return parse_duration(self.window)


class RestoreDrillAction(Action):
    name = "restore_drill"
    Args = RestoreDrillArgs
    summary = "restore a backup into a scratch dir and database, verify and serve it, measure RTO/RPO"

    def check_site(self, site: Site, args: RestoreDrillArgs, project_dir: Path) -> None:
        spec, store = check_site_backup(site)
        site_sla(site)
        settings = drill_settings(site)
        drill_host_name(site)  # its type here; that it exists needs the inventory (checked at run)
        if spec.docroot is None and settings.scratch_dir is None and spec.db is None:
            raise BadInput(f"site '{site.name}' has nothing to drill.", key="docroot")
        if args.backup not in ("", "latest"):
            try:
                find_backup(store, args.backup)
            except BackupDamaged as exc:
                raise BadInput(
                    f"site '{site.name}': {exc}.", key="backup", fix="pick an id from 'backups list SITE'."
                ) from None
            except StoreError:
                return  # the run records a store that cannot be read

    def dry_run(self, ctx: StepContext, args: RestoreDrillArgs) -> dict[str, Any]:
        spec = site_backup(ctx.site)
        store = spec.store()
        manifest = find_backup(store, args.backup)
        now = datetime.now(UTC)
        finished = datetime.fromisoformat(manifest.finished)
        ids = backup_ids(store)
        gap = max_gap([time_of(i) for i in ids], finished, now, timedelta(seconds=args.window_seconds))
        host_name = drill_host_name(ctx.site)
        host_site = self._drill_host(ctx, host_name) if host_name else None
        host = host_site.name if host_site is not None else ctx.site.name
        root = _scratch_root(ctx.site, host_site)
        db = scratch_db_name(manifest.databases[0].name, "XXXXXX") if manifest.databases else None
        smoke = args.smoke and drill_settings(ctx.site).smoke
        files = sum(1 for _ in manifest.files())
        tables = sum(len(d.tables) for d in manifest.databases)
        return {
            "summary": (
                f"would drill backup {manifest.id} (finished {manifest.finished}) on {host}: {files} files "
                f"into {posixpath.join(root, SCRATCH_PREFIX + 'XXXXXX')}"
                + (f", the dump into database {db}" if db else "")
                + f", verify {tables} tables"
                + (", serve it with php -S and fetch its home page" if smoke else "")
                + f"; then remove all of it. RPO now {now - finished}, largest gap {timedelta(seconds=gap)}"
            ),
            "would_drill": manifest.id,
            "drill_host": host,
            "scratch": {"dir": posixpath.join(root, SCRATCH_PREFIX + "XXXXXX"), "db": db},
            "rpo_seconds": round((now - finished).total_seconds(), 3),
            "max_gap_seconds": round(gap, 3),
            "files": files,
            "tables": tables,
            "smoke": smoke,
        }

    def run(self, ctx: StepContext, args: RestoreDrillArgs) -> ActionResult:
        spec = site_backup(ctx.site)
        store = spec.store()
        settings = drill_settings(ctx.site)
        host_name = drill_host_name(ctx.site)
        host = self._drill_host(ctx, host_name) if host_name else None
        transport: Transport = ctx.transport
        if host is not None:
            transport = make_transport(host_key(host.vars, host.name), host.vars)
        try:
            db = drill_database(ctx.site, host, spec)
            place = DrillPlace(
                transport=transport,
                host=host.name if host is not None else ctx.site.name,
                db=db,
                scratch_root=_scratch_root(ctx.site, host),
                other_db_server=db is not None and spec.db is not None and db != spec.db,
            )
            result = run_drill(
                spec,
                store,
                place,
                Deadline(ctx.cancel, ctx.timeout),
                backup=args.backup,
                window=args.window_seconds,
                smoke=args.smoke,
                settings=settings,
                sla=site_sla(ctx.site),
                cms=str(ctx.site.vars.get("cms") or ""),
                health_marker=_marker(ctx.site),
                log=ctx.log,
            )
        finally:
            if host is not None:
                transport.close()
        drill = result.record
        record = drill.record()
        if result.stopped is not None:
            raise type(result.stopped)(drill.summary(), outputs=record, changes=[record])
        if drill.outcome == "failed" or (drill.outcome == "sla_missed" and args.sla_miss == "fail"):
            raise StepFailed(drill.summary(), outputs=record, changes=[record])
        # the summary is what the run's table shows for the site
        summary = {"summary": drill.summary()}
        return ActionResult(outputs={**summary, **record}, changes=[{**summary, **record}], changed=False)

    @staticmethod
    def _drill_host(ctx: StepContext, name: str) -> Site:
        inventory = load_inventory(ctx.inventory_sources, vault_password_file=ctx.vault_password_file)
        for site in inventory.sites:
            if site.name == name:
                return site
        raise BadInput(
            f"site '{ctx.site.name}': drill_host '{name}' is not a host of the inventory.",
            key="drill_host",
            fix="add that host to the inventory (with its connection vars), or remove drill_host.",
        )


def _scratch_root(site: Site, host: Site | None) -> str:
    """The site's drill.scratch_dir; else the drill host's, or the docroot's parent on the site's host."""
    settings = drill_settings(site)
    if settings.scratch_dir:
        return settings.scratch_dir
    if host is not None:
        return drill_settings(host).scratch_dir or DEFAULT_REMOTE_SCRATCH
    docroot = site.vars.get("docroot")
    return posixpath.dirname(str(docroot).rstrip("/")) if docroot else DEFAULT_REMOTE_SCRATCH


def _marker(site: Site) -> str | None:
    marker = site.vars.get("health_marker")
    return str(marker) if marker not in (None, "") else None
