"""Joomla's update operations on DOCUMENTED SAMPLE output (unit tests: no Joomla runs here, so these
are not captured from a site).

The samples are shaped after joomla-cms's console commands (libraries/src/Console:
``CheckJoomlaUpdatesCommand``, ``UpdateCoreCommand``, ``CheckUpdatesCommand`` of Joomla 5.1+,
``SiteDownCommand``, ``CleanCacheCommand``, ``ExtensionsListCommand``) printed through Symfony's
``SymfonyStyle`` (title underlined with ``=``, ``[OK]``/``! [NOTE]``/``[ERROR]`` blocks, tables
between rows of dashes) and Symfony's ``list --raw``. The trap they pin: ``core:update`` exits 1
also when Joomla is already current and prints text, not JSON; success is the version read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from maintainer.cms.base import MAJOR, MINOR, PATCH, CmsError, PlannedUpdate, adapter_for
from maintainer.cms.joomla import (
    JoomlaAdapter,
    console_commands,
    core_check,
    core_update_outcome,
    extension_updates,
    offline_flag,
)
from maintainer.inventory import Site
from maintainer.transport import CommandResult

DOCROOT = "/var/www/joomla"
CLI = ["php", f"{DOCROOT}/cli/joomla.php"]
QUIET = ["--no-ansi", "--no-interaction"]


class Fake:
    """Answers the first route whose words appear in the argv; a list of answers is used in turn."""

    def __init__(self, routes: dict[str, tuple[int, str] | list[tuple[int, str]]]) -> None:
        self.routes = {
            key: list(value) if isinstance(value, list) else [value] for key, value in routes.items()
        }
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        joined = " ".join(argv)
        for words, answers in self.routes.items():
            if words in joined:
                rc, out = answers.pop(0) if len(answers) > 1 else answers[0]
                return CommandResult(rc, out, "", 0.01)
        raise AssertionError(f"unexpected command {list(argv)}")

    def ran(self, words: str) -> list[list[str]]:
        return [call for call in self.calls if words in " ".join(call)]


def joomla(routes: dict[str, Any], **vars_: object) -> tuple[JoomlaAdapter, Fake]:
    fake = Fake(routes)
    adapter = adapter_for(Site("j", {"cms": "joomla", "docroot": DOCROOT, **vars_}, []), fake)
    assert isinstance(adapter, JoomlaAdapter)
    return adapter, fake


def listing(core: str = "5.1.2", akeeba: str = "9.8.1") -> tuple[int, str]:
    return (
        0,
        f"""
Installed extensions.
=====================

 ----------------------------- -------------- ----------- ----------- --------
  Name                          Extension ID   Version     Type        Active
 ----------------------------- -------------- ----------- ----------- --------
  com_content                   22             {core}       component   Yes
  files_joomla                  241            {core}       file        Yes
  Akeeba Backup package         245            {akeeba}       package     Yes
  cassiopeia_child              250            1.0.0       template    Yes
 ----------------------------- -------------- ----------- ----------- --------

""",
    )


OFFERED = (
    0,
    """
Joomla! Updates
===============

 ! [NOTE] New Joomla Version 5.1.3 is available.

""",
)
CURRENT = (
    0,
    """
Joomla! Updates
===============

 [OK] You already have the latest Joomla version 5.1.2

""",
)
EXTENSION_UPDATES = (
    0,
    """
Fetching Extension Updates
==========================

 ! [NOTE] There are updates available.

 -------------- ----------------- ---------- ---------- ----------- ----------- --------
  Extension ID   Name              Location   Type       Installed   Available   Folder
 -------------- ----------------- ---------- ---------- ----------- ----------- --------
  245            Akeeba Backup     Site       package    9.8.1       9.9.0       N/A
  250            Cassiopeia Child  Site       template   1.0.0       2.0.0       N/A
 -------------- ----------------- ---------- ---------- ----------- ----------- --------

""",
)
NO_EXTENSION_UPDATES = (
    0,
    """
Fetching Extension Updates
==========================

 [OK] There are no updates available.

""",
)
JOOMLA_50_CHECK = (
    0,
    """
Fetching Extension Updates
==========================

 [OK] Finished fetching updates

""",
)
COMMANDS = """help                             Display help for a command
list                             List commands
cache:clean                      Clean cache entries
core:check-updates               Check for Joomla updates
core:update                      Update Joomla
extension:list                   List installed extensions
site:down                        Put the site into offline mode
site:up                          Put the site into online mode
update:extensions:check          Check for pending extension updates
"""
UPDATED = """
Updating Joomla
===============

Starting up ...
 0/9 [>---------------------------]   0%
