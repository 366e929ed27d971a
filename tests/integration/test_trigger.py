"""How a run was started, as recorded: explicit, CI, a real cron ancestor, systemd, a terminal, else script."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import MAINTAINER, cli, local_site, make_project, read_log

RUNBOOK = """
name: hello
version: 1.0.0
steps:
  - id: touch
    uses: shell
    with: {command: "touch {{ site.marker }}"}
"""

#: nothing in the environment that says how we were started
CLEAN = {
    "CI": "",
    "GITHUB_ACTIONS": "",
    "CI_JOB_URL": "",
    "BUILD_URL": "",
    "CIRCLE_BUILD_URL": "",
    "MAINTAINER_TRIGGER": "",
    "INVOCATION_ID": "",
}

# a parent process whose kernel name (comm, what /proc/<pid>/stat shows) is argv[1], as cron's
# children are; `exec -a` only changes argv[0], so this sets it with prctl(PR_SET_NAME)
NAMED_PARENT = """
import ctypes, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(15, sys.argv[1].encode(), 0, 0, 0) != 0:  # PR_SET_NAME
    sys.exit("prctl failed")
with open("/proc/self/comm") as fh:
    assert fh.read().strip() == sys.argv[1]
sys.exit(subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL).returncode)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(
        tmp_path, {"hello@1.0.0": RUNBOOK}, {"web1": local_site(tmp_path, marker=str(tmp_path / "ran"))}
    )


def trigger_of(project: Path) -> str:
    return str(read_log(project)[-1]["trigger"]["kind"])


def run_under(project: Path, parent_name: str, *shell: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a child of a process named ``parent_name`` (optionally through a shell, as cron does)."""
    command = [MAINTAINER, "--project", str(project), "run", "hello", "-o", "json"]
    if shell:
        command = [*shell, " ".join(command)]
    return subprocess.run(
        [sys.executable, "-c", NAMED_PARENT, parent_name, *command],
        capture_output=True,
        text=True,
        env={**os.environ, **CLEAN, "MAINTAINER_OPERATOR": "tester"},
        timeout=120,
    )


@pytest.mark.parametrize("name", ["cron", "crond", "anacron"])
def test_a_cron_ancestor_is_detected_through_proc(project: Path, name: str) -> None:
    result = run_under(project, name, "/bin/sh", "-c")  # cron -> sh -c -> maintainer
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "ok"
    assert trigger_of(project) == "cron"


def test_a_non_cron_parent_without_a_terminal_is_a_script(project: Path) -> None:
    result = run_under(project, "sshd", "/bin/sh", "-c")  # like `ssh host maintainer run ...`
    assert result.returncode == 0, result.stderr
    assert trigger_of(project) == "script"


def test_a_terminal_on_stdin_is_manual(project: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [MAINTAINER, "--project", str(project), "run", "hello", "-o", "json"],
            stdin=terminal,
            capture_output=True,
            text=True,
            env={**os.environ, **CLEAN, "MAINTAINER_OPERATOR": "tester"},
            timeout=120,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0, result.stderr
    assert trigger_of(project) == "manual"


@pytest.mark.parametrize(
    ("env", "args", "kind"),
    [
        ({"INVOCATION_ID": "0123456789abcdef0123456789abcdef"}, [], "systemd"),
        ({"CI": "true", "INVOCATION_ID": "0123"}, [], "ci"),
        ({"GITLAB_CI": "true", "CI_JOB_URL": "https://gitlab.example/j/7"}, [], "ci"),
        ({"MAINTAINER_TRIGGER": "api"}, [], "api"),
        ({"MAINTAINER_TRIGGER": " Cron "}, [], "cron"),
        ({"MAINTAINER_TRIGGER": "api", "CI": "true"}, ["--trigger", "systemd"], "systemd"),
        ({}, [], "script"),
    ],
)
def test_trigger_from_the_environment_and_the_option(
    project: Path, env: dict[str, str], args: list[str], kind: str
) -> None:
    result = cli(project, "run", "hello", *args, env={**CLEAN, **env})
    assert result.returncode == 0, result.stderr
    assert trigger_of(project) == kind


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_a_bad_maintainer_trigger_is_bad_input_naming_the_variable(project: Path, dry_run: list[str]) -> None:
    result = cli(
        project, "run", "hello", *dry_run, "-o", "json", env={**CLEAN, "MAINTAINER_TRIGGER": "nightly"}
    )
    assert result.returncode == 2, result.stderr
    error = json.loads(result.stdout)["error"]
    assert "MAINTAINER_TRIGGER" in error and "'nightly'" in error and "script" in error
    assert not (project / "ran").exists() and read_log(project) == []


def test_a_bad_trigger_option_is_a_usage_error(project: Path) -> None:
    result = cli(project, "run", "hello", "--trigger", "nightly", env=CLEAN)
    assert result.returncode == 2 and "nightly" in result.stderr and "systemd" in result.stderr
    assert read_log(project) == []
