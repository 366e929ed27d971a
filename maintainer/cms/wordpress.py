"""WordPress through WP-CLI, the tool every WordPress engineer already uses.

Inventory vars of a WordPress site:

- ``docroot`` (required): passed as ``--path``;
- ``wp_cli``: the ``wp`` command (default ``wp`` on the site's PATH, or e.g.
  ``/usr/local/bin/wp-cli.phar``);
- ``php_bin``: the site's PHP binary; when set, WP-CLI runs as ``PHP_BIN WP_CLI ...`` (a bare
  ``wp_cli`` name is then looked up on the site's PATH first);
- ``wp_cli_args``: more global arguments, a list (``["--allow-root"]`` where maintainer logs in
  as root, ``["--url=https://shop.example/"]`` for one site of a multisite).

Every call adds ``--skip-plugins --skip-themes``: listing and verifying a site never runs its
plugins' or theme's code (a broken or compromised plugin cannot fatal or fake the answer; WP-CLI
still reports their real status). Answers come from what WP-CLI prints, documented at
developer.wordpress.org/cli/commands and in wp-cli/checksum-command:

- ``wp core version``: the version on stdout;
- ``wp plugin list --format=json`` / ``wp theme list --format=json``: one JSON array;
- ``wp core verify-checksums``: one ``Warning: File doesn't verify against checksum: F`` /
  ``File doesn't exist: F`` / ``File should not exist: F`` line per file on stderr, then
  ``Success: WordPress installation verifies against checksums.`` (exit 0) or ``Error: WordPress
  installation doesn't verify against checksums.`` (exit 1); any other error (``Couldn't get
  checksums from WordPress.org.``) leaves core unverified. "File should not exist" does not make
  WP-CLI fail; here it is a finding (an added file in wp-admin/ or wp-includes/ is how malware
  hides);
- ``wp plugin verify-checksums --all --format=json``: a JSON array of ``{plugin_name, file,
  message}`` on stdout when some file differs, ``Warning: Could not retrieve the checksums for
  version V of plugin P, skipping.`` for plugins WordPress.org has no checksums for (premium or
  custom plugins), and ``Success: Verified N of M plugins (K skipped).`` or ``Error: Only verified
  N of M plugins (F failed, K skipped).`` (exit 1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..transport import CommandResult
from .base import (
    ADDED,
    MISSING,
    MODIFIED,
    UNREADABLE,
    CmsAdapter,
    CmsError,
    Component,
    IntegrityFinding,
    VerifyResult,
    find_json,
    first_version,
)

#: global arguments of every call: never load the site's plugins and theme
SAFE_ARGS = ("--skip-plugins", "--skip-themes")
PLUGIN_FIELDS = "name,title,status,version,update,update_version"
THEME_FIELDS = "name,title,status,version,update,update_version"

_CORE_PROBLEMS = {
    "File doesn't verify against checksum": MODIFIED,
    "File doesn't exist": MISSING,
    "File should not exist": ADDED,
}
_CORE_WARNING = re.compile(
    r"^Warning: (?P<message>" + "|".join(map(re.escape, _CORE_PROBLEMS)) + r"): (?P<file>.+)$"
)
_PLUGIN_PROBLEMS = {
    "Checksum does not match": MODIFIED,
    "File is missing": MISSING,
    "File was added": ADDED,
}
_NO_CHECKSUMS = re.compile(
    r"^Warning: Could not retrieve the checksums for version (?P<version>.+) "
    r"of plugin (?P<plugin>\S+), skipping\."
)
_NO_VERSION = re.compile(r"^Warning: Could not retrieve the version for plugin (?P<plugin>\S+), skipping\.")
_BATCH = re.compile(
    r"^(?:Success|Error): (?:Verified|Only verified|No plugins verified|Plugins? already verified)"
)


class WordPressAdapter(CmsAdapter):
    name = "wordpress"
    title = "WordPress"
    core_slug = "wordpress"
    has_components = True
    can_verify = True
    required_vars = ("docroot",)

    def wp(self, *args: str) -> tuple[list[str], CommandResult]:
        """Run ``wp ARGS`` for this site: (the argv, its result)."""
        argv = self.argv(*args)
        return argv, self.run(argv)

    def argv(self, *args: str) -> list[str]:
        wp_cli = self.var("wp_cli", "wp") or "wp"
        php = self.var("php_bin")
        extra = self.site.vars.get("wp_cli_args") or []
        if isinstance(extra, str):
            extra = extra.split()
        tail = [f"--path={self.var('docroot')}", *SAFE_ARGS, *(str(a) for a in extra), *args]
        if php is None:
            return [wp_cli, *tail]
        if "/" in wp_cli:
            return [php, wp_cli, *tail]
        # PHP needs the file: find the bare name on the site's PATH first
        return ["bash", "-c", 'exec "$0" "$(command -v "$1")" "${@:2}"', php, wp_cli, *tail]

    # -------------------------------------------------------------- read-only operations

    def version(self) -> str:
        if self._version is None:
            argv, result = self.wp("core", "version")
            self._version = first_version(result.stdout) if result.rc == 0 else None
            if self._version is None:
                raise CmsError("wp core version gave no version", command=argv, result=result)
        return self._version

    def _list(self, kind: str, fields: str) -> list[dict[str, Any]]:
        argv, result = self.wp(kind, "list", "--format=json", f"--fields={fields}")
        try:
            items = find_json(result.stdout)
        except ValueError:
            raise CmsError(f"wp {kind} list printed no JSON", command=argv, result=result) from None
        if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("name") for i in items):
            raise CmsError(
                f"wp {kind} list printed JSON that is not a list of {kind}s", command=argv, result=result
            )
        return items

    def _list_components(self) -> list[Component]:
        components = [Component("core", "wordpress", "WordPress", self.version(), True, "installed")]
        for item in self._list("plugin", PLUGIN_FIELDS):
            status = str(item.get("status") or "")
            components.append(
                Component(
                    "plugin",
                    str(item["name"]),
                    str(item.get("title") or item["name"]),
                    _text(item.get("version")),
                    # must-use plugins and drop-ins always run
                    status in ("active", "active-network", "must-use", "dropin"),
                    status,
                )
            )
        for item in self._list("theme", THEME_FIELDS):
            status = str(item.get("status") or "")
            components.append(
                Component(
                    "theme",
                    str(item["name"]),
                    str(item.get("title") or item["name"]),
                    _text(item.get("version")),
                    status in ("active", "parent"),  # a child theme's parent runs too
                    status,
                )
            )
        return components

    def verify(self) -> VerifyResult:
        # a site WP-CLI cannot read fails here, not as "unverified"
        outcome = VerifyResult(version=self.version())
        self._verify_core(outcome)
        self._verify_plugins(outcome)
        return outcome

    def _verify_core(self, outcome: VerifyResult) -> None:
        argv, result = self.wp("core", "verify-checksums")
        found = []
        for line in result.stderr.splitlines():
            match = _CORE_WARNING.match(line.strip())
            if match:
                message = match.group("message")
                found.append(IntegrityFinding("core", match.group("file"), _CORE_PROBLEMS[message], message))
        verdict = _last_prefixed(result.stdout + "\n" + result.stderr, ("Success:", "Error:"))
        if verdict.startswith("Success:"):
            pass  # "File should not exist" warnings do not make WP-CLI fail: they are findings all the same
        elif verdict.startswith("Error:") and "verify against checksums" in verdict:
            pass  # "doesn't verify": the warnings above say which files
        elif verdict.startswith("Error:"):
            # no checksums for this version/locale, or WordPress.org unreachable: not checked
            outcome.unverified.append({"component": "core", "reason": verdict.removeprefix("Error:").strip()})
            return
        else:
            raise CmsError("wp core verify-checksums gave no verdict", command=argv, result=result)
        outcome.findings.extend(found)
        if not found:
            outcome.verified.append("core")

    def _verify_plugins(self, outcome: VerifyResult) -> None:
        argv, result = self.wp("plugin", "verify-checksums", "--all", "--format=json")
        skipped: dict[str, str] = {}
        for line in result.stderr.splitlines():
            line = line.strip()
            no_sums = _NO_CHECKSUMS.match(line)
            if no_sums:
                skipped[no_sums.group("plugin")] = (
                    f"no published checksums for version {no_sums.group('version')}"
                )
                continue
            no_version = _NO_VERSION.match(line)
            if no_version:
                skipped[no_version.group("plugin")] = "no version in its header"
        errors: list[Any] = []
        try:
            errors = find_json(result.stdout)
        except ValueError:
            errors = []
        if not isinstance(errors, list):
            raise CmsError(
                "wp plugin verify-checksums printed JSON that is not a list", command=argv, result=result
            )
        verdict = _last_prefixed(result.stdout + "\n" + result.stderr, ("Success:", "Error:"))
        if not _BATCH.match(verdict) and not errors:
            raise CmsError("wp plugin verify-checksums gave no verdict", command=argv, result=result)
        failed: set[str] = set()
        for error in errors:
            if not isinstance(error, dict):
                continue
            plugin = str(error.get("plugin_name") or "")
            message = str(error.get("message") or "")
            failed.add(plugin)
            outcome.findings.append(
                IntegrityFinding(
                    f"plugin:{plugin}",
                    str(error.get("file") or ""),
                    _PLUGIN_PROBLEMS.get(message, UNREADABLE),
                    message,
                )
            )
        for plugin, reason in sorted(skipped.items()):
            outcome.unverified.append({"component": f"plugin:{plugin}", "reason": reason})
        # verify-checksums --all walks get_plugins(): the regular plugins, not must-use or drop-ins
        for component in self.components():
            if component.type != "plugin" or component.status in ("must-use", "dropin"):
                continue
            if component.slug not in failed and component.slug not in skipped:
                outcome.verified.append(component.key)


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _last_prefixed(text: str, prefixes: Sequence[str]) -> str:
    """The last line starting with one of ``prefixes`` ('' if none)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith(tuple(prefixes)):
            return line
    return ""
