"""CMS integrity and known vulnerabilities against a real WordPress (Debian's package, on the throwaway
MariaDB; tests/servers/web.py), reached through the WP-CLI stand-in (tests/servers/wpcli.py).

Each test gets a private copy of the installed site's files (the database is shared and only read),
so a test may tamper with core files or add a plugin. The actions run as the engine runs them
(``maintainer.testing.action_context``: a real local transport); one test runs the CMS steps of the
shipped security-patch runbook through the CLI, for a WordPress and a static site.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from maintainer.actions.cms_verify import CmsVerifyAction
from maintainer.actions.cms_vulnerabilities import CmsVulnerabilitiesAction
from maintainer.cms.base import adapter_for
from maintainer.cms.wordpress import WordPressAdapter
from maintainer.errors import StepFailed
from maintainer.inventory import Site
from maintainer.testing import action_context
from maintainer.transport import LocalTransport
from tests.helpers import REPO, cli, local_site, make_project, read_log
from tests.servers.wpcli import WpCliSite

CORE_VERSION_FILE = "wp-includes/version.php"


def wp_version(site: WpCliSite) -> str:
    return site.wp("core", "version").stdout.strip()


def akismet_version(site: WpCliSite) -> str:
    plugins = json.loads(site.wp("plugin", "list", "--format=json").stdout)
    return str(next(p["version"] for p in plugins if p["name"] == "akismet"))


def adapter(site: WpCliSite, **extra: Any) -> WordPressAdapter:
    transport = LocalTransport()
    found = adapter_for(Site("wp", site.site_vars(**extra), []), lambda argv: transport.run(list(argv)))
    assert isinstance(found, WordPressAdapter)
    return found


def write_feed(path: Path, advisories: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"format": "maintainer-vulnfeed", "version": 1, "advisories": advisories}))
    return path


def test_a_clean_install_verifies_and_lists_core_plugins_and_themes(
    tmp_path: Path, wp_site: WpCliSite
) -> None:
    version = wp_version(wp_site)
    wp = adapter(wp_site, php_bin=shutil.which("php"))  # through the site's PHP binary
    assert wp.version() == version
    components = {c.key: c for c in wp.components()}
    assert components["core"].version == version and components["core"].slug == "wordpress"
    akismet = components["plugin:akismet"]
    assert (akismet.name, akismet.version, akismet.active, akismet.status) == (
        "Akismet Anti-Spam", akismet_version(wp_site), False, "inactive",
    )  # fmt: skip
    # --skip-themes hides the theme only while WordPress loads: the listing shows the real state
    theme = components["theme:twentytwentythree"]
    assert theme.active is True and theme.status == "active" and theme.version

    ctx = action_context(tmp_path, site_vars=wp_site.site_vars())
    result = CmsVerifyAction().run(ctx, CmsVerifyAction.Args())
    outputs = result.outputs
    assert outputs["clean"] is True and outputs["findings"] == [] and outputs["version"] == version
    assert outputs["verified"] == ["core", "plugin:akismet"] and outputs["unverified"] == []
    assert outputs["summary"] == (
        f"integrity: WordPress {version}: core and 1 plugin match their published checksums"
    )
    assert result.changed is False
    assert result.changes == [
        {
            "what": "cms_integrity", "cms": "wordpress", "version": version, "supported": True, "findings": 0,
            "verified": ["core", "plugin:akismet"], "unverified": [], "summary": outputs["summary"],
        }
    ]  # fmt: skip


def test_a_modified_core_file_an_added_one_and_a_changed_plugin_are_findings(
    tmp_path: Path, wp_site: WpCliSite
) -> None:
    version_file = wp_site.docroot / CORE_VERSION_FILE
    version_file.write_text(version_file.read_text() + "\n// injected\n")
    (wp_site.docroot / "wp-includes" / "class-wp-cache-helper.php").write_text("<?php eval($_POST['x']);\n")
    (wp_site.docroot / "wp-login.php").unlink()
    akismet = wp_site.docroot / "wp-content" / "plugins" / "akismet"
    (akismet / "class.akismet.php").write_text("<?php // replaced\n")
    (akismet / "readme.txt").write_text("edited readme\n")  # a "soft change": not a finding without --strict
    wp_site.add_plugin("mt-custom", "0.3.0")  # not on WordPress.org: no checksums

    ctx = action_context(tmp_path, site_vars=wp_site.site_vars())
    with pytest.raises(StepFailed) as failed:
        CmsVerifyAction().run(ctx, CmsVerifyAction.Args())
    outputs = failed.value.outputs
    assert sorted((f["component"], f["file"], f["problem"]) for f in outputs["findings"]) == [
        ("core", "wp-includes/class-wp-cache-helper.php", "added"),
        ("core", "wp-includes/version.php", "modified"),
        ("core", "wp-login.php", "missing"),
        ("plugin:akismet", "class.akismet.php", "modified"),
    ]
    assert outputs["verified"] == [] and outputs["clean"] is False
    assert outputs["unverified"] == [
        {"component": "plugin:mt-custom", "reason": "no published checksums for version 0.3.0"}
    ]
    assert str(failed.value).startswith("integrity: 4 files of WordPress ")
    overview, *findings = failed.value.changes
    assert overview["what"] == "cms_integrity" and overview["findings"] == 4
    assert {"what": "integrity_finding", "component": "core", "file": "wp-includes/version.php",
            "problem": "modified", "message": "File doesn't verify against checksum"} in findings  # fmt: skip

    # fail_on: never reports the same and passes
    reported = CmsVerifyAction().run(ctx, CmsVerifyAction.Args(fail_on="never"))
    assert reported.outputs["count"] == 4 and len(reported.changes) == 5


def test_a_plugin_with_a_known_vulnerable_version_is_matched_by_the_feed(
    tmp_path: Path, wp_site: WpCliSite
) -> None:
    version = wp_version(wp_site)
    wp_site.add_plugin("mt-gallery", "1.2.0", name="MT Gallery")
    write_feed(
        tmp_path / "feed.json",
        [
            {"id": "MT-2024-0001", "type": "plugin", "slug": "mt-gallery", "affected": "<1.2.3", "fixed_in": "1.2.3",
             "severity": "high", "title": "MT Gallery < 1.2.3 - Unauthenticated SQL injection",
             "references": ["https://example.test/MT-2024-0001"], "cve": "CVE-2024-0001"},
            {"id": "MT-2024-0002", "type": "plugin", "slug": "mt-gallery",
             "affected": {"from": "1.0", "to_exclusive": "1.1"}, "fixed_in": "1.1", "severity": "critical"},
            {"id": "MT-2024-0003", "type": "plugin", "slug": "mt-gallery", "affected": ">=1.2 <=1.2.5",
             "fixed_in": None, "cvss": 5.3, "title": "no fix yet"},
            {"id": "WP-OLD", "type": "core", "affected": f"<{version}", "fixed_in": version, "severity": "critical"},
            {"id": "WP-NOW", "type": "core", "affected": [f">={version} <{version}.99"], "fixed_in": f"{version}.99",
             "severity": "medium"},
            {"id": "AK-1", "type": "plugin", "slug": "akismet", "affected": "<1.0", "fixed_in": "1.0", "severity": "low"},
        ],
    )  # fmt: skip
    ctx = action_context(tmp_path, site_vars=wp_site.site_vars(vulnerability_feed="feed.json"))
    with pytest.raises(StepFailed) as failed:  # fail_on: findings (the default)
        CmsVulnerabilitiesAction().run(ctx, CmsVulnerabilitiesAction.Args())
    outputs = failed.value.outputs
    found = [
        (f["component"], f["installed"], f["advisory"], f["severity"], f["fixed_in"])
        for f in outputs["findings"]
    ]
    assert found == [
        ("plugin:mt-gallery", "1.2.0", "MT-2024-0001", "high", "1.2.3"),
        ("core", version, "WP-NOW", "medium", f"{version}.99"),
        ("plugin:mt-gallery", "1.2.0", "MT-2024-0003", "medium", None),
    ]
    assert outputs["updates"] == [
        {"component": "plugin:mt-gallery", "type": "plugin", "slug": "mt-gallery", "installed": "1.2.0",
         "to": "1.2.3", "advisories": ["MT-2024-0001", "MT-2024-0003"], "unfixed": ["MT-2024-0003"],
         "severity": "high"},
        {"component": "core", "type": "core", "slug": "wordpress", "installed": version, "to": f"{version}.99",
         "advisories": ["WP-NOW"], "unfixed": [], "severity": "medium"},
    ]  # fmt: skip
    assert outputs["fixed_in"] == {"plugin": {"mt-gallery": "1.2.3"}, "core": {"wordpress": f"{version}.99"}}
    assert outputs["feed"]["source"] == "maintainer" and outputs["feed"]["advisories"] == 6
    assert outputs["feed"]["location"] == str(tmp_path / "feed.json")
    overview, *records = failed.value.changes
    assert overview["what"] == "cms_vulnerabilities" and overview["findings"] == 3
    assert len(overview["feed_sha256"]) == 64
    assert records[0] == {
        "what": "vulnerability", "component": "plugin:mt-gallery", "type": "plugin", "slug": "mt-gallery",
        "name": "MT Gallery", "installed": "1.2.0", "active": False, "advisory": "MT-2024-0001",
        "severity": "high", "fixed_in": "1.2.3", "title": "MT Gallery < 1.2.3 - Unauthenticated SQL injection",
        "cve": ["CVE-2024-0001"],
    }  # fmt: skip

    # only critical findings fail the step: these are reported and it passes
    passed = CmsVulnerabilitiesAction().run(ctx, CmsVulnerabilitiesAction.Args(fail_on="critical"))
    assert passed.outputs["count"] == 3 and passed.changed is False


def test_the_security_patch_runbook_checks_the_wordpress_site_and_skips_the_static_one(
    tmp_path: Path, wp_site: WpCliSite
) -> None:
    """The CMS steps of the shipped runbook (its OS-package steps need an apt sandbox: see
    test_security_patch.py), through the CLI: dry run, real run, change log."""
    shipped = yaml.safe_load((REPO / "runbooks" / "security-patch" / "1.0.0.yml").read_text())
    cms_steps = [s for s in shipped["steps"] if str(s["id"]).startswith("cms_")]
    assert [s["uses"] for s in cms_steps] == ["cms.verify", "cms.vulnerabilities", "shell"]
    runbook = {
        "schema": 1, "name": "cms-checks", "version": "1.0.0", "description": "the CMS steps of security-patch",
        "params": {k: v for k, v in shipped["params"].items() if k.startswith(("cms", "vulnerability"))},
        "steps": cms_steps,
    }  # fmt: skip
    wp_site.add_plugin("mt-gallery", "1.2.0")
    (tmp_path / "feeds").mkdir()
    write_feed(
        tmp_path / "feeds" / "wordpress.json",
        [{"id": "MT-1", "type": "plugin", "slug": "mt-gallery", "affected": "<1.2.3", "fixed_in": "1.2.3",
          "severity": "high"}],
    )  # fmt: skip
    static_root = tmp_path / "static"
    static_root.mkdir()
    project = make_project(
        tmp_path,
        {"cms-checks@1.0.0": yaml.safe_dump(runbook)},
        {
            "blog": local_site(tmp_path, **wp_site.site_vars(vulnerability_feed="feeds/wordpress.json")),
            "brochure": local_site(tmp_path, docroot=str(static_root), cms="static"),
        },
    )
    plan = cli(project, "run", "cms-checks", "--dry-run", "-o", "json")
    assert plan.returncode == 0, plan.stderr
    previews = {s["id"]: s.get("preview", {}) for s in json.loads(plan.stdout)["sites"]["blog"]["steps"]}
    assert previews["cms_vulnerabilities"]["count"] == 1, previews
    assert previews["cms_integrity"]["unverified"] == [
        {"component": "plugin:mt-gallery", "reason": "no published checksums for version 1.2.0"}
    ]

    run = cli(project, "run", "cms-checks", "--ticket", "SEC-7", "-o", "json")
    assert run.returncode == 0, run.stderr  # report mode (the default): findings do not fail the site
    [entry] = read_log(project)
    blog, brochure = entry["sites"]["blog"], entry["sites"]["brochure"]
    assert blog["status"] == "ok" and brochure["status"] == "ok"
    assert {s["id"]: s["status"] for s in brochure["steps"]} == {
        "cms_integrity": "skipped", "cms_vulnerabilities": "skipped", "cms_findings": "skipped",
    }  # fmt: skip
    assert brochure["changes"] == []
    whats = [(c["step"], c["what"]) for c in blog["changes"]]
    assert whats == [
        ("cms_integrity", "cms_integrity"),
        ("cms_vulnerabilities", "cms_vulnerabilities"),
        ("cms_vulnerabilities", "vulnerability"),
    ]
    vulnerability = blog["changes"][2]
    assert (vulnerability["component"], vulnerability["installed"], vulnerability["advisory"],
            vulnerability["severity"], vulnerability["fixed_in"]) == ("plugin:mt-gallery", "1.2.0", "MT-1", "high", "1.2.3")  # fmt: skip
    assert not any(s.get("changed") for s in blog["steps"])
    assert "vulnerabilities: 1 finding: plugin:mt-gallery 1.2.0 (high, MT-1, fixed in 1.2.3)" in run.stderr
    assert cli(project, "log", "verify").returncode == 0

    # -p cms_checks=fail: a finding fails the site (exit 1)
    failing = cli(project, "run", "cms-checks", "-p", "cms_checks=fail", "-o", "json")
    assert failing.returncode == 1, failing.stderr
    document = json.loads(failing.stdout)
    assert document["sites"]["blog"]["status"] == "failed" and document["sites"]["brochure"]["status"] == "ok"

    # an integrity finding too: both checks still run and record their findings, then the site fails
    version_file = wp_site.docroot / CORE_VERSION_FILE
    version_file.write_text(version_file.read_text() + "\n// injected\n")
    both = cli(project, "run", "cms-checks", "-p", "cms_checks=fail", "-o", "json")
    assert both.returncode == 1, both.stderr
    blog = json.loads(both.stdout)["sites"]["blog"]
    assert blog["status"] == "failed"
    assert {s["id"]: s["status"] for s in blog["steps"]} == {
        "cms_integrity": "ok", "cms_vulnerabilities": "ok", "cms_findings": "failed",
    }  # fmt: skip
    whats = [(c["step"], c["what"]) for c in blog["changes"]]
    assert ("cms_integrity", "integrity_finding") in whats and ("cms_vulnerabilities", "vulnerability") in whats
    assert "vulnerabilities: 1 finding" in both.stderr and "integrity: 1 file" in both.stderr


def test_the_security_patch_runbook_refuses_a_missing_feed_and_previews_no_feed_as_skipped(
    tmp_path: Path, wp_site: WpCliSite
) -> None:
    """A bad feed is bad input before anything runs (not after the OS was patched); without a feed the
    dry run says the vulnerability step is skipped, as the real run does."""
    shipped = yaml.safe_load((REPO / "runbooks" / "security-patch" / "1.0.0.yml").read_text())
    marker = tmp_path / "ran"
    runbook = {
        "schema": 1, "name": "cms-checks", "version": "1.0.0", "description": "the CMS steps of security-patch",
        "params": {k: v for k, v in shipped["params"].items() if k.startswith(("cms", "vulnerability"))},
        "steps": [{"id": "first", "uses": "shell", "with": {"command": f"touch {marker}"}},
                  *[s for s in shipped["steps"] if str(s["id"]).startswith("cms_")]],
    }  # fmt: skip
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "broken.json").write_text("{not json")
    project = make_project(
        tmp_path, {"cms-checks@1.0.0": yaml.safe_dump(runbook)}, {"blog": local_site(tmp_path, **wp_site.site_vars())}
    )
    for feed in ("feeds/missing.json", "feeds/broken.json"):
        for dry in ((), ("--dry-run",)):
            refused = cli(project, "run", "cms-checks", *dry, "-p", f"vulnerability_feed={feed}")
            assert refused.returncode == 2, (feed, dry, refused.stderr)
            assert f"{tmp_path / feed}" in refused.stderr, refused.stderr
            assert not marker.exists(), "nothing ran"

    plan = cli(project, "run", "cms-checks", "--dry-run", "-o", "json")
    assert plan.returncode == 0, plan.stderr
    previews = {s["id"]: s.get("preview", {}) for s in json.loads(plan.stdout)["sites"]["blog"]["steps"]}
    assert previews["cms_vulnerabilities"]["summary"].startswith("skipped: "), previews
    assert "failed" not in json.dumps(previews["cms_vulnerabilities"])
