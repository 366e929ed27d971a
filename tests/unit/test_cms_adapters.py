"""The CMS adapters on their tools' documented output, through a scripted runner.

WordPress: the messages are WP-CLI's own (wp-cli/checksum-command, wp-cli/extension-command and the
command docs at developer.wordpress.org/cli); the real install is exercised in
tests/integration/test_cms_checks.py. Drupal and Joomla: the outputs below are DOCUMENTED SAMPLES,
shaped after Drush's ``pm:list``/``core:status`` JSON and Joomla's ``extension:list`` table as their
sources define them (drush-ops/drush PmCommands::pmList; joomla-cms ExtensionsListCommand, Symfony's
table style), not captured from a running site: no Drupal or Joomla runs here.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from maintainer.actions.cms_common import site_runner
from maintainer.cms.base import (
    ADAPTERS,
    CmsError,
    StaticAdapter,
    adapter_class,
    adapter_for,
    find_json,
    first_version,
)
from maintainer.cms.drupal import DrupalAdapter, contrib_version, pm_list_components
from maintainer.cms.joomla import JoomlaAdapter, extension_components
from maintainer.cms.wordpress import WordPressAdapter
from maintainer.errors import BadInput
from maintainer.inventory import Site
from maintainer.testing import action_context
from maintainer.transport import CommandResult, LocalTransport

WP_VARS = {"cms": "wordpress", "docroot": "/var/www/blog"}


class Script:
    """A runner answering by the command words it is given (``core version``, ``plugin list``...)."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        words = " ".join(a for a in argv if not a.startswith("-"))
        for key, (rc, stdout, stderr) in self.answers.items():
            if words.endswith(key) or f" {key}" in words:
                return CommandResult(rc, stdout, stderr, 0.01)
        raise AssertionError(f"unexpected command {argv}")


CLEAN = {
    "core version": (0, "6.4.2\n", ""),
    "plugin list": (
        0,
        '[{"name":"akismet","title":"Akismet Anti-spam","status":"active","version":"5.3","update":"none",'
        '"update_version":""},{"name":"hello","title":"Hello Dolly","status":"inactive","version":"1.7.2",'
        '"update":"none","update_version":""},{"name":"object-cache.php","title":"Redis","status":"dropin",'
        '"version":"2.5","update":"none","update_version":""}]\n',
        "",
    ),
    "theme list": (
        0,
        '[{"name":"child","title":"Child","status":"active","version":"1.0"},'
        '{"name":"twentytwentyfour","title":"Twenty Twenty-Four","status":"parent","version":"1.0"},'
        '{"name":"old","title":"Old","status":"inactive","version":""}]\n',
        "",
    ),
    "core verify-checksums": (0, "Success: WordPress installation verifies against checksums.\n", ""),
    "plugin verify-checksums": (0, "Success: Verified 2 of 2 plugins.\n", ""),
}


def wordpress(answers: dict[str, tuple[int, str, str]], **vars_: object) -> tuple[WordPressAdapter, Script]:
    script = Script({**CLEAN, **answers})
    adapter = adapter_for(Site("blog", {**WP_VARS, **vars_}, []), script)
    assert isinstance(adapter, WordPressAdapter)
    return adapter, script


def test_wordpress_lists_core_plugins_and_themes_from_wp_cli_json() -> None:
    adapter, script = wordpress({})
    listed = [(c.key, c.version, c.active, c.status) for c in adapter.components()]
    assert listed == [
        ("core", "6.4.2", True, "installed"),
        ("plugin:akismet", "5.3", True, "active"),
        ("plugin:hello", "1.7.2", False, "inactive"),
        ("plugin:object-cache.php", "2.5", True, "dropin"),
        ("theme:child", "1.0", True, "active"),
        ("theme:twentytwentyfour", "1.0", True, "parent"),  # a child theme's parent runs too
        ("theme:old", None, False, "inactive"),
    ]
    assert script.calls[1] == [
        "wp", "--path=/var/www/blog", "--skip-plugins", "--skip-themes", "plugin", "list", "--format=json",
        "--fields=name,title,status,version,update,update_version",
    ]  # fmt: skip
    assert adapter.components() is adapter.components()  # asked once per adapter


