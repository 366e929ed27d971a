"""The ``cms.*`` actions of the safe update flow (runbooks/cms-update): version, plan, apply, maintenance,
database migrations, caches.

- ``cms.version``: the core version.
- ``cms.updates``: read-only, a dry run does the same: the plan (maintainer/cms/plan.py) from what
  the CMS offers, the runbook's selection and the site's PHP version; outputs ``plan`` (the records
  ``cms.update`` takes), ``held`` (with reasons), ``available`` and a ``summary`` with every
  from -> to. ``plan_file`` replays the plan of an earlier ``--dry-run --output json`` instead.
- ``cms.update``: applies exactly a plan (``adapter.apply``), after checking that every component
  is still at the plan's from-version (else nothing is changed). A failed item fails the step, and
  the runbook's rollback restores the pre-update backup. ``one_by_one``: one component at a time
  with maintenance mode around it and a health check after it; a component that fails its check
  (or its update) has only its own directory restored from the pre-update backup, and the next one
  goes on: the good updates stay, the culprit is rolled back and named in the summary, the
  outputs and the change log.
- ``cms.maintenance``: on/off; off is verified (a site left at 503 fails loudly); an ``on`` step is
  undone (turned off) when the site fails.
- ``cms.db_update``, ``cms.cache_flush``: what ran, for the change log.

Every action gets the site's adapter over the step's transport; a CmsError (the tool gave no usable
answer) fails the step with the tool's output.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from ..backup.config import site_backup
from ..backup.manifest import find_backup
from ..backup.restore import restore_backup
from ..backup.streams import Deadline
from ..cms.base import Applied, CmsAdapter, CmsError, PlannedUpdate, adapter_class
from ..cms.plan import (
    Fix,
    Selection,
    UpdatePlan,
    build_plan,
    fixes_from_feed,
    fixes_from_updates,
    item_line,
    parse_pins,
)
from ..cms.versions import compare as compare_versions
from ..cms.vulnfeed import FeedError, load_feed, update_plan
from ..errors import BadInput, MaintainerError, StepFailed
from .base import Action, ActionResult, Args, StepContext, Text
from .cms_common import check_cms_site, plural, site_adapter, site_runner, step_failed
from .health_check import HealthCheckArgs, HealthReport, HealthSettings, check_until_healthy, settings_for

if TYPE_CHECKING:
    from ..inventory import Site

FEED_VAR = "vulnerability_feed"
#: a component's directory is moved here (a dot name: WordPress does not list it as a plugin) while
#: the backup's copy is restored, so files the broken version added do not remain
ASIDE_SUFFIX = ".maintainer-aside"


#: a static site has no CMS: every cms.* update step is a no-op there, saying so (a mixed inventory
#: runs cms-update without --limit)
STATIC = "static"
STATIC_SUMMARY = "static site: no CMS to update"


def check_updatable(site: Site) -> None:
    """At plan time: a known cms whose adapter can update (BadInput otherwise: nothing runs).

    cms.updates checks it (a site it plans for must be updatable); the other steps only need a known
    cms, so that a runbook whose update steps a ``when`` skips runs on any site.
    """
    check_cms_site(site)
    if site.cms == STATIC:
        return
    cls = adapter_class(site.cms)
    if not cls.can_update:
        raise BadInput(
            f"site '{site.name}' (cms: {site.cms}) cannot be updated by maintainer: "
            f"{cls.update_note or 'its adapter has no update support'}.",
            key="cms",
            fix="leave the site out of this run with --limit, or set its cms var to the CMS it runs.",
        )


def site_php_version(ctx: StepContext) -> str | None:
    """The PHP version the site runs (its ``php_bin`` var, else ``php``); None when it cannot tell."""
    php = str(ctx.site.vars.get("php_bin") or "php")
    result = site_runner(ctx)([php, "-r", "echo PHP_VERSION;"])
    text = result.stdout.strip()
    return text if result.rc == 0 and text and " " not in text else None


# ------------------------------------------------------------------ cms.version


class CmsVersionArgs(Args):
    #: after a rollback: the plan that was applied (cms.updates' ``plan``): each component's version
    #: is read back and recorded against the plan's from-version (which went back where)
    plan: list[dict[str, Any]] = Field(default_factory=list)
    #: the backup the rollback restored, for the record
    backup: Text | None = None

    @field_validator("backup", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return None if value == "" else value


class CmsVersionAction(Action):
    name = "cms.version"
    Args = CmsVersionArgs
    summary = "the CMS core version; with a plan: each component's version read back after a rollback"

    def check_site(self, site: Site, args: CmsVersionArgs, project_dir: Path) -> None:
        check_cms_site(site)

    def _version(self, ctx: StepContext) -> dict[str, Any]:
        adapter = site_adapter(ctx)
        try:
            version = adapter.version()
        except CmsError as exc:
            raise step_failed(exc) from None
        return {"cms": adapter.name, "version": version, "summary": f"{adapter.title} {version or '(none)'}"}

    def dry_run(self, ctx: StepContext, args: CmsVersionArgs) -> dict[str, Any]:
        if args.plan:
            return {"summary": f"would read back the versions of {plural(len(args.plan), 'component')}"}
        return self._version(ctx)

    def run(self, ctx: StepContext, args: CmsVersionArgs) -> ActionResult:
        if not args.plan or ctx.site.cms == STATIC:
            return ActionResult(outputs=self._version(ctx))
        adapter = site_adapter(ctx)
        try:
            adapter.refresh()
            installed = {c.key: c.version for c in adapter.components()}
        except CmsError as exc:
            raise step_failed(exc) from None
        rows = []
        for item in (PlannedUpdate.from_record(r) for r in args.plan):
            now = installed.get(item.key)
            back = item.from_version is None or (now is not None and versions_equal(now, item.from_version))
            rows.append({"component": item.key, "planned": f"{item.from_version} -> {item.to_version}",
                         "now": now, "back": back})  # fmt: skip
        lines = [f"{r['component']} {'back at' if r['back'] else 'NOT back, at'} {r['now']}" for r in rows]
        summary = f"after the restore of backup {args.backup or '?'}: " + ", ".join(lines)
        record = {"what": "cms_rollback", "backup_id": args.backup, "components": rows, "summary": summary}
        ctx.log(summary)
        outputs: dict[str, Any] = {"components": rows, "summary": summary}
        if not all(r["back"] for r in rows):
            raise StepFailed(summary, outputs=outputs, changes=[record])
        return ActionResult(outputs=outputs, changes=[record])


# ------------------------------------------------------------------ cms.updates


class CmsUpdatesArgs(Args):
    core: Literal["none", "minor", "major", "security"] = "minor"
    plugins: Literal["all", "security", "list", "none"] = "all"
    themes: Literal["all", "security", "none"] = "all"
    #: plugins=list: these slugs
    only: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    #: "slug=version": held at that version (or taken to it, when it is newer than installed)
    pin: list[str] = Field(default_factory=list)
    #: the vulnerability feed for plugins/themes/core=security on a CMS without its own advisories
    #: (WordPress, Joomla); default: the site's var vulnerability_feed; relative: to the project
    feed: Text | None = None
    #: cms.vulnerabilities' ``updates`` output: the security fixes, instead of reading a feed
    fixes: list[dict[str, Any]] | None = None
    #: the JSON of an earlier ``--dry-run --output json`` run: apply exactly its plan for this site
    plan_file: Text | None = None

    @field_validator("only", "exclude", "pin", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        # a CLI param "-p exclude=a,b" or an empty default arrives as a string
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.replace(",", " ").split() if part.strip()]
        return value

    @field_validator("feed", "plan_file", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return None if value == "" else value


#: where a BadInput about a cms.updates arg came from: the runbook passes the run's -p params
PARAM_ORIGIN = "the runbook param '{0}' (-p {0}=...)"


def _selection_given(args: CmsUpdatesArgs) -> list[str]:
    """The selection args that differ from their defaults (``plan_file`` takes none of them)."""
    defaults = (("core", "minor"), ("plugins", "all"), ("themes", "all"))
    given = [f"{name}={getattr(args, name)}" for name, default in defaults if getattr(args, name) != default]
    lists = ("only", "exclude", "pin")
    given += [f"{name}={','.join(getattr(args, name))}" for name in lists if getattr(args, name)]
    return given


def _selection(args: CmsUpdatesArgs) -> Selection:
    return Selection(
        core=args.core,
        plugins=args.plugins,
        themes=args.themes,
        only=tuple(args.only),
        exclude=tuple(args.exclude),
        pin=parse_pins(args.pin),
    )


def _resolve(value: str, project: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else project / path


def _needs_fixes(args: CmsUpdatesArgs) -> bool:
    return "security" in (args.core, args.plugins, args.themes)


def _feed_value(site: Site, args: CmsUpdatesArgs) -> str:
    return str(args.feed or site.vars.get(FEED_VAR) or "")


class CmsUpdatesAction(Action):
    name = "cms.updates"
    Args = CmsUpdatesArgs
    summary = "the update plan: every available update with from -> to, what is held back and why"

    def check_site(self, site: Site, args: CmsUpdatesArgs, project_dir: Path) -> None:
        check_updatable(site)
        try:
            parse_pins(args.pin)
        except ValueError as exc:
            raise BadInput(
                f"site '{site.name}': pin {exc}.", file=PARAM_ORIGIN.format("pin"),
                fix="write each pin as slug=version, e.g. -p pin=woocommerce=8.5.2.",
            ) from None  # fmt: skip
        if args.plan_file:
            conflicting = _selection_given(args)
            if conflicting:
                raise BadInput(
                    f"plan={args.plan_file} applies exactly that earlier plan, and the selection "
                    f"{', '.join(conflicting)} would be ignored.",
                    file=PARAM_ORIGIN.format("plan"),
                    fix="give either -p plan=FILE alone, or the selection params without plan (make a new "
                    "plan with --dry-run --output json > plan.json to apply it later).",
                )
            _load_plan_file(_resolve(args.plan_file, project_dir), site.name)
            return
        if args.plugins == "list" and not args.only:
            raise BadInput(
                "plugins=list updates the plugins named in 'only', and 'only' is empty.",
                file=PARAM_ORIGIN.format("only"),
                fix="give -p only=slug1,slug2, or use plugins=all.",
            )
        if _needs_fixes(args) and args.fixes is None and site.cms in ("wordpress", "joomla"):
            value = _feed_value(site, args)
            if not value:
                raise BadInput(
                    f"site '{site.name}': a security selection on {site.cms} needs a vulnerability feed "
                    "(it has no advisories of its own).",
                    key="feed",
                    fix=f"pass -p feed=FILE (docs/VULN-FEED.md) or set the site's var {FEED_VAR}.",
                )
            try:
                load_feed(_resolve(value, project_dir))
            except FeedError as exc:
                raise BadInput(
                    f"site '{site.name}': {exc}",
                    key="feed",
                    fix="pass an existing feed file in a supported format (docs/VULN-FEED.md)",
                ) from None

    def _fixes(
        self, ctx: StepContext, args: CmsUpdatesArgs, adapter: CmsAdapter, security: dict[str, dict[str, Any]]
    ) -> dict[str, Fix] | None:
        """The security fixes by key; ``security`` gets each one's advisory ids (and the feed's sha256)."""
        if args.fixes is not None:
            for record in args.fixes:
                extra = {k: record[k] for k in ("advisories", "feed_sha256") if record.get(k)}
                security[str(record.get("component"))] = extra
            return fixes_from_feed(args.fixes)
        if not _needs_fixes(args):
            return None
        own = adapter.security_updates()
        if own is not None:
            return fixes_from_updates(own)
        value = _feed_value(ctx.site, args)
        if not value:
            raise StepFailed(f"no vulnerability feed for site '{ctx.site.name}': set 'feed' or {FEED_VAR}")
        try:
            feed = load_feed(_resolve(value, ctx.project_dir))
        except FeedError as exc:
            raise StepFailed(str(exc)) from None
        records = update_plan(feed.match(adapter.name, adapter.components()))
        sha = feed.describe().get("sha256")
        for record in records:
            security[str(record["component"])] = {"advisories": record["advisories"], "feed_sha256": sha}
        return fixes_from_feed(records)

    def _plan(self, ctx: StepContext, args: CmsUpdatesArgs) -> dict[str, Any]:
        if ctx.site.cms == STATIC:
            return {"cms": STATIC, "plan": [], "count": 0, "held": [], "available": [], "notes": [],
                    "php_version": None, "core_version": None, "summary": STATIC_SUMMARY}  # fmt: skip
        adapter = site_adapter(ctx)
        if args.plan_file:
            return _replayed(
                ctx, adapter, _load_plan_file(_resolve(args.plan_file, ctx.project_dir), ctx.site.name)
            )
        try:
            updates = adapter.updates()
            components = adapter.components()
            security: dict[str, dict[str, Any]] = {}
            fixes = self._fixes(ctx, args, adapter, security)
            php = site_php_version(ctx)
            plan = build_plan(
                updates,
                components,
                _selection(args),
                fixes=fixes,
                php_version=php,
                cms_title=adapter.title,
            )
        except CmsError as exc:
            raise step_failed(exc) from None
        core = next((c.version for c in components if c.type == "core"), None)
        outputs = _outputs(adapter, plan, [u.record() for u in updates], php, core)
        for record in outputs["plan"]:
            record.update(security.get(record["component"], {}))  # cms.update records them per update
        return outputs

    def dry_run(self, ctx: StepContext, args: CmsUpdatesArgs) -> dict[str, Any]:
        outputs = self._plan(ctx, args)
        if outputs["count"] and not args.plan_file:
            outputs["summary"] += (
                "; to apply exactly this plan later: the same command with --output json > plan.json, "
                "then run with -p plan=plan.json"
            )
        return outputs

    def run(self, ctx: StepContext, args: CmsUpdatesArgs) -> ActionResult:
        outputs = self._plan(ctx, args)
        ctx.log(outputs["summary"])
        record = {
            "what": "cms_update_plan",
            "summary": outputs["summary"],
            "updates": len(outputs["plan"]),
            "held": outputs["held"],
            "php_version": outputs["php_version"],
            **({"notes": outputs["notes"]} if outputs["notes"] else {}),
        }
        unknown = outputs.get("unknown", {}).get("only") if args.plugins == "list" else None
        if unknown:
            # a typo in 'only' would update less than asked for, silently: nothing has changed yet
            raise StepFailed(
                f"only names {', '.join(repr(u) for u in unknown)}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not installed on site '{ctx.site.name}' "
                "(a typo?); nothing was changed. Fix the slugs in -p only=... (wp plugin list shows them).",
                outputs=outputs,
                changes=[record],
            )
        return ActionResult(outputs=outputs, changes=[record])


def _outputs(
    adapter: CmsAdapter,
    plan: UpdatePlan,
    available: list[dict[str, Any]],
    php: str | None,
    core: str | None,
) -> dict[str, Any]:
    return {
        "cms": adapter.name,
        "plan": [item.record() for item in plan.items],
        "count": len(plan.items),
        "held": [h.record() for h in plan.held],
        "available": available,
        "notes": plan.notes,
        "unknown": plan.unknown,
        "php_version": php,
        "core_version": core,
        # the notes (a name in exclude/pin that is not installed: a typo?) show in text output too
        "summary": plan.summary() + (f"; NOTE: {'; '.join(plan.notes)}" if plan.notes else ""),
    }


def _load_plan_file(path: Path, site: str) -> list[dict[str, Any]]:
    """The plan records of ``site`` in a ``--dry-run --output json`` document (BadInput when absent)."""
    fix = "pass the JSON that 'maintainer run cms-update --dry-run --output json' printed for this site"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"plan file {path}: {exc}.", key="plan", fix=fix) from None
    found = _find_plan(data, site)
    if found is None:
        raise BadInput(f"plan file {path} has no cms.updates plan for site '{site}'.", key="plan", fix=fix)
    return found


def _find_plan(data: Any, site: str) -> list[dict[str, Any]] | None:
    """The ``preview.plan`` of the cms.updates step of ``site``, wherever the document nests it."""
    sites = data.get("sites") if isinstance(data, dict) else None
    if isinstance(sites, dict) and site in sites:
        found = _search(sites[site])
        if found is not None:
            return found
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, dict | list):
                nested = _find_plan(value, site) if isinstance(value, dict) else None
                if nested is not None:
                    return nested
    return None


def _search(node: Any) -> list[dict[str, Any]] | None:
    if isinstance(node, dict):
        if node.get("uses") == "cms.updates":
            preview = node.get("preview") or node.get("outputs") or {}
            if isinstance(preview, dict) and isinstance(preview.get("plan"), list):
                return list(preview["plan"])
        for value in node.values():
            found = _search(value)
            if found is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _search(value)
            if found is not None:
                return found
    return None


def _replayed(ctx: StepContext, adapter: CmsAdapter, records: list[dict[str, Any]]) -> dict[str, Any]:
    """An earlier dry run's plan, checked against what is installed now (nothing changed otherwise)."""
    items = [PlannedUpdate.from_record(r) for r in records]
    try:
        _check_from_versions(adapter, items)
    except CmsError as exc:
        raise step_failed(exc) from None
    plan = UpdatePlan(items, [], ["the plan of an earlier dry run (plan_file), applied as it was"])
    return _outputs(adapter, plan, [], site_php_version(ctx), adapter.version())


