from __future__ import annotations

from pathlib import Path

import pytest

from maintainer import runbook as rb
from maintainer.errors import BadInput, ExitCode, ValidationFailed

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "project"


@pytest.mark.parametrize(
    ("ref", "version"),
    [
        ("demo", "2.0.1"),
        ("demo@1", "1.2.0"),
        ("demo@1.0", "1.0.0"),
        ("demo@1.0.0", "1.0.0"),
        ("demo@2", "2.0.1"),
    ],
)
def test_version_resolution(ref: str, version: str) -> None:
    assert rb.resolve(FIXTURE, ref).name == f"{version}.yml"


def test_unknown_name_and_version_are_bad_input() -> None:
    with pytest.raises(BadInput, match="no runbook named 'nope'") as exc:
        rb.resolve(FIXTURE, "nope")
    assert exc.value.exit_code == ExitCode.BAD_INPUT
    assert "demo" in str(exc.value)
    with pytest.raises(BadInput, match="no version matching '3'"):
        rb.resolve(FIXTURE, "demo@3")
    with pytest.raises(BadInput, match="not a version"):
        rb.resolve(FIXTURE, "demo@x.y")


def test_available_lists_newest_first() -> None:
    versions = [v for v, _ in rb.available(FIXTURE)["demo"]]
    assert versions == [(2, 0, 1), (1, 2, 0), (1, 0, 0)]


def _problems(path: Path) -> list[BadInput]:
    with pytest.raises(ValidationFailed) as exc:
        rb.load(path)
    return exc.value.problems


def test_structural_errors_have_file_and_line() -> None:
    path = FIXTURE / "runbooks" / "broken" / "1.0.0.yml"
    problems = _problems(path)
    by_key = {p.key: p for p in problems}
    assert by_key["colour"].line == 4 and "unknown key" in by_key["colour"].message
    assert by_key["params.count.type"].line == 6
    assert by_key["steps.3.timeout"].line == 22
    assert all(p.file == str(path) for p in problems)


def test_semantic_errors_are_all_reported_with_lines() -> None:
    path = FIXTURE / "runbooks" / "broken" / "1.0.0.yml"
    text = path.read_text().replace(
        "  count: {type: integer}\n  mode: {type: choice}\n", "  count: {type: int}\n"
    )
    text = text.replace("    timeout: forever\n", "")
    fixed = FIXTURE.parent / "tmp-broken.yml"
    try:
        fixed.write_text(text)
        messages = {(p.line, p.message) for p in _problems(fixed)}
    finally:
        fixed.unlink()
    found = "\n".join(f"{line}: {msg}" for line, msg in sorted(messages, key=lambda m: m[0] or 0))
    assert "params.nope, which the runbook does not declare" in found
    assert "duplicate step id 'first'" in found
    assert "unknown action 'no_such_action'" in found
    assert "steps.later, which is not an earlier step" in found
    assert "unknown variable 'undefined_thing'" in found
    assert "has no argument 'bogus'" in found
    assert "unknown key 'colour'" in found
    lines = {msg.split(" (")[0]: line for line, msg in messages}
    assert lines["duplicate step id 'first'"] == 12


def test_version_must_match_file_name(tmp_path: Path) -> None:
    path = tmp_path / "runbooks" / "x" / "1.0.0.yml"
    path.parent.mkdir(parents=True)
    path.write_text("name: x\nversion: 1.0.1\nsteps:\n  - {id: a, uses: debug}\n")
    (problem,) = _problems(path)
    assert problem.line == 2 and "does not match the file name" in problem.message


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(BadInput) as exc:
        rb.load(FIXTURE / "runbooks" / "broken" / "2.0.0.yml")
    assert exc.value.line is not None and exc.value.line >= 9
    assert "invalid YAML" in str(exc.value)


