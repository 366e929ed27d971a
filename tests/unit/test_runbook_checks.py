"""Bad input found before anything runs: template files, file names, literal arguments, params."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from maintainer import runbook as rb
from maintainer.actions.template import TemplateAction, TemplateArgs
from maintainer.errors import BadInput, ExitCode, StepFailed, ValidationFailed
from maintainer.testing import action_context

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "project"

TEMPLATE_RUNBOOK = """\
name: tpl
version: 1.0.0
params:
  keepalive: {type: int, default: 65}
steps:
  - id: first
    uses: shell
    with: {command: "true"}
  - id: conf
    uses: template
    with:
      src: {src}
      dest: /tmp/x.conf
      vars: {port: 80}
"""


def _project(tmp_path: Path, runbooks: dict[str, str], templates: dict[str, str] | None = None) -> Path:
    for rel, text in runbooks.items():
        path = tmp_path / "runbooks" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (tmp_path / "templates").mkdir(exist_ok=True)
    for rel, text in (templates or {}).items():
        path = tmp_path / "templates" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def _problems(path: Path, project: Path | None = None) -> list[BadInput]:
    with pytest.raises(ValidationFailed) as exc:
        rb.load(path, project)
    return exc.value.problems


def _tpl_project(tmp_path: Path, template: str, src: str = "app.conf.j2") -> Path:
    runbook = TEMPLATE_RUNBOOK.replace("{src}", src)
    return _project(tmp_path, {"tpl/1.0.0.yml": runbook}, {"app.conf.j2": template})


RUNBOOK_FILE = Path("runbooks/tpl/1.0.0.yml")


# ------------------------------------------------------------------ 1. template files


def test_template_file_reading_an_undeclared_param_names_the_template_line(tmp_path: Path) -> None:
    project = _tpl_project(
        tmp_path, "keepalive {{ params.keepalive }};\nport {{ vars.port }};\nx {{ params.nope }}\n"
    )
    (problem,) = _problems(project / RUNBOOK_FILE)
    assert problem.file == str(project / "templates" / "app.conf.j2") and problem.line == 3
    assert "params.nope, which the runbook does not declare" in problem.message
    assert "step 'conf'" in problem.message and "1.0.0.yml:9" in problem.message
    # validate_all and the load run does (project inferred from the layout) agree
    checked, problems = rb.validate_all(project)
    assert checked == 1 and [p.line for p in problems] == [3]


def test_template_file_unknown_variable_steps_and_vars(tmp_path: Path) -> None:
    text = "{{ nothing_like_this }}\n{{ steps.first.outputs.rc }} {{ steps.conf.outputs }}\n{{ vars.nope }}\n"
    project = _tpl_project(tmp_path, text)
    found = {(p.line, p.message.split(" (")[0]) for p in _problems(project / RUNBOOK_FILE)}
    assert found == {
        (1, "template uses unknown variable 'nothing_like_this'"),
        (2, "template reads steps.conf, which is not an earlier step"),
        (3, "template uses vars.nope, which the step's 'vars' does not set"),
    }


def test_missing_template_file_points_at_src(tmp_path: Path) -> None:
    project = _tpl_project(tmp_path, "ok\n", src="missing.j2")
    (problem,) = _problems(project / RUNBOOK_FILE)
    assert problem.file == str(project / RUNBOOK_FILE) and problem.line == 12
    assert "template 'missing.j2' not found" in problem.message and problem.key == "steps.1.with.src"


def test_template_path_may_not_leave_templates_dir(tmp_path: Path) -> None:
    project = _tpl_project(tmp_path, "ok\n", src="../runbooks/tpl/1.0.0.yml")
    (problem,) = _problems(project / RUNBOOK_FILE)
    assert "not found under" in problem.message


def test_template_syntax_error_names_the_template_line(tmp_path: Path) -> None:
    project = _tpl_project(tmp_path, "a\nb\n{% if x %}\n")
    (problem,) = _problems(project / RUNBOOK_FILE)
    assert problem.file == str(project / "templates" / "app.conf.j2")
    assert problem.line is not None and problem.line >= 3 and "template syntax error" in problem.message
    project2 = _tpl_project(tmp_path / "p2", "a\n{{ params.keepalive | no_such_filter }}\n")
    (problem,) = _problems(project2 / RUNBOOK_FILE)
    assert problem.line == 2 and "no_such_filter" in problem.message


def test_included_templates_are_checked(tmp_path: Path) -> None:
    project = _tpl_project(
        tmp_path, "{% set local = 1 %}\n{% include 'part.j2' %}\n{% include 'gone.j2' %}\n"
    )
    (tmp_path / "templates" / "part.j2").write_text("{{ local }}\n{{ params.nope }}\n")
    problems = _problems(project / RUNBOOK_FILE)
    by_file = {(Path(p.file or "").name, p.line): p.message for p in problems}
    assert "params.nope" in by_file[("part.j2", 2)]
    assert "'gone.j2' is not found" in by_file[("app.conf.j2", 3)]
    assert len(problems) == 2, "a name the includer sets is not an unknown variable"


def test_templated_src_is_only_checked_at_run_time(tmp_path: Path) -> None:
    project = _tpl_project(tmp_path, "ok\n", src="'{{ site.name }}.j2'")
    assert rb.load(project / RUNBOOK_FILE).model.name == "tpl"


def test_explicit_project_is_where_templates_are_found(tmp_path: Path) -> None:
    project = _tpl_project(tmp_path / "a", "ok\n")
    outside = tmp_path / "1.0.0.yml"
    outside.write_text((project / RUNBOOK_FILE).read_text())
    assert rb.load(outside).model.name == "tpl"  # no project known: no file check
    rb.load(outside, project)
    (problem,) = _problems(outside, tmp_path)  # tmp_path has no templates/app.conf.j2
    assert "not found under" in problem.message


def test_the_action_renders_what_validation_checked(tmp_path: Path) -> None:
    """One environment for both: filters like quote work in files, and a file outside templates/ is refused."""
    project = _tpl_project(tmp_path, "k={{ params.keepalive }} {{ site.name | quote }} {{ vars.port }}\n")
    rb.load(project / RUNBOOK_FILE)
    ctx = action_context(project, params={"keepalive": 65}, site_name="a b")
    action = TemplateAction()
    assert (
        action.render(ctx, TemplateArgs(src="app.conf.j2", dest="/x", vars={"port": 80}))
        == b"k=65 'a b' 80\n"
    )
    with pytest.raises(StepFailed, match="not found"):
        action.render(ctx, TemplateArgs(src="../runbooks/tpl/1.0.0.yml", dest="/x"))


# ------------------------------------------------------------------ 2. file names


def test_misnamed_runbook_files_are_problems(tmp_path: Path) -> None:
    good = "name: {n}\nversion: 1.0.0\nsteps:\n  - {{id: a, uses: debug}}\n"
    project = _project(
        tmp_path,
        {
            "foo/1.0.0.yml": good.format(n="foo"),
            "foo/1.0.yml": good.format(n="foo"),
            "foo/1.0.0.yaml": good.format(n="foo"),
            "bar/v1.0.0.yml": good.format(n="bar"),
            "loose.yml": good.format(n="loose"),
        },
    )
    checked, problems = rb.validate_all(project)
    assert checked == 5
    by_file = {Path(p.file or "").relative_to(project / "runbooks").as_posix(): p for p in problems}
    assert set(by_file) == {"foo/1.0.yml", "foo/1.0.0.yaml", "bar/v1.0.0.yml", "loose.yml"}
    for problem in problems:
        assert "file name must be <semver>.yml, e.g. 1.0.0.yml" in problem.message
    assert "rename it to 1.0.0.yml" in (by_file["bar/v1.0.0.yml"].fix or "")
    assert "1.0.0.yml exists too" in (by_file["foo/1.0.0.yaml"].fix or "")
    assert "runbooks/loose/" in (by_file["loose.yml"].fix or "")
    assert {p.file for p in rb.layout_problems(project)} == {p.file for p in problems}
    # only <semver>.yml is ever resolved
    assert rb.available(project) == {"foo": [((1, 0, 0), project / "runbooks/foo/1.0.0.yml")]}
    with pytest.raises(BadInput, match=r"runbooks/bar/ has no file named <semver>\.yml"):
        rb.resolve(project, "bar")


def test_a_misnamed_file_given_by_path_is_reported_with_its_other_problems(tmp_path: Path) -> None:
    project = _project(tmp_path, {"foo/2.0.yml": "name: foo\nversion: 2.0.0\ncolour: x\nsteps: []\n"})
    messages = " | ".join(p.message for p in _problems(project / "runbooks/foo/2.0.yml"))
    assert "file name must be" in messages and "unknown key 'colour'" in messages


# ------------------------------------------------------------------ 3. no runbooks/


def test_no_runbooks_directory_is_bad_input(tmp_path: Path) -> None:
    for call in (lambda: rb.validate_all(tmp_path), lambda: rb.resolve(tmp_path, "site-health")):
        with pytest.raises(BadInput, match="no runbooks/ directory") as exc:
            call()
        assert exc.value.exit_code == ExitCode.BAD_INPUT and "--project" in (exc.value.fix or "")
    with pytest.raises(BadInput, match="no runbooks/ directory"):
        rb.validate_all(tmp_path / "nonexistent")


# ------------------------------------------------------------------ 4. literal arguments


def test_literal_arguments_are_checked_against_the_action_args(tmp_path: Path) -> None:
    path = tmp_path / "1.0.0.yml"
    path.write_text(
        "name: r\nversion: 1.0.0\nparams:\n  codes: {type: list, default: ['0']}\nsteps:\n"
        "  - id: a\n    uses: shell\n    with:\n      command: 'true'\n"
        "      env: [1, 2]\n"  # line 10
        "      ok_codes: zero\n"  # line 11
        "  - id: b\n    uses: shell\n    with:\n      command: 'true'\n"
        "      env: {A: '{{ params.codes }}', B: 2}\n"
        "      ok_codes: '{{ params.codes }}'\n"  # templated: checked when rendered
        "  - id: c\n    uses: shell\n    with:\n      command: [ls, 5]\n      ok_codes: [0, x]\n"
    )
    problems = {p.key: p for p in _problems(path)}
    assert set(problems) == {
        "steps.0.with.env",
        "steps.0.with.ok_codes",
        "steps.2.with.command.1",
        "steps.2.with.ok_codes.1",
    }
    assert (
        problems["steps.0.with.env"].line == 10 and "valid dictionary" in problems["steps.0.with.env"].message
    )
    assert problems["steps.0.with.ok_codes"].line == 11
    assert problems["steps.0.with.ok_codes"].fix == "'ok_codes' takes a list of integers."
    assert problems["steps.2.with.ok_codes.1"].line == 22
    assert "(got 5)" in problems["steps.2.with.command.1"].message


def test_loaded_runbook_knows_argument_lines() -> None:
    loaded = rb.load(FIXTURE / "runbooks" / "demo" / "2.0.1.yml")
    assert loaded.line_at("steps", 0, "with", "msg") == 7
    assert loaded.line_at("steps", 0, "with", "nope") == 7


# ------------------------------------------------------------------ 5. serial / max_fail


@pytest.mark.parametrize(
    ("field", "value"), [("serial", 0), ("serial", "0%"), ("serial", -1), ("max_fail", -1)]
)
def test_serial_and_max_fail_bounds(tmp_path: Path, field: str, value: object) -> None:
    path = tmp_path / "1.0.0.yml"
    path.write_text(f"name: r\nversion: 1.0.0\n{field}: {value!r}\nsteps:\n  - {{id: a, uses: debug}}\n")
    (problem,) = _problems(path)
    assert problem.key == field and problem.line == 3


def test_max_fail_zero_percent_means_no_failure_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "1.0.0.yml"
    path.write_text("name: r\nversion: 1.0.0\nserial: 1%\nmax_fail: '0%'\nsteps:\n  - {id: a, uses: debug}\n")
    assert rb.load(path).model.max_fail == "0%"
    assert rb.count_of("0%", 10) == 0
    assert rb.count_of("1%", 10) == 1


# ------------------------------------------------------------------ 6. empty version


def test_empty_version_after_at_is_bad_input() -> None:
    with pytest.raises(BadInput, match="no version after '@'"):
        rb.resolve(FIXTURE, "demo@")


# ------------------------------------------------------------------ 7. did you mean


def test_unknown_keys_suggest_the_close_one(tmp_path: Path) -> None:
    path = tmp_path / "1.0.0.yml"
    path.write_text(
        "name: r\nversion: 1.0.0\ndescripton: x\nparams:\n  n: {type: int, defualt: 3}\n"
        "steps:\n  - id: a\n    uses: shel\n    timout: 3\n"
        "  - id: b\n    uses: shell\n    with: {command: x, cdw: /tmp}\n"
    )
    fixes = {p.key: p.fix or "" for p in _problems(path)}
    assert fixes["descripton"].startswith("did you mean 'description'?")
    assert fixes["params.n.defualt"].startswith("did you mean 'default'?")
    assert fixes["steps.0.timout"].startswith("did you mean 'timeout'?")
    assert fixes["steps.0.uses"].startswith("did you mean 'shell'?")
    assert fixes["steps.1.with.cdw"].startswith("did you mean 'cwd'?")


# ------------------------------------------------------------------ 8. params from the environment


def _loaded(tmp_path: Path) -> rb.LoadedRunbook:
    path = tmp_path / "1.0.0.yml"
    path.write_text(
        "name: p\nversion: 1.0.0\nparams:\n  db-password: {type: secret, required: true}\n"
        "  n: {type: int, default: 3, max: 5}\nsteps:\n  - {id: a, uses: debug}\n"
    )
    return rb.load(path)


def test_params_come_from_the_environment_before_the_default(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path)
    env = {"MAINTAINER_PARAM_DB_PASSWORD": "s3cr3t", "MAINTAINER_PARAM_N": "4"}
    assert rb.env_var_for("db-password") == "MAINTAINER_PARAM_DB_PASSWORD"
    assert rb.resolve_params(loaded, {}, env) == {"db-password": "s3cr3t", "n": 4}
    assert rb.resolve_params(loaded, {"n": "5"}, env)["n"] == 5  # -p wins
    with pytest.raises(BadInput, match="needs param 'db-password'") as exc:
        rb.resolve_params(loaded, {}, {})
    assert "MAINTAINER_PARAM_DB_PASSWORD" in (exc.value.fix or "")


def test_environment_params_are_validated_and_errors_name_the_variable(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path)
    with pytest.raises(BadInput, match="at most 5") as exc:
        rb.resolve_params(loaded, {"db-password": "x"}, {"MAINTAINER_PARAM_N": "9"})
    assert exc.value.key == "MAINTAINER_PARAM_N" and "MAINTAINER_PARAM_N" in str(exc.value)


def test_environment_params_default_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_PARAM_DB_PASSWORD", "from-env")
    assert rb.resolve_params(_loaded(tmp_path), {})["db-password"] == "from-env"


def test_params_that_share_an_environment_variable_are_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "1.0.0.yml"
    path.write_text(
        "name: p\nversion: 1.0.0\nparams:\n  a-b: {}\n  a_b: {}\nsteps:\n  - {id: a, uses: debug}\n"
    )
    (problem,) = _problems(path)
    assert problem.line == 5 and "MAINTAINER_PARAM_A_B" in problem.message


# ------------------------------------------------------------------ 9. repeated -p


def test_repeated_param_is_bad_input_without_echoing_values() -> None:
    assert rb.parse_param_args(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(BadInput, match="param 'pw' is given twice") as exc:
        rb.parse_param_args(["pw=hunter2", "pw=other"])
    assert "hunter2" not in str(exc.value) and exc.value.exit_code == ExitCode.BAD_INPUT
    with pytest.raises(BadInput, match="not key=value"):
        rb.parse_param_args(["novalue"])
