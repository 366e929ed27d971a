"""Drupal through Drush (read-only operations; updates through Composer come with issue 5).

Inventory vars of a Drupal site: ``docroot`` (required, passed as ``--root``), ``drush`` (the
command, default ``drush``; usually the project's ``vendor/bin/drush``) and ``php_bin`` (when set,
Drush runs as ``PHP_BIN DRUSH ...``).

What Drush prints, as its documentation and source (drush-ops/drush, ``PmCommands::pmList``,
``StatusCommands``) describe it:

- ``drush core:status --format=json``: an object whose ``drupal-version`` is the core version;
- ``drush pm:list --format=json``: an object keyed by machine name, each row ``{package, project,
  display_name, name, type (module|theme), path, status (Enabled|Disabled), version}``. Core's own
  modules (under ``core/``) are part of the core component; a contributed module is reported under
  its drupal.org project (``project``, else its name) with Drupal 8's ``8.x-`` prefix dropped from
  its version (``8.x-1.5`` is 1.5, as security advisories write it), one component per project.

Drush has no checksum verification of core or modules, so ``verify()`` says it is not supported.
"""

from __future__ import annotations

import re
from typing import Any

from ..transport import CommandResult
from .base import CmsAdapter, CmsError, Component, find_json

PM_LIST_FIELDS = "name,display_name,project,type,path,status,version"
_CORE_COMPAT = re.compile(r"^\d+\.x-")


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

    def argv(self, *args: str) -> list[str]:
        drush = self.var("drush", "drush") or "drush"
        php = self.var("php_bin")
        tail = [f"--root={self.var('docroot')}", *args]
        if php is None:
            return [drush, *tail]
        if "/" in drush:
            return [php, drush, *tail]
        return ["bash", "-c", 'exec "$0" "$(command -v "$1")" "${@:2}"', php, drush, *tail]

    def drush(self, *args: str) -> tuple[list[str], CommandResult]:
        argv = self.argv(*args)
        return argv, self.run(argv)

    def version(self) -> str:
        argv, result = self.drush("core:status", "--format=json")
        version = drupal_version(result.stdout)
        if version is None:
            raise CmsError("drush core:status gave no drupal-version", command=argv, result=result)
        return version

    def _list_components(self) -> list[Component]:
        core = Component("core", "drupal", "Drupal", self.version(), True, "installed")
        argv, result = self.drush("pm:list", "--format=json", f"--fields={PM_LIST_FIELDS}")
        try:
            return [core, *pm_list_components(find_json(result.stdout))]
        except ValueError:
            raise CmsError("drush pm:list printed no usable JSON", command=argv, result=result) from None
