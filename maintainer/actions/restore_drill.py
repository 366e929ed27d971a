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
    drill_only_hosts,
    drill_settings,
    human_span,
    max_gap,
    parse_duration,
    rpo_exposure,
    run_drill,
    scratch_db_name,
    site_sla,
)
from ..backup.manifest import backup_ids, find_backup, time_of
from ..backup.streams import Deadline
from ..errors import BackupDamaged, BadInput, StepFailed, StoreError
from ..inventory import Inventory, load_inventory
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

    def check_site_in_inventory(
        self, site: Site, args: RestoreDrillArgs, project_dir: Path, inventory: Inventory
    ) -> None:
        """The engine's plan-time hook with the inventory: drill_host must be one of its hosts, and a
        host that only serves as another site's drill_host is not checked as a site (it is skipped)."""
        if site.name in drill_only_hosts(inventory.sites):
            return
        self.check_site(site, args, project_dir)
        name = drill_host_name(site)
        if name is not None and name not in {s.name for s in inventory.sites}:
            raise BadInput(
                f"site '{site.name}': drill_host '{name}' is not a host of the inventory.",
                key="drill_host",
                fix="add that host to the inventory (with its connection vars), or remove drill_host "
                "to drill on the site's own host.",
            )

    def check_site(self, site: Site, args: RestoreDrillArgs, project_dir: Path) -> None:
        spec, store = check_site_backup(site)
        site_sla(site)
        settings = drill_settings(site)
        drill_host_name(site)  # its type; that it names a host: check_site_in_inventory
        if spec.docroot is None and settings.scratch_dir is None and spec.db is None:
            raise BadInput(f"site '{site.name}' has nothing to drill.", key="docroot")
        _check_scratch_dir(site, settings.scratch_dir, spec.docroot)
        if not args.backup.strip():
            raise BadInput(
                f"site '{site.name}': the backup to drill is empty (-p backup=).",
                file="",  # the param, not an inventory key
                fix="give -p backup=latest (the default: the newest backup) or a backup id from "
                "'maintainer backups list SITE'.",
            )
        if args.backup != "latest":
            try:
                find_backup(store, args.backup)
            except BackupDamaged:
                raise _unknown_backup(site, args.backup, store) from None
            except StoreError:
                return  # the run records a store that cannot be read

    def dry_run(self, ctx: StepContext, args: RestoreDrillArgs) -> dict[str, Any]:
        skip = self._skip_reason(ctx)
        if skip is not None:
            return {"summary": f"skipped: {skip}", "skipped": skip}
        spec = site_backup(ctx.site)
        store = spec.store()
        manifest = find_backup(store, args.backup)
        now = datetime.now(UTC)
        taken = datetime.fromisoformat(manifest.started)
        age = max(0.0, (now - taken).total_seconds())
        ids = backup_ids(store)
        gap = max_gap([time_of(i) for i in ids], now, timedelta(seconds=args.window_seconds))
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
                f"would drill backup {manifest.id} (taken {manifest.started}) on {host}: {files} files "
                f"into {posixpath.join(root, SCRATCH_PREFIX + 'XXXXXX')}"
                + (f", the dump into database {db}" if db else "")
                + f", verify {tables} tables"
                + (", serve it with php -S and fetch its home page" if smoke else "")
                + f"; then remove all of it. RPO now {human_span(age)}, largest gap {human_span(gap)}"
                + f" (compared with the rpo target: {human_span(rpo_exposure(age, gap) or 0)})"
            ),
            "would_drill": manifest.id,
            "drill_host": host,
            "scratch": {"dir": posixpath.join(root, SCRATCH_PREFIX + "XXXXXX"), "db": db},
            "rpo_seconds": round(age, 3),
            "max_gap_seconds": round(gap, 3),
            "files": files,
            "tables": tables,
            "smoke": smoke,
        }

    def run(self, ctx: StepContext, args: RestoreDrillArgs) -> ActionResult:
        skip = self._skip_reason(ctx)
        if skip is not None:
            ctx.log(f"skipped: {skip}")
            note = {"what": "restore_drill_skipped", "reason": skip}
            return ActionResult(outputs={"summary": f"skipped: {skip}", "skipped": skip}, changes=[note])
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
    def _skip_reason(ctx: StepContext) -> str | None:
        """Why this host is not drilled: it only serves as other sites' drill_host (no backup of its own)."""
        raw = ctx.site.vars.get("backup")
        if raw is not None and not (isinstance(raw, dict) and "target" not in raw):
            return None  # a site with a backup target: always drilled
        inventory = load_inventory(ctx.inventory_sources, vault_password_file=ctx.vault_password_file)
        users = drill_only_hosts(inventory.sites).get(ctx.site.name)
        if not users:
            return None
        return (
            f"{ctx.site.name} only serves as the drill_host of {', '.join(users)} and has no backup "
            "of its own to drill"
        )

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
    tree = site_backup(site).docroot  # backup.root when set: the scratch copy goes beside it, never in it
    return posixpath.dirname(tree.rstrip("/")) if tree else DEFAULT_REMOTE_SCRATCH


def _check_scratch_dir(site: Site, scratch_dir: str | None, docroot: str | None) -> None:
    """drill.scratch_dir must not be the docroot or inside it: the drill would write into the live site."""
    if scratch_dir is None or docroot is None:
        return
    scratch = posixpath.normpath(scratch_dir)
    root = posixpath.normpath(docroot)
    if scratch == root or scratch.startswith(root.rstrip("/") + "/"):
        raise BadInput(
            f"site '{site.name}': drill.scratch_dir '{scratch_dir}' is "
            + ("the docroot" if scratch == root else f"inside the docroot {docroot}")
            + ": the drill would write its scratch copy into the live site.",
            key="drill.scratch_dir",
            fix="give a directory outside the docroot (e.g. /var/tmp), or remove it (the docroot's parent).",
        )


def _unknown_backup(site: Site, wanted: str, store: Any) -> BadInput:
    """``-p backup=ID`` names no single backup: say so, with the newest ids first."""
    ids = backup_ids(store)
    matches = [i for i in ids if i.startswith(wanted)]
    what = f"matches {len(matches)} backups" if len(matches) > 1 else "matches no backup"
    newest = ", ".join(reversed((matches if len(matches) > 1 else ids)[-5:]))
    listed = f" (newest first: {newest})" if newest else " (there is no backup yet)"
    return BadInput(
        f"site '{site.name}': -p backup={wanted} {what} in {store.location}{listed}.",
        file="",  # the runbook's param, not an inventory key
        fix="give a backup id (or a unique prefix of one) from 'maintainer backups list SITE', "
        "or -p backup=latest.",
    )


def _marker(site: Site) -> str | None:
    marker = site.vars.get("health_marker")
    return str(marker) if marker not in (None, "") else None
