"""The update plan (maintainer/cms/plan.py): pure logic over what an adapter reports."""

from __future__ import annotations

import pytest

from maintainer.cms.base import MAJOR, MINOR, Component, PlannedUpdate, Update
from maintainer.cms.plan import Fix, Selection, UpdatePlan, build_plan, fixes_from_feed, parse_pins


def comp(type: str, slug: str, version: str) -> Component:
    return Component(type, slug, slug.title(), version)


INSTALLED = [
    comp("core", "wordpress", "6.4.2"),
    comp("plugin", "akismet", "5.0"),
    comp("plugin", "elementor-pro", "3.18.0"),
    comp("plugin", "elementor", "3.18.0"),
    comp("plugin", "woocommerce", "8.0.0"),
    comp("theme", "twentytwentythree", "1.2"),
]


def core(to: str, kind: str = MINOR, **extra: object) -> Update:
    return Update("core", "wordpress", "WordPress", "6.4.2", to, kind, **extra)  # type: ignore[arg-type]


def plugin(slug: str, current: str, to: str, **extra: object) -> Update:
    return Update("plugin", slug, slug.title(), current, to, MINOR, **extra)  # type: ignore[arg-type]


UPDATES = [
    core("6.4.3"),
    core("6.5.2", MAJOR),
    plugin("elementor-pro", "3.18.0", "3.19.0", depends_on=("elementor",)),
    plugin("akismet", "5.0", "5.1"),
    plugin("elementor", "3.18.0", "3.19.1"),
    Update("theme", "twentytwentythree", "Twenty Twenty-Three", "1.2", "1.3", MINOR),
]


def lines(plan_items: list[PlannedUpdate]) -> list[str]:
    return [f"{i.key} {i.from_version}->{i.to_version}" for i in plan_items]


def held(plan: UpdatePlan) -> dict[str, str]:
    return {h.key: h.reason for h in plan.held}


def test_default_selection_core_minor_then_dependencies_then_addons_then_themes() -> None:
    plan = build_plan(UPDATES, INSTALLED, Selection(), php_version="8.2.7")
    assert lines(plan.items) == [
        "core 6.4.2->6.4.3",
        "plugin:akismet 5.0->5.1",
        "plugin:elementor 3.18.0->3.19.1",
        "plugin:elementor-pro 3.18.0->3.19.0",
        "theme:twentytwentythree 1.2->1.3",
    ]
    assert plan.summary().startswith("5 updates: core 6.4.2 -> 6.4.3, plugin akismet 5.0 -> 5.1, ")
    assert plan.held == []


def test_major_core_only_when_allowed() -> None:
    only_major = [core("6.5.2", MAJOR), plugin("akismet", "5.0", "5.1")]
    plan = build_plan(only_major, INSTALLED, Selection(core="minor"))
    assert lines(plan.items) == ["plugin:akismet 5.0->5.1"]
    assert held(plan) == {"core": "major core update not allowed (core: minor; use core=major)"}
    assert "1 held: core 6.4.2 -> 6.5.2 (major core update not allowed" in plan.summary()
    plan = build_plan(UPDATES, INSTALLED, Selection(core="major"))
    assert lines(plan.items)[0] == "core 6.4.2->6.5.2"
    plan = build_plan(UPDATES, INSTALLED, Selection(core="none"))
    assert held(plan)["core"] == "not selected (core: none)"


def test_requirements_are_checked_against_the_planned_core_and_the_site_php() -> None:
    updates = [
        core("6.4.3"),
        plugin("akismet", "5.0", "5.1", requires_core="6.4.3"),
        plugin("woocommerce", "8.0.0", "9.0.0", requires_core="6.5"),
        plugin("elementor", "3.18.0", "3.19.1", requires_php="8.3"),
        plugin("elementor-pro", "3.18.0", "3.19.0", depends_on=("elementor",)),
    ]
    plan = build_plan(updates, INSTALLED, Selection(), php_version="8.2.7", cms_title="WordPress")
    assert lines(plan.items) == ["core 6.4.2->6.4.3", "plugin:akismet 5.0->5.1"]
    assert held(plan) == {
        "plugin:woocommerce": "needs WordPress 6.5 (the site has 6.4.3 after the planned core update)",
        "plugin:elementor": "needs PHP 8.3 (the site has 8.2.7)",
        "plugin:elementor-pro": "a dependency is held: elementor",
    }
    # without the core update, the requirement is checked against the installed core
    plan = build_plan(updates, INSTALLED, Selection(core="none"), php_version="8.3.1")
    assert held(plan)["plugin:akismet"] == "needs core 6.4.3 (the site has 6.4.2)"


