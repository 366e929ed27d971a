"""The WordPress adapter's update logic on WP-CLI's documented output, through a scripted runner.

The outputs are the shapes wp-cli/core-command (``check_update``: a JSON array of {version,
update_type, package_url}, or ``Success: WordPress is at the latest version.`` in table format) and
wp-cli/extension-command (``update_many``: {name, old_version, new_version, status} rows, then
``Error: Only updated N of M plugins.``) define; the real upgrade path runs in
tests/integration/test_cms_wordpress_adapter.py. WooCommerce and Elementor do not run here: their
migration commands are checked as built argv only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from maintainer.cms.base import MAJOR, MINOR, PATCH, PlannedUpdate
from maintainer.cms.wordpress import (
    WordPressAdapter,
    core_kind,
    dependencies,
    extension_kind,
    only_plugin_loaded,
    parse_check_update,
    parse_update_rows,
    update_batches,
)
from maintainer.inventory import Site
from maintainer.transport import CommandResult

VARS = {"cms": "wordpress", "docroot": "/var/www/blog"}


class Script:
    """Answers by the first key contained in the command line; records every argv."""

    def __init__(self, answers: list[tuple[str, tuple[int, str, str]]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        line = " ".join(argv)
        for key, (rc, stdout, stderr) in self.answers:
            if key in line:
                return CommandResult(rc, stdout, stderr, 0.01)
        raise AssertionError(f"unexpected command {argv}")


def adapter(
    answers: list[tuple[str, tuple[int, str, str]]], **extra: object
) -> tuple[WordPressAdapter, Script]:
    script = Script(answers)
    return WordPressAdapter(Site("blog", {**VARS, **extra}, []), script), script


# ------------------------------------------------------------------ wp core check-update


def test_check_update_json_lists_minor_first_in_wordpress_terms() -> None:
    stdout = json.dumps(
        [
            {
                "version": "6.5.2",
                "update_type": "major",
                "package_url": "https://downloads.wordpress.org/x.zip",
            },
            {
                "version": "6.4.4",
                "update_type": "minor",
                "package_url": "https://downloads.wordpress.org/y.zip",
            },
        ]
    )
    assert parse_check_update(stdout, "", "6.4.2") == [
        {"version": "6.4.4", "kind": MINOR},
        {"version": "6.5.2", "kind": MAJOR},
    ]


def test_check_update_when_current_is_not_an_error_and_not_an_update() -> None:
    assert parse_check_update("Success: WordPress is at the latest version.\n", "", "6.4.3") == []
    assert parse_check_update("[]\n", "", "6.4.3") == []  # --format=json prints an empty list
    with pytest.raises(ValueError, match="neither"):
        parse_check_update("", "PHP Fatal error: Allowed memory size exhausted\n", "6.4.3")


def test_core_update_kinds_are_wordpress_own() -> None:
    assert core_kind("6.4.2", "6.4.3") == MINOR
    assert core_kind("6.4", "6.4.1") == MINOR
    assert core_kind("6.4.3", "6.5") == MAJOR
    assert core_kind(None, "6.5") == MAJOR
    assert extension_kind("1.0", "1.0.1") == PATCH
    assert extension_kind("1.0", "1.1") == MINOR
    assert extension_kind("1.9.3", "2.0") == MAJOR
    assert extension_kind("3.1.11", "3.2.0-beta1") == MINOR


def test_updates_parse_requirements_held_back_updates_and_dependencies() -> None:
    plugins = [
        {"name": "elementor-pro", "title": "Elementor Pro", "status": "active", "version": "3.20.0",
         "update": "available", "update_version": "3.21.1", "requires": "6.2", "requires_php": "7.4",
         "update_unavailable_reason": ""},
        {"name": "shop-addon", "title": "Shop Addon", "status": "active", "version": "1.0",
         "update": "unavailable", "update_version": "2.0", "requires": "6.6", "requires_php": "8.1",
         "update_unavailable_reason": "This update requires WordPress version 6.6, but the version installed is 6.4.3."},
        {"name": "akismet", "title": "Akismet", "status": "active", "version": "5.3", "update": "none",
         "update_version": "", "requires": "5.8", "requires_php": "5.6.20", "update_unavailable_reason": ""},
    ]  # fmt: skip
    wp, script = adapter(
        [
            ("core version", (0, "6.4.3\n", "")),
            ("core check-update", (0, "[]\n", "")),
            ("plugin list", (0, json.dumps(plugins), "")),
            ("theme list", (0, "[]", "")),
            ("Requires Plugins", (0, "/var/www/blog/wp-content/plugins/shop-addon/shop-addon.php: * Requires Plugins: woocommerce, my-core\n", "")),
        ]
    )  # fmt: skip
    found = {u.key: u for u in wp.updates()}
    assert list(found) == ["plugin:elementor-pro", "plugin:shop-addon"]
    pro = found["plugin:elementor-pro"]
    assert (pro.current, pro.available, pro.kind, pro.requires_core, pro.requires_php, pro.depends_on) == (
        "3.20.0", "3.21.1", MINOR, "6.2", "7.4", ("elementor",),
    )  # fmt: skip
    assert found["plugin:shop-addon"].depends_on == ("woocommerce", "my-core")
    assert wp.held_back == {
        "plugin:shop-addon": "This update requires WordPress version 6.6, but the version installed is 6.4.3."
    }
    listing = next(c for c in script.calls if "plugin" in c and "list" in c)
    assert "--update=available" not in listing  # it would hide the held-back one
    assert "--skip-plugins" in listing and "--skip-themes" in listing


def test_older_wp_cli_without_the_requirement_fields_is_asked_again() -> None:
    basic = [{"name": "hello", "title": "Hello", "status": "inactive", "version": "1.6", "update": "available",
              "update_version": "1.7.2"}]  # fmt: skip
    wp, _ = adapter(
        [
            ("core version", (0, "6.4.3\n", "")),
            ("core check-update", (0, "Success: WordPress is at the latest version.\n", "")),
            ("update_unavailable_reason", (1, "", "Error: Invalid field: requires.\n")),
            ("plugin list", (0, json.dumps(basic), "")),
            ("theme list", (0, "[]", "")),
            ("Requires Plugins", (1, "", "")),
        ]
    )
    (hello,) = wp.updates()
    assert (hello.key, hello.available, hello.requires_core, hello.requires_php) == (
        "plugin:hello",
        "1.7.2",
        None,
        None,
    )


def test_known_add_on_dependencies() -> None:
    assert dependencies("elementor-pro") == ("elementor",)
    assert dependencies("woocommerce-subscriptions") == ("woocommerce",)
    assert dependencies("woocommerce") == ()
    assert dependencies("gravityformsstripe") == ("gravityforms",)
    assert dependencies("my-addon", ("woocommerce", "my-addon")) == ("woocommerce",)


# ------------------------------------------------------------------ apply


def plan(type_: str, slug: str, to: str, current: str = "1.0") -> PlannedUpdate:
    return PlannedUpdate(type_, slug, slug, current, to)


def test_batches_keep_plan_order_and_pin_what_is_not_offered_now() -> None:
    items = [
        plan("core", "wordpress", "6.4.4", "6.4.3"),
        plan("plugin", "a", "1.1"),
        plan("plugin", "b", "2.1"),
        plan("plugin", "c", "1.1"),
        plan("plugin", "d", "1.1"),
        plan("theme", "t", "1.1"),
    ]
    offered = {"plugin:a": "1.1", "plugin:b": "2.1", "plugin:c": "1.2", "plugin:d": "1.3", "theme:t": "1.1"}
    assert [([i.slug for i in batch], pinned) for batch, pinned in update_batches(items, offered)] == [
        (["wordpress"], True),
        (["a", "b"], False),  # one bulk update
        (["c", "d"], True),  # a newer release is offered: pinned with --version=1.1, one call
        (["t"], False),
    ]


def test_apply_reports_an_error_row_per_item_and_reads_versions_back() -> None:
    listed = [
        {"name": "good", "version": "1.0", "update": "available", "update_version": "1.1"},
        {"name": "bad", "version": "2.0", "update": "available", "update_version": "2.1"},
    ]
    update_out = json.dumps(
        [
            {"name": "good", "old_version": "1.0", "new_version": "1.1", "status": "Updated"},
            {"name": "bad", "old_version": "2.0", "new_version": "2.1", "status": "Error"},
        ]
    )
    after = [
        {"name": "good", "title": "Good", "status": "active", "version": "1.1"},
        {"name": "bad", "title": "Bad", "status": "active", "version": "2.0"},
    ]
    wp, script = adapter(
        [
            ("core version", (0, "6.4.3\n", "")),
            ("update_unavailable_reason", (0, json.dumps(listed), "")),
            ("plugin update", (1, update_out, "Warning: bad: Download failed. Not Found\nError: Only updated 1 of 2 plugins.\n")),
            ("plugin list", (0, json.dumps(after), "")),
            ("theme list", (0, "[]", "")),
        ]
    )  # fmt: skip
    good, bad = wp.apply([plan("plugin", "good", "1.1"), plan("plugin", "bad", "2.1", "2.0")])
    assert (good.ok, good.version, good.message) == (True, "1.1", "updated 1.0 -> 1.1")
    assert (bad.ok, bad.version) == (False, "2.0")
    assert bad.message == "Error: bad: Download failed. Not Found"
    (update_call,) = [c for c in script.calls if "update" in c and "plugin" in c]
    assert update_call[-3:] == ["good", "bad", "--format=json"]
    assert parse_update_rows("garbage") == {}


def test_apply_trusts_the_installed_version_not_the_success_line() -> None:
    wp, _ = adapter(
        [
            ("core update", (0, "Success: WordPress is up to date.\n", "")),
            ("core version", (0, "6.4.3\n", "")),
            ("plugin list", (0, "[]", "")),
            ("theme list", (0, "[]", "")),
        ]
    )
    (core,) = wp.apply([plan("core", "wordpress", "6.4.4", "6.4.3")])
    assert (core.ok, core.version) == (False, "6.4.3")
    assert core.message == "WP-CLI reported success but core is at 6.4.3, not 6.4.4"


# ------------------------------------------------------------------ migrations, maintenance


def test_db_update_runs_plugin_migrations_with_only_that_plugin_loaded() -> None:
    plugins = [
        {"name": "woocommerce", "title": "WooCommerce", "status": "active", "version": "8.6.1"},
        {"name": "elementor", "title": "Elementor", "status": "inactive", "version": "3.20.0"},
        {"name": "akismet", "title": "Akismet", "status": "active", "version": "5.3"},
    ]
    wp, _ = adapter(
        [
            ("core update-db", (0, "Success: WordPress database already at latest db version 57155.\n", "")),
            ("core version", (0, "6.4.3\n", "")),
            ("plugin list", (0, json.dumps(plugins), "")),
            ("theme list", (0, "[]", "")),
            (" wc update", (0, "Success: No updates required. Database version is 8.6.1\n", "")),
        ],
        wp_multisite=True,
    )
    result = wp.db_update()
    assert [r["what"] for r in result.ran] == ["core", "plugin:woocommerce"]  # elementor is inactive
    core_argv = result.ran[0]["command"]
    assert core_argv[-3:] == ["core", "update-db", "--network"]
    wc_argv = result.ran[1]["command"]
    assert wc_argv[-2:] == ["wc", "update"]
    assert "--skip-plugins=akismet" in wc_argv and "--skip-plugins" not in wc_argv
    assert result.ran[1]["message"] == "Success: No updates required. Database version is 8.6.1"
    assert only_plugin_loaded("woocommerce", ["woocommerce"]) == ("--skip-themes",)


def test_maintenance_off_removes_a_file_wp_cli_left_and_says_so() -> None:
    exists = iter([0, 1])  # the file is there after WP-CLI, gone after rm
    calls: list[list[str]] = []

    def run(argv: Sequence[str]) -> CommandResult:
        calls.append(list(argv))
        if argv[0] == "test":
            return CommandResult(next(exists), "", "", 0.0)
        if argv[0] == "rm":
            return CommandResult(0, "", "", 0.0)
        return CommandResult(255, "", "PHP Fatal error: Uncaught Error in wp-settings.php\n", 0.0)

    wp = WordPressAdapter(Site("blog", VARS, []), run)
    wp.maintenance(False)
    assert ["rm", "-f", "/var/www/blog/.maintenance"] in calls
    assert wp.notes == [
        "WP-CLI did not remove /var/www/blog/.maintenance (PHP Fatal error: Uncaught Error in wp-settings.php): "
        "removed it over the transport"
    ]
    assert wp.component_path("theme", "astra") == "wp-content/themes/astra"
    assert wp.component_path("core", "wordpress") is None


# ------------------------------------------------------------------ issue 5 review: 127, keep maintenance, age


def test_a_missing_wp_cli_or_php_is_one_paragraph_naming_the_vars() -> None:
    from maintainer.cms.base import CmsError

    wp, _ = adapter([("core version", (127, "", "/nonexistent/wp: No such file or directory"))],
                    wp_cli="/nonexistent/wp")  # fmt: skip
    with pytest.raises(CmsError) as caught:
        wp.version()
    message = str(caught.value)
    assert "wp_cli" in message and "/nonexistent/wp" in message and "full path of WP-CLI" in message
    assert "gave no version" not in message and "php_bin" not in message
    wp, _ = adapter([("core version", (126, "", "/opt/php: Permission denied"))], php_bin="/opt/php")
    with pytest.raises(CmsError, match="php_bin to a PHP binary"):
        wp.version()


def test_apply_puts_maintenance_back_after_each_update_command_when_asked() -> None:
    wp, script = adapter([
        ("plugin list", (0, json.dumps([{"name": "a", "version": "1.1", "status": "active", "update": "none"}]), "")),
        ("theme list", (0, "[]", "")),
        ("core version", (0, "6.4.3\n", "")),
        ("plugin update", (0, json.dumps([{"name": "a", "old_version": "1.0", "new_version": "1.1",
                                           "status": "Updated"}]), "")),
        ("maintenance-mode activate", (0, "Success: Activated Maintenance mode.\n", "")),
        ("test -e", (0, "", "")),
    ])  # fmt: skip
    wp.keep_maintenance = True
    [done] = wp.apply([PlannedUpdate("plugin", "a", "A", "1.0", "1.1", "selected")])
    assert done.ok
    lines = [" ".join(c) for c in script.calls]
    update = next(i for i, line in enumerate(lines) if "plugin update" in line)
    assert any("maintenance-mode activate" in line for line in lines[update:])


def test_maintenance_age_reads_upgrading_by_the_site_clock_and_unreadable_is_stale() -> None:
    wp, _ = adapter([("sh -c", (0, "1000300\n<?php $upgrading = 1000000; ?>", ""))])
    assert wp.maintenance_age() == 300.0
    wp, _ = adapter([("sh -c", (0, "1000300\n<?php // no time here ?>", ""))])
    assert wp.maintenance_age() == float("inf")
    wp, _ = adapter([("sh -c", (3, "", ""))])
    assert wp.maintenance_age() is None
