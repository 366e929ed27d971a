"""The CMS adapter interface: one class per CMS, chosen by the site's ``cms`` inventory var.

An adapter is a class whose settings are class attributes (its name, the slug its core has in
vulnerability feeds, what it can do) and whose methods ask the CMS's own command-line tool, on
the site, through a ``Runner`` (the action's transport). The read-only operations are:

- ``version()``: the core version;
- ``components()``: core, plugins/modules/extensions and themes, each a ``Component`` (type, slug,
  name, version, active, the tool's own status);
- ``verify()``: file integrity against published checksums (core and plugins), a ``VerifyResult``
  whose ``findings`` list each modified, missing or added file.

The CLI tools' exit codes are not trusted for answers: an adapter parses what they print (JSON
where they offer it) and uses the exit code only to tell "no answer" from "an answer".

The update operations (what the ``cms-update`` runbook's actions call):

- ``updates()``: every available update, core and components, as ``Update`` data (from, to, kind,
  security, what the new version requires, what it depends on);
- ``apply(items)``: apply exactly these ``PlannedUpdate`` items (pinned versions, never "whatever
  is newest now"), returning one ``Applied`` per item; an adapter may batch them (Composer) or go one
  by one (WP-CLI);
- ``maintenance(on)`` / ``maintenance_state()``: the CMS's maintenance mode, and whether it is on
  now (a leftover ``.maintenance`` file counts as on);
- ``db_update()``: the database migrations of core and of components that have their own
  (``wp core update-db``, ``wp wc update``, ``drush updatedb``), a ``DbUpdateResult``;
- ``cache_flush()``;
- ``security_updates()``: the CMS's own security advisories for what is installed
  (``drush pm:security`` / ``composer audit``); ``None`` when the CMS has none, and the
  vulnerability feed (cms/vulnfeed.py) is the source instead.

``adapter_for(site, runner)`` picks the class from ``ADAPTERS`` (``wordpress``, ``drupal``,
``joomla``, ``static``, ``custom``), importing it only when a site needs it.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import BadInput, ExitCode, MaintainerError, did_you_mean
from ..transport import CommandResult

if TYPE_CHECKING:
    from ..inventory import Site

#: runs an argv on the site and returns its result whatever its exit code (a timeout or a stop
#: request raises); the actions pass one built on ``StepContext.sh``
Runner = Callable[[Sequence[str]], CommandResult]

#: ``cms`` var value -> "module:Class"; imported on first use
ADAPTERS: dict[str, str] = {
    "wordpress": "maintainer.cms.wordpress:WordPressAdapter",
    "drupal": "maintainer.cms.drupal:DrupalAdapter",
    "joomla": "maintainer.cms.joomla:JoomlaAdapter",
    "static": "maintainer.cms.base:StaticAdapter",
    "custom": "maintainer.cms.custom:CustomAdapter",
}

#: how much of a tool's output an error message and its outputs carry
OUTPUT_TAIL = 2000


class CmsError(MaintainerError):
    """A CMS tool gave no usable answer (not installed, broken site, unreadable output)."""

    exit_code = ExitCode.SITE_FAILED

    def __init__(
        self, message: str, *, command: Sequence[str] | None = None, result: CommandResult | None = None
    ):
        if result is not None:
            message = f"{message} (exit {result.rc}): {_last_lines(result.stderr or result.stdout)}"
        super().__init__(message)
        self.command = list(command) if command is not None else None
        self.result = result

    @property
    def outputs(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.command is not None:
            data["command"] = self.command
        if self.result is not None:
            data.update(
                rc=self.result.rc,
                stdout=self.result.stdout[-OUTPUT_TAIL:],
                stderr=self.result.stderr[-OUTPUT_TAIL:],
            )
        return data


def _last_lines(text: str, lines: int = 4) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-600:] or "(no output)"


# ------------------------------------------------------------------ what adapters return


def component_key(type_: str, slug: str) -> str:
    """``core`` or ``plugin:akismet``: how plans, findings and the change log name a component."""
    return "core" if type_ == "core" else f"{type_}:{slug}"


@dataclass(frozen=True)
class Component:
    """One installed piece of a site: its core, a plugin/module/extension, a theme."""

    #: core, plugin, theme, module (Drupal), extension (Joomla)
    type: str
    #: the identifier vulnerability feeds use: the plugin's directory, the theme's stylesheet,
    #: the Drupal project, the core's name (wordpress, drupal, joomla)
    slug: str
    name: str
    version: str | None
    active: bool | None = None
    #: the tool's own word (active, inactive, must-use, dropin, parent, Enabled, ...)
    status: str | None = None

    @property
    def key(self) -> str:
        """``core`` or ``plugin:akismet``: how findings name a component."""
        return component_key(self.type, self.slug)

    def record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "slug": self.slug,
            "name": self.name,
            "version": self.version,
            "active": self.active,
            "status": self.status,
        }


#: what a finding says about a file
MODIFIED, MISSING, ADDED, UNREADABLE = "modified", "missing", "added", "unverifiable"


@dataclass(frozen=True)
class IntegrityFinding:
    """A file that does not match its component's published checksums."""

    component: str  # Component.key: core, plugin:akismet
    file: str
    problem: str  # modified, missing, added, unverifiable
    message: str  # as the tool said it

    def record(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "file": self.file,
            "problem": self.problem,
            "message": self.message,
        }


