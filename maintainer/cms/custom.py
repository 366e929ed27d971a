"""A site whose CMS maintainer has no adapter for (Laravel, hand-made PHP): its commands come from
inventory vars, each a shell command run with bash on the site, in ``docroot`` when it is set.

A var that is not set means "this site cannot do that": the operation raises a CmsError naming the
var (``maintenance_state``, ``db_update`` and ``cache_flush`` answer None / unsupported / False
instead, as for a CMS without them). Each var is checked at plan time: it must be a string, and
``cms_maintenance_on_command`` and ``cms_maintenance_off_command`` come as a pair, and so do
``cms_updates_command`` and ``cms_update_command`` (a plan that cannot be applied, or an update
command without a plan, is a mistake in the inventory).

- ``cms_version_command``: prints the core version (the first version-looking word counts);
- ``cms_updates_command``: prints a JSON list (anything before it, warnings, is skipped), one
  object per available update::

      [{"type": "core", "slug": "laravel", "name": "Laravel", "from": "10.48.4", "to": "10.48.9"},
       {"type": "plugin", "slug": "spatie/laravel-backup", "from": "8.6.0", "to": "8.8.1",
        "kind": "minor", "security": true, "requires_php": "8.1"}]

  ``type`` (core, plugin, theme, module, extension, library; default plugin), ``slug`` and ``to``
  are required; ``name`` defaults to the slug, ``from`` to unknown, ``kind`` (patch, minor,
  major) to the semantic-versioning difference of from and to; ``security`` (true/false),
  ``requires_core``, ``requires_php`` and ``depends_on`` (a list of slugs) are optional. ``[]``:
  everything is current;
- ``cms_update_command``: applies a plan. It gets the plan three ways: as JSON on stdin and in
  the environment variable ``MAINTAINER_UPDATE_PLAN`` (a list of ``{component, type, slug, name,
  from, to, reason}``, PlannedUpdate records), and as ``MAINTAINER_UPDATE_ITEMS``, one ``TYPE SLUG
  TO`` line per item for shell scripts (``while read -r type slug to; do ...; done``). It may print
  a JSON list of results, ``[{"type", "slug", "ok": true, "version": "8.8.1", "message"}]``;
  without one, every item is ok when the command exits 0, the core's version is read back with
  ``cms_version_command`` and the others' versions stay unknown (None);
- ``cms_maintenance_on_command`` / ``cms_maintenance_off_command`` (``php artisan down`` / ``php
  artisan up``): exit 0 when done; with ``cms_maintenance_status_command`` the state is read back;
- ``cms_maintenance_status_command``: prints ``on`` or ``off`` (also 1/0, true/false, yes/no,
  enabled/disabled, down/up); its exit code is not read;
- ``cms_db_update_command`` (``php artisan migrate --force``): exit 0 when done;
- ``cms_cache_flush_command`` (``php artisan optimize:clear``): exit 0 when done;
- ``cms_health_command``: exit 0 when the site is healthy (``health()``, for checks and runbooks
  that want the site's own opinion besides HTTP checks).
"""

from __future__ import annotations

import json
import shlex
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
    DbUpdateResult,
    PlannedUpdate,
    Update,
    find_json,
    first_version,
)
from .drupal import release_kind

if TYPE_CHECKING:
    from ..inventory import Site

COMMAND_VARS = (
    "cms_version_command",
    "cms_updates_command",
    "cms_update_command",
    "cms_maintenance_on_command",
    "cms_maintenance_off_command",
    "cms_maintenance_status_command",
    "cms_db_update_command",
    "cms_cache_flush_command",
    "cms_health_command",
)
#: vars that only make sense together
PAIRS = (
    ("cms_maintenance_on_command", "cms_maintenance_off_command"),
    ("cms_updates_command", "cms_update_command"),
)
_ON = {"on", "1", "true", "yes", "enabled", "down", "maintenance"}
_OFF = {"off", "0", "false", "no", "disabled", "up", "live"}
TYPES = ("core", "plugin", "theme", "module", "extension", "library")