def test_template_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "r.yml"
    path.write_text(
        "name: r\nversion: 1.0.0\nsteps:\n  - id: a\n    uses: shell\n    with: {command: 'echo {{ x'}\n"
    )
    (problem,) = _problems(path)
    assert problem.line == 6 and "template syntax error" in problem.message


def test_validate_all_counts_files() -> None:
    checked, problems = rb.validate_all(FIXTURE)
    assert checked == 5
    assert {Path(p.file or "").parent.name for p in problems} == {"broken"}


def test_shipped_runbooks_are_valid() -> None:
    checked, problems = rb.validate_all(Path(__file__).resolve().parents[2])
    assert checked >= 1
    assert problems == []


# ------------------------------------------------------------------ params


def _loaded(params: str) -> rb.LoadedRunbook:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "1.0.0.yml"
        path.write_text(f"name: p\nversion: 1.0.0\nparams:\n{params}\nsteps:\n  - {{id: a, uses: debug}}\n")
        return rb.load(path)


def test_typed_params() -> None:
    loaded = _loaded(
        "  n: {type: int, default: 3, min: 1, max: 5}\n"
        "  flag: {type: bool, default: false}\n"
        # not "items": params.items would be the dict method (runbooks validate refuses it)
        "  names: {type: list, default: [a]}\n"
        "  hosts: {type: list, default: [a]}\n"
        "  mode: {type: choice, choices: [fast, safe], default: safe}\n"
        "  token: {type: secret}\n"
        "  name: {type: string, pattern: '[a-z]+', default: abc}\n"
    )
    values = rb.resolve_params(
        loaded,
        {
            "n": "5",
            "flag": "yes",
            "names": "x, y",
            "hosts": '["s1", "s,2"]',
            "mode": "fast",
            "token": "s3cr3t!",
        },
    )
    assert values == {
        "n": 5,
        "flag": True,
        "names": ["x", "y"],
        "hosts": ["s1", "s,2"],
        "mode": "fast",
        "token": "s3cr3t!",
        "name": "abc",
    }
    assert rb.secret_params(loaded, values) == ["s3cr3t!"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"n": "many"}, "must be a whole number"),
        ({"n": "9"}, "at most 5"),
        ({"mode": "slow"}, "must be one of fast, safe"),
        ({"flag": "maybe"}, "true or false"),
        ({"zzz": "1"}, "unknown param 'zzz'"),
        ({"name": "ABC"}, "must match"),
    ],
)
def test_bad_params_are_bad_input(given: dict[str, str], message: str) -> None:
    loaded = _loaded(
        "  n: {type: int, default: 3, max: 5}\n"
        "  flag: {type: bool, default: false}\n"
        "  mode: {type: choice, choices: [fast, safe], default: safe}\n"
        "  name: {type: string, pattern: '[a-z]+', default: abc}\n"
    )
    with pytest.raises(BadInput, match=message) as exc:
        rb.resolve_params(loaded, given)
    assert exc.value.exit_code == ExitCode.BAD_INPUT


def test_missing_required_param() -> None:
    loaded = _loaded("  target: {type: string, description: where to go}\n")
    with pytest.raises(BadInput, match="needs param 'target'"):
        rb.resolve_params(loaded, {})


def test_bad_param_schema_is_reported() -> None:
    with pytest.raises(ValidationFailed) as exc:
        _loaded("  mode: {type: choice}\n  n: {type: int, default: lots}\n")
    text = str(exc.value)
    assert "needs 'choices'" in text and "whole number" in text


@pytest.mark.parametrize(
    ("text", "seconds"), [(30, 30.0), ("30s", 30.0), ("5m", 300.0), ("1.5h", 5400.0), ("250ms", 0.25)]
)
def test_durations(text: object, seconds: float) -> None:
    assert rb.parse_duration(text) == seconds  # type: ignore[arg-type]


def test_count_of_percent() -> None:
    assert rb.count_of("25%", 10) == 3
    assert rb.count_of("1%", 10) == 1
    assert rb.count_of(4, 10) == 4
    assert rb.count_of(None, 10) is None
