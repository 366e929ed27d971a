"""Drupal through Drush and Composer.

Inventory vars of a Drupal site: ``docroot`` (required, passed as ``--root``), ``drush`` (the
command, default ``drush``; usually the project's ``vendor/bin/drush``), ``composer`` (default
``composer``), ``composer_root`` (the directory holding composer.json; default the parent of a
``.../web`` docroot, else the docroot itself) and ``php_bin`` (when set, Drush and Composer run
as ``PHP_BIN TOOL ...``).

What Drush prints, as its documentation and source (drush-ops/drush, ``PmCommands::pmList``,
``StatusCommands``, ``SecurityUpdateCommands``, ``MaintCommands``, ``UpdateDbStatusCommand``)
describe it:

- ``drush core:status --format=json``: an object whose ``drupal-version`` is the core version;
- ``drush pm:list --format=json``: an object keyed by machine name, each row ``{package, project,
  display_name, name, type (module|theme), path, status (Enabled|Disabled), version}``. Core's own
  modules (under ``core/``) are part of the core component; a contributed module is reported under
  its drupal.org project (``project``, else its name) with Drupal 8's ``8.x-`` prefix dropped from
  its version (``8.x-1.5`` is 1.5, as security advisories write it), one component per project;
- ``drush pm:security --format=json``: the composer.lock packages the Drupal security advisories
  list as insecure, an object keyed by package name, ``{name, version}`` rows (Drush 9 added
  ``min-version``, the first secure version). Exit code 3 means "insecure packages found", 0 with
  ``[]`` means none; any other exit code (no composer.lock, advisories unreachable) is no answer;
- ``drush maint:get`` prints ``1`` or ``0`` and ``drush maint:set 1|0`` sets it (Drush 11.5+;
  the brief's "maintenance:set" does not exist: the command is ``maint:set``, alias ``mset``).
  Older Drush: ``state:get system.maintenance_mode --format=json`` / ``state:set
  system.maintenance_mode 1 --input-format=integer``, used when ``maint:*`` is "not defined";
- ``drush updatedb:status --format=json``: pending updates keyed by ``module_update_N`` /
  ``module-post-name``, rows ``{module, update_id, description, type}``; nothing on stdout (a
  "No database updates required" notice on stderr) when there are none.

What Composer prints (composer/composer, ``ShowCommand``, ``Auditor``, ``SecurityAdvisory``):

- ``composer outdated --direct --format=json``: ``{"installed": [{name, direct-dependency,
  homepage, source, version, latest, latest-status (up-to-date|semver-safe-update|
  update-possible), description, abandoned}]}``, ``{"installed": []}`` when all is current;
  ``composer show --format=json`` the same rows without ``latest``;
- ``composer audit --format=json`` (Composer 2.4+): ``{"advisories": {PACKAGE: [{advisoryId,
  packageName, affectedVersions, title, cve, link, reportedAt, sources, severity}]}}``
  (``"advisories": []`` when there are none; later versions add ``"abandoned": {...}``); the exit
  code counts or flags findings and is not read. ``affectedVersions`` is a Composer constraint
  (``>=10.2.0,<10.2.4|>=10.3.0,<10.3.1``): the first fixed version is the ``<`` bound of the
  alternative that holds the installed version.

How maintainer uses them:

- ``updates()``: ``composer outdated --direct``; ``drupal/core-recommended`` (or ``drupal/core``
  when a site requires it directly) is the core update, its companions (scaffold, project
  message) move with it; every other ``drupal/PROJECT`` is the module or theme ``PROJECT``
  (``Update.package`` keeps the Composer name). Other direct packages (drush/drush,
  composer/installers) are not CMS components and are not listed: they move only as dependencies.
  Composer names the newest release only: a site on 10.2 with 10.3 and 11.0 out is offered 11.0
  (MAJOR), not 10.3.
- kinds follow Drupal's own release terms, which are semantic versioning: 10.2.1 -> 10.2.4 is a
  PATCH release, 10.2.x -> 10.3.0 a MINOR release, 10 -> 11 a MAJOR one (contrib alike: 1.5 ->
  1.6 MINOR, 1.x -> 2.0 MAJOR).
- ``apply(items)``: one ``composer require PACKAGE:VERSION ... --update-with-all-dependencies``
  (``--update-with-dependencies`` without core) for the directly required packages: the exact
  versions of the plan, and Composer reverts composer.json and composer.lock itself when the
  update fails. composer.json then pins the exact versions (maintainer's plan decides what moves;
  relax a pin with ``composer require drupal/x:^2.1`` by hand). A package the site does not require
  directly (a transitive library with an advisory) goes through ``composer update PACKAGE --with
  PACKAGE:VERSION --with-dependencies``, which leaves composer.json alone. ``drupal/core-dev``
  (require-dev) is not pinned. Versions are read back with ``composer show``.
- ``db_update()``: ``updatedb:status``, then ``updatedb -y`` when something is pending, then
  ``updatedb:status`` again (pending afterwards is a failure).
- ``security_updates()``: the union of ``pm:security`` and ``composer audit``, each with the first
  fixed version when the advisories give one (else the newest from ``composer outdated``).

Drush has no checksum verification of core or modules, so ``verify()`` says it is not supported.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import BadInput
from ..transport import CommandResult
from .base import (
    MAJOR,
    MINOR,
    PATCH,
    Applied,
    CmsAdapter,
    CmsError,
    Component,
    DbUpdateResult,
    PlannedUpdate,
    Update,
    find_json,
)
from .versions import compare

if TYPE_CHECKING:
    from ..inventory import Site

PM_LIST_FIELDS = "name,display_name,project,type,path,status,version"
_CORE_COMPAT = re.compile(r"^\d+\.x-")
_NUMBERS = re.compile(r"^\D*?(\d+)(?:\.(\d+))?(?:\.(\d+))?")

#: the Composer packages that carry Drupal core; the first one present is the core update
CORE_PACKAGES = ("drupal/core-recommended", "drupal/core")
#: packages released in lockstep with core: pinned to the core's version when required directly
CORE_COMPANIONS = ("drupal/core-composer-scaffold", "drupal/core-project-message")
#: core packages that are never separate updates (require-dev tooling moves on its own)
CORE_OTHERS = ("drupal/core-dev", "drupal/core-dev-pinned", "drupal/core-vendor-hardening")
#: composer's and Symfony's words for "this Drush has no such command"
_NOT_DEFINED = re.compile(r"is not defined|There are no commands defined|not found", re.IGNORECASE)
#: versions go into argv as PACKAGE:VERSION; refuse anything that is not a plain version
_PLAIN_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")
#: what apply() can update, by PlannedUpdate.type
UPDATABLE = ("core", "module", "theme", "profile", "library")


def drupal_version(text: str) -> str | None:
    """The core version from ``drush core:status --format=json`` output."""
    try:
        data = find_json(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    version = data.get("drupal-version")
    return str(version) if version else None


def contrib_version(version: str | None) -> str | None:
    """``8.x-1.5`` -> ``1.5``; other versions as they are."""
    return None if not version else _CORE_COMPAT.sub("", str(version))


def pm_list_components(data: Any) -> list[Component]:
    """Contributed modules and themes (one per project) from ``drush pm:list --format=json``."""
    rows = list(data.values()) if isinstance(data, dict) else data if isinstance(data, list) else None
    if rows is None:
        raise ValueError("drush pm:list JSON is neither an object nor a list")
    projects: dict[tuple[str, str], Component] = {}
    for row in rows:
        if not isinstance(row, dict) or not row.get("name"):
            continue
        path = str(row.get("path") or "")
        if path == "core" or path.startswith("core/"):
            continue  # part of the core component
        kind = "theme" if row.get("type") == "theme" else "module"
        slug = str(row.get("project") or row["name"])
        status = str(row.get("status") or "")
        enabled = status.lower() == "enabled"
        key = (kind, slug)
        known = projects.get(key)
        if known is not None:
            # several modules of one project: the project is active when any of them is
            if enabled and not known.active:
                projects[key] = Component(kind, slug, known.name, known.version, True, status)
            continue
        display = str(row.get("display_name") or row["name"])
        projects[key] = Component(kind, slug, display, contrib_version(row.get("version")), enabled, status)
    return list(projects.values())


# ------------------------------------------------------------------ versions and names


def release_kind(current: str | None, target: str) -> str:
    """PATCH, MINOR or MAJOR between two semantic versions (an unknown current one is MAJOR).

    Drupal, Joomla and Composer packages all number releases this way; Drupal 8 contrib's
    ``8.x-`` prefix is dropped first.
    """
    old = _NUMBERS.match(contrib_version(current) or "")
    new = _NUMBERS.match(contrib_version(target) or "")
    if old is None or new is None:
        return MAJOR
    old_parts = [int(part or 0) for part in old.groups()]
    new_parts = [int(part or 0) for part in new.groups()]
    if old_parts[0] != new_parts[0]:
        return MAJOR
    if old_parts[1] != new_parts[1]:
        return MINOR
    return PATCH


def project_of(package: str) -> str | None:
    """``drupal/token`` -> ``token``; None for a package outside the drupal/ vendor."""
    vendor, _, name = package.partition("/")
    return name if vendor == "drupal" and name else None


def package_of(type_: str, slug: str) -> str:
    """The Composer package of a module/theme (``drupal/SLUG``) or a library (its own name)."""
    return slug if type_ == "library" or "/" in slug else f"drupal/{slug}"


def _rows(data: Any, *keys: str) -> list[dict[str, Any]]:
    """The package rows of a ``composer show``/``outdated`` JSON document."""
    if not isinstance(data, dict):
        raise ValueError("composer's JSON is not an object")
    for key in keys:
        rows = data.get(key)
        if isinstance(rows, list):
            return [row for row in rows if isinstance(row, dict) and row.get("name")]
    if not data or all(isinstance(v, list) and not v for v in data.values()):
        return []
    raise ValueError(f"composer's JSON has none of {', '.join(keys)}")


def _plain(version: Any) -> str | None:
    """Composer's full pretty version without a dev reference (``dev-main abc123`` -> None)."""
    text = str(version or "").strip().split(" ")[0]
    if not text or text.startswith("dev-") or text.endswith("-dev"):
        return None
    return text


