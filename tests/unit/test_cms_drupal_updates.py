"""Drupal's update operations on DOCUMENTED SAMPLE output (unit tests: no Drupal, Drush or Composer runs
here, so these are not captured from a site).

The samples are shaped after the tools' sources: Composer's ``ShowCommand`` (``outdated``/``show
--format=json``: ``{"installed": [{name, direct-dependency, homepage, source, version, latest,
latest-status, description, abandoned}]}``) and ``Auditor``/``SecurityAdvisory`` (``audit
--format=json``: ``{"advisories": {PACKAGE: [{advisoryId, packageName, affectedVersions, ...}]}}``);
Drush's ``SecurityUpdateCommands`` (``pm:security``: rows ``{name, version}``, exit 3 when insecure
packages are found; Drush 9 added ``min-version``), ``MaintCommands`` (``maint:get`` prints 1/0),
``UpdateDbStatusCommand`` (rows ``{module, update_id, description, type}``). A fake runner answers
by the command words and records every argv, so the tests also pin the exact commands built.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from maintainer.cms.base import MAJOR, MINOR, PATCH, CmsError, PlannedUpdate, adapter_for
from maintainer.cms.drupal import DrupalAdapter, first_fixed, outdated_packages, release_kind
from maintainer.errors import BadInput
from maintainer.inventory import Site
from maintainer.transport import CommandResult

DOCROOT = "/var/www/drupal/web"
ROOT = "/var/www/drupal"
COMPOSER = ["composer", f"--working-dir={ROOT}", "--no-interaction", "--no-ansi"]
DRUSH = ["drush", f"--root={DOCROOT}"]


class Fake:
    """Answers the first route whose words appear in the argv; a list of answers is used in turn."""

    def __init__(self, routes: dict[str, tuple[int, str, str] | list[tuple[int, str, str]]]) -> None:
        self.routes = {
            key: list(value) if isinstance(value, list) else [value] for key, value in routes.items()
        }
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        joined = " ".join(argv)
        for words, answers in self.routes.items():
            if words in joined:
                rc, out, err = answers.pop(0) if len(answers) > 1 else answers[0]
                return CommandResult(rc, out, err, 0.01)
        raise AssertionError(f"unexpected command {list(argv)}")

    def ran(self, words: str) -> list[list[str]]:
        return [call for call in self.calls if words in " ".join(call)]


def drupal(routes: dict[str, Any], **vars_: object) -> tuple[DrupalAdapter, Fake]:
    fake = Fake(routes)
    adapter = adapter_for(Site("d", {"cms": "drupal", "docroot": DOCROOT, **vars_}, []), fake)
    assert isinstance(adapter, DrupalAdapter)
    return adapter, fake


def row(
    name: str, version: str, latest: str | None = None, status: str = "semver-safe-update"
) -> dict[str, Any]:
    data = {"name": name, "direct-dependency": True, "homepage": None, "source": f"https://git/{name}",
            "version": version, "description": "", "abandoned": False}  # fmt: skip
    if latest is not None:
        data.update(latest=latest, **{"latest-status": status})
    return data


OUTDATED = json.dumps(
    {
        "installed": [
            row("drupal/core-composer-scaffold", "10.2.1", "10.2.4"),
            row("drupal/core-project-message", "10.2.1", "10.2.4"),
            row("drupal/core-recommended", "10.2.1", "10.2.4"),
            row("drupal/gin", "3.0.0-rc8", "3.0.0-rc11"),
            row("drupal/pathauto", "1.12.0", "1.13.0"),
            row("drupal/token", "1.13.0", "1.13.0", "up-to-date"),
            row("drupal/webform", "6.2.2", "dev-6.x 1a2b3c4", "update-possible"),
            row("drush/drush", "12.4.3", "13.0.0", "update-possible"),
        ]
    },
    indent=4,
)
PM_LIST = json.dumps(
    {
        "pathauto": {"name": "pathauto", "display_name": "Pathauto (pathauto)", "project": "pathauto",
                     "type": "module", "path": "modules/contrib/pathauto", "status": "Enabled", "version": "8.x-1.12"},
        "gin": {"name": "gin", "display_name": "Gin", "project": "gin", "type": "theme",
                "path": "themes/contrib/gin", "status": "Enabled", "version": "8.x-3.0-rc8"},
    }
)  # fmt: skip
STATUS = (0, '{"drupal-version": "10.2.1", "root": "/var/www/drupal/web"}', "")
LISTING = {"core:status": STATUS, "pm:list": (0, PM_LIST, "")}


def test_updates_from_composer_outdated_map_packages_to_projects() -> None:
    adapter, fake = drupal({"outdated": (0, OUTDATED, ""), **LISTING})
    found = [(u.key, u.current, u.available, u.kind, u.package) for u in adapter.updates()]
    assert found == [
        ("core", "10.2.1", "10.2.4", PATCH, "drupal/core-recommended"),  # companions move with it
        ("theme:gin", "3.0.0-rc8", "3.0.0-rc11", PATCH, "drupal/gin"),  # typed by drush pm:list
        ("module:pathauto", "1.12.0", "1.13.0", MINOR, "drupal/pathauto"),
    ]  # up-to-date token, a dev branch and drush/drush (not a CMS component) are not offered
    assert fake.calls[0] == [*COMPOSER, "outdated", "--direct", "--format=json"]
    assert adapter.updates()[1].name == "Gin"


def test_all_current_is_an_empty_list_and_noise_before_the_json_is_skipped() -> None:
    adapter, _ = drupal({"outdated": (0, '{\n    "installed": []\n}\n', ""), **LISTING})
    assert adapter.updates() == []
    noisy = "PHP Deprecated:  Creation of dynamic property in /x.php on line 5\n" + OUTDATED
    adapter, _ = drupal({"outdated": (0, noisy, "Warning: the lock file is not up to date"), **LISTING})
    assert [u.key for u in adapter.updates()] == ["core", "theme:gin", "module:pathauto"]
    adapter, _ = drupal({"outdated": (1, "", "composer: command not found")})
    with pytest.raises(CmsError, match=r"composer outdated printed no usable JSON.*command not found"):
        adapter.updates()


def test_a_directly_required_drupal_core_is_the_core_update() -> None:
    outdated = json.dumps({"installed": [row("drupal/core", "9.5.11", "10.2.4", "update-possible")]})
    adapter, _ = drupal({"outdated": (0, outdated, ""), **LISTING})
    (core,) = adapter.updates()
    assert (core.key, core.kind, core.package) == ("core", MAJOR, "drupal/core")


def test_composer_root_php_bin_and_composer_vars_shape_the_argv() -> None:
    adapter, fake = drupal({"outdated": (0, '{"installed": []}', "")},
                           composer_root="/srv/app", php_bin="/opt/php83/bin/php",
                           composer="/usr/local/bin/composer.phar")  # fmt: skip
    adapter.updates()
    assert fake.calls[0] == [
        "/opt/php83/bin/php", "/usr/local/bin/composer.phar", "--working-dir=/srv/app", "--no-interaction",
        "--no-ansi", "outdated", "--direct", "--format=json",
    ]  # fmt: skip
    adapter, fake = drupal({"outdated": (0, '{"installed": []}', "")}, php_bin="php8.3", docroot="/srv/site")
    adapter.updates()
    # a bare composer name is looked up on the site's PATH; a docroot not named web is the root
    assert fake.calls[0][:6] == ["bash", "-c", 'exec "$0" "$(command -v "$1")" "${@:2}"', "php8.3", "composer",
                                 "--working-dir=/srv/site"]  # fmt: skip


def test_release_kinds_follow_drupals_own_terms() -> None:
    assert release_kind("10.2.1", "10.2.4") == PATCH  # a patch release
    assert release_kind("10.2.7", "10.3.0") == MINOR  # 10.3 is a minor release
    assert release_kind("10.3.1", "11.0.0") == MAJOR
    assert release_kind("8.x-1.5", "1.6.0") == MINOR  # Drupal 8 contrib numbering
    assert release_kind("2.0.0-rc1", "2.0.0") == PATCH
    assert release_kind(None, "1.0.0") == MAJOR  # unknown: the cautious kind


def test_outdated_parser_keeps_only_real_updates() -> None:
    assert outdated_packages(json.loads(OUTDATED))[0] == ("drupal/core-composer-scaffold", "10.2.1", "10.2.4")
    assert outdated_packages({"locked": [row("drupal/x", "1.0.0", "1.0.1")]}) == [
        ("drupal/x", "1.0.0", "1.0.1")
    ]
    with pytest.raises(ValueError):
        outdated_packages({"something": "else"})


# ------------------------------------------------------------------ apply: the exact commands


def show(*pairs: tuple[str, str]) -> tuple[int, str, str]:
    return 0, json.dumps({"installed": [row(name, version) for name, version in pairs]}), ""


DIRECT = show(("drupal/core-recommended", "10.2.1"), ("drupal/core-composer-scaffold", "10.2.1"),
              ("drupal/core-project-message", "10.2.1"), ("drupal/pathauto", "1.12.0"),
              ("drush/drush", "12.4.3"))  # fmt: skip


def test_a_pinned_core_update_requires_exactly_the_planned_version_and_reads_it_back() -> None:
    after = show(("drupal/core", "10.2.4"), ("drupal/core-recommended", "10.2.4"))
    adapter, fake = drupal({"show --direct": DIRECT, "show --format=json": after, "require": (0, "", "ok")})
    (done,) = adapter.apply([PlannedUpdate("core", "drupal", "Drupal", "10.2.1", "10.2.4")])
    assert fake.ran("require") == [[
        *COMPOSER, "require", "--update-with-all-dependencies", "--no-progress",
        "drupal/core-recommended:10.2.4", "drupal/core-composer-scaffold:10.2.4", "drupal/core-project-message:10.2.4",
    ]]  # fmt: skip
    assert (done.ok, done.version, done.command) == (True, "10.2.4", fake.ran("require")[0])
    assert done.message == "drupal/core 10.2.1 -> 10.2.4"


def test_composer_finishing_at_another_version_or_failing_is_not_success() -> None:
    item = PlannedUpdate("core", "drupal", "Drupal", "10.2.1", "10.2.4")
    stuck = show(("drupal/core", "10.2.1"))
    adapter, _ = drupal({"show --direct": DIRECT, "show --format=json": stuck, "require": (0, "", "")})
    (done,) = adapter.apply([item])
    assert (done.ok, done.version) == (False, "10.2.1")
    assert "composer finished but drupal/core is at 10.2.1, not 10.2.4" in done.message
    conflict = (2, "", "Your requirements could not be resolved to an installable set of packages.\n"
                "Installation failed, reverting ./composer.json and ./composer.lock to their original content.")  # fmt: skip
    adapter, _ = drupal({"show --direct": DIRECT, "show --format=json": stuck, "require": conflict})
    (done,) = adapter.apply([item])
    assert not done.ok and done.message.startswith("composer require failed (exit 2): Your requirements")


def test_modules_are_required_and_transitive_packages_updated_with_a_temporary_constraint() -> None:
    after = show(
        ("drupal/pathauto", "1.13.0"), ("symfony/http-foundation", "6.4.8"), ("drupal/core", "10.2.1")
    )
    adapter, fake = drupal({"show --direct": DIRECT, "show --format=json": after,
                            "require": (0, "", ""), " update ": (0, "", "")})  # fmt: skip
    done = adapter.apply([
        PlannedUpdate("module", "pathauto", "Pathauto", "1.12.0", "1.13.0"),
        PlannedUpdate("library", "symfony/http-foundation", "symfony/http-foundation", "6.4.7", "6.4.8"),
    ])  # fmt: skip
    assert fake.ran("require") == [[*COMPOSER, "require", "--update-with-dependencies", "--no-progress",
                                    "drupal/pathauto:1.13.0"]]  # fmt: skip
    assert fake.ran(" update ") == [[*COMPOSER, "update", "--with-dependencies", "--no-progress",
                                     "--with=symfony/http-foundation:6.4.8", "symfony/http-foundation"]]  # fmt: skip
    assert [(a.ok, a.version) for a in done] == [(True, "1.13.0"), (True, "6.4.8")]


def test_items_that_cannot_be_a_drupal_update_are_refused_without_running_them() -> None:
    adapter, fake = drupal({"show --direct": DIRECT, "show --format=json": show()})
    done = adapter.apply([PlannedUpdate("plugin", "akismet", "Akismet", "5.0", "5.1"),
                          PlannedUpdate("module", "x", "X", "1.0", "1.1; rm -rf /")])  # fmt: skip
    assert [a.ok for a in done] == [False, False]
    assert "a Drupal site has no plugins" in done[0].message and "not a plain version" in done[1].message
    assert not fake.ran("require") and adapter.apply([]) == []


# ------------------------------------------------------------------ security


PM_SECURITY_12 = json.dumps({"drupal/core": {"name": "drupal/core", "version": "10.2.1"}})
AUDIT = json.dumps(
    {
        "advisories": {
            "drupal/core": [{
                "advisoryId": "PKSA-1", "packageName": "drupal/core",
                "affectedVersions": ">=8.0.0,<10.1.8|>=10.2.0,<10.2.2", "title": "Drupal core - Moderately critical",
                "cve": None, "link": "https://www.drupal.org/sa-core-2024-001",
                "reportedAt": "2024-01-17T00:00:00+00:00", "sources": [{"name": "GitHub", "remoteId": "x"}],
            }],
            "symfony/http-foundation": [{
                "advisoryId": "PKSA-2", "packageName": "symfony/http-foundation",
                "affectedVersions": ">=6.4.0,<6.4.8", "title": "Open redirect", "cve": "CVE-2024-1",
                "link": None, "reportedAt": "2024-05-01T00:00:00+00:00", "sources": [],
            }],
        }
    }
)  # fmt: skip


def test_security_updates_join_pm_security_and_composer_audit_with_first_fixed_versions() -> None:
    adapter, fake = drupal({
        "pm:security": (3, PM_SECURITY_12, " [warning] One or more of your dependencies has an outstanding "
                        "security update.\n [notice] Try running: composer require drupal/core --update-with-dependencies"),
        "audit": (1, AUDIT, "Found 2 security vulnerability advisories affecting 2 packages"),
        "show --format=json": show(("drupal/core", "10.2.1"), ("symfony/http-foundation", "6.4.7")),
        **LISTING,
    })  # fmt: skip
    found = [(u.key, u.current, u.available, u.kind, u.security) for u in adapter.security_updates()]
    assert found == [
        ("core", "10.2.1", "10.2.2", PATCH, True),
        ("library:symfony/http-foundation", "6.4.7", "6.4.8", PATCH, True),
    ]
    assert fake.ran("pm:security") == [[*DRUSH, "pm:security", "--format=json"]]
    assert fake.ran("audit") == [[*COMPOSER, "audit", "--format=json"]]


def test_drush_9s_min_version_and_clean_answers() -> None:
    drush9 = json.dumps(
        {"drupal/pathauto": {"name": "drupal/pathauto", "version": "1.8.0", "min-version": "1.9.0"}}
    )
    adapter, _ = drupal({"pm:security": (1, "One or more of your dependencies...\n" + drush9, ""),
                         "audit": (1, "", "Command \"audit\" is not defined."), **LISTING})  # fmt: skip
    # Drush 9 set exit 1 with the rows: exit 1 is no answer, so composer audit must answer...
    with pytest.raises(CmsError, match="neither drush pm:security nor composer audit gave an answer"):
        adapter.security_updates()
    adapter, _ = drupal({"pm:security": (3, drush9, ""), "audit": (1, "", "not defined"), **LISTING})
    (pathauto,) = adapter.security_updates()
    assert (pathauto.key, pathauto.available, pathauto.security) == ("module:pathauto", "1.9.0", True)
    adapter, _ = drupal({"pm:security": (0, "[]", " [success] There are no outstanding security updates."),
                         "audit": (0, '{\n    "advisories": []\n}', "")})  # fmt: skip
    assert adapter.security_updates() == []


def test_a_flagged_package_without_a_known_fix_is_loud_not_dropped() -> None:
    adapter, _ = drupal({"pm:security": (3, PM_SECURITY_12, ""), "audit": (1, "", "not defined"),
                         "outdated": (0, '{"installed": []}', ""), **LISTING})  # fmt: skip
    with pytest.raises(CmsError, match="flag drupal/core but name no fixed version"):
        adapter.security_updates()
    # Drush 12 names no fix, composer outdated does: the newest core is the fix then
    adapter, _ = drupal({"pm:security": (3, PM_SECURITY_12, ""), "audit": (1, "", "not defined"),
                         "outdated": (0, OUTDATED, ""), **LISTING})  # fmt: skip
    (core,) = adapter.security_updates()
    assert (core.key, core.available) == ("core", "10.2.4")


def test_first_fixed_reads_composer_constraints() -> None:
    ranges = ">=8.0.0,<10.1.8|>=10.2.0,<10.2.2"
    assert first_fixed("10.2.1", ranges) == "10.2.2"
    assert first_fixed("10.1.0", ranges) == "10.1.8"
    assert first_fixed("10.2.2", ranges) is None  # not affected
    assert first_fixed("1.0.0", ">=1.0.0") is None  # affected, no fix released
    assert first_fixed("2.1.0", "<2.1.3 || >=3.0.0 <3.0.2") == "2.1.3"
    assert first_fixed(None, ranges) is None


# ------------------------------------------------------------------ maintenance, database, caches


def test_maintenance_with_drush_12s_maint_commands_is_read_back() -> None:
    adapter, fake = drupal({"maint:set": (0, "", ""), "maint:get": [(0, "1\n", ""), (0, "0\n", "")]})
    adapter.maintenance(True)
    adapter.maintenance(False)
    assert fake.calls == [[*DRUSH, "maint:set", "1"], [*DRUSH, "maint:get"],
                          [*DRUSH, "maint:set", "0"], [*DRUSH, "maint:get"]]  # fmt: skip


def test_older_drush_falls_back_to_the_state_system() -> None:
    undefined = (1, "", '  Command "maint:set" is not defined.  ')
    adapter, fake = drupal({"maint:set": undefined, "maint:get": (1, "", 'Command "maint:get" is not defined.'),
                            "state:set": (0, "", ""), "state:get": (0, "true\n", "")})  # fmt: skip
    adapter.maintenance(True)
    assert fake.ran("state:") == [
        [*DRUSH, "state:set", "system.maintenance_mode", "1", "--input-format=integer"],
        [*DRUSH, "state:get", "system.maintenance_mode", "--format=json"],
    ]
    adapter, _ = drupal(
        {"maint:get": (1, "", 'Command "maint:get" is not defined.'), "state:get": (0, "null\n", "")}
    )
    assert adapter.maintenance_state() is False  # never set: off


def test_maintenance_that_did_not_take_or_cannot_be_read_raises() -> None:
    adapter, _ = drupal({"maint:set": (0, "", ""), "maint:get": (0, "0\n", "")})
    with pytest.raises(CmsError, match="set maintenance mode on but the site still reports it off"):
        adapter.maintenance(True)
    adapter, _ = drupal({"maint:get": (1, "", "Drupal bootstrap failed: SQLSTATE[HY000] [2002]")})
    with pytest.raises(CmsError, match="drush gave no maintenance mode state"):
        adapter.maintenance_state()


PENDING = json.dumps(
    {
        "system_update_10201": {"module": "system", "update_id": 10201, "description": "Clear caches.",
                                "type": "hook_update_n"},
        "pathauto-post-update_x": {"module": "pathauto", "update_id": "update_x", "description": "Fix.",
                                   "type": "post-update"},
    }
)  # fmt: skip


def test_db_update_runs_updatedb_only_when_something_is_pending_and_checks_after() -> None:
    none_left = (0, "", " [success] No database updates required.")
    adapter, fake = drupal({"updatedb:status": [(0, PENDING, ""), none_left], "updatedb -y": (0, "", "")})
    result = adapter.db_update()
    assert fake.calls == [[*DRUSH, "updatedb:status", "--format=json"], [*DRUSH, "updatedb", "-y"],
                          [*DRUSH, "updatedb:status", "--format=json"]]  # fmt: skip
    assert result.supported and result.ran[0]["updates"] == ["pathauto:update_x", "system:10201"]
    adapter, fake = drupal({"updatedb:status": none_left})
    assert adapter.db_update().ran == [] and len(fake.calls) == 1


def test_db_update_failures_are_errors() -> None:
    adapter, _ = drupal(
        {"updatedb:status": (0, PENDING, ""), "updatedb -y": (1, "", "[error] Update failed")}
    )
    with pytest.raises(CmsError, match=r"drush updatedb failed \(exit 1\): \[error\] Update failed"):
        adapter.db_update()
    adapter, _ = drupal({"updatedb:status": (0, PENDING, ""), "updatedb -y": (0, "", "")})
    with pytest.raises(CmsError, match="still pending: pathauto:update_x, system:10201"):
        adapter.db_update()


def test_cache_rebuild() -> None:
    adapter, fake = drupal({"cache:rebuild": (0, "", " [success] Cache rebuild complete.")})
    assert adapter.cache_flush() is True and fake.calls == [[*DRUSH, "cache:rebuild"]]
    adapter, _ = drupal({"cache:rebuild": (1, "", "boom")})
    with pytest.raises(CmsError, match="cache:rebuild failed"):
        adapter.cache_flush()


def test_a_relative_composer_root_is_bad_input_at_plan_time() -> None:
    site = Site("d", {"cms": "drupal", "docroot": DOCROOT, "composer_root": "drupal"}, [])
    with pytest.raises(BadInput, match="composer_root 'drupal' is not an absolute path") as error:
        DrupalAdapter.check_site(site)
    assert error.value.key == "composer_root"
    assert DrupalAdapter.can_update and "composer" in DrupalAdapter.update_note