Running checks ...
Check Database Table Structure...
Starting Joomla! update ...
Processing update package ...
Downloading update package ...
Extracting update package ...
Copying files ...
Finalizing update ...
Cleaning up ...
 9/9 [============================] 100%

 [OK] Joomla core updated successfully!

"""
ALREADY = """
Updating Joomla
===============

Starting up ...
Running checks ...
 1/9 [===>------------------------]  11%

 ! [NOTE] You already have the latest Joomla! version. 5.1.3

"""
SCHEMA = """
Updating Joomla
===============

Starting up ...
Running checks ...
Check Database Table Structure...

 [ERROR] Database Table Structure not Up to Date

 [INFO] There were 2 errors

"""


def test_updates_list_core_and_extensions_named_as_components_names_them() -> None:
    adapter, fake = joomla({"extension:list": listing(), "core:check-updates": OFFERED,
                            "update:extensions:check": EXTENSION_UPDATES})  # fmt: skip
    found = [(u.key, u.name, u.current, u.available, u.kind) for u in adapter.updates()]
    assert found == [
        ("core", "Joomla", "5.1.2", "5.1.3", PATCH),
        # matched by Extension ID: the update server's name is not extension:list's
        ("extension:akeeba backup package", "Akeeba Backup package", "9.8.1", "9.9.0", MINOR),
        ("theme:cassiopeia_child", "cassiopeia_child", "1.0.0", "2.0.0", MAJOR),
    ]
    assert fake.ran("check-updates") == [[*CLI, "core:check-updates", *QUIET]]
    assert fake.ran("update:extensions:check") == [[*CLI, "update:extensions:check", *QUIET]]


def test_a_current_site_has_no_updates_and_php_bin_and_joomla_cli_are_used() -> None:
    adapter, fake = joomla({"extension:list": listing(), "core:check-updates": CURRENT,
                            "update:extensions:check": NO_EXTENSION_UPDATES},
                           php_bin="/usr/bin/php8.3", joomla_cli="/srv/j/cli/joomla.php")  # fmt: skip
    assert adapter.updates() == []
    assert fake.calls[0][:3] == ["/usr/bin/php8.3", "/srv/j/cli/joomla.php", "extension:list"]


def test_joomla_before_51_lists_no_extension_updates_and_says_so() -> None:
    adapter, _ = joomla({"extension:list": listing(), "core:check-updates": CURRENT,
                         "update:extensions:check": JOOMLA_50_CHECK})  # fmt: skip
    with pytest.raises(CmsError, match=r"listed no updates \(Joomla before 5.1 only fetches them\)"):
        adapter.updates()


def test_the_exit_1_trap_already_current_counts_by_the_version_read_back() -> None:
    # the update server offers the plan's version, core:update exits 1 "already the latest": the version
    # read back is the plan's, so the item is done (a second run of the same plan)
    adapter, _ = joomla({"extension:list": listing("5.1.3"), "core:check-updates": OFFERED,
                            "core:update": (1, ALREADY)})  # fmt: skip
    (done,) = adapter.apply([PlannedUpdate("core", "joomla", "Joomla", "5.1.2", "5.1.3")])
    assert (done.ok, done.version) == (True, "5.1.3")
    assert done.command == [*CLI, "core:update", *QUIET]


def test_exit_0_is_not_trusted_either_and_the_real_outcome_is_named() -> None:
    item = PlannedUpdate("core", "joomla", "Joomla", "5.1.2", "5.1.3")
    adapter, _ = joomla({"extension:list": [listing("5.1.2"), listing("5.1.3")], "core:check-updates": OFFERED,
                         "core:update": (0, UPDATED)})  # fmt: skip
    (done,) = adapter.apply([item])
    assert (done.ok, done.version) == (True, "5.1.3")
    assert done.message == "core:update: Joomla core updated successfully; Joomla is at 5.1.3"
    adapter, _ = joomla({"extension:list": listing("5.1.2"), "core:check-updates": OFFERED,
                         "core:update": (0, UPDATED)})  # fmt: skip
    (done,) = adapter.apply([item])
    assert (done.ok, done.version) == (False, "5.1.2")  # said "successfully", still at 5.1.2
    adapter, _ = joomla({"extension:list": listing("5.1.2"), "core:check-updates": OFFERED,
                         "core:update": (1, SCHEMA)})  # fmt: skip
    (done,) = adapter.apply([item])
    assert not done.ok and "database table structure is not up to date" in done.message


def test_the_plan_is_exact_another_offered_version_is_refused_without_updating() -> None:
    newer = (0, " ! [NOTE] New Joomla Version 5.1.4 is available.\n")
    adapter, fake = joomla({"extension:list": listing("5.1.2"), "core:check-updates": newer})
    (done,) = adapter.apply([PlannedUpdate("core", "joomla", "Joomla", "5.1.2", "5.1.3")])
    assert not done.ok and done.message == "Joomla offers 5.1.4 now, the plan says 5.1.3: plan again"
    assert not fake.ran("core:update")


def test_extension_items_without_an_extension_update_command_stop_before_anything_runs() -> None:
    adapter, fake = joomla({"list --raw": (0, COMMANDS), "extension:list": listing()})
    with pytest.raises(
        CmsError, match=r"no command to apply extension updates.*extension:akeeba backup package"
    ):
        adapter.apply([PlannedUpdate("core", "joomla", "Joomla", "5.1.2", "5.1.3"),
                       PlannedUpdate("extension", "akeeba backup package", "Akeeba", "9.8.1", "9.9.0")])  # fmt: skip
    assert fake.calls == [[*CLI, "list", "--raw", "--no-ansi"]]


def test_a_console_plugins_extension_update_is_used_by_extension_id() -> None:
    commands = (0, COMMANDS + "extension:update                 Perform extension updates\n")
    adapter, fake = joomla({"list --raw": commands, "update:extensions:check": EXTENSION_UPDATES,
                            "extension:list": [listing(), listing(akeeba="9.9.0")],
                            "extension:update": (0, " [NOTE] Akeeba Backup has been updated to 9.9.0\n")})  # fmt: skip
    (done,) = adapter.apply([PlannedUpdate("extension", "akeeba backup package", "Akeeba", "9.8.1", "9.9.0")])
    assert fake.ran("extension:update") == [[*CLI, "extension:update", "--eid=245", *QUIET]]
    assert (done.ok, done.version) == (True, "9.9.0")


def test_site_down_and_up_are_read_back_from_one_line_of_configuration_php() -> None:
    adapter, fake = joomla({"site:down": (0, " [OK] Website is now offline\n"),
                            "grep": (0, "\tpublic $offline = true;\n")})  # fmt: skip
    adapter.maintenance(True)
    grep = fake.ran("grep")[0]
    assert grep[:2] == ["grep", "-E"] and grep[-1] == f"{DOCROOT}/configuration.php"  # never cat: DB password
    adapter, _ = joomla(
        {"site:up": (0, " [OK] Website is now online\n"), "grep": (0, "public $offline = true;\n")}
    )
    with pytest.raises(CmsError, match=r"site:up did not take: configuration.php's \$offline is True"):
        adapter.maintenance(False)
    adapter, _ = joomla({"grep": (1, "")})
    with pytest.raises(CmsError, match=r"no \$offline setting in /var/www/joomla/configuration.php"):
        adapter.maintenance_state()


def test_cache_database_and_security() -> None:
    adapter, fake = joomla({"cache:clean": (0, "\nCleaning System Cache\n=====\n\n [OK] Cache cleaned\n"),
                            "list --raw": (0, COMMANDS)})  # fmt: skip
    assert adapter.cache_flush() is True and fake.calls == [[*CLI, "cache:clean", *QUIET]]
    assert adapter.db_update().supported is False  # core:update and the installer run the schema themselves
    assert adapter.security_updates() is None  # the vulnerability feed is the source
    adapter, _ = joomla({"cache:clean": (1, " [ERROR] Cache not cleaned\n")})
    with pytest.raises(CmsError, match="cache:clean did not clean the cache"):
        adapter.cache_flush()
    commands = (0, COMMANDS + "maintenance:database             Maintenance Database structure\n")
    adapter, _ = joomla({"list --raw": commands, "maintenance:database": (0, " [INFO] Database OK\n")})
    assert adapter.db_update().ran[0]["command"] == [*CLI, "maintenance:database", "--fix", *QUIET]


def test_the_text_parsers_on_their_own() -> None:
    assert core_check(OFFERED[1]) == "5.1.3" and core_check(CURRENT[1]) is None
    wrapped = " ! [NOTE] New Joomla Version 5.2.0 is\n !        available.\n"
    assert core_check(wrapped) == "5.2.0"
    with pytest.raises(ValueError):
        core_check("PHP Fatal error: Allowed memory size exhausted\n")
    assert core_update_outcome(ALREADY) == "current" and core_update_outcome(UPDATED) == "updated"
    assert core_update_outcome(" [ERROR] Update cannot be performed.\n") == "failed"
    assert core_update_outcome("") == "unknown"
    assert extension_updates(NO_EXTENSION_UPDATES[1]) == []
    assert extension_updates(EXTENSION_UPDATES[1])[1]["available"] == "2.0.0"
    assert [offline_flag(t) for t in ("public $offline = '1';", "public $offline = false;", "")] == [
        True,
        False,
        None,
    ]
    assert {"cache:clean", "site:down"} <= console_commands(COMMANDS) and "help" not in console_commands(
        COMMANDS
    )