def composer_versions(data: Any) -> dict[str, str]:
    """package -> installed version, from ``composer show --format=json``."""
    found: dict[str, str] = {}
    for row in _rows(data, "installed", "locked"):
        version = _plain(row.get("version"))
        if version is not None:
            found[str(row["name"]).lower()] = version
    return found


def outdated_packages(data: Any) -> list[tuple[str, str | None, str]]:
    """(package, installed, latest) of each outdated package in ``composer outdated`` JSON."""
    found = []
    for row in _rows(data, "installed", "locked"):
        latest = _plain(row.get("latest"))
        current = _plain(row.get("version"))
        if latest is None or row.get("latest-status") == "up-to-date" or latest == current:
            continue
        found.append((str(row["name"]).lower(), current, latest))
    return found


def pm_security_rows(data: Any) -> dict[str, tuple[str | None, str | None]]:
    """package -> (installed version, first secure version or None) from ``drush pm:security``."""
    rows = list(data.values()) if isinstance(data, dict) else data if isinstance(data, list) else None
    if rows is None:
        raise ValueError("drush pm:security JSON is neither an object nor a list")
    found: dict[str, tuple[str | None, str | None]] = {}
    for row in rows:
        if isinstance(row, dict) and row.get("name"):
            fixed = row.get("min-version")
            found[str(row["name"]).lower()] = (_plain(row.get("version")), _plain(fixed) if fixed else None)
    return found


