"""The change log through the real CLI: pre-flight before any site changes, and `log show` for auditors."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import cli, local_site, make_project, read_log

RUNBOOK = """
name: hello
version: {version}
params:
  code: {{type: int, default: 0}}
steps:
  - id: touch
    uses: shell
    with: {{command: "echo run >> {{{{ site.marker }}}}; exit {{{{ params.code }}}}"}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(
        tmp_path,
        {f"hello@{v}": RUNBOOK.format(version=v) for v in ("1.0.0", "1.1.0")},
        {name: local_site(tmp_path, marker=str(tmp_path / f"ran-{name}")) for name in ("shop1", "shop2")},
    )


def ran(project: Path) -> list[str]:
    return sorted(p.name for p in project.glob("ran-*"))


def log_lines(project: Path) -> list[str]:
    return (project / "changelog.jsonl").read_text().splitlines()


# -- pre-flight: a broken log stops the run before any site is touched ---------------------------


@pytest.mark.parametrize("damage", ["torn", "edited"])
def test_a_damaged_log_is_bad_input_before_any_site_changes(project: Path, damage: str) -> None:
    assert cli(project, "run", "hello").returncode == 0
    path = project / "changelog.jsonl"
    if damage == "torn":
        path.write_text(path.read_text() + '{"hash":"ab","seq":2,"pre')
    else:
        path.write_text(path.read_text().replace('"ticket":null', '"ticket":"OPS-1"', 1))
    for marker in project.glob("ran-*"):
        marker.unlink()
    before = path.read_text()
    result = cli(project, "run", "hello", "-o", "json")
    assert result.returncode == 2, result.stderr
    error = json.loads(result.stdout)
    assert error["exit_code"] == 2 and str(path) in error["error"]
    assert "maintainer log verify" in error["error"] and "Nothing was run" in error["error"]
    assert ran(project) == []  # no site was touched
    assert path.read_text() == before and not list(project.glob("*.unrecorded-*"))


@pytest.mark.parametrize("where", ["/proc/nope/x.jsonl", "maintainer.toml/x.jsonl"])
def test_an_unwritable_changelog_setting_is_bad_input_before_anything_runs(project: Path, where: str) -> None:
    settings = project / "maintainer.toml"
    settings.write_text(settings.read_text() + f'changelog = "{where}"\n')
    result = cli(project, "run", "hello")
    assert result.returncode == 2, result.stderr
    assert where.split("/")[-1] in result.stderr and "key 'changelog'" in result.stderr
    assert "maintainer.toml" in result.stderr.split("Fix:")[1]
    assert ran(project) == [] and not list(project.glob("*.unrecorded-*"))


def test_a_dry_run_writes_nothing_so_it_does_not_need_the_log(project: Path) -> None:
    (project / "changelog.jsonl").write_text("garbage\n")
    result = cli(project, "run", "hello", "--dry-run", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["dry_run"] is True and ran(project) == []


def test_a_log_broken_during_the_run_still_keeps_the_entry_beside_it(project: Path, tmp_path: Path) -> None:
    log = project / "changelog.jsonl"
    breaker = project / "runbooks" / "breaker" / "1.0.0.yml"
    breaker.parent.mkdir()
    # the step itself tears the log's last line: the failure can only show when the entry is appended
    step = {"id": "tear", "uses": "shell", "with": {"command": f"printf '%s' '{{\"torn' >> {log}"}}
    breaker.write_text(yaml.safe_dump({"name": "breaker", "version": "1.0.0", "steps": [step]}))
    result = cli(project, "run", "breaker", "--limit", "shop1")
    assert result.returncode == 4, result.stderr
    kept = list(project.glob("changelog.jsonl.unrecorded-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "ok"
    assert str(kept[0]) in result.stderr


# -- log show -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _recorded_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("history")
    project = make_project(
        root,
        {f"hello@{v}": RUNBOOK.format(version=v) for v in ("1.0.0", "1.1.0")},
        {name: local_site(root, marker=str(root / f"ran-{name}")) for name in ("shop1", "shop2")},
    )
    assert cli(project, "run", "hello@1.0.0", "--ticket", "T-1").returncode == 0  # seq 1: shop1, shop2
    assert cli(project, "run", "hello@1.1.0", "--limit", "shop2", "-p", "code=3").returncode == 1  # seq 2
    assert cli(project, "run", "hello@1.1.0", "--limit", "shop1").returncode == 0  # seq 3
    return project


@pytest.fixture
def history(_recorded_history: Path, tmp_path: Path) -> Path:
    """Three recorded runs; a copy per test, so tampering tests cannot leak into others."""
    return Path(shutil.copytree(_recorded_history, tmp_path / "history"))


def test_site_filter_shows_only_that_sites_rows(history: Path) -> None:
    result = cli(history, "log", "show", "--site", "shop2", "-o", "csv")
    assert result.returncode == 0 and result.stderr == ""
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["seq"], r["site"], r["site_status"]) for r in rows] == [
        ("1", "shop2", "ok"),
        ("2", "shop2", "failed"),
    ]
    table = cli(history, "log", "show", "--site", "shop2")
    assert table.returncode == 0 and "shop2:ok" in table.stdout and "shop1" not in table.stdout
    # JSON keeps whole, hash-checkable entries and says so on stderr
    shown = cli(history, "log", "show", "--site", "shop2", "-o", "json")
    entries = json.loads(shown.stdout)
    assert [e["seq"] for e in entries] == [1, 2] and sorted(entries[0]["sites"]) == ["shop1", "shop2"]
    assert entries[0] == read_log(history)[0]
    assert "selects runs" in shown.stderr and "complete" in shown.stderr


def test_site_and_status_together_mean_that_sites_status(history: Path) -> None:
    cli(history, "run", "hello", "-p", "code=3", "--limit", "shop2")  # seq 4: shop2 failed
    shown = json.loads(cli(history, "log", "show", "--site", "shop1", "--status", "ok", "-o", "json").stdout)
    assert [e["seq"] for e in shown] == [1, 3]


def test_an_unknown_status_is_bad_input_listing_the_real_ones(history: Path) -> None:
    result = cli(history, "log", "show", "--status", "bogus")
    assert result.returncode == 2
    assert "bogus" in result.stderr and "unreachable" in result.stderr and "interrupted" in result.stderr


@pytest.mark.parametrize(
    ("ref", "seqs"),
    [
        ("hello@1.1.0", [2, 3]),
        ("hello@1.1", [2, 3]),
        ("hello@1.0", [1]),
        ("hello@1", [1, 2, 3]),
        ("hello@2", []),
    ],
)
def test_runbook_filter_takes_a_version_like_runbook_refs(history: Path, ref: str, seqs: list[int]) -> None:
    result = cli(history, "log", "show", "--runbook", ref, "-o", "json")
    assert result.returncode == 0, result.stderr
    assert [e["seq"] for e in json.loads(result.stdout)] == seqs


def test_a_runbook_filter_with_a_bad_version_is_bad_input(history: Path) -> None:
    result = cli(history, "log", "show", "--runbook", "hello@latest", "-o", "json")
    assert result.returncode == 2 and "NAME@MAJOR" in json.loads(result.stdout)["error"]


@pytest.mark.parametrize("output", ["text", "json", "csv"])
def test_show_warns_about_a_tampered_log_and_keeps_stdout_clean(history: Path, output: str) -> None:
    clean = cli(history, "log", "show", "-o", output)
    assert clean.returncode == 0 and "warning" not in clean.stderr
    path = history / "changelog.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"status":"failed"', '"status":"ok"', 1)
    path.write_text("\n".join(lines) + "\n")
    result = cli(history, "log", "show", "-o", output)
    assert result.returncode == 0
    assert "entry 2" in result.stderr and "maintainer log verify" in result.stderr
    if output == "json":
        assert [e["seq"] for e in json.loads(result.stdout)] == [1, 2, 3]
    elif output == "csv":
        assert next(csv.reader(io.StringIO(result.stdout)))[0] == "seq"
        assert "warning" not in result.stdout


def test_a_refused_entry_still_reaches_json_consumers(project: Path) -> None:
    log = project / "changelog.jsonl"
    breaker = project / "runbooks" / "breaker" / "1.0.0.yml"
    breaker.parent.mkdir()
    step = {"id": "tear", "uses": "shell", "with": {"command": f"printf '%s' '{{\"torn' >> {log}"}}
    breaker.write_text(yaml.safe_dump({"name": "breaker", "version": "1.0.0", "steps": [step]}))
    result = cli(project, "run", "breaker", "--limit", "shop1", "--output", "json")
    assert result.returncode == 4, result.stderr
    document = json.loads(result.stdout)
    assert document["exit_code"] == 4 and "refused" in document["error"]
    assert document["unrecorded_run"]["sites"]["shop1"]["status"] == "ok"
