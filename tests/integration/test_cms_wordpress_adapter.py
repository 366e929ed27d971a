"""The WordPress adapter's update operations against a real WordPress (Debian's package on the
throwaway MariaDB), through the WP-CLI stand-in, with updates from a local update source
(tests/servers/wp_updates.py): WordPress's own upgraders download, unpack and replace the files.

Each test has its own copy of the site's files and database, so it may update, break and repair.
One test runs the adapter over the sshd fixture (the site's files owned by the SSH user).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maintainer.cms.base import MAJOR, MINOR, CmsError, PlannedUpdate, Runner, adapter_for
from maintainer.cms.wordpress import WordPressAdapter
from maintainer.inventory import Site
from maintainer.ssh import SSHTransport
from maintainer.transport import LocalTransport
from tests.servers.mariadb import MariaDBServer
from tests.servers.sshd import TEST_USER, SSHServer
from tests.servers.wp_updates import (
    BROKEN_CALL,
    UpdateBase,
    UpdatePackages,
    WpUpdateSite,
    update_site,
)


def local_adapter(site: WpUpdateSite, **extra: Any) -> WordPressAdapter:
    transport = LocalTransport()
    return _adapter(site, lambda argv: transport.run(list(argv)), **extra)


def _adapter(site: WpUpdateSite, run: Runner, **extra: Any) -> WordPressAdapter:
    found = adapter_for(Site("wp", site.site_vars(**extra), []), run)
    assert isinstance(found, WordPressAdapter)
    return found


def plan_of(adapter: WordPressAdapter, *keys: str) -> list[PlannedUpdate]:
    """The plan the runbook would make from ``updates()``: these components at their offered version."""
    offered = {u.key: u for u in adapter.updates() if u.kind != MAJOR or u.type != "core"}
    return [
        PlannedUpdate(u.type, u.slug, u.name, u.current, u.available) for key in keys for u in [offered[key]]
    ]


def test_updates_lists_core_minor_the_plugins_and_the_theme(
    wp_update_site: WpUpdateSite, wp_update_packages: UpdatePackages
) -> None:
    wp = local_adapter(wp_update_site)
    found = {u.key: u for u in wp.updates()}
    core = found["core"]
    assert (core.current, core.available, core.kind) == (
        wp_update_packages.core_from,
        wp_update_packages.core_version,
        MINOR,
    )
    assert {k: (u.current, u.available, u.kind) for k, u in found.items() if k != "core"} == {
        "plugin:good-plugin": ("1.0", "1.1", MINOR),
        "plugin:other-plugin": ("2.0", "2.1", MINOR),
        "plugin:broken-plugin": ("1.0", "1.1", MINOR),
        "plugin:pinned-plugin": ("1.0", "1.1", MINOR),
        "plugin:addon-plugin": ("1.0", "1.1", MINOR),
        "plugin:future-plugin": ("1.0", "2.0", MAJOR),
        "theme:mt-theme": ("1.0", "1.1", MINOR),
    }
    good = found["plugin:good-plugin"]
    assert (good.name, good.requires_core, good.requires_php, good.depends_on) == (
        "Good Plugin",
        "5.0",
        "7.0",
        (),
    )
    # WordPress 6.5's "Requires Plugins" header of the installed add-on
    assert found["plugin:addon-plugin"].depends_on == ("good-plugin",)
    future = found["plugin:future-plugin"]
    assert (future.requires_core, future.requires_php) == ("9.9", "99.0")
    assert list(wp.held_back) == ["plugin:future-plugin"]
    assert wp.held_back["plugin:future-plugin"].startswith("This update requires PHP version 99.0")
    assert found["theme:mt-theme"].name == "MT Theme"
    assert all(u.security is None for u in found.values())
    assert wp.security_updates() is None

    # nothing offered: the same call says so (check-update prints [], the lists "none")
    wp_update_site.source.withdraw("core", "wordpress")
    for slug in (
        "good-plugin",
        "other-plugin",
        "broken-plugin",
        "pinned-plugin",
        "addon-plugin",
        "future-plugin",
    ):
        wp_update_site.source.withdraw("plugins", slug)
    wp_update_site.source.withdraw("themes", "mt-theme")
    assert local_adapter(wp_update_site).updates() == []


def test_apply_installs_exactly_the_plan_not_a_newer_release(wp_update_site: WpUpdateSite) -> None:
    wp = local_adapter(wp_update_site)
    plan = plan_of(wp, "core", "plugin:good-plugin", "plugin:other-plugin", "theme:mt-theme")
    # a newer release appears between the plan and the run: the plan still says 1.1
    wp_update_site.source.publish("plugins", "good-plugin", "1.2")
    assert {u.key: u.available for u in local_adapter(wp_update_site).updates()}[
        "plugin:good-plugin"
    ] == "1.2"

    applied = wp.apply(plan)
    assert [(a.item.key, a.ok, a.version) for a in applied] == [
        ("core", True, plan[0].to_version),
        ("plugin:good-plugin", True, "1.1"),
        ("plugin:other-plugin", True, "2.1"),
        ("theme:mt-theme", True, "1.1"),
    ]
    # good-plugin was pinned (--version), other-plugin went through WordPress's bulk upgrade
    commands = {a.item.key: a.command or [] for a in applied}
    assert "--version=1.1" in commands["plugin:good-plugin"]
    assert "--format=json" in commands["plugin:other-plugin"]
    assert f"--version={plan[0].to_version}" in commands["core"]
    assert applied[2].message == "updated 2.0 -> 2.1"
    assert wp_update_site.version_of("plugin", "good-plugin") == "1.1"
    assert wp_update_site.version_of("core", "wordpress") == plan[0].to_version
    # read back, not assumed: the adapter's own listing is fresh
    assert {c.key: c.version for c in wp.components()}["plugin:other-plugin"] == "2.1"
    status, body = wp_update_site.get()
    assert status == 200 and wp_update_site.installed.title in body
    assert wp.maintenance_state() is False  # the bulk upgrade's maintenance mode was lifted


def test_a_plan_for_a_release_the_source_does_not_have_fails_that_item_only(
    wp_update_site: WpUpdateSite,
) -> None:
    wp = local_adapter(wp_update_site)
    plan = [
        PlannedUpdate("plugin", "pinned-plugin", "Pinned Plugin", "1.0", "1.7"),
        PlannedUpdate("plugin", "other-plugin", "Other Plugin", "2.0", "2.1"),
    ]
    missing, other = wp.apply(plan)
    assert (missing.ok, missing.version) == (False, "1.0")
    assert "Can't find the requested plugin's version 1.7" in missing.message
    assert (other.ok, other.version) == (True, "2.1")


def test_the_broken_plugin_update_applies_and_the_home_page_is_a_fatal_error(
    wp_update_site: WpUpdateSite,
) -> None:
    wp = local_adapter(wp_update_site)
    assert wp_update_site.get()[0] == 200
    (applied,) = wp.apply(plan_of(wp, "plugin:broken-plugin"))
    assert (applied.ok, applied.version) == (True, "1.1")
    status, body = wp_update_site.get()
    assert status == 500 and "critical error" in body and wp_update_site.installed.title not in body
    assert BROKEN_CALL in wp_update_site.error_log.read_text()
    # WP-CLI (--skip-plugins) still reads the broken site: the rollback can rely on it
    assert {c.key: c.version for c in local_adapter(wp_update_site).components()}[
        "plugin:broken-plugin"
    ] == "1.1"
    assert wp.component_path("plugin", "broken-plugin") == "wp-content/plugins/broken-plugin"


def test_maintenance_on_off_state_and_a_leftover_file(wp_update_site: WpUpdateSite) -> None:
    wp = local_adapter(wp_update_site)
    marker = wp_update_site.docroot / ".maintenance"
    assert wp.maintenance_state() is False
    wp.maintenance(True)
    assert marker.exists() and wp.maintenance_state() is True
    status, body = wp_update_site.get()
    assert status == 503 and "Briefly unavailable for scheduled maintenance" in body
    wp.maintenance(True)  # already on: refreshed, not an error
    wp.maintenance(False)
    assert not marker.exists() and wp.maintenance_state() is False and wp.notes == []
    assert wp_update_site.get()[0] == 200
    wp.maintenance(False)  # already off: fine

    # a crashed update's leftover file: WP-CLI reads it as active, and deactivating removes it
    marker.write_text("<?php $upgrading = time(); ?>")
    assert wp.maintenance_state() is True
    assert wp_update_site.get()[0] == 503
    wp.maintenance(False)
    assert not marker.exists() and wp.maintenance_state() is False

    # WP-CLI cannot run (a broken install): the file is still seen, and removed over the transport
    marker.write_text("<?php $upgrading = time(); ?>")
    broken = local_adapter(wp_update_site, wp_cli="/bin/false")
    assert broken.maintenance_state() is True
    broken.maintenance(False)
    assert not marker.exists()
    assert broken.notes and "removed it over the transport" in broken.notes[0]
    assert wp_update_site.get()[0] == 200


def test_maintenance_off_fails_loudly_when_the_file_cannot_go(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    marker = wp_update_site.docroot / ".maintenance"
    marker.mkdir()  # neither WP-CLI's delete nor rm -f removes a directory
    (marker / "keep").write_text("x")
    with pytest.raises(CmsError) as failed:
        local_adapter(wp_update_site).maintenance(False)
    assert "stays in maintenance mode (503)" in str(failed.value) and "remove it by hand" in str(failed.value)


def test_db_update_runs_pending_core_migrations_and_cache_flush(wp_update_site: WpUpdateSite) -> None:
    wp = local_adapter(wp_update_site)
    current = wp_update_site.db.sql(
        "SELECT option_value FROM wp_options WHERE option_name = 'db_version'"
    ).strip()
    wp_update_site.db.sql("UPDATE wp_options SET option_value = '49752' WHERE option_name = 'db_version'")
    result = wp.db_update()
    assert result.supported is True
    (core,) = result.ran  # no active plugin here has migrations of its own
    assert core["what"] == "core" and "update-db" in core["command"]
    assert core["message"] == f"WordPress database upgraded successfully from db version 49752 to {current}."
    assert wp_update_site.db.sql(
        "SELECT option_value FROM wp_options WHERE option_name = 'db_version'"
    ).strip() == (current)
    (again,) = wp.db_update().ran
    assert again["message"] == f"WordPress database already at latest db version {current}."
    assert wp.cache_flush() is True

    # multisite: --network is asked for, and WP-CLI's refusal on a single site is an error
    with pytest.raises(CmsError) as failed:
        local_adapter(wp_update_site, wp_multisite=True).db_update()
    assert "This is not a multisite installation." in str(failed.value)


@pytest.fixture
def ssh_update_site(
    sshd_server: SSHServer,
    wp_update_base: UpdateBase,
    wp_update_packages: UpdatePackages,
    mariadb_server: MariaDBServer,
    wp_checksums: dict[str, Any],
) -> Iterator[WpUpdateSite]:
    directory = sshd_server.workspace(f"wp-updates-{secrets.token_hex(3)}")
    with update_site(
        wp_update_base,
        wp_update_packages,
        mariadb_server,
        wp_checksums,
        directory,
        owner=TEST_USER,
        ssh_vars=sshd_server.site_vars(),
    ) as site:
        yield site


def test_over_ssh_lists_applies_and_switches_maintenance(
    ssh_update_site: WpUpdateSite, sshd_server: SSHServer
) -> None:
    vars_ = ssh_update_site.site_vars()
    transport = SSHTransport.from_vars(sshd_server.host, sshd_server.port, sshd_server.user, vars_)
    try:
        wp = _adapter(ssh_update_site, lambda argv: transport.run(list(argv)))
        found = {u.key: u for u in wp.updates()}
        assert found["plugin:good-plugin"].available == "1.1"
        assert found["plugin:addon-plugin"].depends_on == ("good-plugin",)
        applied = wp.apply(plan_of(wp, "plugin:good-plugin", "plugin:pinned-plugin"))
        assert [(a.item.key, a.ok, a.version) for a in applied] == [
            ("plugin:good-plugin", True, "1.1"),
            ("plugin:pinned-plugin", True, "1.1"),
        ]
        wp.maintenance(True)
        assert wp.maintenance_state() is True
        assert (ssh_update_site.docroot / ".maintenance").stat().st_uid != 0  # written by the SSH user
        wp.maintenance(False)
        assert wp.maintenance_state() is False
        assert ssh_update_site.get()[0] == 200
    finally:
        transport.close()