def test_wordpress_honours_php_bin_wp_cli_and_extra_arguments() -> None:
    adapter, script = wordpress({}, php_bin="/opt/php8.3/bin/php", wp_cli="/usr/local/bin/wp-cli.phar",
                                wp_cli_args=["--allow-root", "--url=https://blog.example/"])  # fmt: skip
    adapter.version()
    assert script.calls[0] == [
        "/opt/php8.3/bin/php", "/usr/local/bin/wp-cli.phar", "--path=/var/www/blog", "--skip-plugins",
        "--skip-themes", "--allow-root", "--url=https://blog.example/", "core", "version",
    ]  # fmt: skip
    adapter, script = wordpress({}, wp_cli_args="--allow-root")
    assert adapter.argv("core", "version")[4] == "--allow-root"


def test_with_php_bin_a_bare_wp_cli_name_is_found_on_the_sites_path() -> None:
    # the wrapper runs "$php_bin $(command -v $wp_cli) ARGS": with echo as the "PHP", it shows the path
    transport = LocalTransport()
    site = Site("blog", {**WP_VARS, "php_bin": "/bin/echo", "wp_cli": "bash"}, [])
    adapter = adapter_for(site, lambda argv: transport.run(list(argv)))
    assert isinstance(adapter, WordPressAdapter)
    result = transport.run(adapter.argv("core", "version"))
    assert result.stdout.split() == [
        shutil.which("bash"), "--path=/var/www/blog", "--skip-plugins", "--skip-themes", "core", "version",
    ]  # fmt: skip


def test_wordpress_reads_json_after_php_notices_and_not_the_exit_code() -> None:
    notice = "PHP Deprecated:  Creation of dynamic property in /x/plugin.php on line 12\n"
    adapter, _ = wordpress(
        {"plugin list": (255, notice + '[{"name":"a","status":"active","version":"1"}]\n', "")}
    )
    assert [c.key for c in adapter.components() if c.type == "plugin"] == ["plugin:a"]
    adapter, _ = wordpress({"plugin list": (0, "Fatal error: Allowed memory size exhausted\n", "")})
    with pytest.raises(CmsError, match=r"wp plugin list printed no JSON \(exit 0\): Fatal error"):
        adapter.components()
    adapter, _ = wordpress(
        {
            "core version": (
                1,
                "",
                "Error: This does not seem to be a WordPress installation.\nPass --path=`path`",
            )
        }
    )
    with pytest.raises(CmsError) as failed:
        adapter.version()
    assert "does not seem to be a WordPress installation" in str(failed.value)
    assert failed.value.outputs["rc"] == 1 and failed.value.outputs["command"][-2:] == ["core", "version"]


def test_wordpress_verify_clean() -> None:
    adapter, _ = wordpress({})
    result = adapter.verify()
    assert result.clean and result.version == "6.4.2" and result.findings == []
    # verify-checksums --all checks get_plugins(): not the drop-in
    assert result.verified == ["core", "plugin:akismet", "plugin:hello"] and result.unverified == []


def test_wordpress_verify_reads_each_finding() -> None:
    core = (
        "Warning: File doesn't verify against checksum: wp-includes/version.php\n"
        "Warning: File doesn't verify against checksum: readme.html\n"
        "Warning: File doesn't exist: wp-login.php\n"
        "Warning: File should not exist: wp-includes/wp-cache.php\n"
        "Error: WordPress installation doesn't verify against checksums.\n"
    )
    plugins = (
        '[{"plugin_name":"akismet","file":"akismet.php","message":"Checksum does not match"},'
        '{"plugin_name":"akismet","file":"x.php","message":"File was added"},'
        '{"plugin_name":"akismet","file":"class.akismet.php","message":"File is missing"}]\n'
    )
    adapter, _ = wordpress(
        {
            "core verify-checksums": (1, "", core),
            "plugin verify-checksums": (
                1,
                plugins,
                "Warning: Could not retrieve the checksums for version 1.7.2 of plugin hello, skipping.\n"
                "Error: Only verified 0 of 2 plugins (1 failed, 1 skipped).\n",
            ),
        }
    )
    result = adapter.verify()
    assert [(f.component, f.file, f.problem) for f in result.findings] == [
        ("core", "wp-includes/version.php", "modified"),
        ("core", "readme.html", "modified"),
        ("core", "wp-login.php", "missing"),
        ("core", "wp-includes/wp-cache.php", "added"),
        ("plugin:akismet", "akismet.php", "modified"),
        ("plugin:akismet", "x.php", "added"),
        ("plugin:akismet", "class.akismet.php", "missing"),
    ]
    assert result.verified == [] and not result.clean
    assert result.unverified == [
        {"component": "plugin:hello", "reason": "no published checksums for version 1.7.2"}
    ]


