"""The cms.verify and cms.vulnerabilities actions: site checks, skips, fail_on, records.

A tiny fake ``wp`` (a bash script printing what WP-CLI documents for ``core version`` and ``plugin
list``/``theme list``) stands in where the real WordPress is not needed; the real one is in
tests/integration/test_cms_checks.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from maintainer.actions import registry
from maintainer.actions.cms_verify import CmsVerifyAction
from maintainer.actions.cms_vulnerabilities import CmsVulnerabilitiesAction
from maintainer.errors import BadInput, StepFailed
from maintainer.inventory import Site
from maintainer.testing import action_context

FAKE_WP = """#!/bin/bash
case "$*" in
  *"core version"*) echo 6.4.2 ;;
  *"plugin list"*) echo '[{"name":"gallery","title":"Gallery","status":"active","version":"1.0"}]' ;;
  *"theme list"*) echo '[{"name":"astra","title":"Astra","status":"active","version":"4.1"}]' ;;
  *) echo "Error: not faked: $*" >&2; exit 1 ;;
esac
"""


def fake_wordpress(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    wp = tmp_path / "wp"
    wp.write_text(FAKE_WP)
    wp.chmod(0o755)
    return {"cms": "wordpress", "docroot": str(tmp_path), "wp_cli": str(wp), **extra}


def feed(tmp_path: Path, advisories: list[dict[str, Any]]) -> str:
    (tmp_path / "feed.json").write_text(json.dumps({"advisories": advisories}))
    return "feed.json"


def test_both_actions_are_registered() -> None:
    assert isinstance(registry.get("cms.verify"), CmsVerifyAction)
    assert isinstance(registry.get("cms.vulnerabilities"), CmsVulnerabilitiesAction)


def test_a_static_site_is_skipped_and_records_nothing(tmp_path: Path) -> None:
    ctx = action_context(tmp_path, site_vars={"cms": "static"})
    verified = CmsVerifyAction().run(ctx, CmsVerifyAction.Args(fail_on="unverified"))
    assert verified.outputs["skipped"] is True and verified.changes == []
    matched = CmsVulnerabilitiesAction().run(ctx, CmsVulnerabilitiesAction.Args())  # no feed needed
    assert matched.outputs["skipped"] is True and matched.outputs["findings"] == [] and matched.changes == []
    assert CmsVulnerabilitiesAction().dry_run(ctx, CmsVulnerabilitiesAction.Args())["summary"] == (
        "static site: no CMS components to match"
    )


def test_plan_time_checks_name_an_unknown_cms_and_missing_vars() -> None:
    for action in (CmsVerifyAction(), CmsVulnerabilitiesAction()):
        action.check_site(Site("s", {"cms": "static"}, []), action.Args(), Path("."))
        with pytest.raises(BadInput, match="unknown cms 'wordprss'"):
            action.check_site(Site("s", {"cms": "wordprss"}, []), action.Args(), Path("."))
        with pytest.raises(BadInput, match="needs the inventory var"):
            action.check_site(Site("s", {"cms": "wordpress"}, []), action.Args(), Path("."))


def test_a_cms_without_an_integrity_check_says_so_and_fails_only_when_asked(tmp_path: Path) -> None:
    ctx = action_context(tmp_path, site_vars={"cms": "drupal", "docroot": str(tmp_path)})
    result = CmsVerifyAction().run(ctx, CmsVerifyAction.Args())
    assert result.outputs["supported"] is False
    assert result.outputs["summary"].startswith("integrity not checked: Drush has no checksum verification")
    assert result.changes[0]["what"] == "cms_integrity" and result.changes[0]["supported"] is False
    with pytest.raises(StepFailed, match="integrity not checked"):
        CmsVerifyAction().run(ctx, CmsVerifyAction.Args(fail_on="unverified"))


def test_no_feed_fails_the_step_and_the_dry_run_says_why(tmp_path: Path) -> None:
    ctx = action_context(tmp_path, site_vars=fake_wordpress(tmp_path))
    with pytest.raises(StepFailed, match=r"no vulnerability feed for site 'test-site'.*vulnerability_feed"):
        CmsVulnerabilitiesAction().run(ctx, CmsVulnerabilitiesAction.Args())
    preview = CmsVulnerabilitiesAction().dry_run(ctx, CmsVulnerabilitiesAction.Args(feed="missing.json"))
    assert "failed now: vulnerability feed" in preview["summary"] and "missing.json" in preview["summary"]


def test_fail_on_a_severity_fails_only_on_findings_that_severe(tmp_path: Path) -> None:
    path = feed(
        tmp_path,
        [
            {"id": "G-1", "type": "plugin", "slug": "gallery", "affected": "<1.1", "fixed_in": "1.1", "severity": "medium"},
            {"id": "A-1", "type": "theme", "slug": "astra", "affected": "<=4.1", "fixed_in": "4.2", "cvss": 3.1},
        ],
    )  # fmt: skip
    ctx = action_context(tmp_path, site_vars=fake_wordpress(tmp_path, vulnerability_feed=path))
    action = CmsVulnerabilitiesAction()
    passed = action.run(ctx, action.Args(fail_on="high"))
    assert [(f["component"], f["severity"]) for f in passed.outputs["findings"]] == [
        ("plugin:gallery", "medium"),
        ("theme:astra", "low"),
    ]
    assert passed.outputs["fixed_in"] == {"plugin": {"gallery": "1.1"}, "theme": {"astra": "4.2"}}
    assert action.run(ctx, action.Args(fail_on="never")).outputs["count"] == 2
    with pytest.raises(StepFailed, match=r"vulnerabilities: 2 findings: plugin:gallery 1\.0"):
        action.run(ctx, action.Args(fail_on="medium"))
    with pytest.raises(StepFailed):
        action.run(ctx, action.Args())  # findings: any
    # the step's feed argument wins over the inventory var
    (tmp_path / "other").mkdir()
    empty = feed(tmp_path / "other", [])
    assert action.run(ctx, action.Args(feed=f"other/{empty}")).outputs["count"] == 0


def test_the_change_log_gets_at_most_a_hundred_finding_records(tmp_path: Path) -> None:
    advisories = [
        {"id": f"G-{n:03}", "type": "plugin", "slug": "gallery", "affected": "*", "severity": "low"}
        for n in range(150)
    ]
    ctx = action_context(
        tmp_path, site_vars=fake_wordpress(tmp_path, vulnerability_feed=feed(tmp_path, advisories))
    )
    result = CmsVulnerabilitiesAction().run(ctx, CmsVulnerabilitiesAction.Args(fail_on="never"))
    overview, *records = result.changes
    assert result.outputs["count"] == 150 and len(records) == 100
    assert overview["findings"] == 150 and overview["findings_not_listed"] == 50
    assert result.outputs["updates"][0]["unfixed"][:2] == ["G-000", "G-001"]
