"""The real CLI in a subprocess, as cron and CI call it: every exit code, JSON purity."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from maintainer.actions import registry
from maintainer.cli import cli as cli_group
from tests.helpers import MAINTAINER, REPO, cli, local_site, make_project, read_log

OK_RUNBOOK = """
name: hello
version: 1.0.0
params:
  code: {type: int, default: 0}
  password: {type: secret, default: "pa55-w0rd-xyz"}
steps:
  - id: say
    uses: shell
    with:
      command: "echo hello {{ site.name }} {{ params.password }}; exit {{ params.code }}"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(
        tmp_path,
        {"hello@1.0.0": OK_RUNBOOK},
        {"web1": local_site(tmp_path), "web2": local_site(tmp_path)},
        groups={"web": ["web1", "web2"]},
    )


NOT_CI = {
    "CI": "",
    "GITHUB_ACTIONS": "",
    "CI_JOB_URL": "",
    "BUILD_URL": "",
    "MAINTAINER_TRIGGER": "",
    "INVOCATION_ID": "",
}


def test_exit_0_and_plain_progress_without_a_terminal(project: Path) -> None:
    result = cli(project, "run", "hello", "--ticket", "OPS-9", env=NOT_CI)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ web1: say ok", result.stderr, re.M)
    assert "pa55-w0rd-xyz" not in result.stdout + result.stderr
    entry = read_log(project)[-1]
    # no terminal is not cron: a subprocess of pytest is a script (see test_trigger.py)
    assert entry["trigger"] == {"kind": "script", "ci_job_url": None}
    assert entry["operator"] == "tester" and entry["ticket"] == "OPS-9"


def test_ci_trigger_records_the_job_url(project: Path) -> None:
    env = {
        **NOT_CI,
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_REPOSITORY": "acme/sites",
        "GITHUB_RUN_ID": "42",
    }
    assert cli(project, "run", "hello", env=env).returncode == 0
    trigger = read_log(project)[-1]["trigger"]
    assert trigger == {"kind": "ci", "ci_job_url": "https://github.example/acme/sites/actions/runs/42"}


def test_json_output_is_one_document_on_stdout(project: Path) -> None:
    result = cli(project, "run", "hello", "--output", "json", "--limit", "web1")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert list(data["sites"]) == ["web1"] and data["status"] == "ok"
    assert data["hash"] == read_log(project)[-1]["hash"]
    assert "pa55-w0rd-xyz" not in result.stdout


def test_exit_1_when_a_site_fails(project: Path) -> None:
    result = cli(project, "run", "hello", "-p", "code=5", "-o", "json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert {s["status"] for s in data["sites"].values()} == {"failed"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "hello", "-p", "code=abc"], "must be a whole number"),
        (["run", "hello", "-p", "nope=1"], "unknown param 'nope'"),
        (["run", "hello", "-p", "novalue"], "is not key=value"),
        (["run", "nosuch"], "no runbook named 'nosuch'"),
        (["run", "hello", "--limit", "db*"], "db*"),
        (["run", "hello", "-i", "missing.yml"], "missing.yml"),
        (["run", "hello", "--bogus-flag"], "No such option"),
    ],
)
def test_exit_2_on_bad_input_and_nothing_runs(project: Path, args: list[str], needle: str) -> None:
    result = cli(project, *args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert read_log(project) == []


def test_exit_2_json_error_document(project: Path) -> None:
    result = cli(project, "run", "hello", "-p", "code=abc", "--output", "json")
    assert result.returncode == 2
    assert json.loads(result.stdout)["exit_code"] == 2


def test_exit_2_on_invalid_runbook_names_file_and_line(project: Path) -> None:
    bad = project / "runbooks" / "hello" / "1.1.0.yml"
    bad.write_text("name: hello\nversion: 1.1.0\nsteps:\n  - id: a\n    uses: shel\n")
    result = cli(project, "run", "hello")
    assert result.returncode == 2
    assert f"{bad}:5" in result.stderr and "unknown action 'shel'" in result.stderr
    result = cli(project, "runbooks", "validate")
    assert result.returncode == 2 and "1 problem(s)" in result.stderr


def test_exit_3_when_locked(project: Path, tmp_path: Path) -> None:
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "web2.lock").write_text(json.dumps({"holder": "carol@ci", "run_id": "x"}))
    result = cli(project, "run", "hello", "--limit", "web2")
    assert result.returncode == 3
    assert "carol@ci" in result.stderr
    assert read_log(project) == [], "a run refused before starting is not recorded"