def test_wordpress_verify_an_added_file_alone_is_a_finding_though_wp_cli_succeeds() -> None:
    adapter, _ = wordpress(
        {
            "core verify-checksums": (
                0,
                "Success: WordPress installation verifies against checksums.\n",
                "Warning: File should not exist: wp-admin/shell.php\n",
            )
        }
    )
    result = adapter.verify()
    assert [(f.file, f.problem) for f in result.findings] == [("wp-admin/shell.php", "added")]
    assert "core" not in result.verified


def test_wordpress_verify_without_checksums_leaves_core_unverified_and_other_errors_fail() -> None:
    adapter, _ = wordpress(
        {"core verify-checksums": (1, "", "Error: Couldn't get checksums from WordPress.org.\n")}
    )
    result = adapter.verify()
    assert result.unverified == [
        {"component": "core", "reason": "Couldn't get checksums from WordPress.org."}
    ]
    assert result.findings == [] and "core" not in result.verified
    adapter, _ = wordpress(
        {"plugin verify-checksums": (255, "", "PHP Fatal error: Uncaught Error in x.php\n")}
    )
    with pytest.raises(CmsError, match="wp plugin verify-checksums gave no verdict"):
        adapter.verify()
    adapter, _ = wordpress({"core verify-checksums": (139, "", "")})
    with pytest.raises(CmsError, match="wp core verify-checksums gave no verdict"):
        adapter.verify()


# ------------------------------------------------------------------ Drupal (documented samples)

DRUSH_STATUS = """{
    "drupal-version": "10.1.5",
    "uri": "http://default",
    "db-driver": "mysql",
    "bootstrap": "Successful",
    "theme": "olivero",
    "admin-theme": "claro",
    "php-bin": "/usr/bin/php",
    "drush-version": "12.4.3",
    "root": "/var/www/drupal/web"
}"""

DRUSH_PM_LIST = """{
    "node": {"package": "Core", "project": "", "display_name": "Node (node)", "name": "node", "type": "module",
             "path": "core/modules/node", "status": "Enabled", "version": "10.1.5"},
    "olivero": {"package": "Core", "project": "", "display_name": "Olivero (olivero)", "name": "olivero",
                "type": "theme", "path": "core/themes/olivero", "status": "Enabled", "version": "10.1.5"},
    "webform": {"package": "Webform", "project": "webform", "display_name": "Webform (webform)", "name": "webform",
                "type": "module", "path": "modules/contrib/webform", "status": "Disabled", "version": "6.2.0"},
    "webform_ui": {"package": "Webform", "project": "webform", "display_name": "Webform UI (webform_ui)",
                   "name": "webform_ui", "type": "module", "path": "modules/contrib/webform/modules/webform_ui",
                   "status": "Enabled", "version": "6.2.0"},
    "token": {"package": "Other", "project": "token", "display_name": "Token (token)", "name": "token",
              "type": "module", "path": "modules/contrib/token", "status": "Enabled", "version": "8.x-1.13"},
    "gin": {"package": "Other", "project": "gin", "display_name": "Gin (gin)", "name": "gin", "type": "theme",
            "path": "themes/contrib/gin", "status": "Disabled", "version": "8.x-3.0-rc6"},
    "custom_thing": {"package": "Custom", "display_name": "Custom (custom_thing)", "name": "custom_thing",
                     "type": "module", "path": "modules/custom/custom_thing", "status": "Enabled", "version": null}
}"""


def test_drupal_components_from_documented_drush_output() -> None:
    """DOCUMENTED SAMPLE (not captured from a site): drush pm:list / core:status --format=json."""
    script = Script({"core:status": (0, DRUSH_STATUS, ""), "pm:list": (0, DRUSH_PM_LIST, "")})
    adapter = adapter_for(Site("d", {"cms": "drupal", "docroot": "/var/www/drupal/web"}, []), script)
    assert isinstance(adapter, DrupalAdapter)
    assert [(c.key, c.version, c.active) for c in adapter.components()] == [
        ("core", "10.1.5", True),
        ("module:webform", "6.2.0", True),  # one of its modules is enabled
        ("module:token", "1.13", True),  # 8.x- dropped, as advisories write it
        ("theme:gin", "3.0-rc6", False),
        ("module:custom_thing", None, True),
    ]
    assert script.calls[0] == ["drush", "--root=/var/www/drupal/web", "core:status", "--format=json"]
    assert contrib_version("7.x-2.3") == "2.3" and contrib_version("2.0.x-dev") == "2.0.x-dev"
    result = adapter.verify()
    assert not result.supported and "Drush has no checksum verification" in result.note
    with pytest.raises(ValueError):
        pm_list_components("nope")
    broken = adapter_for(
        Site("d", {"cms": "drupal", "docroot": "/x"}, []), Script({"core:status": (1, "", "boom")})
    )
    with pytest.raises(CmsError, match="drush core:status gave no drupal-version"):
        broken.version()


