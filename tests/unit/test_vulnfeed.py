"""Vulnerability feed files: maintainer's format, the Wordfence/WPScan/Patchstack shapes, matching.

The Wordfence record is the example of its V2 feed documentation ("V2: Accessing and Consuming the
Vulnerability Data Feed", wordfence.com/help/wordfence-intelligence); the WPScan and Patchstack
samples follow the field names of their API documentation. None was captured from a live feed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from maintainer.cms.base import Component
from maintainer.cms.vulnfeed import FeedError, load_feed, main, parse_feed, severity_of, update_plan

DOCUMENTED_EXAMPLE = {  # docs/VULN-FEED.md
    "format": "maintainer-vulnfeed",
    "version": 1,
    "advisories": [
        {
            "id": "WF-2024-0001",
            "cms": "wordpress",
            "type": "plugin",
            "slug": "contact-form-7",
            "affected": ["<5.3.2"],
            "fixed_in": "5.3.2",
            "severity": "critical",
            "cvss": 10.0,
            "title": "Contact Form 7 < 5.3.2 - Unrestricted File Upload",
            "references": ["https://contactform7.com/2020/12/17/contact-form-7-532/"],
            "cve": ["CVE-2020-35489"],
        },
        {
            "id": "CORE-2024-01",
            "type": "core",
            "affected": [{"from": "6.3", "to_exclusive": "6.3.3"}, {"from": "6.4", "to_exclusive": "6.4.3"}],
            "fixed_in": ["6.3.3", "6.4.3"],
            "severity": "medium",
            "title": "WordPress < 6.4.3 - PHP object injection",
        },
        {
            "id": "THEME-1",
            "type": "theme",
            "slug": "astra",
            "affected": ">=4.0 <=4.1.1",
            "fixed_in": None,
            "title": "no fix yet",
        },
    ],
}

WORDFENCE_V2 = {
    "848ccbdc-c6f1-480f-a272-cd459e706713": {
        "id": "848ccbdc-c6f1-480f-a272-cd459e706713",
        "title": "Example Vulnerability",
        "software": [
            {
                "type": "plugin",
                "name": "Example Plugin",
                "slug": "example",
                "affected_versions": {
                    "1.0.0 - 1.2.3": {
                        "from_version": "1.0.0",
                        "from_inclusive": True,
                        "to_version": "1.2.3",
                        "to_inclusive": True,
                    }
                },
                "patched": True,
                "patched_versions": ["1.2.4"],
                "remediation": "Update to version 1.2.4, or a newer patched version",
            }
        ],
        "informational": False,
        "description": "An example vulnerability",
        "references": ["https://www.wordfence.com/threat-intel/vulnerabilities/id/848ccbdc"],
        "cwe": {"id": 79, "name": "Cross-site Scripting", "description": "..."},
        "cvss": {"vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", "score": 6.1, "rating": "Medium"},
        "cve": "CVE-2023-0001",
        "cve_link": "https://www.cve.org/CVERecord?id=CVE-2023-0001",
        "researchers": ["Example Researcher"],
        "published": "2023-01-01 00:00:00",
        "updated": "2023-01-02 00:00:00",
    },
    "00000000-0000-0000-0000-000000000002": {
        "id": "00000000-0000-0000-0000-000000000002",
        "title": "WordPress Core <= 6.4.2 - example",
        "software": [
            {
                "type": "core",
                "name": "WordPress",
                "slug": "wordpress",
                "affected_versions": {
                    "* - 6.3.2": {
                        "from_version": "*",
                        "from_inclusive": True,
                        "to_version": "6.3.2",
                        "to_inclusive": True,
                    },
                    "6.4 - 6.4.2": {
                        "from_version": "6.4",
                        "from_inclusive": True,
                        "to_version": "6.4.2",
                        "to_inclusive": True,
                    },
                },
                "patched": True,
                "patched_versions": ["6.3.3", "6.4.3"],
            }
        ],
        "informational": False,
        "references": [],
        "cvss": {"vector": "", "score": 8.8, "rating": "High"},
        "cve": None,
    },
    "00000000-0000-0000-0000-000000000003": {
        "id": "00000000-0000-0000-0000-000000000003",
        "title": "informational record",
        "software": [{"type": "plugin", "slug": "example", "affected_versions": {}}],
        "informational": True,
    },
}

WPSCAN = {
    "plugins": {
        "contact-form-7": {
            "friendly_name": "Contact Form 7",
            "latest_version": "5.9",
            "vulnerabilities": [
                {
                    "id": "7391118e-eef5-4ff8-a8ea-f6b65f442c63",
                    "title": "Contact Form 7 < 5.3.2 - Unrestricted File Upload",
                    "vuln_type": "UPLOAD",
                    "references": {"url": ["https://contactform7.com/2020/12/17/contact-form-7-532/"],
                                   "cve": ["2020-35489"]},
                    "cvss": {"score": "10.0", "vector": "...", "severity": "critical"},
                    "fixed_in": "5.3.2",
                    "introduced_in": None,
                }
            ],
        }
    },
    "themes": {"astra": {"vulnerabilities": [{"id": "t1", "title": "Astra", "fixed_in": None, "introduced_in": "4.0"}]}},
    "wordpresses": {
        "6.4.2": {"release_date": "2023-12-06", "status": "insecure",
                  "vulnerabilities": [{"id": "c1", "title": "core bug", "fixed_in": "6.4.3"}]},
    },
}  # fmt: skip

PATCHSTACK = {
    "vulnerabilities": [
        {
            "id": 7976,
            "product_id": 2175,
            "title": "WordPress File Upload plugin <= 4.16.2 - Contributor+ Path Traversal (RCE)",
            "description": "...",
            "disclosed_at": "2022-03-01T00:00:00+00:00",
            "product_slug": "wp-file-upload",
            "product_name": "WordPress File Upload",
            "product_type": "Plugin",
            "affected_in": "<= 4.16.2",
            "fixed_in": "4.16.3",
            "cvss_score": 9.9,
            "cve": "2021-24962",
            "patch_priority": 3,
            "direct_url": "https://patchstack.com/database/vulnerability/wp-file-upload/x",
        },
        {"id": 2, "title": "core", "product_slug": "wordpress", "product_type": "WordPress",
         "affected_in": "< 6.4.3", "fixed_in": "6.4.3", "patch_priority": 2},
        {"id": 3, "title": "no range, no fix", "product_slug": "old-theme", "product_type": "Theme", "fixed_in": ""},
    ]
}  # fmt: skip


def plugin(slug: str, version: str | None) -> Component:
    return Component("plugin", slug, slug, version, True, "active")


def found(
    feed_data: Any, components: list[Component], cms: str = "wordpress"
) -> list[tuple[str, str, str | None]]:
    feed = parse_feed(feed_data)
    return [(f.component.key, f.advisory.id, f.fixed_in) for f in feed.match(cms, components)]


def test_the_documented_format_matches_components_by_type_slug_and_version() -> None:
    feed = parse_feed(DOCUMENTED_EXAMPLE)
    assert feed.source == "maintainer" and len(feed.advisories) == 3
    core = feed.advisories[1]
    assert core.slug == "wordpress" and core.cms == "wordpress" and core.severity == "medium"
    components = [
        Component("core", "wordpress", "WordPress", "6.3.1"),
        plugin("contact-form-7", "5.3.1"),
        plugin("akismet", "5.0"),
        Component("theme", "astra", "Astra", "4.1.1"),
        Component("plugin", "astra", "not the theme", "4.1.1"),  # same slug, other type: no match
        plugin("no-version", None),
    ]
    matches = feed.match("wordpress", components)
    assert [(m.component.key, m.advisory.id, m.advisory.severity, m.fixed_in) for m in matches] == [
        ("plugin:contact-form-7", "WF-2024-0001", "critical", "5.3.2"),
        ("core", "CORE-2024-01", "medium", "6.3.3"),  # the fix of the installed branch
        ("theme:astra", "THEME-1", "unknown", None),
    ]
    assert matches[0].record()["cve"] == ["CVE-2020-35489"]
    assert found(DOCUMENTED_EXAMPLE, [Component("core", "wordpress", "WordPress", "6.4.2")]) == [
        ("core", "CORE-2024-01", "6.4.3")
    ]
    assert found(DOCUMENTED_EXAMPLE, [Component("core", "wordpress", "WordPress", "6.4.3")]) == []
    assert found(DOCUMENTED_EXAMPLE, [plugin("contact-form-7", "5.3.1")], cms="drupal") == []
    assert found(DOCUMENTED_EXAMPLE, [plugin("Contact-Form-7", "5.3.1")]) == [  # slugs ignore case
        ("plugin:Contact-Form-7", "WF-2024-0001", "5.3.2")
    ]
    # a bare list of advisories is read too, and a round trip through the format keeps the meaning
    again = parse_feed(feed.document())
    assert again.advisories == feed.advisories and parse_feed(DOCUMENTED_EXAMPLE["advisories"]).advisories


def test_the_update_plan_takes_each_component_to_the_first_version_that_fixes_all_its_advisories() -> None:
    feed = parse_feed(
        [
            {
                "id": "A",
                "type": "plugin",
                "slug": "x",
                "affected": "<1.2",
                "fixed_in": "1.2",
                "severity": "low",
            },
            {
                "id": "B",
                "type": "plugin",
                "slug": "x",
                "affected": "<1.5",
                "fixed_in": "1.5",
                "severity": "high",
            },
            {"id": "C", "type": "plugin", "slug": "x", "affected": "<=2.0", "severity": "medium"},
            {"id": "D", "type": "plugin", "slug": "y", "affected": "*"},
        ]
    )
    plan = update_plan(feed.match("wordpress", [plugin("x", "1.0"), plugin("y", "3")]))
    assert plan == [
        {"component": "plugin:x", "type": "plugin", "slug": "x", "installed": "1.0", "to": "1.5",
         "advisories": ["A", "B", "C"], "unfixed": ["C"], "severity": "high"},
        {"component": "plugin:y", "type": "plugin", "slug": "y", "installed": "3", "to": None,
         "advisories": ["D"], "unfixed": ["D"], "severity": "unknown"},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("advisory", "message"),
    [
        (
            {"id": "X", "type": "plugin", "slug": "a", "affected": "<1", "fixed": "1"},
            "advisory #0 (X): unknown key(s): fixed",
        ),
        ({"type": "plugin", "slug": "a", "affected": "<1"}, "needs an 'id'"),
        ({"id": "X", "type": "widget", "slug": "a", "affected": "<1"}, "'type' must be one of"),
        ({"id": "X", "type": "plugin", "affected": "<1"}, "needs a 'slug'"),
        ({"id": "X", "type": "plugin", "slug": "a"}, "needs 'affected'"),
        ({"id": "X", "type": "plugin", "slug": "a", "affected": []}, "lists no version range"),
        ({"id": "X", "type": "plugin", "slug": "a", "affected": "<1 <2"}, "'affected': two upper bounds"),
        (
            {"id": "X", "type": "plugin", "slug": "a", "affected": "<1", "severity": "urgent"},
            "'severity' must be",
        ),
        (
            {"id": "X", "type": "plugin", "slug": "a", "affected": "<1", "cvss": "high"},
            "'cvss' must be a number",
        ),
        ({"id": "X", "type": "plugin", "slug": "a", "affected": "<1", "fixed_in": 2}, "'fixed_in' must be"),
        ({"id": "X", "type": "core", "cms": "custom", "affected": "<1"}, "needs a 'slug'"),
    ],
)
def test_a_bad_advisory_is_named_with_what_is_wrong(advisory: dict[str, Any], message: str) -> None:
    with pytest.raises(FeedError) as failed:
        parse_feed(
            {"format": "maintainer-vulnfeed", "version": 1, "advisories": [advisory]}, location="f.json"
        )
    assert str(failed.value).startswith("vulnerability feed f.json: advisory #0")
    assert message in str(failed.value)


def test_unknown_formats_and_versions_are_refused() -> None:
    with pytest.raises(FeedError, match="format is 'other'"):
        parse_feed({"format": "other", "advisories": []})
    with pytest.raises(FeedError, match="version 2 of maintainer-vulnfeed is not supported"):
        parse_feed({"format": "maintainer-vulnfeed", "version": 2, "advisories": []})
    with pytest.raises(FeedError, match="not a format maintainer reads"):
        parse_feed({"something": {"else": 1}})
    with pytest.raises(FeedError, match="expected a JSON object or array"):
        parse_feed("text")
    assert parse_feed({}).advisories == []


def test_the_wordfence_intelligence_v2_feed() -> None:
    feed = parse_feed(WORDFENCE_V2)
    assert feed.source == "wordfence" and feed.skipped == 1  # the informational record
    example, core = feed.advisories
    assert (example.type, example.slug, example.fixed_in, example.severity, example.cvss, example.cve) == (
        "plugin", "example", ("1.2.4",), "medium", 6.1, ("CVE-2023-0001",),
    )  # fmt: skip
    assert [str(r) for r in example.affected] == [">=1.0.0 <=1.2.3"]
    assert found(WORDFENCE_V2, [plugin("example", "1.2.3")]) == [("plugin:example", example.id, "1.2.4")]
    assert found(WORDFENCE_V2, [plugin("example", "1.2.4")]) == []
    assert found(WORDFENCE_V2, [plugin("example", "0.9")]) == []
    wp = "00000000-0000-0000-0000-000000000002"
    assert core.severity == "high" and core.cve == ()
    assert found(WORDFENCE_V2, [Component("core", "wordpress", "WordPress", "5.0")]) == [
        ("core", wp, "6.3.3")
    ]
    assert found(WORDFENCE_V2, [Component("core", "wordpress", "WordPress", "6.4.1")]) == [
        ("core", wp, "6.4.3")
    ]
    assert found(WORDFENCE_V2, [Component("core", "wordpress", "WordPress", "6.3.3")]) == []


def test_a_wpscan_export() -> None:
    feed = parse_feed(WPSCAN)
    assert feed.source == "wpscan" and len(feed.advisories) == 3
    cf7 = feed.advisories[0]
    assert cf7.cve == ("CVE-2020-35489",) and cf7.severity == "critical" and cf7.cvss == 10.0
    assert found(WPSCAN, [plugin("contact-form-7", "5.3.1"), plugin("contact-form-7", "5.3.2")]) == [
        ("plugin:contact-form-7", cf7.id, "5.3.2")
    ]
    assert found(WPSCAN, [Component("theme", "astra", "Astra", "4.0.1")]) == [("theme:astra", "t1", None)]
    assert found(WPSCAN, [Component("theme", "astra", "Astra", "3.9")]) == []
    assert found(WPSCAN, [Component("core", "wordpress", "WordPress", "6.4.2")]) == [("core", "c1", "6.4.3")]
    # one plugin's API answer alone: {slug: {...}}
    alone = {"contact-form-7": WPSCAN["plugins"]["contact-form-7"]}  # type: ignore[index]
    assert found(alone, [plugin("contact-form-7", "5.0")]) == [("plugin:contact-form-7", cf7.id, "5.3.2")]


def test_a_patchstack_export() -> None:
    feed = parse_feed(PATCHSTACK)
    assert feed.source == "patchstack"
    upload, core, _theme = feed.advisories
    assert (upload.id, upload.severity, upload.cve, upload.references) == (
        "7976", "critical", ("CVE-2021-24962",), ("https://patchstack.com/database/vulnerability/wp-file-upload/x",),
    )  # fmt: skip
    assert core.type == "core" and core.severity == "medium"  # from patch_priority: no CVSS score
    assert found(PATCHSTACK, [plugin("wp-file-upload", "4.16.2"), plugin("wp-file-upload", "4.16.3")]) == [
        ("plugin:wp-file-upload", "7976", "4.16.3")
    ]
    assert found(PATCHSTACK, [Component("theme", "old-theme", "Old", "0.1")]) == [
        ("theme:old-theme", "3", None)
    ]
    with pytest.raises(FeedError, match=r"vulnerability #0 \(1\): affected_in: cannot read"):
        parse_feed({"vulnerabilities": [{"id": 1, "product_slug": "a", "affected_in": "<= 1.0 ||"}]})


def test_severity_words_and_scores() -> None:
    assert [severity_of(w) for w in ("Critical", "HIGH", "moderate", "Low", "None", "informational")] == [
        "critical", "high", "medium", "low", "info", "info",
    ]  # fmt: skip
    assert [severity_of(None, s) for s in (9.8, "7.5", 4.0, 0.1, 0, None, "n/a")] == [
        "critical", "high", "medium", "low", "info", "unknown", "unknown",
    ]  # fmt: skip


def test_load_feed_reads_a_file_once_per_version_and_names_problems(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    raw = json.dumps(DOCUMENTED_EXAMPLE).encode()
    path.write_bytes(raw)
    first = load_feed(path)
    assert first.sha256 == hashlib.sha256(raw).hexdigest() and first.location == str(path)
    assert load_feed(path) is first  # cached: many sites, one parse
    path.write_text(json.dumps({"advisories": []}))
    assert load_feed(path).advisories == []  # a changed file is read again
    with pytest.raises(FeedError, match="is not JSON"):
        (tmp_path / "bad.json").write_text("{nope")
        load_feed(tmp_path / "bad.json")
    with pytest.raises(FeedError, match="No such file"):
        load_feed(tmp_path / "missing.json")


def test_convert_writes_any_shape_as_the_documented_format(tmp_path: Path) -> None:
    source, target = tmp_path / "wordfence.json", tmp_path / "feed.json"
    source.write_text(json.dumps(WORDFENCE_V2))
    assert main(["convert", str(source), str(target)]) == 0
    converted = json.loads(target.read_text())
    assert converted["format"] == "maintainer-vulnfeed" and converted["converted_from"] == "wordfence"
    assert converted["advisories"][0]["affected"] == [{"from": "1.0.0", "to_inclusive": "1.2.3"}]
    assert converted["advisories"][1]["fixed_in"] == ["6.3.3", "6.4.3"]
    assert load_feed(target).advisories == parse_feed(WORDFENCE_V2).advisories
    assert main(["convert", str(source)]) == 2