def test_exclude_only_and_none() -> None:
    plan = build_plan(UPDATES, INSTALLED, Selection(exclude=("akismet", "theme:twentytwentythree")))
    assert held(plan) == {"plugin:akismet": "excluded", "theme:twentytwentythree": "excluded"}
    plan = build_plan(
        UPDATES, INSTALLED, Selection(core="none", plugins="list", only=("akismet",), themes="none")
    )
    assert lines(plan.items) == ["plugin:akismet 5.0->5.1"]
    reasons = held(plan)
    assert reasons["plugin:elementor"] == "not selected (not in only)"
    assert reasons["theme:twentytwentythree"] == "not selected (themes: none)"
    # a not-selected dependency does not hold its add-on
    plan = build_plan(UPDATES, INSTALLED, Selection(plugins="list", only=("elementor-pro",)))
    assert "plugin:elementor-pro 3.18.0->3.19.0" in lines(plan.items)


def test_an_excluded_dependency_holds_its_addon() -> None:
    plan = build_plan(UPDATES, INSTALLED, Selection(exclude=("elementor",)))
    assert held(plan)["plugin:elementor-pro"] == "a dependency is held: elementor"


def test_pins_hold_or_take_to_exactly_that_version() -> None:
    pins = parse_pins(["akismet=5.0", "elementor=3.18.5", "woocommerce=7.0", "core=6.4.2"])
    plan = build_plan(UPDATES, INSTALLED, Selection(pin=pins))
    assert "plugin:elementor 3.18.0->3.18.5" in lines(plan.items)
    reasons = held(plan)
    assert reasons["plugin:akismet"] == "pinned at 5.0"
    assert reasons["core"] == "pinned at 6.4.2"
    assert "woocommerce" not in str(reasons)  # no update offered: a pin at an older version changes nothing
    with pytest.raises(ValueError, match="'akismet' is not slug=version"):
        parse_pins(["akismet"])


def test_security_takes_exactly_the_first_fixed_version() -> None:
    fixes = fixes_from_feed(
        [
            {"component": "plugin:akismet", "type": "plugin", "slug": "akismet", "installed": "5.0",
             "to": "5.0.2", "advisories": ["WF-1"], "unfixed": []},
            {"component": "plugin:woocommerce", "type": "plugin", "slug": "woocommerce", "installed": "8.0.0",
             "to": "8.0.3", "advisories": ["WF-2"], "unfixed": []},
            {"component": "plugin:elementor", "type": "plugin", "slug": "elementor", "installed": "3.18.0",
             "to": None, "advisories": ["WF-3"], "unfixed": ["WF-3"]},
        ]
    )  # fmt: skip
    plan = build_plan(
        UPDATES, INSTALLED, Selection(core="none", plugins="security", themes="none"), fixes=fixes
    )
    # woocommerce has no offered update: the fix is planned from the installed version all the same
    assert lines(plan.items) == ["plugin:akismet 5.0->5.0.2", "plugin:woocommerce 8.0.0->8.0.3"]
    assert plan.items[0].reason == "security: WF-1"
    reasons = held(plan)
    assert reasons["plugin:elementor"] == "no fix known (security: WF-3)"
    assert reasons["plugin:elementor-pro"] == "not selected (no known vulnerability)"


def test_security_core_and_the_cms_own_advisories() -> None:
    fixes = {"core": Fix("6.4.3", "security: the CMS's own advisory")}
    plan = build_plan(
        UPDATES, INSTALLED, Selection(core="security", plugins="none", themes="none"), fixes=fixes
    )
    assert lines(plan.items) == ["core 6.4.2->6.4.3"]


def test_unknown_names_are_noted_and_an_empty_plan_says_so() -> None:
    plan = build_plan([], INSTALLED, Selection(exclude=("akismett",)))
    assert plan.items == [] and plan.summary() == "no updates to apply"
    assert plan.notes == ["exclude names 'akismett', which is not installed on this site"]


def test_unknown_names_in_only_exclude_pin_are_listed_by_param() -> None:
    from maintainer.cms.base import Component
    from maintainer.cms.plan import Selection, build_plan

    components = [Component("core", "wordpress", "WordPress", "6.4.2", True, "installed"),
                  Component("plugin", "akismet", "Akismet", "5.0", True, "active")]  # fmt: skip
    plan = build_plan(
        [], components, Selection(plugins="list", only=("akismet", "akismte"), exclude=("nope",))
    )
    assert plan.unknown == {"only": ["akismte"], "exclude": ["nope"]}
    assert "only names 'akismte', which is not installed on this site" in plan.notes
