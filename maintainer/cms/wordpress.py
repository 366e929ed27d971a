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

Updates (wp-cli/core-command, wp-cli/extension-command, wp-cli/maintenance-mode-command):

- ``wp core check-update --format=json`` exits 0 whether or not there is an update: a JSON array
  of ``{version, update_type, package_url}`` (``[]`` when current; the table format says
  ``Success: WordPress is at the latest version.`` instead), both parsed. ``update_type`` is
  WordPress's own word: 6.4.2 -> 6.4.3 is ``minor`` (a maintenance/security release), 6.4 -> 6.5
  ``major``; both offers may be listed, so ``updates()`` may hold two core items (minor first).
- ``wp plugin list --format=json --fields=...,update,update_version,requires,requires_php,
  update_unavailable_reason`` (not ``--update=available``: WP-CLI marks an update whose new
  version needs a newer WordPress or PHP ``unavailable`` and that filter would hide it). Such an
  update is still returned, with ``requires_core``/``requires_php``, and ``held_back`` maps its
  key to WP-CLI's reason. Older WP-CLI without those fields is asked again with the basic ones.
- Dependencies (``Update.depends_on``): the WordPress 6.5 ``Requires Plugins:`` header of the
  installed plugin (read with one ``grep`` over the transport: WP-CLI has no field for it, and
  the new version's header cannot be read before it is downloaded) plus ``KNOWN_DEPENDENCIES``.
- ``apply``: a plugin/theme whose planned version is what WordPress offers right now goes in one
  batch ``wp plugin update A B --format=json`` (WordPress's bulk upgrade; a JSON array of
  ``{name, old_version, new_version, status: Updated|Error}``, then ``Error: Only updated N of M
  plugins.`` with exit 1 when one failed); any other planned version is pinned with
  ``wp plugin update A --version=V`` (WP-CLI installs exactly that release over the old one and
  prints text: ``Success: Installed 1 of 1 plugins.``; it stops at the first failure). Core is
  ``wp core update --version=V``. The installed versions are then read back (a fresh listing):
  an item is ok only when it is at the planned version.
- ``wp maintenance-mode activate|deactivate|is-active``: ``is-active`` answers by exit code
  (0 active, 1 not); the ``.maintenance`` file in the docroot is what makes a site answer 503, so
  it is checked over the transport too and removed when WP-CLI could not (``notes`` says so).
- ``db_update``: ``wp core update-db`` (``--network`` when the site's ``wp_multisite`` var is true),
  then the migrations of active plugins that have their own (``MIGRATIONS``), each run with only
  the other plugins skipped (the command is the plugin's own).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..transport import CommandResult
from . import versions
from .base import (
    ADDED,
    MAJOR,
    MINOR,
    MISSING,
    MODIFIED,
    PATCH,
    UNREADABLE,
    Applied,
    CmsAdapter,
    CmsError,
    Component,
    DbUpdateResult,
    IntegrityFinding,
    PlannedUpdate,
    Runner,
    Update,
    VerifyResult,
    find_json,
    first_version,
)

if TYPE_CHECKING:
    from ..inventory import Site

#: global arguments of every call: never load the site's plugins and theme
SAFE_ARGS = ("--skip-plugins", "--skip-themes")
PLUGIN_FIELDS = "name,title,status,version,update,update_version"
THEME_FIELDS = "name,title,status,version,update,update_version"
#: what ``updates()`` asks for (WP-CLI 2.9+); ``BASIC_UPDATE_FIELDS`` for older WP-CLI
UPDATE_FIELDS = (
    "name,title,status,version,update,update_version,requires,requires_php,update_unavailable_reason"
)
BASIC_UPDATE_FIELDS = "name,title,status,version,update,update_version"

#: well-known add-ons and the plugins they need, for sites older than WordPress 6.5's
#: "Requires Plugins" header (the header is read too); slugs as on WordPress.org
KNOWN_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "elementor-pro": ("elementor",),
    "wordpress-seo-premium": ("wordpress-seo",),
    "events-calendar-pro": ("the-events-calendar",),
    "event-tickets-plus": ("event-tickets",),
    "wpml-string-translation": ("sitepress-multilingual-cms",),
    "wpml-media-translation": ("sitepress-multilingual-cms",),
    "bbpress-private-replies": ("bbpress",),
    "acf-extended": ("advanced-custom-fields",),
}
#: slug prefixes of add-on families: ``woocommerce-subscriptions`` needs ``woocommerce``
KNOWN_FAMILIES: tuple[tuple[str, str], ...] = (
    ("woocommerce-", "woocommerce"),
    ("elementor-", "elementor"),
    ("gravityforms", "gravityforms"),
    ("wpforms-", "wpforms-lite"),
)

#: active plugins with database migrations of their own, and their WP-CLI command (each run
#: with that plugin loaded): WooCommerce's ``wp wc update`` (woocommerce/includes/cli),
#: Elementor's ``wp elementor update db`` and Elementor Pro's ``wp elementor-pro update db``
MIGRATIONS: dict[str, tuple[str, ...]] = {
    "woocommerce": ("wc", "update"),
    "elementor": ("elementor", "update", "db"),
    "elementor-pro": ("elementor-pro", "update", "db"),
}

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
    can_update = True

    def __init__(self, site: Site, run: Runner) -> None:
        super().__init__(site, run)
        #: what the last operation did besides its answer, for the action's outputs/log
        #: (e.g. "removed a leftover .maintenance file over the transport")
        self.notes: list[str] = []
        #: after ``updates()``: ``Update.key`` -> WP-CLI's reason the update cannot be installed
        #: here ("This update requires PHP version 99.0, but the version installed is 8.2.")
        self.held_back: dict[str, str] = {}

    def wp(self, *args: str, safe: Sequence[str] = SAFE_ARGS) -> tuple[list[str], CommandResult]:
        """Run ``wp ARGS`` for this site: (the argv, its result)."""
        argv = self.argv(*args, safe=safe)
        result = self.run(argv)
        if result.rc in (126, 127) and not result.stdout.strip():
            raise CmsError(self._not_started(result), command=argv)
        return argv, result

    def _not_started(self, result: CommandResult) -> str:
        """One paragraph for a WP-CLI that could not start (exit 127: not found, 126: not executable)."""
        wp_cli = self.var("wp_cli", "wp") or "wp"
        php = self.var("php_bin")
        what = "was not found" if result.rc == 127 else "cannot be executed"
        said = _tail(result, lines=1)
        via = f" through PHP {php} (the site's php_bin var)" if php else ""
        return (
            f"site '{self.site.name}': WP-CLI '{wp_cli}' (the site's wp_cli var){via} could not be started: "
            f"the program {what} on the site (exit {result.rc}: {said}). Set wp_cli to the full path of "
            "WP-CLI on the site (e.g. /usr/local/bin/wp)"
            + (", php_bin to a PHP binary that exists there (e.g. /usr/bin/php8.2)," if php else "")
            + " or install WP-CLI there (https://wp-cli.org)."
        )

    def argv(self, *args: str, safe: Sequence[str] = SAFE_ARGS) -> list[str]:
        wp_cli = self.var("wp_cli", "wp") or "wp"
        php = self.var("php_bin")
        extra = self.site.vars.get("wp_cli_args") or []
        if isinstance(extra, str):
            extra = extra.split()
        tail = [f"--path={self.var('docroot')}", *safe, *(str(a) for a in extra), *args]
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

    # -------------------------------------------------------------- updates

    def updates(self) -> list[Update]:
        self.held_back = {}
        found = [
            Update("core", "wordpress", "WordPress", self.version(), offer["version"], offer["kind"])
            for offer in self._core_offers()
        ]
        for kind in ("plugin", "theme"):
            rows = [
                r
                for r in self._update_rows(kind)
                if str(r.get("update") or "") in ("available", "unavailable")
            ]
            requires = self._requires_plugins([str(r["name"]) for r in rows]) if kind == "plugin" else {}
            for row in rows:
                slug = str(row["name"])
                target = _text(row.get("update_version"))
                if target is None:
                    continue
                update = Update(
                    kind,
                    slug,
                    str(row.get("title") or slug),
                    _text(row.get("version")),
                    target,
                    extension_kind(_text(row.get("version")), target),
                    requires_core=_text(row.get("requires")),
                    requires_php=_text(row.get("requires_php")),
                    depends_on=dependencies(slug, requires.get(slug, ())) if kind == "plugin" else (),
                )
                if row.get("update") == "unavailable":
                    self.held_back[update.key] = str(
                        row.get("update_unavailable_reason") or "update unavailable"
                    )
                found.append(update)
        return found

    def _core_offers(self) -> list[dict[str, str]]:
        argv, result = self.wp("core", "check-update", "--format=json")
        try:
            return parse_check_update(result.stdout, result.stderr, self.version())
        except ValueError as exc:
            raise CmsError(f"wp core check-update: {exc}", command=argv, result=result) from None

    def _update_rows(self, kind: str) -> list[dict[str, Any]]:
        """``wp plugin|theme list`` with the update columns (a fresh check, as WP-CLI does)."""
        argv, result = self.wp(kind, "list", "--format=json", f"--fields={UPDATE_FIELDS}")
        if result.rc != 0 and "Invalid field" in result.stderr:
            return self._list(kind, BASIC_UPDATE_FIELDS)  # WP-CLI before 2.9
        try:
            items = find_json(result.stdout)
        except ValueError:
            raise CmsError(f"wp {kind} list printed no JSON", command=argv, result=result) from None
        if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("name") for i in items):
            raise CmsError(
                f"wp {kind} list printed JSON that is not a list of {kind}s", command=argv, result=result
            )
        return items

    def _requires_plugins(self, slugs: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The "Requires Plugins:" header (WordPress 6.5) of these installed plugins' main files."""
        if not slugs:
            return {}
        root = f"{str(self.var('docroot')).rstrip('/')}/wp-content/plugins"
        paths = [f"{root}/{slug}/{slug}.php" for slug in slugs]
        result = self.run(["grep", "-H", "-i", "-m1", "-E", r"^[[:space:]/*#@]*Requires Plugins:", *paths])
        found: dict[str, tuple[str, ...]] = {}
        for line in result.stdout.splitlines():
            path, _, header = line.partition(":")
            slug = path.rsplit("/", 2)[-2] if path.count("/") >= 2 else ""
            value = header.split(":", 1)[1] if ":" in header else ""
            names = tuple(n.strip() for n in value.split(",") if n.strip())
            if slug and names:
                found[slug] = names
        return found

    def apply(self, items: Sequence[PlannedUpdate]) -> list[Applied]:
        self.notes = []
        offered: dict[str, str] = {}
        for kind in ("plugin", "theme"):
            if any(item.type == kind for item in items):
                for row in self._update_rows(kind):
                    if row.get("update") == "available" and row.get("update_version"):
                        offered[f"{kind}:{row['name']}"] = str(row["update_version"])
        said: dict[str, tuple[bool, str, list[str]]] = {}
        for batch, pinned in update_batches(items, offered):
            try:
                said.update(self._apply_batch(batch, pinned))
            finally:
                if self.keep_maintenance:
                    # WordPress's upgraders delete .maintenance when they finish (bulk_upgrade,
                    # Core_Upgrader): the next batch and the migrations must not run live
                    self._maintenance_on()
        self.refresh()
        installed = {c.key: c.version for c in self.components()}
        applied = []
        for item in items:
            ok, message, command = said.get(item.key, (False, "not attempted", []))
            version = installed.get(item.key)
            at_target = version is not None and versions.compare(version, item.to_version) == 0
            if ok and not at_target:
                message = f"WP-CLI reported success but {item.key} is at {version}, not {item.to_version}"
            elif at_target and not ok:
                message = f"{item.key} is at {item.to_version} although WP-CLI said: {message}"
            applied.append(Applied(item, at_target, version, message, command))
        return applied

    def _apply_batch(
        self, batch: Sequence[PlannedUpdate], pinned: bool
    ) -> dict[str, tuple[bool, str, list[str]]]:
        """Run one update command for ``batch``: {key: (WP-CLI said ok, message, argv)}."""
        first = batch[0]
        if first.type == "core":
            argv, result = self.wp("core", "update", f"--version={first.to_version}")
            verdict = _last_prefixed(result.stdout + "\n" + result.stderr, ("Success:", "Error:"))
            return {first.key: (verdict.startswith("Success:"), verdict or _tail(result), argv)}
        slugs = [item.slug for item in batch]
        if pinned:
            argv, result = self.wp(first.type, "update", *slugs, f"--version={first.to_version}")
            verdict = _last_prefixed(result.stdout + "\n" + result.stderr, ("Success:", "Error:"))
            message = verdict or _tail(result)
            return {
                item.key: (result.rc == 0 and verdict.startswith("Success:"), message, argv) for item in batch
            }
        argv, result = self.wp(first.type, "update", *slugs, "--format=json")
        rows = parse_update_rows(result.stdout)
        error = _last_prefixed(result.stderr, ("Error:",))
        outcome = {}
        for item in batch:
            row = rows.get(item.slug)
            if row is None:
                outcome[item.key] = (
                    False,
                    error or f"WP-CLI did not update {item.key}: {_tail(result)}",
                    argv,
                )
            elif row.get("status") == "Updated":
                outcome[item.key] = (
                    True,
                    f"updated {row.get('old_version')} -> {row.get('new_version')}",
                    argv,
                )
            else:
                why = _warning_for(item.slug, result.stderr) or error or "WP-CLI reported an error"
                outcome[item.key] = (False, f"{row.get('status')}: {why}", argv)
        return outcome

    # -------------------------------------------------------------- maintenance, migrations, caches

    def _maintenance_file(self) -> str:
        return f"{str(self.var('docroot')).rstrip('/')}/.maintenance"

    def _maintenance_file_exists(self) -> bool:
        result = self.run(["test", "-e", self._maintenance_file()])
        if result.rc not in (0, 1):
            raise CmsError(
                f"could not check {self._maintenance_file()}", command=["test", "-e"], result=result
            )
        return result.rc == 0

    def _maintenance_on(self) -> None:
        argv, result = self.wp("maintenance-mode", "activate")
        if result.rc != 0 and "already activated" in result.stderr:
            # a leftover file older than 10 minutes no longer counts for WordPress: refresh it
            argv, result = self.wp("maintenance-mode", "activate", "--force")
        if not self._maintenance_file_exists():
            raise CmsError(
                "wp maintenance-mode activate left no .maintenance file", command=argv, result=result
            )

    def maintenance_age(self) -> float | None:
        """Age of the ``$upgrading`` timestamp in ``.maintenance``, by the site's own clock.

        None when there is no file. A file without a readable timestamp counts as stale (infinite
        age): WordPress itself ignores it (``wp_is_maintenance_mode()`` compares ``$upgrading``
        with the time; without it the difference is the whole epoch).
        """
        path = self._maintenance_file()
        script = 'test -e "$1" || exit 3; date +%s; cat -- "$1"'
        result = self.run(["sh", "-c", script, "sh", path])
        if result.rc == 3:
            return None
        lines = result.stdout.splitlines()
        stamp = re.search(r"\$upgrading\s*=\s*(\d+)", result.stdout)
        if result.rc != 0 or not lines or not lines[0].strip().isdigit() or stamp is None:
            return float("inf")
        return max(0.0, float(int(lines[0].strip()) - int(stamp.group(1))))

    def maintenance(self, on: bool) -> None:
        self.notes = []
        if on:
            self._maintenance_on()
            return
        argv, result = self.wp("maintenance-mode", "deactivate")
        if not self._maintenance_file_exists():
            return  # "Error: Maintenance mode already deactivated." is an answer too
        path = self._maintenance_file()
        removed = self.run(["rm", "-f", path])
        if self._maintenance_file_exists():
            raise CmsError(
                f"the site stays in maintenance mode (503): WP-CLI could not remove {path} "
                f"({_tail(result)}) and neither could rm ({_tail(removed)}); remove it by hand",
                command=argv,
                result=result,
            )
        self.notes.append(f"WP-CLI did not remove {path} ({_tail(result)}): removed it over the transport")

    def maintenance_state(self) -> bool:
        _argv, result = self.wp("maintenance-mode", "is-active")
        # is-active's exit code is its answer; the file is what makes the site answer 503
        return result.rc == 0 or self._maintenance_file_exists()

    def db_update(self) -> DbUpdateResult:
        outcome = DbUpdateResult()
        network = ["--network"] if _truthy(self.site.vars.get("wp_multisite")) else []
        argv, result = self.wp("core", "update-db", *network)
        verdict = _last_prefixed(result.stdout + "\n" + result.stderr, ("Success:", "Error:"))
        if result.rc != 0 or not verdict.startswith("Success:"):
            raise CmsError("wp core update-db failed", command=argv, result=result)
        outcome.ran.append(
            {"what": "core", "command": argv, "message": verdict.removeprefix("Success:").strip()}
        )
        active = [
            c.slug
            for c in self.components()
            if c.type == "plugin" and c.status in ("active", "active-network")
        ]
        for slug, command in migration_commands(active):
            argv, result = self.wp(*command, safe=only_plugin_loaded(slug, active))
            if result.rc != 0:
                raise CmsError(
                    f"the {slug} database migrations (wp {' '.join(command)}) failed",
                    command=argv,
                    result=result,
                )
            outcome.ran.append({"what": f"plugin:{slug}", "command": argv, "message": _tail(result, lines=2)})
        return outcome

    def cache_flush(self) -> bool:
        argv, result = self.wp("cache", "flush")
        if result.rc != 0:
            raise CmsError("wp cache flush failed", command=argv, result=result)
        return True

    def component_path(self, type: str, slug: str) -> str | None:
        if type == "plugin":
            return f"wp-content/plugins/{slug}"
        if type == "theme":
            return f"wp-content/themes/{slug}"
        return None

    def security_updates(self) -> list[Update] | None:
        return None  # WordPress publishes no advisories of its own: the vulnerability feed is the source


# ------------------------------------------------------------------ reading WP-CLI's answers


def parse_check_update(stdout: str, stderr: str, current: str | None) -> list[dict[str, str]]:
    """``wp core check-update --format=json``: [{"version", "kind"}], minor (WordPress's sense) first.

    Exit 0 either way: ``[]`` or ``Success: WordPress is at the latest version.`` when current.
    ValueError when the output is neither.
    """
    text = stdout + "\n" + stderr
    try:
        offers = find_json(stdout)
    except ValueError:
        if re.search(r"Success: WordPress is at the latest (minor )?(version|release)", text):
            return []
        raise ValueError(
            "printed neither the JSON list of updates nor the 'latest version' message"
        ) from None
    if not isinstance(offers, list) or not all(isinstance(o, dict) and o.get("version") for o in offers):
        raise ValueError("printed JSON that is not a list of {version, update_type, package_url}")
    found = []
    for offer in offers:
        version = str(offer["version"])
        kind = {"minor": MINOR, "major": MAJOR}.get(str(offer.get("update_type") or ""))
        found.append({"version": version, "kind": kind or core_kind(current, version)})
    return sorted(found, key=lambda o: (o["kind"] != MINOR, o["version"]))


def parse_update_rows(stdout: str) -> dict[str, dict[str, Any]]:
    """``wp plugin|theme update ... --format=json``: name -> {name, old_version, new_version, status}."""
    try:
        rows = find_json(stdout)
    except ValueError:
        return {}
    if not isinstance(rows, list):
        return {}
    return {str(r["name"]): r for r in rows if isinstance(r, dict) and r.get("name")}


def core_kind(current: str | None, target: str) -> str:
    """WordPress's sense: same x.y is MINOR (6.4.2 -> 6.4.3), another x.y MAJOR (6.4 -> 6.5)."""
    if current is None:
        return MAJOR
    return MINOR if _numbers(current)[:2] == _numbers(target)[:2] else MAJOR


def extension_kind(current: str | None, target: str) -> str:
    """Plugins and themes, semver-ish: the first number changes -> MAJOR, the second -> MINOR."""
    if current is None:
        return MAJOR
    old, new = _numbers(current), _numbers(target)
    if old[0] != new[0]:
        return MAJOR
    return MINOR if old[1] != new[1] else PATCH


def _numbers(version: str) -> tuple[int, int, int]:
    parts = [int(p) for p in re.findall(r"\d+", version.split("-")[0])[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def dependencies(slug: str, header: Sequence[str] = ()) -> tuple[str, ...]:
    """What a plugin needs: its "Requires Plugins" header, then the known add-on tables."""
    found = list(header)
    found += KNOWN_DEPENDENCIES.get(slug, ())
    for prefix, parent in KNOWN_FAMILIES:
        if slug.startswith(prefix) and slug != parent:
            found.append(parent)
    return tuple(dict.fromkeys(name for name in found if name != slug))


def update_batches(
    items: Sequence[PlannedUpdate], offered: dict[str, str]
) -> list[tuple[list[PlannedUpdate], bool]]:
    """Consecutive items one WP-CLI call can do, in plan order: (items, pinned with --version).

    Plugins (themes) whose planned version is what WordPress offers now share one bulk update;
    other versions are pinned, one call per run of equal versions (``--version`` is one value).
    Core is always alone.
    """
    batches: list[tuple[list[PlannedUpdate], bool]] = []
    for item in items:
        pinned = item.type == "core" or offered.get(item.key) != item.to_version
        if batches and item.type != "core":
            last, last_pinned = batches[-1]
            same = last[0].type == item.type and last_pinned == pinned
            if same and (not pinned or last[0].to_version == item.to_version):
                last.append(item)
                continue
        batches.append(([item], pinned))
    return batches


def migration_commands(active_plugins: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(plugin, WP-CLI command) of each active plugin with migrations of its own, in table order."""
    return [(slug, command) for slug, command in MIGRATIONS.items() if slug in active_plugins]


def only_plugin_loaded(slug: str, active_plugins: Sequence[str]) -> tuple[str, ...]:
    """Global arguments that load ``slug`` (its command needs it) and skip every other plugin."""
    others = [name for name in active_plugins if name != slug]
    return (f"--skip-plugins={','.join(others)}", "--skip-themes") if others else ("--skip-themes",)


def _warning_for(slug: str, stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("Warning:") and slug in line:
            return line.removeprefix("Warning:").strip()
    return ""


def _tail(result: CommandResult, lines: int = 3) -> str:
    kept = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
    return " | ".join(kept[-lines:])[-600:] or f"exit {result.rc}, no output"


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _last_prefixed(text: str, prefixes: Sequence[str]) -> str:
    """The last line starting with one of ``prefixes`` ('' if none)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith(tuple(prefixes)):
            return line
    return ""
