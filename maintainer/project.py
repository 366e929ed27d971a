"""The project directory and its ``maintainer.toml`` settings."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput
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
        sources = list(given) or list(self.settings.inventory)
        if not sources:
            raise BadInput(
                "no inventory given.",
                fix=f'pass -i INVENTORY, or set inventory = "..." in {self.root / SETTINGS_FILE}.',
            )
        return [
            str(self.root / s) if not Path(s).is_absolute() and not Path(s).exists() else s for s in sources
        ]


_KNOWN = {"changelog", "inventory", "lock_ttl", "lock_dir", "step_timeout"}


def load_project(root: str | Path = ".") -> Project:
    root = Path(root)
    if not root.is_dir():
        raise BadInput("project directory not found.", file=root, fix="pass --project DIR.")
    path = root / SETTINGS_FILE
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8")).get("maintainer", {})
        except tomllib.TOMLDecodeError as exc:
            line = getattr(exc, "lineno", None)
            raise BadInput(f"invalid TOML: {exc}", file=path, line=line) from exc
    unknown = set(data) - _KNOWN
    if unknown:
        raise BadInput(
            f"unknown setting(s) {', '.join(sorted(unknown))} under [maintainer].",
            file=path,
            fix=f"known settings: {', '.join(sorted(_KNOWN))}.",
        )
    try:
        inventory = data.get("inventory", [])
        settings = Settings(
            changelog=(root / data.get("changelog", "changelog.jsonl")),
            inventory=[inventory] if isinstance(inventory, str) else list(inventory),
            lock_ttl=parse_duration(data.get("lock_ttl", 900)),
            lock_dir=str(data.get("lock_dir", "~/.maintainer/locks")),
            step_timeout=parse_duration(data.get("step_timeout", 3600)),
        )
    except ValueError as exc:
        raise BadInput(str(exc), file=path) from exc
    return Project(root=root, settings=settings)