def audit_advisories(data: Any) -> dict[str, list[dict[str, Any]]]:
    """package -> its advisories, from ``composer audit --format=json``."""
    if not isinstance(data, dict) or "advisories" not in data:
        raise ValueError("composer audit JSON has no 'advisories'")
    advisories = data["advisories"]
    if isinstance(advisories, list):  # PHP's empty array
        return {}
    if not isinstance(advisories, dict):
        raise ValueError("composer audit's 'advisories' is neither an object nor a list")
    found: dict[str, list[dict[str, Any]]] = {}
    for package, items in advisories.items():
        rows = list(items.values()) if isinstance(items, dict) else items if isinstance(items, list) else []
        rows = [row for row in rows if isinstance(row, dict)]
        if rows:
            found[str(package).lower()] = rows
    return found


_BOUND = re.compile(r"^(<=|>=|<|>|==|=|!=)?\s*v?(\S+)$")


def first_fixed(installed: str | None, affected: str) -> str | None:
    """The first version out of ``affected`` (a Composer constraint) above ``installed``.

    ``>=10.2.0,<10.2.4|>=10.3.0,<10.3.1`` with 10.2.1 installed -> 10.2.4. Only ``<`` bounds name
    a fix; an alternative without one (``>=1.0``: no fix yet) gives None.
    """
    if installed is None:
        return None
    for alternative in re.split(r"\s*\|\|?\s*", affected.strip()):
        bounds = [b for b in re.split(r"\s*,\s*|\s+", alternative) if b]
        holds, fixed = True, None
        for bound in bounds:
            match = _BOUND.match(bound)
            if match is None or bound == "*":
                continue
            op, version = match.group(1) or "==", match.group(2)
            order = compare(installed, version)
            if op == "<":
                holds &= order < 0
                fixed = version
            elif op == "<=":
                holds &= order <= 0
            elif op == ">=":
                holds &= order >= 0
            elif op == ">":
                holds &= order > 0
            elif op in ("==", "="):
                holds &= order == 0
        if holds:
            return fixed
    return None


