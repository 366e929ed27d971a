"""Small builders for test projects that copy the real layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
MAINTAINER = str(Path(sys.executable).with_name("maintainer"))


def make_project(
    root: Path,
    runbooks: dict[str, str],
    sites: dict[str, dict[str, Any]],
    *,
    groups: dict[str, list[str]] | None = None,
    settings: str = "",
) -> Path:
    """A project dir: runbooks/<name>/<ver>.yml from ``runbooks`` ('name@ver': yaml text), one YAML inventory."""
    for ref, text in runbooks.items():
        name, _, version = ref.partition("@")
        path = root / "runbooks" / name / f"{version}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    inventory: dict[str, Any] = {"all": {"hosts": {}, "children": {}}}
    for name, host_vars in sites.items():
        inventory["all"]["hosts"][name] = host_vars
    for group, members in (groups or {}).items():
        inventory["all"]["children"][group] = {"hosts": {m: None for m in members}}
    (root / "inventories").mkdir(exist_ok=True)
    (root / "inventories" / "test.yml").write_text(yaml.safe_dump(inventory))
    for sub in ("templates", "playbooks"):
        (root / sub).mkdir(exist_ok=True)
    (root / "maintainer.toml").write_text(
        '[maintainer]\ninventory = "inventories/test.yml"\nlock_ttl = "10m"\n' + settings
    )
    return root


def local_site(root: Path, **extra: Any) -> dict[str, Any]:
    """Vars of a site on this machine with its lock dir inside the test project."""
    return {
        "ansible_connection": "local",
        "maintainer_lock_dir": str(root / "locks"),
        "ansible_python_interpreter": "/usr/bin/python3",
        **extra,
    }


def cli(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real installed CLI in a subprocess, as cron would (no terminal)."""
    full_env = {**os.environ, "MAINTAINER_OPERATOR": "tester", **(env or {})}
    return subprocess.run(
        [MAINTAINER, "--project", str(project), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def read_log(project: Path) -> list[dict[str, Any]]:
    path = project / "changelog.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def process_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (test servers are local)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: list[int], seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if process_alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if process_alive(p)]
