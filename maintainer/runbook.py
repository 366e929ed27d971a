"""Versioned runbooks: model, version resolution, validation, params, digest.

A runbook lives at ``runbooks/<name>/<semver>.yml``. ``name`` resolves to
the newest version, ``name@2`` to the newest 2.x, ``name@2.1`` to the newest
2.1.x and ``name@2.1.0`` to exactly that file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from jinja2 import TemplateSyntaxError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import templating
from .actions import registry
from .errors import BadInput, ValidationFailed
from .yamlfile import line_of
from .yamlfile import load as load_yaml

SCHEMA_VERSION = 1
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: int | float | str) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"1.5h"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"'{value}' is not a duration (use seconds or e.g. '30s', '5m', '2h')")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_version(text: str) -> tuple[int, int, int]:
    match = _SEMVER.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a semantic version MAJOR.MINOR.PATCH")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


Duration = Annotated[float, Field(ge=0)]


class ParamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "int", "bool", "list", "choice", "secret"] = "string"
    description: str = ""
    default: Any = None
    required: bool | None = None
    choices: list[str] | None = None
    pattern: str | None = None
    min: int | None = None
    max: int | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "choice" and not self.choices:
            raise ValueError("a 'choice' param needs 'choices'")
        if self.choices is not None and self.type not in ("choice", "list"):
            raise ValueError("'choices' only applies to 'choice' and 'list' params")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"'pattern' is not a valid regular expression: {exc}") from exc
        if self.default is not None:
            self.default = coerce_param("default", self, self.default)
        return self

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    name: str | None = None
    uses: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    when: str | bool | None = None
    timeout: Duration | None = None
    retries: int = Field(default=0, ge=0, le=100)
    retry_delay: Duration = 2.0
    continue_on_error: bool = False

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _STEP_ID.match(value):
            raise ValueError(
                f"step id '{value}' must be letters, digits and '_' (it is read as steps.{value})"
            )
        return value

    @field_validator("timeout", "retry_delay", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)


class Runbook(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: int = Field(default=SCHEMA_VERSION, alias="schema")
    name: str
    version: str
    description: str = ""
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    rollback: list[Step] = Field(default_factory=list)
    finally_: list[Step] = Field(default_factory=list, alias="finally")
    concurrency: int = Field(default=10, ge=1, le=1000)
    serial: int | str | None = None
    max_fail: int | str | None = None

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: int) -> int:
        if value > SCHEMA_VERSION:
            raise ValueError(
                f"runbook schema {value} is newer than this maintainer understands ({SCHEMA_VERSION}); "
                "upgrade maintainer"
            )
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        parse_version(value)
        return value

    @field_validator("serial", "max_fail")
    @classmethod
    def _count_or_percent(cls, value: int | str | None) -> int | str | None:
        if value is None or isinstance(value, int):
            if isinstance(value, int) and value < 0:
                raise ValueError("must be zero or more")
            return value
        if re.fullmatch(r"\d{1,3}%", value.strip()) and 0 < int(value.strip()[:-1]) <= 100:
            return value.strip()
        raise ValueError(f"'{value}' is neither a count nor a percentage like '25%'")

    def all_steps(self) -> list[tuple[str, Step]]:
        return (
            [("steps", s) for s in self.steps]
            + [("rollback", s) for s in self.rollback]
            + [("finally", s) for s in self.finally_]
        )


def count_of(value: int | str | None, total: int) -> int | None:
    """A count or a percentage of ``total`` (rounded up, at least 1)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    return max(1, -(-total * percent // 100))


@dataclass
class LoadedRunbook:
    model: Runbook
    path: Path
    digest: str  # sha256 of the file's bytes
    #: the line of each step, keyed by (section, index), for run-time messages
    step_lines: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.model.name}@{self.model.version}"


# ---------------------------------------------------------------- discovery


def runbooks_dir(project: Path) -> Path:
    return project / "runbooks"


def available(project: Path) -> dict[str, list[tuple[tuple[int, int, int], Path]]]:
    """Every runbook name with its versions, newest first."""
    found: dict[str, list[tuple[tuple[int, int, int], Path]]] = {}
    root = runbooks_dir(project)
    if not root.is_dir():
        return found
    for path in sorted(root.glob("*/*.yml")) + sorted(root.glob("*/*.yaml")):
        try:
            version = parse_version(path.stem)
        except ValueError:
            continue
        found.setdefault(path.parent.name, []).append((version, path))
    for versions in found.values():
        versions.sort(reverse=True)
    return found


def resolve(project: Path, ref: str) -> Path:
    """The file for ``name``, ``name@2``, ``name@2.1`` or ``name@2.1.0`` (or a path)."""
    as_path = Path(ref)
    if ref.endswith((".yml", ".yaml")):
        if not as_path.is_file():
            raise BadInput("runbook file not found.", file=ref, fix="check the path.")
        return as_path
    name, _, wanted = ref.partition("@")
    versions = available(project).get(name)
    if not versions:
        known = ", ".join(sorted(available(project))) or "none"
        raise BadInput(
            f"no runbook named '{name}' under {runbooks_dir(project)}.",
            fix=f"use one of: {known} (see 'maintainer runbooks list').",
        )
    if not wanted:
        return versions[0][1]
    try:
        prefix = tuple(int(p) for p in wanted.split("."))
        if not 1 <= len(prefix) <= 3:
            raise ValueError
    except ValueError:
        raise BadInput(
            f"'{ref}': '{wanted}' is not a version.",
            fix=f"write {name}@MAJOR, {name}@MAJOR.MINOR or {name}@MAJOR.MINOR.PATCH.",
        ) from None
    for version, path in versions:
        if version[: len(prefix)] == prefix:
            return path
    have = ", ".join(".".join(map(str, v)) for v, _ in versions)
    raise BadInput(f"runbook '{name}' has no version matching '{wanted}'.", fix=f"available: {have}.")


# ---------------------------------------------------------------- validation


def load(path: Path) -> LoadedRunbook:
    """Parse and fully validate one runbook file; every problem is reported at once."""
    raw = path.read_bytes() if path.is_file() else b""
    data = load_yaml(path)
    problems: list[BadInput] = []

    def problem(message: str, loc: tuple[str | int, ...], fix: str | None = None) -> None:
        key = ".".join(str(p) for p in loc) or None
        problems.append(BadInput(message, file=path, line=line_of(data, loc), key=key, fix=fix))

    if not isinstance(data, dict):
        raise BadInput("a runbook must be a YAML mapping (name, version, steps, ...).", file=path, line=1)
    model: Runbook | None = None
    try:
        model = Runbook.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown key '{loc[-1]}'"
            problem(msg + ".", loc)

    name, version = data.get("name"), data.get("version")
    if isinstance(version, str) and _SEMVER.match(path.stem) and path.stem != version:
        problem(
            f"version '{version}' does not match the file name '{path.name}'.",
            ("version",),
            fix=f"rename the file to {version}{path.suffix} or set version: {path.stem}.",
        )
    if isinstance(name, str) and path.parent.parent.name == "runbooks" and path.parent.name != name:
        problem(
            f"name '{name}' does not match the directory '{path.parent.name}'.",
            ("name",),
            fix=f"set name: {path.parent.name}.",
        )

    # the semantic checks read the raw data, so they run even when the model did not
    # validate: one pass reports every problem
    raw_params = data.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    step_lines: dict[tuple[str, int], int] = {}
    seen: dict[str, tuple[str, int]] = {}
    sections: dict[str, list[Any]] = {}
    for key in ("steps", "rollback", "finally"):
        value = data.get(key)
        sections[key] = value if isinstance(value, list) else []
    main_ids = [str(s.get("id")) for s in sections["steps"] if isinstance(s, dict)]
    for section, steps in sections.items():
        for index, step in enumerate(steps):
            loc = (section, index)
            step_lines[(section, index)] = line_of(data, loc) or 0
            if not isinstance(step, dict):
                continue
            step_id = str(step.get("id"))
            if step_id in seen:
                first = seen[step_id]
                problem(
                    f"duplicate step id '{step_id}' (first used in {first[0]}[{first[1]}]).",
                    (*loc, "id"),
                    fix="give every step a unique id.",
                )
            else:
                seen[step_id] = (section, index)
            if isinstance(step.get("uses"), str):
                _check_action(step["uses"], step.get("with"), loc, problem)
            # in main steps only earlier steps have outputs; rollback/finally may read any
            visible = set(main_ids[:index]) if section == "steps" else set(main_ids) | set(seen)
            _check_templates(step, loc, params, visible, problem)
    if problems or model is None:
        problems.sort(key=lambda p: p.line or 0)
        raise ValidationFailed(problems, file=path)
    return LoadedRunbook(model, path, hashlib.sha256(raw).hexdigest(), step_lines)


def _check_action(uses: str, with_: Any, loc: tuple[str | int, ...], problem: Any) -> None:
    action = registry.get(uses)
    if action is None:
        problem(
            f"unknown action '{uses}'.",
            (*loc, "uses"),
            fix=f"use one of: {', '.join(registry.names())} (or install the plugin that provides it).",
        )
        return
    given = with_ if isinstance(with_, dict) else {}
    fields = action.Args.model_fields
    aliases = {f.alias or n for n, f in fields.items()}
    for key in given:
        if key not in aliases:
            problem(
                f"action '{uses}' has no argument '{key}'.",
                (*loc, "with", key),
                fix=f"arguments are: {', '.join(sorted(aliases)) or 'none'}.",
            )
    for name, info in fields.items():
        if info.is_required() and (info.alias or name) not in given:
            problem(f"action '{uses}' needs argument '{info.alias or name}'.", (*loc, "with"))


def _iter_strings(value: Any, loc: tuple[str | int, ...]) -> Any:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _iter_strings(v, (*loc, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _iter_strings(v, (*loc, i))


def _check_templates(
    step: dict[str, Any],
    loc: tuple[str | int, ...],
    params: dict[str, Any],
    visible_steps: set[str],
    problem: Any,
) -> None:
    candidates = list(_iter_strings(step.get("with") or {}, (*loc, "with")))
    if isinstance(step.get("when"), str):
        candidates.append(((*loc, "when"), step["when"]))
    for where, text in candidates:
        is_when = where[-1] == "when"
        if not is_when and not templating.has_template(text):
            continue
        try:
            tree = templating.parse_template(text, expression=is_when)
        except TemplateSyntaxError as exc:
            problem(f"template syntax error: {exc.message}.", where)
            continue
        for root, attr in templating.references(tree):
            if root not in templating.CONTEXT_ROOTS and root not in templating.ENV.globals:
                problem(
                    f"template uses unknown variable '{root}'.",
                    where,
                    fix="templates see site, params, steps and run (e.g. site.docroot, params.x).",
                )
            elif root == "params" and attr is not None and attr not in params:
                problem(
                    f"template uses params.{attr}, which the runbook does not declare.",
                    where,
                    fix=f"declare it under params, or use one of: {', '.join(params) or 'none'}.",
                )
            elif root == "steps" and attr is not None and attr not in visible_steps:
                problem(
                    f"template reads steps.{attr}, which is not an earlier step.",
                    where,
                    fix="only outputs of steps that ran before this one exist.",
                )


# ---------------------------------------------------------------- params


def coerce_param(name: str, spec: ParamSpec, value: Any) -> Any:
    """Convert a -p value (a string) or a YAML default to the declared type."""
    kind = spec.type
    if kind == "int":
        try:
            result: Any = int(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            result = None
        if result is None:
            raise ValueError(f"param '{name}' must be a whole number, got '{value}'")
        if spec.min is not None and result < spec.min:
            raise ValueError(f"param '{name}' must be at least {spec.min}, got {result}")
        if spec.max is not None and result > spec.max:
            raise ValueError(f"param '{name}' must be at most {spec.max}, got {result}")
        return result
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"param '{name}' must be true or false, got '{value}'")
    if kind == "list":
        items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
        items = [str(v) for v in items]
        if spec.choices:
            bad = [v for v in items if v not in spec.choices]
            if bad:
                raise ValueError(f"param '{name}' allows {', '.join(spec.choices)}; not {', '.join(bad)}")
        return items
    text = str(value)
    if kind == "choice" and spec.choices and text not in spec.choices:
        raise ValueError(f"param '{name}' must be one of {', '.join(spec.choices)}, got '{text}'")
    if spec.pattern is not None and not re.fullmatch(spec.pattern, text):
        raise ValueError(f"param '{name}' must match {spec.pattern}, got '{text}'")
    return text


def resolve_params(loaded: LoadedRunbook, given: dict[str, str]) -> dict[str, Any]:
    """Typed params from -p values and defaults; any problem is BadInput (exit 2)."""
    specs = loaded.model.params
    problems: list[BadInput] = []
    for key in given:
        if key not in specs:
            problems.append(
                BadInput(
                    f"unknown param '{key}' for runbook {loaded.ref}.",
                    key=key,
                    fix=f"params are: {', '.join(specs) or 'none'} (maintainer runbooks show {loaded.ref}).",
                )
            )
    values: dict[str, Any] = {}
    for key, spec in specs.items():
        if key in given:
            try:
                values[key] = coerce_param(key, spec, given[key])
            except ValueError as exc:
                problems.append(BadInput(f"{exc}.", key=key, fix=f"pass -p {key}=VALUE of type {spec.type}."))
        elif spec.default is not None:
            values[key] = spec.default
        elif spec.is_required:
            problems.append(
                BadInput(
                    f"runbook {loaded.ref} needs param '{key}' ({spec.description or spec.type}).",
                    key=key,
                    fix=f"pass -p {key}=VALUE.",
                )
            )
        else:
            values[key] = None
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ValidationFailed(problems)
    return values


def secret_params(loaded: LoadedRunbook, values: dict[str, Any]) -> list[str]:
    return [str(values[k]) for k, s in loaded.model.params.items() if s.type == "secret" and values.get(k)]


def validate_all(project: Path, target: Path | None = None) -> tuple[int, list[BadInput]]:
    """Validate one file, a directory, or every shipped runbook: (files checked, problems)."""
    if target is None:
        files = [path for versions in available(project).values() for _, path in versions]
    elif target.is_dir():
        files = sorted(target.rglob("*.yml")) + sorted(target.rglob("*.yaml"))
    else:
        files = [target]
    problems: list[BadInput] = []
    for path in files:
        try:
            load(path)
        except ValidationFailed as exc:
            problems.extend(exc.problems)
        except BadInput as exc:
            problems.append(exc)
    return len(files), problems
