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
"""

from __future__ import annotations

import re

from ..transport import CommandResult
from .base import CmsAdapter, CmsError, Component

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


class JoomlaAdapter(CmsAdapter):
    name = "joomla"
    title = "Joomla"
    core_slug = "joomla"
    has_components = True
    can_verify = False
    verify_note = "Joomla's console (cli/joomla.php) has no checksum verification"
    required_vars = ("docroot",)

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