def test_exit_4_on_a_bug_in_an_action(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # registered the way a third-party plugin is: by name -> "module:Class"
    monkeypatch.setitem(registry._entry_points(), "explode", "tests.plugin_actions:ExplodingAction")
    registry.get.cache_clear()
    (project / "runbooks" / "boom").mkdir()
    (project / "runbooks" / "boom" / "1.0.0.yml").write_text(
        "name: boom\nversion: 1.0.0\nsteps:\n  - {id: a, uses: explode}\n"
    )
    result = CliRunner().invoke(cli_group, ["--project", str(project), "run", "boom", "-o", "json"])
    registry.get.cache_clear()
    assert result.exit_code == 4, result.output
    entry = read_log(project)[-1]
    assert (
        "internal error" in entry["sites"]["web1"]["error"]
        and "ZeroDivisionError" in entry["sites"]["web1"]["error"]
    )


def test_exit_130_on_sigint_with_rollback_recorded(project: Path, tmp_path: Path) -> None:
    flag = tmp_path / "started"
    (project / "runbooks" / "slow").mkdir()
    (project / "runbooks" / "slow" / "1.0.0.yml").write_text(
        f"""name: slow
version: 1.0.0
concurrency: 1
steps:
  - {{id: wait, uses: shell, with: {{command: "touch {flag}; sleep 2"}}}}
  - {{id: never, uses: shell, with: {{command: "touch {tmp_path}/never"}}}}
rollback:
  - {{id: undo, uses: shell, with: {{command: "touch {tmp_path}/rolled-back-{{{{ site.name }}}}"}}}}
"""
    )
    proc = subprocess.Popen(
        [MAINTAINER, "--project", str(project), "run", "slow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "SIGINT" in err
    assert (tmp_path / "rolled-back-web1").exists()
    assert not (tmp_path / "never").exists()
    entry = read_log(project)[-1]
    assert entry["status"] == "interrupted"
    assert entry["sites"]["web1"]["status"] == "interrupted"
    assert entry["sites"]["web2"]["status"] == "skipped"


def test_sigterm_is_handled_like_sigint(project: Path, tmp_path: Path) -> None:
    flag = tmp_path / "started"
    (project / "runbooks" / "slow").mkdir()
    (project / "runbooks" / "slow" / "1.0.0.yml").write_text(
        f"name: slow\nversion: 1.0.0\nsteps:\n  - {{id: w, uses: shell, with: {{command: 'touch {flag}; sleep 2'}}}}\n"
    )
    proc = subprocess.Popen(
        [MAINTAINER, "--project", str(project), "run", "slow", "--limit", "web1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    while not flag.exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert read_log(project)[-1]["status"] == "interrupted"


def test_log_verify_detects_tampering_through_the_cli(project: Path) -> None:
    for _ in range(3):
        assert cli(project, "run", "hello").returncode == 0
    assert cli(project, "log", "verify").returncode == 0
    path = project / "changelog.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"status":"ok"', '"status":"failed"', 1)
    path.write_text("\n".join(lines) + "\n")
    result = cli(project, "log", "verify", "-o", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["first_bad_seq"] == 2


def test_log_show_filters_and_formats(project: Path) -> None:
    cli(project, "run", "hello", "--limit", "web1", "--ticket", "T-1")
    cli(project, "run", "hello", "--limit", "web2", "-p", "code=1")
    shown = json.loads(cli(project, "log", "show", "--site", "web2", "-o", "json").stdout)
    assert [e["seq"] for e in shown] == [2]
    failed = json.loads(cli(project, "log", "show", "--status", "failed", "-o", "json").stdout)
    assert [e["seq"] for e in failed] == [2]
    csv_text = cli(project, "log", "show", "-o", "csv").stdout
    assert csv_text.splitlines()[0].startswith("seq,") and "T-1" in csv_text
    assert cli(project, "log", "show", "--since", "yesterday").returncode == 2


def test_inventory_list_masks_secrets(project: Path) -> None:
    inv = project / "inventories" / "test.yml"
    inv.write_text(
        inv.read_text().replace(
            "ansible_connection: local", "ansible_connection: local\n      db_password: hunter2hunter2", 1
        )
    )
    result = cli(project, "inventory", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "hunter2hunter2" not in result.stdout
    assert data["sites"]["web1"]["vars"]["db_password"] == "********"
    assert cli(project, "inventory", "list", "--limit", "web").returncode == 0


def test_runbooks_list_and_show(project: Path) -> None:
    listed = json.loads(cli(project, "runbooks", "list", "-o", "json").stdout)
    assert listed == {"hello": ["1.0.0"]}
    shown = cli(project, "runbooks", "show", "hello@1")
    assert shown.returncode == 0 and "name: hello" in shown.stdout and "sha256:" in shown.stderr


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    result = subprocess.run([MAINTAINER, "--help"], capture_output=True, text=True)
    commands = re.findall(r"^  (\w[\w-]*)\s", result.stdout.split("Commands:")[1], re.M)
    assert commands, result.stdout
    for command in commands:
        sub = subprocess.run([MAINTAINER, command, "--help"], capture_output=True, text=True).stdout
        subcommands = (
            re.findall(r"^  (\w[\w-]*)\s", sub.split("Commands:")[1], re.M) if "Commands:" in sub else []
        )
        for name in subcommands or [""]:
            assert f"maintainer {command} {name}".strip() in readme, (
                f"README lacks 'maintainer {command} {name}'"
            )


def test_the_readme_runbook_example_is_valid(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    example = re.search(r"```yaml\n(# runbooks/nginx-tune/1\.2\.0\.yml.*?)```", readme, re.S)
    assert example, "README lost its runbook example"
    path = tmp_path / "runbooks" / "nginx-tune" / "1.2.0.yml"
    path.parent.mkdir(parents=True)
    path.write_text(example.group(1))
    shutil.copytree(REPO / "templates", tmp_path / "templates")  # the example renders a shipped template
    result = cli(tmp_path, "runbooks", "validate")
    assert result.returncode == 0, result.stderr


# -- JSON errors follow the real --output value ------------------------------------------------


@pytest.mark.parametrize(
    "spelling", [["--output", "json"], ["--output=json"], ["-o", "json"], ["-ojson"]], ids=" ".join
)
def test_json_error_document_for_every_spelling_of_output_json(project: Path, spelling: list[str]) -> None:
    result = cli(project, "run", "nosuch", *spelling)
    assert result.returncode == 2
    error = json.loads(result.stdout)
    assert error["exit_code"] == 2 and "no runbook named 'nosuch'" in error["error"]
    # a usage error (Click's own) gets its document too
    result = cli(project, "run", "hello", "--bogus-flag", *spelling)
    assert result.returncode == 2 and json.loads(result.stdout)["exit_code"] == 2


@pytest.mark.parametrize(
    "args",
    [
        ["log", "show", "-o", "csv", "--runbook", "json", "--since", "bad"],
        ["run", "nosuch", "--ticket", "json", "-o", "text"],
        ["run", "nosuch", "--ticket", "-o", "--limit", "json"],  # -o is the ticket's value here
    ],
)
def test_json_as_the_value_of_another_option_gives_no_json_error(project: Path, args: list[str]) -> None:
    result = cli(project, *args)
    assert result.returncode == 2
    assert result.stdout == "" and "error" in result.stderr


# -- the project directory --------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["runbooks", "list"],
        ["runbooks", "show", "hello"],
        ["runbooks", "validate"],
        ["inventory", "list"],
        ["log", "show"],
        ["log", "verify"],
        ["run", "hello"],
    ],
    ids=" ".join,
)
def test_a_missing_project_directory_is_bad_input_for_every_command(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "nonexistent"
    result = cli(missing, *command, "-o", "json")
    assert result.returncode == 2, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert error["exit_code"] == 2 and str(missing) in error["error"] and "--project" in error["error"]
    assert not missing.exists()
    text = cli(missing, *command)
    assert text.returncode == 2 and "project directory does not exist" in text.stderr


def test_help_still_works_with_a_missing_project_directory(tmp_path: Path) -> None:
    result = cli(tmp_path / "nonexistent", "run", "--help")
    assert result.returncode == 0 and "RUNBOOK" in result.stdout


def test_without_a_terminal_nothing_is_wrapped(tmp_path: Path) -> None:
    command = "echo " + " ".join(f"word{i}" for i in range(40)) + " && exit 0"  # ~280 characters
    runbook = (
        f"name: long\nversion: 1.0.0\nsteps:\n  - {{id: say, uses: shell, with: {{command: '{command}'}}}}\n"
    )
    project = make_project(tmp_path, {"long@1.0.0": runbook}, {"web1": local_site(tmp_path)})
    plan = cli(project, "run", "long", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert any(command in line for line in plan.stdout.splitlines()), plan.stdout
    assert cli(project, "run", "long").returncode == 0
    shown = cli(project, "log", "show")
    assert any("long@1.0.0" in line for line in shown.stdout.splitlines()), shown.stdout


def test_a_reader_that_stops_early_is_not_a_failed_site(tmp_path: Path) -> None:
    sites = {f"web{i:03d}": local_site(tmp_path) for i in range(300)}  # a plan far beyond a pipe's buffer
    project = make_project(tmp_path, {"hello@1.0.0": OK_RUNBOOK}, sites)
    piped = subprocess.run(
        [
            "bash",
            "-c",
            f'"{MAINTAINER}" --project "{project}" run hello --dry-run | head -1; exit ${{PIPESTATUS[0]}}',
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.stdout.startswith("Plan hello@1.0.0")
    assert piped.returncode == 141, piped.stderr  # as a tool killed by SIGPIPE; 1 would mean "a site failed"
    assert "Traceback" not in piped.stderr
