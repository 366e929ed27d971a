"""``cms.verify``: the site's CMS files against their published checksums (core and plugins).

Read-only. For WordPress, WP-CLI's ``core verify-checksums`` and ``plugin verify-checksums --all``
(see maintainer/cms/wordpress.py); Drupal's and Joomla's tools have no such check, and a static
site has no CMS: the step says so and, unless ``fail_on: unverified``, passes.

Each finding (a modified, missing or added file) is an output and a record in the change log
(``{"what": "integrity_finding", "component", "file", "problem", "message"}``), after one overview
record (``"what": "cms_integrity"``) that is written even when everything matches: the log then
shows when the site was last verified clean, and against which version. They are records of what
was found, not of a change: the step never counts as changed.

``fail_on``: ``findings`` (default) fails the step when a file differs; ``unverified`` also when
something could not be checked (no published checksums, a CMS without a check); ``never`` only
reports. A dry run performs the same (read-only) check and shows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ..cms.base import CmsError, VerifyResult
from ..errors import StepFailed
from ..inventory import Site
from .base import Action, ActionResult, Args, StepContext
from .cms_common import MAX_RECORDED, check_cms_site, plural, site_adapter, step_failed


class CmsVerifyArgs(Args):
    fail_on: Literal["findings", "unverified", "never"] = "findings"


def _summary(title: str, version: str | None, result: VerifyResult) -> str:
    what = f"{title} {version}" if version else title
    if not result.supported:
        return f"integrity not checked: {result.note}"
    if result.findings:
        shown = ", ".join(f"{f.component} {f.file} ({f.problem})" for f in result.findings[:5])
        more = f" and {len(result.findings) - 5} more" if len(result.findings) > 5 else ""
        files = plural(len(result.findings), "file")
        return f"integrity: {files} of {what} differ from published checksums: {shown}{more}"
    verified = [c for c in result.verified if c != "core"]
    parts = [
        "core" if "core" in result.verified else None,
        plural(len(verified), "plugin") if verified else None,
    ]
    checked = " and ".join(p for p in parts if p) or "nothing"
    text = f"integrity: {what}: {checked} match their published checksums"
    if result.unverified:
        text += f"; not verifiable: {', '.join(u['component'] for u in result.unverified)}"
    return text


class CmsVerifyAction(Action):
    name = "cms.verify"
    Args = CmsVerifyArgs
    summary = "verify the site's CMS files (core, plugins) against published checksums; findings recorded"

    def check_site(self, site: Site, args: CmsVerifyArgs, project_dir: Path) -> None:
        check_cms_site(site)

    def _check(self, ctx: StepContext) -> tuple[dict[str, Any], VerifyResult | None]:
        if ctx.site.cms == "static":
            return {"cms": "static", "supported": False, "skipped": True,
                    "summary": "static site: no CMS files to verify"}, None  # fmt: skip
        adapter = site_adapter(ctx)
        try:
            result = adapter.verify()
        except CmsError as exc:
            raise step_failed(exc) from None
        version = result.version
        outputs = {
            "cms": adapter.name,
            "supported": result.supported,
            "version": version,
            "clean": result.clean,
            "findings": [f.record() for f in result.findings],
            "count": len(result.findings),
            "verified": result.verified,
            "unverified": result.unverified,
            "summary": _summary(adapter.title, version, result),
        }
        if not result.supported:
            outputs["note"] = result.note
        return outputs, result

    def dry_run(self, ctx: StepContext, args: CmsVerifyArgs) -> dict[str, Any]:
        try:
            outputs, _ = self._check(ctx)
        except StepFailed as exc:
            return {"summary": f"would verify the CMS files; checking now failed: {exc}"}
        return outputs

    def run(self, ctx: StepContext, args: CmsVerifyArgs) -> ActionResult:
        outputs, result = self._check(ctx)
        if result is None:
            return ActionResult(outputs=outputs)
        overview: dict[str, Any] = {
            "what": "cms_integrity",
            "cms": outputs["cms"],
            "version": outputs["version"],
            "supported": result.supported,
            "findings": len(result.findings),
            "verified": result.verified,
            "unverified": result.unverified,
            "summary": outputs["summary"],
        }
        if len(result.findings) > MAX_RECORDED:
            overview["findings_not_listed"] = len(result.findings) - MAX_RECORDED
        records = [
            overview,
            *({"what": "integrity_finding", **f.record()} for f in result.findings[:MAX_RECORDED]),
        ]
        ctx.log(outputs["summary"])
        failing = args.fail_on != "never" and (
            bool(result.findings)
            or (args.fail_on == "unverified" and (not result.supported or bool(result.unverified)))
        )
        if failing:
            raise StepFailed(outputs["summary"], outputs=outputs, changes=records)
        return ActionResult(outputs=outputs, changes=records)
