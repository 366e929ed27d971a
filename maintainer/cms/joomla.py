"""Joomla 4/5 through its console, ``cli/joomla.php`` (read-only operations).

Inventory vars of a Joomla site: ``docroot`` (required), ``joomla_cli`` (default
``DOCROOT/cli/joomla.php``) and ``php_bin`` (default ``php``).

``php cli/joomla.php extension:list`` prints no JSON: it prints a title and a table in Symfony's
console style (``Joomla\\CMS\\Console\\ExtensionsListCommand``: columns Name, Extension ID,
Version, Type, Enabled/Active), rows of dashes above and below the header and at the end. The
table is read by the columns its dash rows mark. The core's version is the version of the
``files_joomla`` extension; templates are themes; every other extension (component, module,
plugin, library, package, language) is an ``extension`` component named by its Name column.

Joomla's console has no checksum verification, so ``verify()`` says it is not supported.

The update operations, after Joomla's console commands (``libraries/src/Console`` in
joomla/joomla-cms: ``CheckJoomlaUpdatesCommand``, ``UpdateCoreCommand``, ``CheckUpdatesCommand``,
``SiteDownCommand``, ``SiteUpCommand``, ``CleanCacheCommand``, ``MaintenanceDatabaseCommand``).
None of them prints JSON and their exit codes do not say what happened, so maintainer reads their
SymfonyStyle text and reads the versions back from ``extension:list``:

- ``core:check-updates``: ``[OK] You already have the latest Joomla version 5.1.2`` or
  ``! [NOTE] New Joomla Version 5.1.3 is available.``, exit 0 either way;
- ``core:update`` updates to whatever the update server offers now (it takes no version): exit 1
  when already up to date (``You already have the latest Joomla! version``) and also when the
  database structure check fails, 2 when the update fails, 0 on ``Joomla core updated
  successfully!``. The plan is exact, so ``apply`` first asks ``core:check-updates`` and refuses
  when Joomla now offers another version than the plan's; success is the version read back;
- ``update:extensions:check`` (Joomla 5.1+) prints a table (Extension ID, Name, Location, Type,
  Installed, Available, Folder) or ``There are no updates available.``; before 5.1 it only says
  ``Finished fetching updates`` and lists nothing, which is an error here, not "no updates";
- applying extension updates: Joomla's console has no such command (joomla/joomla-cms#45533);
  when a console plugin adds ``extension:update --eid=ID`` (the command of joomla-cms#42829) it is
  used, otherwise ``apply`` refuses extension items with a CmsError before changing anything;
- ``site:down`` / ``site:up`` set ``$offline`` in configuration.php (through ``config:set``);
  ``maintenance_state()`` reads that one line back (``grep``: the file also holds the database
  password, which never goes through maintainer's output);
- ``cache:clean``: ``[OK] Cache cleaned``;
- database: ``core:update`` and the extension installer run their own schema updates; where
  ``maintenance:database`` exists (newer Joomla) ``db_update()`` runs it with ``--fix``,
  otherwise it reports that there is nothing for maintainer to run.

Kinds are semantic versioning, as Joomla numbers its releases (5.1.2 -> 5.1.3 PATCH, 5.1 -> 5.2
MINOR, 4 -> 5 MAJOR). Joomla has no security advisories of its own on the CLI:
``security_updates()`` is None and the vulnerability feed is the source.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..transport import CommandResult
from .base import Applied, CmsAdapter, CmsError, Component, DbUpdateResult, PlannedUpdate, Update
from .drupal import release_kind
from .versions import compare

CORE_EXTENSION = "files_joomla"
_DASHES = re.compile(r"-+")


def extension_rows(text: str) -> list[dict[str, str]]:
    """The rows of the ``extension:list`` table, keyed by lower-cased header."""
    lines = text.splitlines()
    # Symfony's table style: rows of dash runs (one per column, the cells' padding included)
    # above the header, below it and at the end; a title is underlined with '=', not '-'
    borders = [i for i, line in enumerate(lines) if line.strip() and set(line.strip()) <= {"-", " "}]
    if len(borders) < 3:
        raise ValueError("no extension table in the output")
    spans = [m.span() for m in _DASHES.finditer(lines[borders[0]])]

    def cells(line: str) -> list[str]:
        padded = line.ljust(spans[-1][1])
        return [padded[start:end].strip() for start, end in spans]

    header = [h.lower() for h in cells(lines[borders[0] + 1])]
    rows = []
    for line in lines[borders[1] + 1 : borders[2]]:
        if line.strip():
            rows.append(dict(zip(header, cells(line), strict=True)))
    return rows


def extension_components(text: str) -> tuple[str | None, list[Component]]:
    """(core version, the other extensions) from ``extension:list`` output."""
    core: str | None = None
    found: dict[tuple[str, str], Component] = {}
    for row in extension_rows(text):
        name = row.get("name", "")
        version = row.get("version") or None
        if version == "--":
            version = None
        enabled = (row.get("enabled") or row.get("active") or "").lower() == "yes"
        if name == CORE_EXTENSION:
            core = version
            continue
        kind = "theme" if row.get("type") == "template" else "extension"
        slug = name.lower()
        found.setdefault((kind, slug), Component(kind, slug, name, version, enabled, row.get("type")))
    return core, list(found.values())


# ------------------------------------------------------------------ update commands' text

_OFFERED = re.compile(r"New Joomla!? Version (?P<version>\S+?)\.? is available", re.IGNORECASE)
_LATEST = re.compile(r"You already have the latest Joomla!? version\.?(?: (?P<version>\d\S*?))?\.?(?: |$)")
_OFFLINE = re.compile(r"\$offline\s*=\s*(?P<value>[^;]+);")
#: what ``core:update`` said, first match wins
_CORE_UPDATE_OUTCOMES = (
    ("updated", re.compile(r"Joomla core updated successfully", re.IGNORECASE)),
    ("current", re.compile(r"You already have the latest Joomla!? version", re.IGNORECASE)),
    ("schema", re.compile(r"Database Table Structure not Up to Date", re.IGNORECASE)),
    ("failed", re.compile(r"Update (?:cannot be performed|finished with errors)", re.IGNORECASE)),
)


def _flat(text: str) -> str:
    """SymfonyStyle wraps blocks over several padded lines, a note's each prefixed ``" ! "``: one line."""
    return re.sub(r"\s+", " ", re.sub(r"(?m)^ ! ", " ", text))