@dataclass
class VerifyResult:
    """``verify()``: findings, and what could and could not be checked."""

    #: False: this CMS (or adapter) has no integrity check; ``note`` says why
    supported: bool = True
    #: the core version the files were checked against
    version: str | None = None
    findings: list[IntegrityFinding] = field(default_factory=list)
    #: components whose every file matched (Component.key)
    verified: list[str] = field(default_factory=list)
    #: components that could not be checked: {"component", "reason"} (no published checksums, ...)
    unverified: list[dict[str, str]] = field(default_factory=list)
    note: str = ""

    @property
    def clean(self) -> bool:
        return self.supported and not self.findings


#: kinds of update, in each CMS's own sense (each adapter documents its rules): WordPress calls
#: 6.4.2 -> 6.4.3 a minor (maintenance/security) release and 6.4 -> 6.5 a major one; Drupal 10.2.1 ->
#: 10.2.4 is a patch release, 10.2 -> 10.3 minor, 10 -> 11 major. ``core: minor`` allows all but MAJOR.
PATCH, MINOR, MAJOR = "patch", "minor", "major"


@dataclass(frozen=True)
class Update:
    """One available update of an installed component, as the CMS's tool reports it."""

    type: str  # core, plugin, theme, module, extension
    slug: str
    name: str
    current: str | None
    #: the version the tool offers (the newest it knows)
    available: str
    #: PATCH, MINOR or MAJOR (for core, in the CMS's own sense; see each adapter)
    kind: str
    #: True: the CMS's own advisories say this update fixes a vulnerability; None: unknown
    security: bool | None = None
    #: the new version needs at least this core / PHP version (None: no requirement known)
    requires_core: str | None = None
    requires_php: str | None = None
    #: slugs of components this one needs (WordPress "Requires Plugins", Composer requires)
    depends_on: tuple[str, ...] = ()
    #: the tool's own handle when it is not the slug (a Composer package: drupal/core-recommended)
    package: str | None = None

    @property
    def key(self) -> str:
        return component_key(self.type, self.slug)

    def record(self) -> dict[str, Any]:
        return {
            "component": self.key,
            "type": self.type,
            "slug": self.slug,
            "name": self.name,
            "from": self.current,
            "to": self.available,
            "kind": self.kind,
            "security": self.security,
            "requires_core": self.requires_core,
            "requires_php": self.requires_php,
            "depends_on": list(self.depends_on),
        }


