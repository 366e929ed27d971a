"""The project directory and its ``maintainer.toml`` settings."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput, ValidationFailed, did_you_mean
from .runbook import parse_duration

SETTINGS_FILE = "maintainer.toml"


@dataclass
class Settings:
    changelog: Path
    inventory: list[str] = field(default_factory=list)
    lock_ttl: float = 900.0
    lock_dir: str = "~/.maintainer/locks"
    step_timeout: float = 3600.0


@dataclass
class Project:
    root: Path
    settings: Settings

    def inventory_sources(self, given: tuple[str, ...] | list[str]) -> list[str]:
        if given:
            # typed in a shell: relative to where the user stands, else to the project
            return [self._given_source(s) for s in given]
        if not self.settings.inventory:
            raise BadInput(
                "no inventory given.",
                fix=f'pass -i INVENTORY, or set inventory = "..." in {self.root / SETTINGS_FILE}.',
            )
        # from maintainer.toml: always relative to the project, wherever maintainer runs from
        return [str(self.root / s) for s in self.settings.inventory]

    def _given_source(self, source: str) -> str:
        path = Path(source).expanduser()
        if path.is_absolute() or path.exists():
            return str(path) if path.is_absolute() else source
        in_project = self.root / source
        if in_project.exists():
            return str(in_project)
        raise BadInput(
            f"inventory '{source}' not found: tried {Path.cwd() / path} (from the current directory) "
            f"and {in_project} (in the project).",
            key="-i",
            fix="check the path given with -i: relative paths are looked up from the current "
            "directory first, then from the project directory.",
        )


_TABLE = "maintainer"
#: below this a running run could not refresh its locks (every ttl/3) reliably
MIN_LOCK_TTL = 30.0

_KNOWN = {"changelog", "inventory", "lock_ttl", "lock_dir", "step_timeout"}
_TOML_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def project_dir(root: str | Path = ".") -> Path:
    """``root`` if it is a directory, else BadInput: every command needs its project."""
    root = Path(root)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise BadInput(
            f"the project directory {what}.",
            file=root,
            key="--project",
            fix="pass --project DIR, the directory that holds runbooks/, inventories/ and "
            f"{SETTINGS_FILE}, or run maintainer from inside it.",
        )
    return root


def load_project(root: str | Path = ".") -> Project:
    root = project_dir(root)
    path = root / SETTINGS_FILE
    data: dict[str, Any] = {}
    if path.is_file():
        data = _read_settings(path)
    changelog = data.get("changelog", "changelog.jsonl")
    inventory = data.get("inventory", [])
    inventory = [inventory] if isinstance(inventory, str) else list(inventory)
    return Project(
        root=root,
        settings=Settings(
            changelog=root / changelog,
            inventory=inventory,
            lock_ttl=parse_duration(data.get("lock_ttl", 900)),
            lock_dir=str(data.get("lock_dir", "~/.maintainer/locks")),
            step_timeout=parse_duration(data.get("step_timeout", 3600)),
        ),
    )


def _read_settings(path: Path) -> dict[str, Any]:
    """The [maintainer] table, checked: unknown tables or keys and wrong types are BadInput."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the settings: {exc}", file=path, fix="save it as UTF-8 text.") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_LINE.search(message)
        raise BadInput(
            f"invalid TOML: {_TOML_LINE.sub('', message)}"
            + (f" (column {found.group(2)})" if found else "")
            + ".",
            file=path,
            line=int(found.group(1)) if found else getattr(exc, "lineno", None),
            fix='correct the syntax there (TOML: key = "value" under [maintainer]; see https://toml.io).',
        ) from None
    problems = [
        _problem(
            path,
            text,
            None,
            key,
            f"unknown {'table' if isinstance(value, dict) else 'key'} '{key}'.",
            _suggest(key, {_TABLE}, f"the only table is [{_TABLE}]"),
        )
        for key, value in document.items()
        if key != _TABLE
    ]
    data = document.get(_TABLE, {})
    if not isinstance(data, dict):
        problems.append(
            _problem(
                path,
                text,
                None,
                _TABLE,
                f"'{_TABLE}' must be a table, not {_kind(data)}.",
                f"write [{_TABLE}] on a line of its own and the settings below it.",
            )
        )
        data = {}
    for key, value in data.items():
        if key not in _KNOWN:
            problems.append(
                _problem(
                    path,
                    text,
                    _TABLE,
                    key,
                    f"unknown setting '{key}' under [{_TABLE}].",
                    _suggest(key, _KNOWN, f"known settings: {', '.join(sorted(_KNOWN))}"),
                )
            )
            continue
        wrong = _check_value(key, value)
        if wrong:
            problems.append(_problem(path, text, _TABLE, key, *wrong))
    if problems:
        raise problems[0] if len(problems) == 1 else ValidationFailed(problems, file=path)
    return data


def _check_value(key: str, value: Any) -> tuple[str, str] | None:
    """(message, fix) when ``value`` does not fit setting ``key``."""
    if key in ("changelog", "lock_dir"):
        if isinstance(value, str) and value.strip():
            return None
        example = (
            'changelog = "changelog.jsonl"' if key == "changelog" else 'lock_dir = "~/.maintainer/locks"'
        )
        return f"must be a non-empty string (a path), not {_kind(value)}.", f"write e.g. {example}."
    if key == "inventory":
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list) and items and all(isinstance(i, str) and i.strip() for i in items):
            return None
        return (
            f"must be a path string or an array of path strings, not {_kind(value)}.",
            'write e.g. inventory = "inventories/production.yml" (relative to the project).',
        )
    # lock_ttl, step_timeout
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return (
            f'must be a duration (seconds, or a string like "15m"), not {_kind(value)}.',
            f'write e.g. {key} = "15m" or {key} = 900.',
        )
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        return f"{exc}.", f'write e.g. {key} = "15m" or {key} = 900.'
    if key == "lock_ttl" and seconds < MIN_LOCK_TTL:
        # a live run refreshes its locks every ttl/3: a shorter ttl lets others break them
        return (
            f"must be at least {MIN_LOCK_TTL:g}s: shorter, a running run's locks look stale "
            "and a second run would break them and work on the same sites.",
            'write e.g. lock_ttl = "15m".',
        )
    if seconds <= 0:
        return "must be more than 0.", f'write e.g. {key} = "1h".'
    return None


def _problem(path: Path, text: str, table: str | None, key: str, message: str, fix: str) -> BadInput:
    name = key if table is None else f"{table}.{key}"
    return BadInput(message, file=path, line=_line_of(text, table, key), key=name, fix=fix)


def _suggest(word: str, known: set[str], otherwise: str) -> str:
    guess = did_you_mean(word, known)
    return f"{guess}Rename it." if guess else f"remove it; {otherwise}."


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _line_of(text: str, table: str | None, key: str) -> int | None:
    """The line that defines ``key`` (in ``[table]``, or at the top level for None), if found."""
    current: str | None = None
    key_line = re.compile(rf"""(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*[=.\[]""")
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\[?\s*([^\]]*?)\s*\]\]?\s*(?:#.*)?", stripped)
        if header:
            current = header.group(1).strip("\"'")
            if table is None and current.split(".")[0].strip("\"'") == key:
                return number
            continue
        if current == table and key_line.match(stripped):
            return number
    return None
