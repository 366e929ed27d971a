"""Bad input through the real CLI: exit 2 before anything runs, every problem with file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli, local_site, make_project

TEMPLATE_RUNBOOK = """
name: conf
version: 1.0.0
params:
  pw: {type: secret, required: true}
steps:
  - id: first
    uses: shell
    with: {command: "touch {{ site.marker | quote }}"}
  - id: conf
    uses: template
    with: {src: app.conf.j2, dest: "{{ site.out }}"}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(
        tmp_path,
        {"conf@1.0.0": TEMPLATE_RUNBOOK},
        {"web1": local_site(tmp_path, out=str(tmp_path / "app.conf"), marker=str(tmp_path / "ran-first"))},
    )
    return root


@pytest.mark.parametrize(
    ("template", "line", "message"),
    [
        ("ok\n{{ params.nope }}\n", 2, "params.nope, which the runbook does not declare"),
        ("ok\n\n{{ site.x | no_such_filter }}\n", 3, "No filter named 'no_such_filter'"),
    ],
)
def test_a_bad_template_file_stops_validate_and_run_before_any_step(
    project: Path, template: str, line: int, message: str
) -> None:
    (project / "templates" / "app.conf.j2").write_text(template)
    result = cli(project, "runbooks", "validate", "-o", "json")
    assert result.returncode == 2
    (problem,) = json.loads(result.stdout)["problems"]
    assert problem["file"].endswith("templates/app.conf.j2") and message in problem["message"]
    assert problem["line"] == line
    for extra in ([], ["--dry-run"]):
        run = cli(project, "run", "conf", "-p", "pw=x", *extra)
        assert run.returncode == 2, run.stderr
        assert "app.conf.j2" in run.stderr
    assert not (project / "ran-first").exists() and not (project / "app.conf").exists()


def test_a_missing_template_file_stops_the_run(project: Path) -> None:
    run = cli(project, "run", "conf", "-p", "pw=x")
    assert run.returncode == 2 and "template 'app.conf.j2' not found" in run.stderr
    assert not (project / "ran-first").exists()


def test_secret_param_from_the_environment(project: Path) -> None:
    (project / "templates" / "app.conf.j2").write_text("pw={{ params.pw }}\n")
    result = cli(project, "run", "conf", env={"MAINTAINER_PARAM_PW": "env-s3cret"})
    assert result.returncode == 0, result.stderr
    assert (project / "app.conf").read_text() == "pw=env-s3cret\n"
    assert (project / "ran-first").exists()
    assert "env-s3cret" not in result.stdout + result.stderr
    assert "env-s3cret" not in (project / "changelog.jsonl").read_text()
    # -p wins over the environment
    assert cli(project, "run", "conf", "-p", "pw=cli", env={"MAINTAINER_PARAM_PW": "env"}).returncode == 0
    assert (project / "app.conf").read_text() == "pw=cli\n"


def test_misnamed_runbooks_fail_validate(project: Path) -> None:
    (project / "runbooks" / "conf" / "1.0.yml").write_text("name: conf\n")
    result = cli(project, "runbooks", "validate")
    assert result.returncode == 2
    assert "conf/1.0.yml: file name must be <semver>.yml, e.g. 1.0.0.yml" in result.stderr


def test_no_runbooks_directory_is_exit_2(tmp_path: Path) -> None:
    for args in (["runbooks", "validate"], ["run", "site-health"]):
        result = cli(tmp_path, *args)
        assert result.returncode == 2, result.stderr
        assert "no runbooks/ directory" in result.stderr and "--project" in result.stderr


def test_empty_version_and_wrong_typed_literal_args(project: Path) -> None:
    (project / "templates" / "app.conf.j2").write_text("ok\n")
    result = cli(project, "run", "conf@", "-p", "pw=x")
    assert result.returncode == 2 and "no version after '@'" in result.stderr
    (project / "runbooks" / "conf" / "1.0.1.yml").write_text(
        "name: conf\nversion: 1.0.1\nserial: 0\nsteps:\n  - id: a\n    uses: shell\n    with:\n"
        "      command: 'true'\n      env: [1, 2]\n      ok_codes: zero\n"
    )
    validate = cli(project, "runbooks", "validate", "-o", "json")
    found = {(p["line"], p["key"]) for p in json.loads(validate.stdout)["problems"]}
    assert found == {(3, "serial"), (9, "steps.0.with.env"), (10, "steps.0.with.ok_codes")}