def _check_from_versions(adapter: CmsAdapter, items: list[PlannedUpdate]) -> None:
    """StepFailed before anything changes when a component is no longer at the plan's from-version."""
    adapter.refresh()  # read them now, not from an earlier step's cache
    installed = {c.key: c.version for c in adapter.components()}
    moved = [
        f"{item.key} is {installed.get(item.key) or 'not installed'}, the plan says {item.from_version}"
        for item in items
        if item.from_version is not None and installed.get(item.key) != item.from_version
    ]
    if moved:
        raise StepFailed(
            "the site changed since the plan was made, nothing was updated: "
            + "; ".join(moved)
            + ". Make a new plan (run again, or a new --dry-run for plan_file)."
        )


# ------------------------------------------------------------------ cms.update


class CmsUpdateArgs(Args):
    #: the records of cms.updates' ``plan`` output (or of a dry run's)
    plan: list[dict[str, Any]]
    one_by_one: bool = False
    #: the pre-update backup's id (backup step's backup_id): one_by_one restores a culprit from it
    backup: Text | None = None
    #: one_by_one: the health check after each component (urls, marker, baseline, max_slowdown, ...)
    check: HealthCheckArgs = Field(default_factory=HealthCheckArgs)
    #: maintenance mode is on (an earlier step) and stays on through the database migrations after
    #: this step: put it back after each update command (WordPress's upgraders end it when they finish)
    keep_maintenance: bool = False

    @field_validator("backup", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return None if value == "" else value


def _record(item: PlannedUpdate, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "what": "cms_update",
        "component": item.key,
        "from": item.from_version,
        "to": item.to_version,
        "status": status,
        **extra,
    }


class CmsUpdateAction(Action):
    name = "cms.update"
    Args = CmsUpdateArgs
    summary = "apply exactly a plan; one_by_one: check after each and roll back only the culprit"

    def check_site(self, site: Site, args: CmsUpdateArgs, project_dir: Path) -> None:
        check_cms_site(site)
        if args.one_by_one:
            site_backup(site)  # the culprit is restored from the site's backup store

    def dry_run(self, ctx: StepContext, args: CmsUpdateArgs) -> dict[str, Any]:
        items = [PlannedUpdate.from_record(r) for r in args.plan]
        how = "one by one, with a health check after each" if args.one_by_one else "in this order"
        shown = ", ".join(item_line(i) for i in items) or "nothing"
        return {"summary": f"would update {how}: {shown}"}

    def run(self, ctx: StepContext, args: CmsUpdateArgs) -> ActionResult:
        items = [PlannedUpdate.from_record(r) for r in args.plan]
        if not items:
            return ActionResult(outputs={"applied": [], "rolled_back": [], "summary": "nothing to update"})
        adapter = site_adapter(ctx)
        # a security update's record names its advisories and the feed (by sha256) that said so
        security = {
            str(r.get("component")): {k: r[k] for k in ("advisories", "feed_sha256") if r.get(k)}
            for r in args.plan
        }
        try:
            _check_from_versions(adapter, items)
            if args.one_by_one:
                result = self._one_by_one(ctx, args, adapter, items)
            else:
                result = self._all(ctx, adapter, items, args.keep_maintenance)
        except CmsError as exc:
            raise step_failed(exc) from None
        except StepFailed as exc:
            _with_security(exc.changes, security)
            raise
        _with_security(result.changes, security)
        return result

    def _all(
        self, ctx: StepContext, adapter: CmsAdapter, items: list[PlannedUpdate], keep_maintenance: bool
    ) -> ActionResult:
        adapter.keep_maintenance = keep_maintenance
        try:
            applied = adapter.apply(items)
        finally:
            if keep_maintenance and adapter.maintenance_state() is False:
                adapter.maintenance(True)
                ctx.log("maintenance mode on again (the update ended it; the migrations come next)")
        changes = [
            _record(a.item, "updated" if a.ok else "failed", installed=a.version, message=a.message)
            | ({"cause": a.message} if not a.ok else {})
            for a in applied
        ]
        outputs: dict[str, Any] = {
            "applied": [a.record() for a in applied if a.ok],
            "failed": [a.record() for a in applied if not a.ok],
            "rolled_back": [],
        }
        failed = [a for a in applied if not a.ok]
        missing = [i for i in items if i.key not in {a.item.key for a in applied}]
        if failed or missing:
            causes = [f"{item_line(a.item)}: {a.message or 'failed'}" for a in failed]
            causes += [f"{item_line(i)}: not applied" for i in missing]
            # the engine marks every record of a failed step "failed": 'applied' keeps what each did
            for change, result in zip(changes, applied, strict=False):
                change["applied"] = result.ok
            raise StepFailed(
                f"{plural(len(causes), 'update')} failed: {'; '.join(causes)}",
                outputs=outputs,
                changes=changes,
            )
        outputs["summary"] = f"updated {', '.join(item_line(i) for i in items)}"
        ctx.log(outputs["summary"])
        return ActionResult(outputs=outputs, changes=changes, changed=True)

    def _one_by_one(
        self, ctx: StepContext, args: CmsUpdateArgs, adapter: CmsAdapter, items: list[PlannedUpdate]
    ) -> ActionResult:
        settings = settings_for(ctx.site, args.check)
        # the error log is read from where the last check left it: a culprit's fatal errors must not
        # fail the checks after its rollback, nor the next component's
        baseline = dict(args.check.baseline or {})
        applied: list[dict[str, Any]] = []
        rolled_back: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []

        def fail(message: str) -> StepFailed:
            for change in changes:
                change["applied"] = change["status"] == "updated"
            outputs: dict[str, Any] = {
                "applied": applied,
                "rolled_back": rolled_back,
                "error_log": baseline.get("error_log"),
            }
            return StepFailed(message, outputs=outputs, changes=changes)

        for number, item in enumerate(items, 1):
            ctx.log(f"[{number}/{len(items)}] updating {item_line(item)}")
            adapter.maintenance(True)
            try:
                results = adapter.apply([item])
            finally:
                turn_off(ctx, adapter)
            result = results[0] if results else Applied(item, False, None, "the adapter applied nothing")
            if result.ok:
                report = self._check(ctx, settings, baseline, args.check)
                if report.ok:
                    applied.append(result.record())
                    changes.append(_record(item, "updated", installed=result.version))
                    ctx.log(f"[{number}/{len(items)}] {item_line(item)}: updated, the site is healthy")
                    continue
                cause = report.summary
            else:
                cause = f"the update failed: {result.message or 'no message'}"
            path = adapter.component_path(item.type, item.slug)
            if path is None or not args.backup:
                changes.append(_record(item, "failed", cause=cause))
                why = "it is not one directory" if path is None else "no pre-update backup id was given"
                raise fail(f"{item_line(item)}: {cause}; it cannot be rolled back alone ({why})")
            ctx.log(f"rolling back {item_line(item)} alone: {cause}")
            try:
                restored = self._restore_component(ctx, adapter, item, path, args.backup)
            except MaintainerError as exc:
                changes.append(_record(item, "failed", cause=f"{cause}; its rollback failed: {exc}"))
                raise fail(f"{item_line(item)}: {cause}; restoring {path} failed: {exc}") from None
            again = self._check(ctx, settings, baseline, args.check)
            if not again.ok:
                changes.append(_record(item, "failed", cause=f"{cause}; still unhealthy after its rollback"))
                raise fail(
                    f"{item_line(item)}: {cause}; after restoring {path} alone the site is still unhealthy: "
                    f"{again.summary}"
                )
            record = {**item.record(), "cause": cause, "restored": path, "installed": restored}
            rolled_back.append(record)
            changes.append(
                _record(
                    item, "rolled_back", cause=cause, backup_id=args.backup, installed=restored, path=path
                )
            )
            ctx.log(f"ROLLED BACK {item_line(item)} (kept {restored}): {cause}")
        parts = [f"updated {', '.join(_line(r) for r in applied) or 'nothing'}"]
        if rolled_back:
            parts.append(
                "ROLLED BACK "
                + "; ".join(f"{_line(r)} ({r['cause']})" for r in rolled_back)
                + f" from backup {args.backup}"
            )
        outputs = {
            "applied": applied,
            "rolled_back": rolled_back,
            "summary": "; ".join(parts),
            # the post-update check reads the error log from here (the culprits' errors are known)
            "error_log": baseline.get("error_log"),
        }
        return ActionResult(outputs=outputs, changes=changes, changed=bool(applied or rolled_back))

    def _check(
        self,
        ctx: StepContext,
        settings: HealthSettings,
        baseline: dict[str, Any] | None,
        check: HealthCheckArgs,
    ) -> HealthReport:
        report, _ = check_until_healthy(
            ctx.transport, settings, baseline, retries=check.retries, delay=check.delay, cancel=ctx.cancel
        )
        if baseline is not None and report.error_log is not None:
            baseline["error_log"] = report.error_log
        return report

    def _restore_component(
        self, ctx: StepContext, adapter: CmsAdapter, item: PlannedUpdate, path: str, backup: str
    ) -> str | None:
        """The component's directory from the backup (the broken one moved aside first); its version now."""
        spec = site_backup(ctx.site)
        docroot = str(spec.web_root or "").rstrip("/")
        if not docroot:
            raise StepFailed(f"site '{ctx.site.name}' has no docroot to restore {path} into")
        store = spec.store()
        manifest = find_backup(store, backup)
        live = f"{docroot}/{path.strip('/')}"
        # with backup.root the backup holds the project around the docroot
        in_backup = posixpath.join(spec.web_subdir(), path.strip("/"))
        parent, _, name = live.rpartition("/")
        aside = f"{parent}/.{name}{ASIDE_SUFFIX}-{ctx.run.id}"
        quoted_live, quoted_aside = shlex.quote(live), shlex.quote(aside)
        move = f"if [ -e {quoted_live} ]; then mv -- {quoted_live} {quoted_aside}; fi"
        ctx.sh(["sh", "-c", f"rm -rf -- {quoted_aside}; {move}"])
        restore_backup(
            ctx.transport,
            spec,
            store,
            manifest,
            Deadline(ctx.cancel, ctx.timeout),
            paths=[in_backup],
            files=True,
            database=False,
            log=ctx.log,
        )
        adapter.refresh()
        installed = {c.key: c.version for c in adapter.components()}
        version = installed.get(item.key)
        if item.from_version is not None and version != item.from_version:
            raise StepFailed(
                f"after restoring {path}, {item.key} reads as {version or 'not installed'}, "
                f"not {item.from_version}"
            )
        ctx.sh(["rm", "-rf", "--", aside])
        return version


def _with_security(changes: list[dict[str, Any]], security: dict[str, dict[str, Any]]) -> None:
    for change in changes:
        if change.get("what") == "cms_update":
            change.update(security.get(str(change.get("component")), {}))


def versions_equal(a: str, b: str) -> bool:
    try:
        return compare_versions(a, b) == 0
    except ValueError:
        return a == b


def _line(record: dict[str, Any]) -> str:
    label = "core" if record["type"] == "core" else f"{record['type']} {record['slug']}"
    return f"{label} {record['from'] or '?'} -> {record['to']}"


# ------------------------------------------------------------------ cms.maintenance


class CmsMaintenanceArgs(Args):
    state: Literal["on", "off"]
    #: on: turned off again (undone) when the site fails. False where the runbook's rollback section
    #: keeps the site at 503 through its restore and turns it off itself (cms-update)
    undo: bool = True
    #: off: maintenance should be on now (an update flow turned it on): finding it off already means
    #: the site served during the steps before, a warning in the summary and the change record
    expect_on: bool = False
    #: off, the first step of an update flow: a maintenance mode younger than ``FRESH`` is another
    #: update still running or someone's deliberate maintenance: the site is refused, not cleared
    leftover: bool = False
    #: leftover: clear even a fresh one (-p clear_maintenance=true)
    clear_fresh: bool = False


#: what WordPress leaves behind when an update dies half-way (the site answers 503 while it exists)
LEFTOVER = {"wordpress": ".maintenance"}
#: WordPress ignores a .maintenance older than this (wp_is_maintenance_mode: 10 minutes)
FRESH = 600.0


def _age_text(age: float) -> str:
    return f"{age:.0f} s" if age < 120 else f"{age / 60:.0f} min"


def _fresh_leftover(ctx: StepContext, adapter: CmsAdapter, args: CmsMaintenanceArgs) -> float | None:
    """leftover: the age of a maintenance mode younger than FRESH that must not be cleared (else None)."""
    if not args.leftover or args.clear_fresh:
        return None
    age = adapter.maintenance_age()
    return age if age is not None and age < FRESH else None


def _refusal(ctx: StepContext, age: float) -> str:
    return (
        f"site '{ctx.site.name}' went into maintenance mode {_age_text(age)} ago (younger than WordPress's "
        f"{FRESH / 60:.0f} minutes): another update may be running, or someone put it there on purpose. "
        "Nothing was changed. Wait until it is over (or older than 10 minutes), or clear it with "
        "-p clear_maintenance=true when you know it is a leftover."
    )


class CmsMaintenanceAction(Action):
    name = "cms.maintenance"
    Args = CmsMaintenanceArgs
    summary = "maintenance mode on or off; off is verified (a site stuck at 503 fails loudly)"
    undoable = True

    def check_site(self, site: Site, args: CmsMaintenanceArgs, project_dir: Path) -> None:
        check_cms_site(site)

    def dry_run(self, ctx: StepContext, args: CmsMaintenanceArgs) -> dict[str, Any]:
        if ctx.site.cms == STATIC:
            return {"summary": STATIC_SUMMARY}
        adapter = site_adapter(ctx)
        try:
            now = adapter.maintenance_state()
            age = adapter.maintenance_age() if args.leftover and now else None
        except CmsError as exc:
            return {
                "summary": f"would turn maintenance mode {args.state}; its state cannot be read now: {exc}"
            }
        state = "unknown" if now is None else "on" if now else "off"
        summary = f"would turn maintenance mode {args.state} (it is {state} now)"
        if age is not None and age < FRESH and not args.clear_fresh:
            summary = f"would REFUSE the site: {_refusal(ctx, age)}"
        elif age is not None:
            how_old = _age_text(age) if age != float("inf") else "no readable time in it"
            summary = f"would clear a leftover maintenance mode ({how_old})"
        return {"summary": summary, "maintenance": now}

    def run(self, ctx: StepContext, args: CmsMaintenanceArgs) -> ActionResult:
        if ctx.site.cms == STATIC:
            return ActionResult(outputs={"summary": STATIC_SUMMARY, "skipped": True})
        adapter = site_adapter(ctx)
        try:
            before = adapter.maintenance_state()
            if args.state == "on":
                adapter.maintenance(True)
                outputs = {"maintenance": True, "before": before, "summary": "maintenance mode on"}
                turned_on = {"what": "maintenance", "state": "on", "before": before}
                return ActionResult(outputs=outputs, changes=[turned_on], changed=True)
            fresh = _fresh_leftover(ctx, adapter, args) if before else None
            if fresh is not None:
                raise StepFailed(_refusal(ctx, fresh), outputs={"maintenance": True, "age": round(fresh)})
            cleared = turn_off(ctx, adapter)
        except CmsError as exc:
            raise step_failed(exc) from None
        summary = "maintenance mode off" + (f" (cleared a leftover {cleared})" if cleared else "")
        change: dict[str, Any] = {"what": "maintenance", "state": "off", "before": before, "cleared": cleared}
        if args.expect_on and before is False:
            warning = (
                "it was already off: the site served visitors during the steps before this one "
                "(the update or a migration ended maintenance mode)"
            )
            summary += f"; WARNING: {warning}"
            change["warning"] = warning
        ctx.log(summary)
        outputs = {"maintenance": False, "before": before, "cleared": cleared, "summary": summary}
        # not "changed": the engine would offer an undo for it (turning maintenance back on); what it
        # did (a cleared leftover) is in the change record
        return ActionResult(outputs=outputs, changes=[change])

    def undo(self, ctx: StepContext, args: CmsMaintenanceArgs, result: ActionResult) -> bool:
        if args.state != "on" or not args.undo or ctx.site.cms == STATIC:
            return False  # undo: false: the rollback section ends maintenance after its restore
        try:
            turn_off(ctx, site_adapter(ctx))
        except CmsError as exc:
            raise step_failed(exc) from None
        return True


def turn_off(ctx: StepContext, adapter: CmsAdapter) -> str | None:
    """Maintenance off, verified; a leftover marker file is removed. StepFailed when it stays on."""
    try:
        adapter.maintenance(False)
    except CmsError as exc:
        first_error: CmsError | None = exc
    else:
        first_error = None
    if adapter.maintenance_state() is not True and first_error is None:
        return None
    cleared = None
    leftover = LEFTOVER.get(adapter.name)
    docroot = str(ctx.site.vars.get("docroot") or "").rstrip("/")
    if leftover and docroot:
        marker = f"{docroot}/{leftover}"
        if ctx.sh(["rm", "-f", "--", marker]).rc == 0:
            cleared = marker
    if adapter.maintenance_state() is True:
        why = f": {first_error}" if first_error else ""
        raise StepFailed(
            f"site '{ctx.site.name}' is stuck in maintenance mode (it answers 503){why}. Turn it off by hand "
            "(WordPress: delete the .maintenance file in the docroot) and check the site."
        )
    return cleared


# ------------------------------------------------------------------ cms.db_update, cms.cache_flush


class CmsDbUpdateAction(Action):
    name = "cms.db_update"
    summary = "run the database migrations of core and of components that have their own"

    def check_site(self, site: Site, args: Args, project_dir: Path) -> None:
        check_cms_site(site)

    def dry_run(self, ctx: StepContext, args: Args) -> dict[str, Any]:
        return {"summary": "would run the pending database migrations (core and components)"}

    def run(self, ctx: StepContext, args: Args) -> ActionResult:
        if ctx.site.cms == STATIC:
            return ActionResult(outputs={"ran": [], "supported": False, "summary": STATIC_SUMMARY})
        try:
            result = site_adapter(ctx).db_update()
        except CmsError as exc:
            raise step_failed(exc) from None
        if not result.supported:
            return ActionResult(outputs={"ran": [], "supported": False, "summary": "no database migrations"})
        names = ", ".join(str(r.get("what")) for r in result.ran) or "none pending"
        summary = f"database migrations: {names}"
        return ActionResult(
            outputs={"ran": result.ran, "supported": True, "summary": summary},
            changes=[{"what": "cms_db_update", "ran": result.ran, "summary": summary}],
            changed=bool(result.ran),
        )


class CmsCacheFlushAction(Action):
    name = "cms.cache_flush"
    summary = "flush the CMS's caches"

    def check_site(self, site: Site, args: Args, project_dir: Path) -> None:
        check_cms_site(site)

    def dry_run(self, ctx: StepContext, args: Args) -> dict[str, Any]:
        return {"summary": "would flush the CMS's caches"}

    def run(self, ctx: StepContext, args: Args) -> ActionResult:
        if ctx.site.cms == STATIC:
            return ActionResult(outputs={"flushed": False, "summary": STATIC_SUMMARY})
        try:
            flushed = site_adapter(ctx).cache_flush()
        except CmsError as exc:
            raise step_failed(exc) from None
        summary = "caches flushed" if flushed else "no cache to flush"
        return ActionResult(
            outputs={"flushed": flushed, "summary": summary},
            changes=[{"what": "cms_cache_flush", "flushed": flushed}],
            changed=flushed,
        )