@dataclass(frozen=True)
class PlannedUpdate:
    """One item of a plan: update this component from this version to exactly that one."""

    type: str
    slug: str
    name: str
    from_version: str | None
    to_version: str
    #: why it is in the plan ("available", "security: WF-2024-1234", "pinned")
    reason: str = "available"
    package: str | None = None

    @property
    def key(self) -> str:
        return component_key(self.type, self.slug)

    def record(self) -> dict[str, Any]:
        return {
            "component": self.key,
            "type": self.type,
            "slug": self.slug,
            "name": self.name,
            "from": self.from_version,
            "to": self.to_version,
            "reason": self.reason,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> PlannedUpdate:
        return cls(
            str(data["type"]),
            str(data["slug"]),
            str(data.get("name") or data["slug"]),
            None if data.get("from") in (None, "") else str(data["from"]),
            str(data["to"]),
            str(data.get("reason") or "available"),
        )


@dataclass(frozen=True)
class Applied:
    """What ``apply`` did to one planned item."""

    item: PlannedUpdate
    ok: bool
    #: the version installed afterwards, read back from the CMS (not assumed)
    version: str | None
    message: str = ""
    #: the command that did it, for the change log
    command: list[str] | None = None

    def record(self) -> dict[str, Any]:
        return {
            **self.item.record(),
            "ok": self.ok,
            "installed": self.version,
            "message": self.message,
        }


@dataclass
class DbUpdateResult:
    """``db_update()``: which migrations ran, and which had nothing to do."""

    #: {"what": "core" | "plugin:woocommerce" | "drupal", "command": [...], "message": ...}
    ran: list[dict[str, Any]] = field(default_factory=list)
    #: False: this CMS has no database migrations to run (a static or custom site without a command)
    supported: bool = True


# ------------------------------------------------------------------ the interface


class CmsAdapter:
    """Subclass, set the class attributes, implement the operations the CMS offers."""

    #: the value of the site's ``cms`` var
    name: ClassVar[str]
    title: ClassVar[str]
    #: the slug of the core in vulnerability feeds (None: the CMS has no core to match)
    core_slug: ClassVar[str | None] = None
    #: ``components()`` returns something
    has_components: ClassVar[bool] = False
    #: ``verify()`` checks files; when False, ``verify_note`` says why not
    can_verify: ClassVar[bool] = False
    verify_note: ClassVar[str] = ""
    #: inventory vars a site of this CMS must set (checked before anything runs)
    required_vars: ClassVar[tuple[str, ...]] = ()

    def __init__(self, site: Site, run: Runner) -> None:
        self.site = site
        self.run = run
        self._components: list[Component] | None = None
        self._version: str | None = None
        #: ``apply`` puts maintenance mode back on after each update command: the CMS's own
        #: upgraders end it when they finish, and the migrations after them must not run live
        self.keep_maintenance = False

    @classmethod
    def check_site(cls, site: Site) -> None:
        """BadInput when the site's vars cannot work with this adapter."""
        missing = [var for var in cls.required_vars if not site.vars.get(var)]
        if missing:
            raise BadInput(
                f"site '{site.name}' (cms: {cls.name}) needs the inventory var(s) {', '.join(missing)}.",
                key=missing[0],
                fix=f"set {missing[0]} in the site's host_vars or group_vars.",
            )

    def var(self, name: str, default: str | None = None) -> str | None:
        value = self.site.vars.get(name)
        return default if value in (None, "") else str(value)

    def version(self) -> str | None:
        """The core version (None: the CMS has no versioned core)."""
        return None

    def components(self) -> list[Component]:
        """Core, plugins/modules/extensions and themes, as installed now (cached per adapter)."""
        if self._components is None:
            self._components = self._list_components()
        return self._components

    def _list_components(self) -> list[Component]:
        return []

    def refresh(self) -> None:
        """Forget what was read (after an update: versions must be read back, not assumed)."""
        self._components = None
        self._version = None

    def verify(self) -> VerifyResult:
        return VerifyResult(supported=False, note=self.verify_note or f"{self.title} has no integrity check")

    # -------------------------------------------------------------- updates (issue 5)

    #: ``updates()``/``apply()`` work; when False, ``update_note`` says why not
    can_update: ClassVar[bool] = False
    update_note: ClassVar[str] = ""

    def updates(self) -> list[Update]:
        """Every available update of the core and the components (an empty list: all current)."""
        raise CmsError(self.update_note or f"{self.title} sites cannot be updated by maintainer")

    def apply(self, items: Sequence[PlannedUpdate]) -> list[Applied]:
        """Apply exactly these items, in this order (the caller orders them); one Applied per item.

        A failed item is ``ok=False`` with the tool's message; an adapter raises CmsError only when
        the tool gave no usable answer at all. The installed versions are read back afterwards.
        """
        raise CmsError(self.update_note or f"{self.title} sites cannot be updated by maintainer")

    def maintenance(self, on: bool) -> None:
        """Turn the CMS's maintenance mode on or off (CmsError when it did not take)."""
        raise CmsError(f"{self.title} has no maintenance mode maintainer can switch")

    def maintenance_state(self) -> bool | None:
        """True when the site is in maintenance mode now (None: this CMS cannot tell)."""
        return None

    def maintenance_age(self) -> float | None:
        """Seconds since the maintenance mode that is on now was turned on (None: unknown, or off).

        A young one usually belongs to an update that is still running, or to someone's deliberate
        maintenance: the update flow refuses the site rather than clearing it.
        """
        return None

    def db_update(self) -> DbUpdateResult:
        """Run the pending database migrations of core and components."""
        return DbUpdateResult(supported=False)

    def cache_flush(self) -> bool:
        """Flush the CMS's caches; False when it has none to flush."""
        return False

    def component_path(self, type: str, slug: str) -> str | None:
        """Where a plugin/theme/module lives, relative to the docroot (None: not one directory).

        The ``one_by_one`` rollback restores only this directory from the pre-update backup.
        """
        return None

    def security_updates(self) -> list[Update] | None:
        """Updates the CMS's own advisories mark as security fixes (None: it has no advisories)."""
        return None


class StaticAdapter(CmsAdapter):
    """A static site: no CMS, nothing to list, verify or update."""

    name = "static"
    title = "static site"
    verify_note = "a static site has no CMS whose files have published checksums"
    update_note = (
        "a static site has no CMS to update: deploy its files with a shell or playbook step, or set "
        "cms: custom with cms_updates_command and cms_update_command when it has an update procedure"
    )


# ------------------------------------------------------------------ registry


def adapter_class(cms: str) -> type[CmsAdapter]:
    """The adapter for a ``cms`` var value; BadInput for an unknown one."""
    target = ADAPTERS.get(cms)
    if target is None:
        raise BadInput(
            f"unknown cms '{cms}'.",
            key="cms",
            fix=f"{did_you_mean(cms, ADAPTERS)}use one of: {', '.join(ADAPTERS)}.",
        )
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    assert isinstance(cls, type) and issubclass(cls, CmsAdapter)
    return cls


def adapter_for(site: Site, run: Runner) -> CmsAdapter:
    """The site's adapter, over ``run``."""
    return adapter_class(site.cms)(site, run)


# ------------------------------------------------------------------ reading tool output


def find_json(text: str) -> Any:
    """The JSON document a tool printed, even after warnings or PHP notices on the same stream.

    Tries the whole text, then each line from the last (WP-CLI and Drush print one line), then
    everything from the first line that opens an array or object (pretty-printed output).
    Raises ValueError when there is none.
    """
    stripped = text.strip()
    if stripped:
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    lines = text.splitlines()
    for line in reversed(lines):
        candidate = line.strip()
        if candidate[:1] in ("[", "{"):
            try:
                return json.loads(candidate)
            except ValueError:
                continue
    for index, line in enumerate(lines):
        if line.lstrip()[:1] in ("[", "{"):
            try:
                return json.loads("\n".join(lines[index:]))
            except ValueError:
                continue
    raise ValueError("no JSON document in the output")


_VERSION = re.compile(r"\d+(?:\.\d+)*(?:[-+._]?[0-9A-Za-z]+)*")


def first_version(text: str) -> str | None:
    """The first version-looking token of ``text`` (``6.4.3``, ``1.0.0-beta``)."""
    for token in text.split():
        match = _VERSION.fullmatch(token.strip())
        if match:
            return match.group(0)
    return None
