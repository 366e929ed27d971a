"""What people read, through the real CLI: plans, summaries, details and the log table.

Text from users, inventories, runbooks, commands, files and the change log is
printed literally: rich markup in it (``[/]``, ``[app]``, ``[bold]``) neither
crashes a printer nor disappears.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from maintainer.changelog import ChangeLog
from tests.helpers import cli, local_site, make_project, read_log

FAILING_STDERR = """
name: noisy
version: 1.0.0
steps:
  - id: check
    uses: shell
    with:
      command: "echo '[ERROR] disk [/]' >&2; echo 'fatal: [web-01]: FAILED! see [docs] :warning:' >&2; exit 3"
"""

HELLO = """
name: hello
version: 1.0.0
serial: {serial}
steps:
  - id: say
    uses: shell
    with: {{command: "echo hello"}}
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _no_crash(result: Any) -> None:
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    assert "MarkupError" not in result.stderr, result.stderr


# ------------------------------------------------------------------ log show


def test_log_show_prints_a_refused_run(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"hello@1.0.0": HELLO.format(serial=1)}, {"web1": local_site(tmp_path)})
    assert cli(project, "run", "hello").returncode == 0
    # a run refused because every site was locked, as earlier versions recorded it (logs keep it)
    refused = {**read_log(project)[-1], "status": "refused", "exit_code": 3}
    refused["sites"] = {"web1": {**refused["sites"]["web1"], "status": "locked", "steps": [], "changes": []}}
    ChangeLog(project / "changelog.jsonl").append(refused)
    assert cli(project, "log", "verify").returncode == 0

    shown = cli(project, "log", "show")
    _no_crash(shown)
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if "hello@1.0.0" in line]
    assert len(rows) == 2 and "refused" in rows[1] and "web1:locked" in rows[1], shown.stdout
    only = cli(project, "log", "show", "--status", "refused")
    assert only.returncode == 0 and "refused" in only.stdout, only.stderr


def test_log_show_prints_a_ticket_with_markup_literally(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"hello@1.0.0": HELLO.format(serial=1)}, {"web1": local_site(tmp_path)})
    for ticket in ("see [/] thread", "[bold]OPS-7[/bold] [red]", ":warning: [app]"):
        assert cli(project, "run", "hello", "--ticket", ticket).returncode == 0

    shown = cli(project, "log", "show")
    _no_crash(shown)
    assert shown.returncode == 0, shown.stderr
    for ticket in ("see [/] thread", "[bold]OPS-7[/bold] [red]", ":warning: [app]"):
        assert ticket in shown.stdout, shown.stdout


# ------------------------------------------------------------------ run summary and details


def test_summary_and_details_print_stderr_literally(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"noisy@1.0.0": FAILING_STDERR}, {"web-01": local_site(tmp_path)})
    for verbose in ([], ["-v"]):
        result = cli(project, "run", "noisy", *verbose)
        _no_crash(result)
        assert result.returncode == 1, result.stderr
        summary = result.stderr.split("noisy@1.0.0  run ", 1)[-1]
        assert "[ERROR] disk [/]" in summary, result.stderr
        assert "fatal: [web-01]: FAILED! see [docs] :warning:" in summary, result.stderr
        assert re.search(r"^FAILED: 1 failed", result.stderr, re.M), result.stderr
    details = result.stderr.split("noisy@1.0.0  run ", 1)[0]
    assert "stderr [ERROR] disk [/]" in details and "stderr fatal: [web-01]: FAILED! see [docs]" in details


def test_summary_keeps_lowercase_brackets(tmp_path: Path) -> None:
    # no [/] to crash on: the old failure was silent, rich took [web-01] and [docs] for style tags
    runbook = FAILING_STDERR.replace("echo '[ERROR] disk [/]' >&2; ", "")
    project = make_project(tmp_path, {"noisy@1.0.0": runbook}, {"web-01": local_site(tmp_path)})
    result = cli(project, "run", "noisy")
    assert result.returncode == 1, result.stderr
    summary = result.stderr.split("noisy@1.0.0  run ", 1)[1]
    assert "fatal: [web-01]: FAILED! see [docs] :warning:" in summary, result.stderr


def test_details_print_a_debug_message_literally(tmp_path: Path) -> None:
    runbook = """
    name: note
    version: 1.0.0
    steps:
      - id: say
        uses: debug
        with: {msg: "[bold]deploy[/bold] done [/] :warning: [app]"}
    """
    project = make_project(tmp_path, {"note@1.0.0": runbook}, {"web1": local_site(tmp_path)})
    result = cli(project, "run", "note", "-v")
    _no_crash(result)
    assert result.returncode == 0, result.stderr
    assert "msg [bold]deploy[/bold] done [/] :warning: [app]" in result.stderr, result.stderr


# ------------------------------------------------------------------ dry-run plan