# ------------------------------------------------------------------ the adapter


class DrupalAdapter(CmsAdapter):
    name = "drupal"
    title = "Drupal"
    core_slug = "drupal"
    has_components = True
    can_verify = False
    verify_note = (
        "Drush has no checksum verification of Drupal core or modules (known vulnerabilities: "
        "cms.vulnerabilities, or drush pm:security)"
    )
    required_vars = ("docroot",)
    can_update = True
    update_note = (
        "Drupal updates go through Composer in the site's composer_root (composer outdated, composer "
        "require PACKAGE:VERSION) and Drush (updatedb, cache:rebuild, maint:set): a Drupal site "
        "installed without composer.json cannot be updated by maintainer"
    )

    @classmethod
    def check_site(cls, site: Site) -> None:
        super().check_site(site)
        for var in ("composer_root", "docroot"):
            value = site.vars.get(var)
            if value not in (None, "") and not str(value).startswith("/"):
                raise BadInput(
                    f"site '{site.name}' (cms: drupal): {var} '{value}' is not an absolute path.",
                    key=var,
                    fix=f"write {var} as an absolute path on the site's host, e.g. /var/www/example.",
                )

    # -------------------------------------------------------------- commands

    def _tool(self, tool: str, args: Sequence[str]) -> list[str]:
        php = self.var("php_bin")
        if php is None:
            return [tool, *args]
        if "/" in tool:
            return [php, tool, *args]
        # PHP needs the file: find the bare name on the site's PATH first
        return ["bash", "-c", 'exec "$0" "$(command -v "$1")" "${@:2}"', php, tool, *args]

    def argv(self, *args: str) -> list[str]:
        """``drush --root=DOCROOT ARGS`` (through ``php_bin`` when set)."""
        return self._tool(self.var("drush", "drush") or "drush", [f"--root={self.var('docroot')}", *args])

    def drush(self, *args: str) -> tuple[list[str], CommandResult]:
        argv = self.argv(*args)
        return argv, self.run(argv)

    @property
    def composer_root(self) -> str:
        root = self.var("composer_root")
        if root is not None:
            return root.rstrip("/") or "/"
        docroot = str(self.var("docroot") or "").rstrip("/")
        return posixpath.dirname(docroot) if posixpath.basename(docroot) == "web" else docroot

    def composer_argv(self, *args: str) -> list[str]:
        """``composer --working-dir=ROOT --no-interaction --no-ansi ARGS`` (through ``php_bin``)."""
        tail = [f"--working-dir={self.composer_root}", "--no-interaction", "--no-ansi", *args]
        return self._tool(self.var("composer", "composer") or "composer", tail)

    def composer(self, *args: str) -> tuple[list[str], CommandResult]:
        argv = self.composer_argv(*args)
        return argv, self.run(argv)

    def _composer_json(self, *args: str) -> Any:
        argv, result = self.composer(*args)
        try:
            return find_json(result.stdout)
        except ValueError:
            raise CmsError(
                f"composer {args[0]} printed no usable JSON", command=argv, result=result
            ) from None

    # -------------------------------------------------------------- read-only operations

    def version(self) -> str:
        if self._version is None:
            argv, result = self.drush("core:status", "--format=json")
            self._version = drupal_version(result.stdout)
            if self._version is None:
                raise CmsError("drush core:status gave no drupal-version", command=argv, result=result)
        return self._version

    def _list_components(self) -> list[Component]:
        core = Component("core", "drupal", "Drupal", self.version(), True, "installed")
        argv, result = self.drush("pm:list", "--format=json", f"--fields={PM_LIST_FIELDS}")
        try:
            return [core, *pm_list_components(find_json(result.stdout))]
        except ValueError:
            raise CmsError("drush pm:list printed no usable JSON", command=argv, result=result) from None

    def _project(self, package: str) -> tuple[str, str, str]:
        """(type, slug, name) of a Composer package, typed by what pm:list says it is."""
        slug = project_of(package)
        if slug is None:
            return "library", package, package
        for component in self.components():
            if component.slug == slug and component.type != "core":
                return component.type, slug, component.name
        return "module", slug, slug

    # -------------------------------------------------------------- updates

    def updates(self) -> list[Update]:
        data = self._composer_json("outdated", "--direct", "--format=json")
        try:
            outdated = outdated_packages(data)
        except ValueError as exc:
            raise CmsError(f"composer outdated: {exc}") from None
        found: list[Update] = []
        by_name = {name: (current, latest) for name, current, latest in outdated}
        core = next((p for p in CORE_PACKAGES if p in by_name), None)
        if core is not None:
            current, latest = by_name[core]
            found.append(
                Update(
                    "core", "drupal", "Drupal", current, latest, release_kind(current, latest), package=core
                )
            )
        for name, current, latest in outdated:
            if name in CORE_PACKAGES or name in CORE_COMPANIONS or name in CORE_OTHERS:
                continue
            if project_of(name) is None:
                continue  # drush/drush, composer/installers: not CMS components
            type_, slug, title = self._project(name)
            found.append(
                Update(type_, slug, title, current, latest, release_kind(current, latest), package=name)
            )
        return found

    def security_updates(self) -> list[Update]:
        flagged: dict[str, tuple[str | None, str | None]] = {}
        answers = 0
        argv, result = self.drush("pm:security", "--format=json")
        if result.rc in (0, 3):
            try:
                flagged.update(pm_security_rows(find_json(result.stdout) if result.stdout.strip() else []))
                answers += 1
            except ValueError:
                pass
        drush_failure = (argv, result)
        audit_argv, audit = self.composer("audit", "--format=json")
        advisories: dict[str, list[dict[str, Any]]] = {}
        try:
            advisories = audit_advisories(find_json(audit.stdout))
            answers += 1
        except ValueError:
            pass
        if not answers:
            raise CmsError(
                "neither drush pm:security nor composer audit gave an answer "
                f"(drush exit {drush_failure[1].rc})",
                command=audit_argv,
                result=audit,
            )
        installed: dict[str, str] = {name: v for name, (v, _) in flagged.items() if v}
        if any(name not in installed for name in advisories):
            installed = {**composer_versions(self._composer_json("show", "--format=json")), **installed}
        fixes: dict[str, str | None] = {}
        for name in set(flagged) | set(advisories):
            fixed = flagged.get(name, (None, None))[1]
            for advisory in advisories.get(name, []):
                candidate = first_fixed(installed.get(name), str(advisory.get("affectedVersions") or ""))
                if candidate is not None and (fixed is None or compare(candidate, fixed) > 0):
                    fixed = candidate  # the first version clear of every advisory
            fixes[name] = fixed
        if any(fixed is None for fixed in fixes.values()):
            newest = {u.package or "": u.available for u in self.updates()}
            newest["drupal/core"] = newest.get("drupal/core-recommended") or newest.get("drupal/core") or ""
            for name, fixed in fixes.items():
                if fixed is None and newest.get(name):
                    fixes[name] = newest[name]
        unknown = sorted(name for name, fixed in fixes.items() if fixed is None)
        if unknown:
            raise CmsError(
                f"the security advisories flag {', '.join(unknown)} but name no fixed version, and "
                "composer outdated offers none: update them by hand (composer why-not) or wait for a release"
            )
        found: list[Update] = []
        core: Update | None = None
        for name in sorted(fixes):
            fixed = str(fixes[name])
            current = installed.get(name)
            kind = release_kind(current, fixed)
            if name in CORE_PACKAGES:
                # drupal/core is what the advisories name; apply() moves core-recommended with it
                if core is None or compare(fixed, core.available) > 0:
                    core = Update("core", "drupal", "Drupal", current, fixed, kind, True, package=name)
                continue
            type_, slug, title = self._project(name)
            found.append(Update(type_, slug, title, current, fixed, kind, True, package=name))
        return [core, *found] if core is not None else found

    def apply(self, items: Sequence[PlannedUpdate]) -> list[Applied]:
        if not items:
            return []
        refused: dict[str, str] = {}
        for item in items:
            if item.type not in UPDATABLE:
                refused[item.key] = (
                    f"a Drupal site has no {item.type}s; maintainer updates {', '.join(UPDATABLE)}"
                )
            elif not _PLAIN_VERSION.match(item.to_version):
                refused[item.key] = f"'{item.to_version}' is not a plain version"
        runnable = [item for item in items if item.key not in refused]
        direct = set(composer_versions(self._composer_json("show", "--direct", "--format=json")))
        required: list[str] = []
        transitive: list[str] = []
        commands: dict[str, list[str]] = {}
        for item in runnable:
            if item.type == "core":
                packages = [p for p in (*CORE_PACKAGES, *CORE_COMPANIONS) if p in direct] or ["drupal/core"]
                required.extend(f"{p}:{item.to_version}" for p in packages)
                commands[item.key] = ["require"]
            else:
                package = package_of(item.type, item.slug)
                if package in direct:
                    required.append(f"{package}:{item.to_version}")
                    commands[item.key] = ["require"]
                else:
                    transitive.append(package)
                    commands[item.key] = ["update", f"--with={package}:{item.to_version}"]
        outcome: dict[str, tuple[list[str], CommandResult]] = {}
        if required:
            all_deps = any(item.type == "core" for item in runnable)
            flag = "--update-with-all-dependencies" if all_deps else "--update-with-dependencies"
            argv, result = self.composer("require", flag, "--no-progress", *required)
            outcome["require"] = (argv, result)
        if transitive:
            withs = [c[1] for c in commands.values() if c[0] == "update"]
            argv, result = self.composer(
                "update", "--with-dependencies", "--no-progress", *withs, *transitive
            )
            outcome["update"] = (argv, result)
        after = composer_versions(self._composer_json("show", "--format=json")) if runnable else {}
        applied = []
        for item in items:
            if item.key in refused:
                applied.append(Applied(item, False, None, refused[item.key]))
                continue
            argv, result = outcome[commands[item.key][0]]
            package = "drupal/core" if item.type == "core" else package_of(item.type, item.slug)
            version = after.get(package)
            if version is None and item.type == "core":
                version = next((after[p] for p in CORE_PACKAGES if p in after), None)
            ok = result.rc == 0 and version is not None and compare(version, item.to_version) == 0
            if ok:
                message = f"{package} {item.from_version or '?'} -> {version}"
            elif result.rc != 0:
                message = f"composer {commands[item.key][0]} failed (exit {result.rc}): " + _tail(result)
            else:
                message = (
                    f"composer finished but {package} is at {version or 'nothing'}, not {item.to_version}"
                )
            applied.append(Applied(item, ok, version, message, argv))
        self.refresh()
        return applied

    # -------------------------------------------------------------- maintenance, database, caches

    def maintenance(self, on: bool) -> None:
        value = "1" if on else "0"
        argv, result = self.drush("maint:set", value)
        if result.rc != 0 and _NOT_DEFINED.search(result.stderr + result.stdout):
            argv, result = self.drush("state:set", "system.maintenance_mode", value, "--input-format=integer")
        if result.rc != 0:
            raise CmsError(
                f"drush could not turn maintenance mode {'on' if on else 'off'}", command=argv, result=result
            )
        if self.maintenance_state() is not on:
            raise CmsError(
                f"drush set maintenance mode {'on' if on else 'off'} but the site still reports it "
                f"{'off' if on else 'on'}",
                command=argv,
                result=result,
            )

    def maintenance_state(self) -> bool:
        argv, result = self.drush("maint:get")
        if result.rc != 0 and _NOT_DEFINED.search(result.stderr + result.stdout):
            argv, result = self.drush("state:get", "system.maintenance_mode", "--format=json")
        state = _flag(result.stdout) if result.rc == 0 else None
        if state is None:
            raise CmsError("drush gave no maintenance mode state", command=argv, result=result)
        return state

    def _pending(self) -> dict[str, Any]:
        argv, result = self.drush("updatedb:status", "--format=json")
        if result.rc != 0:
            raise CmsError("drush updatedb:status failed", command=argv, result=result)
        if not result.stdout.strip():
            return {}
        try:
            data = find_json(result.stdout)
        except ValueError:
            raise CmsError(
                "drush updatedb:status printed no usable JSON", command=argv, result=result
            ) from None
        rows = data.values() if isinstance(data, dict) else data if isinstance(data, list) else []
        pending = {}
        for row in rows:
            if isinstance(row, dict) and row.get("module"):
                pending[f"{row['module']}:{row.get('update_id', '')}"] = row
        return pending

    def db_update(self) -> DbUpdateResult:
        pending = self._pending()
        if not pending:
            return DbUpdateResult(ran=[])
        argv, result = self.drush("updatedb", "-y")
        if result.rc != 0:
            raise CmsError("drush updatedb failed", command=argv, result=result)
        left = self._pending()
        if left:
            raise CmsError(
                f"drush updatedb ran but these updates are still pending: {', '.join(sorted(left))}",
                command=argv,
                result=result,
            )
        return DbUpdateResult(
            ran=[
                {
                    "what": "drupal",
                    "command": argv,
                    "message": f"ran {len(pending)} database updates",
                    "updates": sorted(pending),
                }
            ]
        )

    def cache_flush(self) -> bool:
        argv, result = self.drush("cache:rebuild")
        if result.rc != 0:
            raise CmsError("drush cache:rebuild failed", command=argv, result=result)
        return True


def _flag(text: str) -> bool | None:
    """``1``/``0``/``true``/``false``/``null`` (Drush's maint:get and state:get JSON) as a bool."""
    words = [line.strip().strip('"').lower() for line in text.splitlines() if line.strip()]
    if not words:
        return None
    word = words[-1]
    if word in ("1", "true"):
        return True
    if word in ("0", "false", "null"):
        return False
    return None


def _tail(result: CommandResult) -> str:
    kept = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()][-4:]
    return " | ".join(kept)[-600:] or "(no output)"