def core_check(text: str) -> str | None:
    """The version ``core:check-updates`` offers; None when the site is current.

    Raises ValueError when the output says neither (the update server was not reachable, the
    command failed).
    """
    flat = _flat(text)
    offered = _OFFERED.search(flat)
    if offered is not None:
        return offered.group("version").rstrip(".")
    if _LATEST.search(flat) is not None:
        return None
    raise ValueError("core:check-updates said neither 'New Joomla Version' nor 'already have the latest'")


def core_update_outcome(text: str) -> str:
    """updated, current, schema (database structure not up to date), failed or unknown."""
    flat = _flat(text)
    for outcome, pattern in _CORE_UPDATE_OUTCOMES:
        if pattern.search(flat):
            return outcome
    return "unknown"


def extension_updates(text: str) -> list[dict[str, str]]:
    """The rows of ``update:extensions:check`` (Joomla 5.1+), keyed by lower-cased header.

    Raises ValueError when the output has no table and does not say there are no updates
    (Joomla 4 and 5.0 only fetch updates and print ``Finished fetching updates``).
    """
    if "There are no updates available" in _flat(text):
        return []
    try:
        rows = extension_rows(text)
    except ValueError:
        raise ValueError(
            "update:extensions:check listed no updates (Joomla before 5.1 only fetches them)"
        ) from None
    if rows and "available" not in rows[0]:
        raise ValueError("update:extensions:check's table has no Available column")
    return rows


def offline_flag(text: str) -> bool | None:
    """``public $offline = true;`` (or ``'1'``, ``1``) from configuration.php; None when absent."""
    match = _OFFLINE.search(text)
    if match is None:
        return None
    value = match.group("value").strip().strip("'\"").lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    return None


def console_commands(text: str) -> set[str]:
    """Command names from ``joomla.php list --raw`` (one ``name  description`` per line)."""
    return {line.split()[0] for line in text.splitlines() if line.strip() and ":" in line.split()[0]}