def test_dry_run_diff_and_arguments_print_literally(tmp_path: Path) -> None:
    runbook = """
    name: conf
    version: 1.0.0
    params:
      reason: {type: string, default: "x"}
    steps:
      - id: ini
        uses: template
        with: {src: app.ini.j2, dest: "{{ site.dest }}"}
      - id: say
        uses: shell
        when: "'[/]' in params.reason"
        with: {command: "echo '[bold]{{ params.reason }}[/]'"}
    """
    dest = tmp_path / "app.ini"
    dest.write_text("[app]\nname = old\n[db]\n")
    project = make_project(tmp_path, {"conf@1.0.0": runbook}, {"web1": local_site(tmp_path, dest=str(dest))})
    (project / "templates" / "app.ini.j2").write_text(
        "[app]\nname = {{ site.name }}\nnote = see [/] here\n[db]\n"
    )

    result = cli(project, "run", "conf", "--dry-run", "-p", "reason=[red]OPS-7 [/]")
    _no_crash(result)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "       [app]" in lines, result.stdout  # a context line of the diff keeps its section
    assert "      +note = see [/] here" in lines and "      -name = old" in lines and "       [db]" in lines
    assert "params: reason=[red]OPS-7 [/]" in lines
    assert "  - say (shell) when '[/]' in params.reason" in lines
    assert "      command: echo '[bold][red]OPS-7 [/][/]'" in lines
    assert dest.read_text() == "[app]\nname = old\n[db]\n", "a dry run changes nothing"


def test_plan_shows_each_batch_its_sites_and_their_connections(tmp_path: Path) -> None:
    port = _closed_port()
    sites = {f"web{i}": local_site(tmp_path) for i in range(1, 4)}
    sites["shop"] = {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "deploy"}
    project = make_project(tmp_path, {"hello@1.0.0": HELLO.format(serial=2)}, sites)

    result = cli(project, "run", "hello", "--dry-run")
    _no_crash(result)
    assert result.returncode in (0, 1), result.stderr  # 1: the SSH site cannot be previewed (no server)
    lines = result.stdout.splitlines()
    assert "4 site(s), 2 batch(es)" in lines[0]
    batch_lines = [line for line in lines if line.startswith("  batch ")]
    assert len(batch_lines) == 2, result.stdout
    first, second = batch_lines
    assert first.startswith("  batch 1 (canary, 2 sites): ") and "batch 2 (2 sites): " in second
    # every site once, in some batch, with where it connects
    listed = " ".join(batch_lines)
    assert f"shop (deploy@127.0.0.1:{port})" in listed, result.stdout
    for name in ("web1", "web2", "web3"):
        assert re.search(rf"\b{name}\b", listed), result.stdout
    assert listed.count("local") == 3 or "(all local)" in listed
    # and each site's own heading says it too
    assert any(line.startswith(f"shop  deploy@127.0.0.1:{port}  batch ") for line in lines), result.stdout
    canary = re.findall(r"^(\S+)  \S+  batch 1 of 2 \(canary\)$", result.stdout, re.M)
    assert len(canary) == 2 and all(name in first for name in canary), result.stdout


def test_plan_of_one_site_is_short(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"hello@1.0.0": HELLO.format(serial=1)}, {"web1": local_site(tmp_path)})
    result = cli(project, "run", "hello", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "  one batch (1 site, no canary): web1 (local)", result.stdout
    assert "web1  local  batch 1 of 1" in lines
    assert "canary:" not in result.stdout
    assert len(lines) <= 8, result.stdout


def test_plan_of_200_sites_summarises_its_batches(tmp_path: Path) -> None:
    sites = {f"web{i:03}": local_site(tmp_path) for i in range(200)}
    overviews = {}
    for serial, batch_count in (("1", 200), ('"25%"', 4)):
        project = make_project(tmp_path, {"hello@1.0.0": HELLO.format(serial=serial)}, sites)
        result = cli(project, "run", "hello", "--dry-run")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert f"{batch_count} batch(es)" in lines[0]
        overview = lines[1 : lines.index("")]  # up to the first site's section
        assert 2 <= len(overview) <= 10, result.stdout
        assert all(len(line) < 160 for line in overview), overview
        assert overview[1].startswith("  batch 1 (canary, ")
        # every site still has its own heading with its connection and batch
        assert len(re.findall(r"^web\d{3}  local  batch \d+ of \d+", result.stdout, re.M)) == 200
        overviews[batch_count] = overview
    assert "  batches 7-199 (193 batches, 193 sites): web006 ... web198" in overviews[200]
    assert overviews[200][-1] == "  batch 200 (1 site): web199 (local)"
    assert overviews[4][-1].startswith("  batch 4 (50 sites): web150, ")
    assert overviews[4][-1].endswith(" and 44 more (all local)")
