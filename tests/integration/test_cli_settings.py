"""maintainer.toml through the real CLI: every mistake is bad input (exit 2) naming file, line and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli, local_site, make_project, read_log

RUNBOOK = """
name: hello
version: 1.0.0
steps:
  - id: say
    uses: shell
    with: {command: "touch {{ site.marker }}"}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(
        tmp_path, {"hello@1.0.0": RUNBOOK}, {"web1": local_site(tmp_path, marker=str(tmp_path / "ran"))}
    )


def write_settings(project: Path, text: str) -> Path:
    path = project / "maintainer.toml"
    path.write_text(text)
    return path


BASE = '[maintainer]\ninventory = "inventories/test.yml"\n'


@pytest.mark.parametrize(
    ("text", "line", "key", "needles"),
    [
        (
            BASE + "changelog = 5\n",
            3,
            "maintainer.changelog",
            ["must be a non-empty string", "an integer (5)"],
        ),
        (
            "[maintainer]\ninventory = 5\n",
            2,
            "maintainer.inventory",
            ["path string or an array", "an integer"],
        ),
        (
            BASE + 'inventory2 = ["a", 3]\n',
            3,
            "maintainer.inventory2",
            ["unknown setting", "did you mean 'inventory'"],
        ),
        (
            '[maintainer]\ninventory = ["inventories/test.yml", 3]\n',
            2,
            "maintainer.inventory",
            ["array of path"],
        ),
        (BASE + "lock_ttl = true\n", 3, "maintainer.lock_ttl", ["must be a duration", "a boolean"]),
        (BASE + 'step_timeout = "soon"\n', 3, "maintainer.step_timeout", ["is not a duration"]),
        (BASE + "lock_dir = []\n", 3, "maintainer.lock_dir", ["non-empty string", "an array"]),
        ("maintainer = 3\n", 1, "maintainer", ["must be a table, not an integer (3)"]),
        (BASE + 'chnagelog = "c.jsonl"\n', 3, "maintainer.chnagelog", ["did you mean 'changelog'"]),
        (
            '[maintaner]\ninventory = "inventories/test.yml"\n',
            1,
            "maintaner",
            ["unknown table 'maintaner'", "did you mean 'maintainer'"],
        ),
        ('title = "x"\n' + BASE, 1, "title", ["unknown key 'title'", "the only table is [maintainer]"]),
    ],
)
def test_wrong_settings_are_bad_input_naming_file_line_and_key(
    project: Path, text: str, line: int, key: str, needles: list[str]
) -> None:
    path = write_settings(project, text)
    result = cli(project, "run", "hello")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}:{line}" in result.stderr and f"key '{key}'" in result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert not (project / "ran").exists() and read_log(project) == []
    # the same for the commands that only read the settings, in one JSON document
    shown = cli(project, "log", "show", "-o", "json")
    assert shown.returncode == 2 and f"{path}:{line}" in json.loads(shown.stdout)["error"]


def test_several_problems_are_reported_together(project: Path) -> None:
    path = write_settings(project, BASE + "changelog = 5\nlock_tll = 3\n")
    result = cli(project, "inventory", "list")
    assert result.returncode == 2
    assert f"{path}:3, key 'maintainer.changelog'" in result.stderr
    assert (
        f"{path}:4, key 'maintainer.lock_tll'" in result.stderr and "did you mean 'lock_ttl'" in result.stderr
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (BASE + "lock_ttl = \n", 3),
        (BASE + '[maintainer\nlock_dir = "x"\n', 3),
        ('[maintainer]\ninventory = "inventories/test.yml\n', 2),
    ],
)
def test_toml_syntax_errors_name_the_file_and_line(project: Path, text: str, line: int) -> None:
    path = write_settings(project, text)
    result = cli(project, "run", "hello", "-o", "json")
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error.startswith(f"{path}:{line}: invalid TOML") and "Fix:" in error


def test_valid_settings_still_work(project: Path) -> None:
    write_settings(
        project,
        BASE + 'changelog = "logs/c.jsonl"\nlock_ttl = 600\nstep_timeout = "2h"\nlock_dir = "~/.locks"\n',
    )
    (project / "logs").mkdir()  # the log's directory must exist: a typo must not start a new log
    result = cli(project, "run", "hello")
    assert result.returncode == 0, result.stderr
    assert (project / "logs" / "c.jsonl").is_file()


@pytest.mark.parametrize("ttl", ['"0s"', "0", '"10s"'])
def test_a_lock_ttl_too_short_to_keep_locks_alive_is_bad_input(project: Path, ttl: str) -> None:
    write_settings(project, BASE + f"lock_ttl = {ttl}\n")
    result = cli(project, "inventory", "list")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "lock_ttl" in result.stderr and "at least 30s" in result.stderr