class JoomlaAdapter(CmsAdapter):
    name = "joomla"
    title = "Joomla"
    core_slug = "joomla"
    has_components = True
    can_verify = False
    verify_note = "Joomla's console (cli/joomla.php) has no checksum verification"
    required_vars = ("docroot",)
    can_update = True
    update_note = (
        "Joomla's console updates the core (core:update, to the version the update server offers, "
        "which must be the plan's) and lists extension updates from Joomla 5.1 on, but has no "
        "command to apply extension updates unless a console plugin adds extension:update"
    )

    def console(self, *args: str) -> tuple[list[str], CommandResult]:
        php = self.var("php_bin", "php") or "php"
        script = self.var("joomla_cli") or f"{str(self.var('docroot')).rstrip('/')}/cli/joomla.php"
        argv = [php, script, *args]
        return argv, self.run(argv)

    def _extensions(self) -> tuple[str | None, list[Component]]:
        argv, result = self.console("extension:list", "--no-ansi", "--no-interaction")
        try:
            return extension_components(result.stdout)
        except ValueError:
            raise CmsError(
                "joomla.php extension:list printed no extension table", command=argv, result=result
            ) from None

    def version(self) -> str:
        version, _ = self._extensions()
        if version is None:
            raise CmsError(f"joomla.php extension:list lists no {CORE_EXTENSION} (the core's version)")
        return version

    def _list_components(self) -> list[Component]:
        version, extensions = self._extensions()
        if version is None:
            raise CmsError(f"joomla.php extension:list lists no {CORE_EXTENSION} (the core's version)")
        return [Component("core", "joomla", "Joomla", version, True, "installed"), *extensions]

    # -------------------------------------------------------------- updates

    #: the console's command names (``list --raw``), asked once per adapter
    _known_commands: set[str] | None = None

    def _commands(self) -> set[str]:
        if self._known_commands is None:
            argv, result = self.console("list", "--raw", "--no-ansi")
            commands = console_commands(result.stdout)
            if not commands:
                raise CmsError("joomla.php list printed no commands", command=argv, result=result)
            self._known_commands = commands
        return self._known_commands

    def _installed(self) -> dict[str, dict[str, str]]:
        """Extension ID -> its extension:list row (read fresh: versions are read back with it)."""
        argv, result = self.console("extension:list", "--no-ansi", "--no-interaction")
        try:
            rows = extension_rows(result.stdout)
        except ValueError:
            raise CmsError(
                "joomla.php extension:list printed no extension table", command=argv, result=result
            ) from None
        return {row.get("extension id", ""): row for row in rows}

    def _offered_core(self) -> str | None:
        argv, result = self.console("core:check-updates", "--no-ansi", "--no-interaction")
        try:
            return core_check(result.stdout)
        except ValueError:
            raise CmsError(
                "joomla.php core:check-updates gave no answer", command=argv, result=result
            ) from None

    def _extension_updates(self) -> list[dict[str, str]]:
        argv, result = self.console("update:extensions:check", "--no-ansi", "--no-interaction")
        try:
            return extension_updates(result.stdout)
        except ValueError as exc:
            raise CmsError(f"joomla.php {exc}", command=argv, result=result) from None

    def updates(self) -> list[Update]:
        current = self.version()
        found = []
        offered = self._offered_core()
        if offered is not None and offered != current:
            found.append(Update("core", "joomla", "Joomla", current, offered, release_kind(current, offered)))
        rows = self._extension_updates()
        installed = self._installed() if rows else {}
        for row in rows:
            kind, slug, name = _identity(row, installed)
            available = row.get("available") or ""
            if not available:
                continue
            was = row.get("installed") or None
            found.append(Update(kind, slug, name, was, available, release_kind(was, available)))
        return found

    def apply(self, items: Sequence[PlannedUpdate]) -> list[Applied]:
        if not items:
            return []
        others = [item for item in items if item.type != "core"]
        if others and "extension:update" not in self._commands():
            raise CmsError(
                "Joomla's console has no command to apply extension updates (joomla/joomla-cms#45533): "
                f"{', '.join(item.key for item in others)} cannot be updated by maintainer. Update them "
                "in the administrator (System > Update > Extensions), or add a console plugin that "
                "provides extension:update, and leave them out of this plan (exclude)"
            )
        applied = []
        for item in items:
            applied.append(self._apply_core(item) if item.type == "core" else self._apply_extension(item))
        self.refresh()
        return applied

    def _apply_core(self, item: PlannedUpdate) -> Applied:
        offered = self._offered_core()
        before = self.version()
        if offered is None or compare(offered, item.to_version) != 0:
            if compare(before, item.to_version) == 0:
                return Applied(item, True, before, f"Joomla is already at {before}")
            now = f"offers {offered}" if offered else "offers no update"
            return Applied(
                item, False, before, f"Joomla {now} now, the plan says {item.to_version}: plan again"
            )
        argv, result = self.console("core:update", "--no-ansi", "--no-interaction")
        outcome = core_update_outcome(result.stdout + "\n" + result.stderr)
        self.refresh()
        version = self.version()
        ok = compare(version, item.to_version) == 0
        messages = {
            "updated": "core:update: Joomla core updated successfully",
            "current": "core:update: already the latest version",
            "schema": "core:update refused: the database table structure is not up to date "
            "(System > Maintenance > Database)",
            "failed": "core:update: the update cannot be performed or finished with errors",
            "unknown": f"core:update exited {result.rc} without a known message",
        }
        message = f"{messages[outcome]}; Joomla is at {version}"
        return Applied(item, ok, version, message, argv)

    def _apply_extension(self, item: PlannedUpdate) -> Applied:
        rows = self._extension_updates()
        installed = self._installed()
        row = next((r for r in rows if _identity(r, installed)[:2] == (item.type, item.slug)), None)
        if row is None or compare(row.get("available") or "", item.to_version) != 0:
            offered = row.get("available") if row else None
            return Applied(
                item,
                False,
                _version_of(item, installed),
                f"Joomla offers {offered or 'no update'} for {item.slug} now, the plan says "
                f"{item.to_version}: plan again",
            )
        argv, result = self.console(
            "extension:update", f"--eid={row.get('extension id')}", "--no-ansi", "--no-interaction"
        )
        version = _version_of(item, self._installed())
        ok = version is not None and compare(version, item.to_version) == 0
        message = f"extension:update exited {result.rc}; {item.slug} is at {version or 'nothing'}"
        return Applied(item, ok, version, message, argv)

    # -------------------------------------------------------------- maintenance, database, caches

    def maintenance(self, on: bool) -> None:
        argv, result = self.console("site:down" if on else "site:up", "--no-ansi", "--no-interaction")
        state = self.maintenance_state()
        if state is not on:
            raise CmsError(
                f"joomla.php {argv[2]} did not take: configuration.php's $offline is "
                f"{'unreadable' if state is None else state}",
                command=argv,
                result=result,
            )

    @property
    def configuration(self) -> str:
        return self.var("joomla_config") or f"{str(self.var('docroot')).rstrip('/')}/configuration.php"

    def maintenance_state(self) -> bool | None:
        # one line of the file, never the whole: it holds the database password
        argv = [
            "grep",
            "-E",
            r"^[[:space:]]*(public|var)[[:space:]]+\$offline[[:space:]]*=",
            self.configuration,
        ]
        result = self.run(argv)
        state = offline_flag(result.stdout)
        if state is None:
            raise CmsError(f"no $offline setting in {self.configuration}", command=argv, result=result)
        return state

    def db_update(self) -> DbUpdateResult:
        if "maintenance:database" not in self._commands():
            return DbUpdateResult(supported=False)
        argv, result = self.console("maintenance:database", "--fix", "--no-ansi", "--no-interaction")
        if result.rc != 0:
            raise CmsError("joomla.php maintenance:database --fix failed", command=argv, result=result)
        return DbUpdateResult(
            ran=[{"what": "joomla", "command": argv, "message": "maintenance:database --fix"}]
        )

    def cache_flush(self) -> bool:
        argv, result = self.console("cache:clean", "--no-ansi", "--no-interaction")
        if result.rc != 0 or "Cache cleaned" not in _flat(result.stdout):
            raise CmsError("joomla.php cache:clean did not clean the cache", command=argv, result=result)
        return True


def _identity(row: dict[str, str], installed: dict[str, dict[str, str]]) -> tuple[str, str, str]:
    """(type, slug, name) of an update row, named as components() names it (by Extension ID)."""
    known = installed.get(row.get("extension id", ""))
    name = (known or row).get("name", "")
    kind = "theme" if (known or row).get("type") == "template" else "extension"
    return kind, name.lower(), name


def _version_of(item: PlannedUpdate, installed: dict[str, dict[str, str]]) -> str | None:
    for row in installed.values():
        kind = "theme" if row.get("type") == "template" else "extension"
        if (kind, row.get("name", "").lower()) == (item.type, item.slug):
            version = row.get("version") or None
            return None if version == "--" else version
    return None
