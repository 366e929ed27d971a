"""``cms.vulnerabilities``: the site's installed core, plugins and themes against a vulnerability feed.

Read-only. The feed is a JSON file on the controller (docs/VULN-FEED.md: maintainer's format, or a
Wordfence Intelligence, WPScan or Patchstack export), from the step's ``feed`` or else the site's
inventory var ``vulnerability_feed``; a relative path is relative to the project. The CMS adapter
lists the components (WordPress: ``wp plugin list``/``wp theme list``/``wp core version``), and
every advisory whose affected range holds the installed version is a finding: component,
installed version, advisory id, severity, first fixed version.

Outputs: ``findings``; ``updates`` (per vulnerable component the first version that fixes all of
its advisories: the selection a cms-update run takes, issue 5) and ``fixed_in`` (the same as
``{type: {slug: version}}``); ``feed`` (where, which format, its sha256). The change log gets an
overview record (``"what": "cms_vulnerabilities"``: the feed's digest, how many components, how
many findings) and one ``"what": "vulnerability"`` record per finding; the step never counts as
changed.

``fail_on``: ``never`` only reports; ``findings`` fails the step on any finding; ``critical``,
``high``, ``medium``, ``low`` on a finding of that severity or worse. A dry run performs the same
check and shows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ..cms.base import CmsError
from ..cms.vulnfeed import SEVERITIES, Feed, FeedError, Finding, load_feed, update_plan
from ..errors import BadInput, StepFailed
from ..inventory import Site
from .base import Action, ActionResult, Args, StepContext
from .cms_common import MAX_RECORDED, check_cms_site, plural, site_adapter, step_failed

FEED_VAR = "vulnerability_feed"


class CmsVulnerabilitiesArgs(Args):
    #: the feed file (relative: to the project); default: the site's var vulnerability_feed
    feed: str | None = None
    fail_on: Literal["never", "findings", "critical", "high", "medium", "low"] = "findings"


def feed_value(site: Site, args: CmsVulnerabilitiesArgs) -> str:
    """The feed as given: the step's ``feed``, else the site's var (empty: none)."""
    return str(args.feed or site.vars.get(FEED_VAR) or "")


def _resolve(value: str, project: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else project / path


def feed_path(ctx: StepContext, args: CmsVulnerabilitiesArgs) -> Path:
    value = feed_value(ctx.site, args)
    if not value:
        raise StepFailed(
            f"no vulnerability feed for site '{ctx.site.name}': set the step's 'feed' or the inventory "
            f"var {FEED_VAR} (a JSON file, see docs/VULN-FEED.md)"
        )
    return _resolve(value, ctx.project_dir)


def _summary(findings: list[Finding], components: int, feed: Feed) -> str:
    if not findings:
        return (
            f"vulnerabilities: none of {plural(components, 'component')} is affected by the "
            f"{len(feed.advisories)} advisories of the {feed.source} feed"
        )
    shown = ", ".join(
        f"{f.component.key} {f.component.version} ({f.advisory.severity}, {f.advisory.id}, "
        f"fixed in {f.fixed_in or 'no version yet'})"
        for f in findings[:5]
    )
    more = f" and {len(findings) - 5} more" if len(findings) > 5 else ""
    return f"vulnerabilities: {plural(len(findings), 'finding')}: {shown}{more}"


def _fixed_in(plan: list[dict[str, Any]]) -> dict[str, dict[str, str | None]]:
    by_type: dict[str, dict[str, str | None]] = {}
    for item in plan:
        by_type.setdefault(item["type"], {})[item["slug"]] = item["to"]
    return by_type


def _fails(fail_on: str, findings: list[Finding]) -> bool:
    if fail_on == "never" or not findings:
        return False
    if fail_on == "findings":
        return True
    limit = SEVERITIES.index(fail_on)
    return any(f.advisory.severity in SEVERITIES[: limit + 1] for f in findings)


class CmsVulnerabilitiesAction(Action):
    name = "cms.vulnerabilities"
    Args = CmsVulnerabilitiesArgs
    summary = "match the site's core, plugin and theme versions against a vulnerability feed file"

    def check_site(self, site: Site, args: CmsVulnerabilitiesArgs, project_dir: Path) -> None:
        check_cms_site(site)
        value = feed_value(site, args)
        if not value or site.cms == "static":
            return  # no feed: the step is skipped (its when) or fails at its turn, saying so
        # a missing or broken feed stops the run before anything ran (not after the OS was patched)
        try:
            load_feed(_resolve(value, project_dir))
        except FeedError as exc:
            raise BadInput(
                f"site '{site.name}': {exc}",
                key=FEED_VAR if not args.feed else None,
                fix="pass an existing feed file in maintainer's or a supported export format "
                "(docs/VULN-FEED.md), relative to the project",
            ) from None

    def _check(self, ctx: StepContext, args: CmsVulnerabilitiesArgs) -> tuple[dict[str, Any], list[Finding]]:
        if ctx.site.cms == "static":
            skipped = {
                "cms": "static",
                "skipped": True,
                "findings": [],
                "count": 0,
                "updates": [],
                "fixed_in": {},
            }
            return {**skipped, "summary": "static site: no CMS components to match"}, []
        path = feed_path(ctx, args)
        try:
            feed = load_feed(path)
        except FeedError as exc:
            raise StepFailed(str(exc)) from None
        adapter = site_adapter(ctx)
        try:
            components = adapter.components()
        except CmsError as exc:
            raise step_failed(exc) from None
        findings = feed.match(adapter.name, components)
        plan = update_plan(findings)
        outputs = {
            "cms": adapter.name,
            "feed": feed.describe(),
            "components": len(components),
            "findings": [f.record() for f in findings],
            "count": len(findings),
            "updates": plan,
            "fixed_in": _fixed_in(plan),
            "summary": _summary(findings, len(components), feed),
        }
        return outputs, findings

    def dry_run(self, ctx: StepContext, args: CmsVulnerabilitiesArgs) -> dict[str, Any]:
        if not feed_value(ctx.site, args) and ctx.site.cms != "static":
            # the same words the real run's failure would use, as a preview rather than an error
            return {
                "summary": "skipped: no vulnerability feed (the step's 'feed' or the site's var "
                f"{FEED_VAR})",
                "skipped": True,
            }
        try:
            outputs, _ = self._check(ctx, args)
        except StepFailed as exc:
            return {
                "summary": f"would match the CMS components against a vulnerability feed; failed now: {exc}"
            }
        return outputs

    def run(self, ctx: StepContext, args: CmsVulnerabilitiesArgs) -> ActionResult:
        outputs, findings = self._check(ctx, args)
        if outputs.get("skipped"):
            return ActionResult(outputs=outputs)
        feed = outputs["feed"]
        overview: dict[str, Any] = {
            "what": "cms_vulnerabilities",
            "cms": outputs["cms"],
            "feed": feed["location"],
            "feed_source": feed["source"],
            "feed_sha256": feed["sha256"],
            "advisories": feed["advisories"],
            "components": outputs["components"],
            "findings": len(findings),
            "summary": outputs["summary"],
        }
        if len(findings) > MAX_RECORDED:
            overview["findings_not_listed"] = len(findings) - MAX_RECORDED
        records = [overview]
        for finding in findings[:MAX_RECORDED]:
            record = finding.record()
            record.pop("references", None)  # the outputs have them; the log keeps the ids
            records.append({"what": "vulnerability", **record})
        ctx.log(outputs["summary"])
        if _fails(args.fail_on, findings):
            raise StepFailed(outputs["summary"], outputs=outputs, changes=records)
        return ActionResult(outputs=outputs, changes=records)