# ------------------------------------------------------------------ Joomla (documented sample)

JOOMLA_LIST = """
Installed Extensions
====================

 ------------------------ -------------- --------- ----------- ---------
  Name                     Extension ID   Version   Type        Enabled
 ------------------------ -------------- --------- ----------- ---------
  files_joomla             241            5.0.2     file        Yes
  com_content              22             4.0.0     component   Yes
  cassiopeia               215            1.0       template    Yes
  plg_system_cache         30             4.0.0     plugin      No
  Akeeba Backup package    250            9.8.1     package     Yes
  mod_broken               300            --        module      Yes
 ------------------------ -------------- --------- ----------- ---------

"""


def test_joomla_components_from_the_documented_extension_table() -> None:
    """DOCUMENTED SAMPLE (not captured from a site): php cli/joomla.php extension:list."""
    version, extensions = extension_components(JOOMLA_LIST)
    assert version == "5.0.2"
    assert [(c.key, c.version, c.active) for c in extensions] == [
        ("extension:com_content", "4.0.0", True),
        ("theme:cassiopeia", "1.0", True),
        ("extension:plg_system_cache", "4.0.0", False),
        ("extension:akeeba backup package", "9.8.1", True),
        ("extension:mod_broken", None, True),
    ]
    script = Script({"extension:list": (0, JOOMLA_LIST, "")})
    adapter = adapter_for(Site("j", {"cms": "joomla", "docroot": "/var/www/joomla/"}, []), script)
    assert isinstance(adapter, JoomlaAdapter)
    assert adapter.components()[0].key == "core" and adapter.version() == "5.0.2"
    assert script.calls[0][:3] == ["php", "/var/www/joomla/cli/joomla.php", "extension:list"]
    assert not adapter.verify().supported
    with pytest.raises(ValueError, match="no extension table"):
        extension_components("Joomla is not installed\n")


# ------------------------------------------------------------------ registry and helpers


def test_adapters_are_chosen_by_the_cms_var_and_check_their_vars() -> None:
    assert set(ADAPTERS) == {"wordpress", "drupal", "joomla", "static", "custom"}
    assert adapter_class("static") is StaticAdapter
    assert adapter_for(Site("s", {}, []), Script({})).components() == []  # no cms var: static
    with pytest.raises(BadInput, match="unknown cms 'wordpres'") as unknown:
        adapter_class("wordpres")
    assert "did you mean 'wordpress'?" in str(unknown.value)
    with pytest.raises(
        BadInput, match=r"site 'blog' \(cms: wordpress\) needs the inventory var\(s\) docroot"
    ):
        adapter_class("wordpress").check_site(Site("blog", {"cms": "wordpress"}, []))


def test_the_custom_adapter_reads_its_version_from_a_command() -> None:
    transport = LocalTransport()
    site = Site("app", {"cms": "custom", "cms_version_command": "echo 'Laravel Framework 10.48.4'"}, [])
    adapter = adapter_for(site, lambda argv: transport.run(list(argv)))
    assert adapter.version() == "10.48.4" and adapter.components() == []
    assert adapter_for(Site("app", {"cms": "custom"}, []), Script({})).version() is None


def test_json_and_versions_are_found_in_noisy_output() -> None:
    assert find_json('Deprecated: x\n[{"a": 1}]\n') == [{"a": 1}]
    assert find_json('notice\n{\n  "drupal-version": "10.1.5"\n}\n') == {"drupal-version": "10.1.5"}
    with pytest.raises(ValueError):
        find_json("no json [here\n")
    assert first_version("WordPress 6.4.3\n") == "6.4.3" and first_version("none") is None
    assert first_version("1.0.0-beta") == "1.0.0-beta"


def test_a_site_without_its_cms_tool_is_a_clear_error(tmp_path: Path) -> None:
    ctx = action_context(tmp_path, site_vars={**WP_VARS, "wp_cli": "/nonexistent/wp"})
    adapter = adapter_for(ctx.site, site_runner(ctx))
    with pytest.raises(
        CmsError,
        match=r"WP-CLI '/nonexistent/wp' \(the site's wp_cli var\) could not be started: the program was not "
        r"found on the site \(exit 127: /nonexistent/wp: No such file.*Set wp_cli to the full path",
    ):
        adapter.version()