def parse_updates(data: Any) -> list[Update]:
    """``cms_updates_command``'s JSON as Updates (ValueError names the bad entry)."""
    if not isinstance(data, list):
        raise ValueError("the JSON is not a list")
    found = []
    for index, row in enumerate(data):
        if not isinstance(row, dict):
            raise ValueError(f"entry {index} is not an object")
        missing = [key for key in ("slug", "to") if row.get(key) in (None, "")]
        if missing:
            raise ValueError(f"entry {index} has no {' or '.join(missing)}")
        type_ = str(row.get("type") or "plugin")
        if type_ not in TYPES:
            raise ValueError(f"entry {index} has type '{type_}' (one of {', '.join(TYPES)})")
        current = None if row.get("from") in (None, "") else str(row["from"])
        target = str(row["to"])
        kind = str(row.get("kind") or release_kind(current, target)).lower()
        if kind not in (PATCH, MINOR, MAJOR):
            raise ValueError(f"entry {index} has kind '{kind}' (patch, minor or major)")
        security = row.get("security")
        depends = row.get("depends_on") or ()
        found.append(
            Update(
                type_,
                str(row["slug"]),
                str(row.get("name") or row["slug"]),
                current,
                target,
                kind,
                None if security is None else bool(security),
                None if row.get("requires_core") in (None, "") else str(row["requires_core"]),
                None if row.get("requires_php") in (None, "") else str(row["requires_php"]),
                tuple(str(d) for d in (depends if isinstance(depends, list) else [depends])),
            )
        )
    return found


def state_word(text: str) -> bool | None:
    """on/off (and their synonyms) from the first word of ``text``; None for anything else."""
    words = text.strip().split()
    word = words[0].lower().strip(".:,") if words else ""
    return True if word in _ON else False if word in _OFF else None


class CustomAdapter(CmsAdapter):
    name = "custom"
    title = "custom CMS"
    verify_note = "a custom site has no published checksums to verify against"
    can_update = True
    update_note = (
        "a custom site is updated by its own commands: set cms_updates_command (prints the available "
        "updates as JSON) and cms_update_command (applies the plan it gets on stdin) in the inventory"
    )

    @classmethod
    def check_site(cls, site: Site) -> None:
        super().check_site(site)
        for var in COMMAND_VARS:
            value = site.vars.get(var)
            if value is not None and not isinstance(value, str):
                raise BadInput(
                    f"site '{site.name}' (cms: custom): {var} is a {type(value).__name__}, not a command.",
                    key=var,
                    fix=f'write {var} as one shell command string, e.g. "php artisan down".',
                )
        for first, second in PAIRS:
            has_first, has_second = bool(site.vars.get(first)), bool(site.vars.get(second))
            if has_first != has_second:
                have, lack = (first, second) if has_first else (second, first)
                raise BadInput(
                    f"site '{site.name}' (cms: custom) sets {have} but not {lack}: maintainer could "
                    "start what it cannot finish.",
                    key=lack,
                    fix=f"set {lack} too, or remove {have}.",
                )

    # -------------------------------------------------------------- running the site's commands

    def command(self, var: str, env: dict[str, str] | None = None) -> list[str] | None:
        """The argv running the command in ``var`` (None when the var is not set)."""
        command = self.var(var)
        if command is None:
            return None
        docroot = self.var("docroot")
        script = f"cd -- {shlex.quote(docroot)} || exit 1\n{command}" if docroot else command
        argv = ["bash", "-c", script]
        if env:
            argv = ["env", *(f"{key}={value}" for key, value in env.items()), *argv]
        return argv

    def _run(self, var: str, env: dict[str, str] | None = None) -> tuple[list[str], CommandResult]:
        argv = self.command(var, env)
        if argv is None:
            why = f" ({self.update_note})" if var in ("cms_updates_command", "cms_update_command") else ""
            raise CmsError(f"this custom site has no {var}: set it in the inventory{why}")
        return argv, self.run(argv)

    # -------------------------------------------------------------- operations

    def version(self) -> str | None:
        if self.var("cms_version_command") is None:
            return None
        argv, result = self._run("cms_version_command")
        version = first_version(result.stdout) if result.rc == 0 else None
        if version is None:
            raise CmsError("cms_version_command gave no version", command=argv, result=result)
        return version

    def updates(self) -> list[Update]:
        argv, result = self._run("cms_updates_command")
        if result.rc != 0:
            raise CmsError("cms_updates_command failed", command=argv, result=result)
        try:
            return parse_updates(find_json(result.stdout))
        except ValueError as exc:
            raise CmsError(
                f"cms_updates_command printed no usable update list: {exc}", command=argv, result=result
            ) from None

    def apply(self, items: Sequence[PlannedUpdate]) -> list[Applied]:
        if not items:
            return []
        plan = json.dumps([item.record() for item in items], separators=(",", ":"))
        lines = "\n".join(f"{item.type} {item.slug} {item.to_version}" for item in items)
        argv = self.command(
            "cms_update_command", {"MAINTAINER_UPDATE_PLAN": plan, "MAINTAINER_UPDATE_ITEMS": lines}
        )
        if argv is None:
            raise CmsError(
                f"this custom site has no cms_update_command: set it in the inventory ({self.update_note})"
            )
        # the plan on stdin too: the Runner takes an argv only, so bash feeds it from the variable
        script = argv[-1]
        argv[-1] = 'printf "%s\\n" "$MAINTAINER_UPDATE_PLAN" | bash -c "$1"'
        argv += ["maintainer-update", script]
        result = self.run(argv)
        reported = _results(result.stdout)
        applied = []
        for item in items:
            row = reported.get((item.type, item.slug)) or reported.get(("", item.slug))
            if row is not None:
                version = None if row.get("version") in (None, "") else str(row["version"])
                ok = bool(row.get("ok", result.rc == 0)) and (version is None or version == item.to_version)
                message = str(row.get("message") or f"cms_update_command reported {version or 'no version'}")
            else:
                ok = result.rc == 0
                version = self.version() if ok and item.type == "core" else None
                if version is not None and version != item.to_version:
                    ok = False
                message = (
                    "cms_update_command exited 0 (no per-item result printed)"
                    if result.rc == 0
                    else f"cms_update_command failed (exit {result.rc}): " + _tail(result)
                )
            applied.append(Applied(item, ok, version, message, self.command("cms_update_command")))
        return applied

    def maintenance(self, on: bool) -> None:
        var = "cms_maintenance_on_command" if on else "cms_maintenance_off_command"
        argv, result = self._run(var)
        if result.rc != 0:
            raise CmsError(f"{var} failed", command=argv, result=result)
        state = self.maintenance_state()
        if state is not None and state is not on:
            raise CmsError(
                f"{var} exited 0 but cms_maintenance_status_command still says {'off' if on else 'on'}",
                command=argv,
                result=result,
            )

    def maintenance_state(self) -> bool | None:
        if self.var("cms_maintenance_status_command") is None:
            return None
        argv, result = self._run("cms_maintenance_status_command")
        state = state_word(result.stdout)
        if state is None:
            raise CmsError(
                "cms_maintenance_status_command printed neither on nor off", command=argv, result=result
            )
        return state

    def db_update(self) -> DbUpdateResult:
        if self.var("cms_db_update_command") is None:
            return DbUpdateResult(supported=False)
        argv, result = self._run("cms_db_update_command")
        if result.rc != 0:
            raise CmsError("cms_db_update_command failed", command=argv, result=result)
        return DbUpdateResult(ran=[{"what": "custom", "command": argv, "message": _tail(result)}])

    def cache_flush(self) -> bool:
        if self.var("cms_cache_flush_command") is None:
            return False
        argv, result = self._run("cms_cache_flush_command")
        if result.rc != 0:
            raise CmsError("cms_cache_flush_command failed", command=argv, result=result)
        return True

    def health(self) -> tuple[bool, str]:
        """(healthy, what the command said) from ``cms_health_command``'s exit code."""
        _, result = self._run("cms_health_command")
        return result.rc == 0, _tail(result)


def _results(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(type, slug) -> the update command's own result row, when it printed a JSON list."""
    try:
        data = find_json(text)
    except ValueError:
        return {}
    if not isinstance(data, list):
        return {}
    return {
        (str(row.get("type") or ""), str(row["slug"])): row
        for row in data
        if isinstance(row, dict) and row.get("slug")
    }


def _tail(result: CommandResult) -> str:
    kept = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()][-4:]
    return " | ".join(kept)[-600:] or "(no output)"
