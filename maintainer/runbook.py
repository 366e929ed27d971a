"""Versioned runbooks: model, version resolution, validation, params, digest.

A runbook lives at ``runbooks/<name>/<semver>.yml``. ``name`` resolves to
the newest version, ``name@2`` to the newest 2.x, ``name@2.1`` to the newest
2.1.x and ``name@2.1.0`` to exactly that file.
"""

from __future__ import annotations

import hashlib
import os
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from jinja2 import TemplateNotFound, TemplateSyntaxError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import templating
from .actions import registry
from .actions.template import templates_dir
from .errors import BadInput, ValidationFailed, did_you_mean
from .yamlfile import line_of
from .yamlfile import load as load_yaml

SCHEMA_VERSION = 1
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
#: names that ``steps.<name>`` / ``params.<name>`` cannot take: Jinja resolves ``x.items`` to the
#: dict method before the key, so ``steps.clear.outputs`` would fail at run time
DICT_ATTRIBUTES = frozenset(name for name in dir(dict) if not name.startswith("__"))


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
    #: one batch size, or a list as Ansible takes it: ``[1, 5, "50%"]`` (the first batch is the
    #: canary; the last size repeats until every site had its turn)
    serial: int | str | list[int | str] | None = None
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

    @field_validator("serial")
    @classmethod
    def _serial(cls, value: int | str | list[int | str] | None) -> int | str | list[int | str] | None:
        # a batch of 0 sites would never finish: 1 site or 1% is the smallest batch
        if isinstance(value, list):
            if not value:
                raise ValueError(
                    "an empty list has no batch size: give one size (5, '25%') or a list like [1, '25%']"
                )
            sizes: list[int | str] = []
            for position, item in enumerate(value, 1):
                try:
                    checked = _count_or_percent(item, least=1, what="a batch size")
                except ValueError as exc:
                    raise ValueError(f"batch {position} of the list: {exc}") from None
                assert checked is not None
                sizes.append(checked)
            return sizes
        return _count_or_percent(value, least=1, what="a batch size")

    @field_validator("max_fail")
    @classmethod
    def _max_fail(cls, value: int | str | None) -> int | str | None:
        # 0 and "0%" both mean: the first failed site stops new batches
        return _count_or_percent(value, least=0, what="a number of failed sites")

    def all_steps(self) -> list[tuple[str, Step]]:
        return (
            [("steps", s) for s in self.steps]
            + [("rollback", s) for s in self.rollback]
            + [("finally", s) for s in self.finally_]
        )


def _count_or_percent(value: int | str | None, *, least: int, what: str) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int):
        if value < least:
            raise ValueError(f"must be {what} of at least {least}, or a percentage like '25%'")
        return value
    text = value.strip()
    if re.fullmatch(r"\d{1,3}%", text):
        if least <= int(text[:-1]) <= 100:
            return text
        raise ValueError(f"'{value}' must be a percentage from {least}% to 100%")
    raise ValueError(f"'{value}' is neither a count nor a percentage like '25%'")


def count_of(value: int | str | None, total: int) -> int | None:
    """A count or a percentage of ``total`` (rounded up, at least 1; "0%" is 0)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    if percent == 0:
        return 0
    return max(1, -(-total * percent // 100))


@dataclass
class LoadedRunbook:
    model: Runbook
    path: Path
    digest: str  # sha256 of the file's bytes
    #: the line of each step, keyed by (section, index), for run-time messages
    step_lines: dict[tuple[str, int], int] = field(default_factory=dict)
    #: the parsed YAML (it knows the line of every key), for line_at
    source: Any = None

    @property
    def ref(self) -> str:
        return f"{self.model.name}@{self.model.version}"

    def line_at(self, *loc: str | int) -> int | None:
        """The line of the deepest existing key of ``loc``, e.g. ("steps", 0, "with", "env")."""
        return line_of(self.source, loc) if self.source is not None else None


# ---------------------------------------------------------------- discovery

RUNBOOK_SUFFIX = ".yml"
_FILE_NAME_RULE = "file name must be <semver>.yml, e.g. 1.0.0.yml"


def runbooks_dir(project: Path) -> Path:
    return project / "runbooks"


def _no_runbooks_dir(project: Path) -> BadInput:
    return BadInput(
        f"there is no runbooks/ directory under the project {project}.",
        fix="pass --project DIR (the directory that holds runbooks/, inventories/, templates/), "
        f"or create {runbooks_dir(project)}/<name>/<version>.yml.",
    )


def _guess_version(stem: str) -> str | None:
    """'1.0' -> '1.0.0', 'v1.2.3' -> '1.2.3'; None when the stem does not look like a version."""
    parts = stem.removeprefix("v").removeprefix("V").split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    return ".".join(str(int(p)) for p in [*parts, "0", "0"][:3])


def file_name_problem(path: Path) -> BadInput | None:
    """Why ``runbooks/<name>/<file>`` would never be found by name, or None.

    Only ``<semver>.yml`` is read: ``1.0.0.yaml`` is refused too, so a version can never exist twice.
    """
    if path.parent.parent.name != "runbooks":
        return None
    if path.suffix == RUNBOOK_SUFFIX and _SEMVER.match(path.stem):
        return None
    version = path.stem if _SEMVER.match(path.stem) else _guess_version(path.stem)
    if version is None:
        fix = "rename it to the version it holds, e.g. 1.0.0.yml (the file name is the version)."
    else:
        fix = f"rename it to {version}{RUNBOOK_SUFFIX}"
        if path.with_name(version + RUNBOOK_SUFFIX).exists():
            fix += f"; {version}{RUNBOOK_SUFFIX} exists too, so keep only one of the two"
        fix += "."
    return BadInput(
        f"{_FILE_NAME_RULE} (only .yml is read): this file is never found by name.", file=path, fix=fix
    )


def _misplaced(path: Path) -> BadInput | None:
    if path.parent.name != "runbooks":
        return None
    return BadInput(
        f"{_FILE_NAME_RULE}, inside a directory named like the runbook: "
        "a file directly under runbooks/ is never found by name.",
        file=path,
        fix=f"move it to runbooks/{path.stem}/<version>.yml, e.g. runbooks/{path.stem}/1.0.0.yml.",
    )


def layout_problems(project: Path) -> list[BadInput]:
    """Every YAML file under runbooks/ that no runbook name would ever find (for ``runbooks list``)."""
    found = (_misplaced(path) or file_name_problem(path) for path in runbook_files(project))
    return [problem for problem in found if problem is not None]


def runbook_files(project: Path) -> list[Path]:
    """Every YAML file under runbooks/ that is or looks like a runbook, well named or not."""
    root = runbooks_dir(project)
    if not root.is_dir():
        raise _no_runbooks_dir(project)
    found: list[Path] = []
    for pattern in ("*.yml", "*.yaml", "*/*.yml", "*/*.yaml"):
        found.extend(p for p in root.glob(pattern) if p.is_file())
    return sorted(found)


def available(project: Path) -> dict[str, list[tuple[tuple[int, int, int], Path]]]:
    """Every runbook name with its versions, newest first (only ``<name>/<semver>.yml``).

    A project without runbooks/ is BadInput. Misnamed files are left out here;
    ``validate_all`` reports them.
    """
    found: dict[str, list[tuple[tuple[int, int, int], Path]]] = {}
    for path in runbook_files(project):
        if path.parent.parent.name == "runbooks" and file_name_problem(path) is None:
            found.setdefault(path.parent.name, []).append((parse_version(path.stem), path))
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
    name, at, wanted = ref.partition("@")
    if at and not wanted.strip():
        raise BadInput(
            f"'{ref}': no version after '@'.",
            fix=f"write {name} for the newest version, or {name}@MAJOR, {name}@MAJOR.MINOR "
            f"or {name}@MAJOR.MINOR.PATCH.",
        )
    found = available(project)
    versions = found.get(name)
    if not versions:
        misnamed = sorted(runbooks_dir(project).glob(f"{name}/*.y*ml")) if name else []
        if misnamed:
            raise BadInput(
                f"runbooks/{name}/ has no file named <semver>.yml "
                f"(found {', '.join(p.name for p in misnamed)}).",
                file=runbooks_dir(project) / name,
                fix="rename the file to its version, e.g. 1.0.0.yml (see 'maintainer runbooks validate').",
            )
        known = ", ".join(sorted(found)) or "none"
        raise BadInput(
            f"no runbook named '{name}' under {runbooks_dir(project)}.",
            fix=did_you_mean(name, found) + f"Use one of: {known} (see 'maintainer runbooks list').",
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

#: reports one problem: (message, loc in the runbook, fix, file and line overrides)
Report = Callable[..., None]


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _did_you_mean(word: str, options: Iterable[str], what: str = "keys") -> str:
    """'did you mean 'x'? ...' for a misspelt ``word``, always followed by the valid options."""
    options = sorted(options)
    listed = f"{what} are: {', '.join(options) or 'none'}."
    guess = did_you_mean(word, options)
    return f"{guess}({listed})" if guess else listed


def _known_keys(loc: tuple[Any, ...]) -> list[str] | None:
    """The keys allowed where ``loc``'s last part is an unknown key."""
    if len(loc) == 1:
        return _keys_of(Runbook)
    if len(loc) == 3 and loc[0] in ("steps", "rollback", "finally") and isinstance(loc[1], int):
        return _keys_of(Step)
    if len(loc) == 3 and loc[0] == "params":
        return _keys_of(ParamSpec)
    return None


def env_var_for(param: str) -> str:
    """The environment variable a param is read from: MAINTAINER_PARAM_<NAME>."""
    return "MAINTAINER_PARAM_" + re.sub(r"[^A-Za-z0-9]", "_", param).upper()


def _project_of(path: Path) -> Path | None:
    """The project of ``<project>/runbooks/<name>/<file>``, or None outside that layout."""
    return path.parent.parent.parent if path.parent.parent.name == "runbooks" else None


def load(path: Path, project: Path | None = None) -> LoadedRunbook:
    """Parse and fully validate one runbook file; every problem is reported at once.

    ``project`` is where the ``src`` of ``template`` steps is looked up (its templates/);
    by default the project the file sits in (``<project>/runbooks/<name>/<version>.yml``).
    A runbook outside that layout, loaded without a project, gets no template-file checks.
    """
    raw = path.read_bytes() if path.is_file() else b""
    problems: list[BadInput] = []
    misnamed = file_name_problem(path)
    if misnamed is not None:
        problems.append(misnamed)
    try:
        data = load_yaml(path)
        if not isinstance(data, dict):
            raise BadInput("a runbook must be a YAML mapping (name, version, steps, ...).", file=path, line=1)
    except BadInput as exc:
        if not problems:
            raise
        raise ValidationFailed([*problems, exc], file=path) from exc

    def problem(
        message: str,
        loc: tuple[str | int, ...],
        fix: str | None = None,
        *,
        file: Path | None = None,
        line: int | None = None,
    ) -> None:
        key = ".".join(str(p) for p in loc) or None
        if file is not None:
            problems.append(BadInput(message, file=file, line=line, key=None, fix=fix))
        else:
            problems.append(BadInput(message, file=path, line=line or line_of(data, loc), key=key, fix=fix))

    model: Runbook | None = None
    try:
        model = Runbook.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            fix = None
            if err["type"] == "extra_forbidden":
                msg = f"unknown key '{loc[-1]}'"
                known = _known_keys(loc)
                fix = _did_you_mean(str(loc[-1]), known) if known is not None else None
            problem(msg + ".", loc, fix)

    name, version = data.get("name"), data.get("version")
    if isinstance(version, str) and _SEMVER.match(path.stem) and path.stem != version:
        problem(
            f"version '{version}' does not match the file name '{path.name}'.",
            ("version",),
            fix=f"rename the file to {version}{RUNBOOK_SUFFIX} or set version: {path.stem}.",
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
    by_var: dict[str, str] = {}
    for param in params:
        if str(param) in DICT_ATTRIBUTES:
            problem(
                f"param name '{param}' is the name of a dict method: params.{param} would read "
                "that method, not the param.",
                ("params", param),
                fix=f"rename the param, e.g. '{param}_list' or a name that says what it holds "
                f"(reserved: {', '.join(sorted(DICT_ATTRIBUTES))}).",
            )
        var = env_var_for(str(param))
        if var in by_var:
            problem(
                f"params '{by_var[var]}' and '{param}' would both be read from {var}.",
                ("params", param),
                fix="rename one of them.",
            )
        by_var.setdefault(var, str(param))
    project_root = project if project is not None else _project_of(path)
    templates_root = templates_dir(project_root) if project_root is not None else None
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
            if step_id in DICT_ATTRIBUTES:
                problem(
                    f"step id '{step_id}' is the name of a dict method: steps.{step_id} would read "
                    "that method, not this step's status and outputs.",
                    (*loc, "id"),
                    fix=f"rename the step, e.g. '{step_id}_cache' or '{step_id}_step' "
                    f"(reserved: {', '.join(sorted(DICT_ATTRIBUTES))}).",
                )
            if isinstance(step.get("uses"), str):
                _check_action(step["uses"], step.get("with"), loc, problem)
            # in main steps only earlier steps have outputs; rollback/finally may read any
            visible = set(main_ids[:index]) if section == "steps" else set(main_ids) | set(seen)
            _check_templates(step, loc, params, visible, problem)
            if step.get("uses") == "template" and templates_root is not None:
                where = f"{path}:{step_lines[(section, index)]}"
                _check_template_file(step, loc, where, templates_root, params, visible, problem)
            if step.get("uses") == "playbook" and project_root is not None:
                _check_playbook_file(step, loc, project_root / PLAYBOOKS_DIR, problem)
    if problems or model is None:
        unique = list({(p.file, p.line, p.key, p.message): p for p in problems}.values())
        unique.sort(key=lambda p: (p.file != str(path), p.file or "", p.line or 0))
        raise ValidationFailed(unique, file=path)
    return LoadedRunbook(model, path, hashlib.sha256(raw).hexdigest(), step_lines, source=data)


def _check_action(uses: str, with_: Any, loc: tuple[str | int, ...], problem: Report) -> None:
    action = registry.get(uses)
    if action is None:
        problem(
            f"unknown action '{uses}'.",
            (*loc, "uses"),
            fix=_did_you_mean(uses, registry.names(), "actions")
            + " (Or install the plugin that provides it.)",
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
                fix=_did_you_mean(str(key), aliases, "arguments"),
            )
    for name, info in fields.items():
        if info.is_required() and (info.alias or name) not in given:
            problem(f"action '{uses}' needs argument '{info.alias or name}'.", (*loc, "with"))
    _check_literal_args(action.Args, uses, {k: v for k, v in given.items() if k in aliases}, loc, problem)


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return templating.has_template(value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    return False


def _walk(value: Any, loc: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """The deepest value of ``loc`` inside ``value``, and the part of ``loc`` that led there.

    Parts that are not in the data (pydantic's union tags like 'list[str]') are passed over.
    """
    found: tuple[Any, ...] = ()
    for part in loc:
        in_dict = isinstance(value, dict) and part in value
        in_list = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        if in_dict or in_list:
            value = value[part]
            found = (*found, part)
    return value, found


def _noun(tp: Any, plural: bool = False) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _noun(args[0], plural)
    if origin in (Union, types.UnionType):
        return " or ".join(_noun(a, plural) for a in args if a is not type(None))
    if origin is list:
        return f"list{'s' if plural else ''} of {_noun(args[0] if args else Any, True)}"
    if origin is dict:
        return f"mapping{'s' if plural else ''} of names to {_noun(args[1] if args else Any, True)}"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    words = {str: "string", int: "integer", float: "number", bool: "true/false value"}
    word = words.get(tp, getattr(tp, "__name__", "value"))
    return word + ("s" if plural else "")


def describe_type(tp: Any) -> str:
    """A type annotation in words: 'a list of integers', 'a string or a list of strings'."""
    text = _noun(tp)
    parts = [f"an {p}" if p[:1] in "aeiou" else f"a {p}" for p in text.split(" or ")]
    return " or ".join(parts)


def _check_literal_args(
    args_model: type[BaseModel], uses: str, given: dict[str, Any], loc: tuple[str | int, ...], problem: Report
) -> None:
    """Check the arguments that hold no template against the action's Args, as the run will."""
    try:
        args_model.model_validate(given)
    except ValidationError as exc:
        by_key: dict[str, list[Any]] = {}
        for err in exc.errors():
            if err["type"] in ("missing", "extra_forbidden"):
                continue  # reported by _check_action, with better words
            if not err["loc"]:
                if not _has_template(given):
                    problem(f"action '{uses}': {err['msg'].removeprefix('Value error, ')}.", (*loc, "with"))
                continue
            value, _ = _walk(given, tuple(err["loc"]))
            if _has_template(value):
                continue  # rendered at run time, checked then
            by_key.setdefault(str(err["loc"][0]), []).append(err)
        fields = {info.alias or name: info for name, info in args_model.model_fields.items()}
        for key, errors in by_key.items():
            # of a union's errors, the one that got deepest into the value says most
            depth = {id(e): len(_walk(given, tuple(e["loc"]))[1]) for e in errors}
            deepest = max(depth.values())
            errors = [e for e in errors if depth[id(e)] == deepest]
            first = errors[0]
            _, data_loc = _walk(given, tuple(first["loc"]))
            messages = list(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in errors))
            info = fields.get(key)
            problem(
                f"action '{uses}' argument '{key}': {'; or '.join(messages)} (got {first['input']!r}).",
                (*loc, "with", *data_loc),
                fix=f"'{key}' takes {describe_type(info.annotation)}." if info is not None else None,
            )


def _iter_strings(value: Any, loc: tuple[str | int, ...]) -> Any:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _iter_strings(v, (*loc, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _iter_strings(v, (*loc, i))


def _reference_problems(
    refs: Iterable[tuple[str, str | None, int]],
    params: dict[str, Any],
    visible_steps: set[str],
    roots: frozenset[str] = templating.CONTEXT_ROOTS,
    vars_keys: set[str] | None = None,
    check_unknown: bool = True,
) -> Iterator[tuple[str, str, int]]:
    """(message, fix, line) for every reference a template may not make; each reference once."""
    seen: set[tuple[str, str | None]] = set()
    for root, attr, line in refs:
        if (root, attr) in seen:
            continue
        seen.add((root, attr))
        if root not in roots and root not in templating.ENV.globals:
            if check_unknown:
                yield (
                    f"template uses unknown variable '{root}'.",
                    f"templates see {', '.join(sorted(roots))} (e.g. site.docroot, params.x).",
                    line,
                )
        elif root == "params" and attr is not None and attr not in params:
            yield (
                f"template uses params.{attr}, which the runbook does not declare.",
                _did_you_mean(attr, map(str, params), "declared params") + " Or declare it under params.",
                line,
            )
        elif root == "steps" and attr is not None and attr not in visible_steps:
            yield (
                f"template reads steps.{attr}, which is not an earlier step.",
                "only outputs of steps that ran before this one exist.",
                line,
            )
        elif root == "vars" and attr is not None and vars_keys is not None and attr not in vars_keys:
            yield (
                f"template uses vars.{attr}, which the step's 'vars' does not set.",
                _did_you_mean(attr, vars_keys, "the step's vars") + " Or set it under with.vars.",
                line,
            )


def _check_templates(
    step: dict[str, Any],
    loc: tuple[str | int, ...],
    params: dict[str, Any],
    visible_steps: set[str],
    problem: Report,
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
            problem(f"template syntax error: {(exc.message or '').rstrip('.')}.", where)
            continue
        refs = ((root, attr, 0) for root, attr in templating.references(tree))
        for message, fix, _ in _reference_problems(refs, params, visible_steps):
            problem(message, where, fix=fix)


PLAYBOOKS_DIR = "playbooks"


class _PlaybookLoader(yaml.SafeLoader):
    """Safe YAML that lets Ansible's own tags (!vault, !unsafe) through: only the syntax is checked."""


_PlaybookLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _check_playbook_file(
    step: dict[str, Any], loc: tuple[str | int, ...], root: Path, problem: Report
) -> None:
    """The file of a ``playbook`` step with a literal name: found under playbooks/ and valid YAML.

    Checked before anything runs, so a typo cannot fail a run after earlier steps changed every site.
    """
    with_ = step.get("with")
    name = with_.get("playbook") if isinstance(with_, dict) else None
    if not isinstance(name, str) or not name or templating.has_template(name):
        return  # a templated name is only known at run time
    file = root / name
    if not file.is_file():
        present = (str(p.relative_to(root)) for p in root.rglob("*.y*ml")) if root.is_dir() else ()
        problem(
            f"playbook '{name}' not found under {root}.",
            (*loc, "with", "playbook"),
            fix=did_you_mean(name, present)
            + f"create {file}, or correct 'playbook' (it is relative to {PLAYBOOKS_DIR}/).",
        )
        return
    try:
        plays = yaml.load(file.read_text(encoding="utf-8"), Loader=_PlaybookLoader)
    except (OSError, UnicodeDecodeError) as exc:
        problem(f"cannot read playbook '{name}': {exc}.", (*loc, "with", "playbook"))
        return
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        detail = getattr(exc, "problem", None) or str(exc)
        problem(
            f"playbook '{name}' is not valid YAML: {detail} (used by step '{step.get('id')}').",
            loc,
            fix="correct the YAML syntax at that line.",
            file=file,
            line=mark.line + 1 if mark is not None else None,
        )
        return
    if not isinstance(plays, list) or not plays:
        problem(
            f"playbook '{name}' is not a list of plays (used by step '{step.get('id')}').",
            loc,
            fix="a playbook is a YAML list: '- hosts: all' followed by its tasks.",
            file=file,
            line=1,
        )


def _check_template_file(
    step: dict[str, Any],
    loc: tuple[str | int, ...],
    where: str,
    root: Path,
    params: dict[str, Any],
    visible_steps: set[str],
    problem: Report,
) -> None:
    """The file of a ``template`` step with a literal ``src``: found, valid Jinja, reads known names.

    Template files render with the step's context (site, params, steps, run) plus ``vars``;
    files they include or import are checked for syntax and params/steps references too.
    """
    with_ = step.get("with")
    src = with_.get("src") if isinstance(with_, dict) else None
    if not isinstance(src, str) or not src or templating.has_template(src):
        return  # a templated src is only known at run time
    raw_vars = with_.get("vars") if isinstance(with_, dict) else None
    vars_keys = {str(k) for k in raw_vars} if isinstance(raw_vars, dict) else None
    if raw_vars is None:
        vars_keys = set()
    used_by = f"in the template of step '{step.get('id')}' at {where}"
    pending: list[tuple[str, Path | None, int | None]] = [(src, None, None)]
    done: set[str] = set()
    while pending:
        name, parent, parent_line = pending.pop(0)
        if name in done:
            continue
        done.add(name)
        try:
            tree, file = templating.parse_file(root, name)
        except TemplateNotFound:
            if parent is None:
                problem(
                    f"template '{name}' not found under {root}.",
                    (*loc, "with", "src"),
                    fix=f"create {root / name}, or correct src (it is relative to templates/).",
                )
            else:
                problem(
                    f"'{name}' is not found under {root} ({used_by}).",
                    loc,
                    fix=f"create {root / name}, or correct the name.",
                    file=parent,
                    line=parent_line,
                )
            continue
        except TemplateSyntaxError as exc:
            problem(
                f"template syntax error: {(exc.message or '').rstrip('.')} ({used_by}).",
                loc,
                fix="correct the Jinja2 syntax at that line.",
                file=Path(exc.filename) if exc.filename else root / name,
                line=exc.lineno,
            )
            continue
        pending.extend((child, file, line) for child, line in templating.referenced_files(tree))
        refs = templating.located_references(tree)
        for message, fix, line in _reference_problems(
            refs,
            params,
            visible_steps,
            roots=templating.FILE_CONTEXT_ROOTS,
            vars_keys=vars_keys,
            # an included file also sees what its includer sets: only params/steps/vars are certain
            check_unknown=parent is None,
        ):
            problem(f"{message.removesuffix('.')} ({used_by}).", loc, fix=fix, file=file, line=line)


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
        if isinstance(value, list):
            items = value
        elif str(value).strip().startswith("["):
            items = _flow_list(name, str(value))
        else:
            items = [v.strip() for v in str(value).split(",") if v.strip()]
        items = [str(v) for v in items]
        if spec.choices:
            bad = [v for v in items if v not in spec.choices]
            if bad:
                raise ValueError(f"param '{name}' allows {', '.join(spec.choices)}; not {', '.join(bad)}")
        return items
    text = str(value)
    shown = "(the secret value)" if kind == "secret" else f"'{text}'"
    if kind == "choice" and spec.choices and text not in spec.choices:
        raise ValueError(f"param '{name}' must be one of {', '.join(spec.choices)}, got {shown}")
    if spec.pattern is not None and not re.fullmatch(spec.pattern, text):
        raise ValueError(f"param '{name}' must match {spec.pattern}, got {shown}")
    return text


def _flow_list(name: str, text: str) -> list[str]:
    """``["a","b"]`` (JSON) or ``[a, 'b c']`` (YAML flow) as a list of strings; else ValueError.

    Every item stays a string as written (YAML's base loader: ``[yes, 007]`` is 'yes', '007').
    """
    problem = "its items must be plain values, not lists or mappings"
    try:
        parsed = yaml.load(text, Loader=yaml.BaseLoader)  # BaseLoader: only str, list, dict
    except yaml.YAMLError as exc:
        parsed, problem = None, str(getattr(exc, "problem", None) or exc)
    if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
        return parsed
    if not isinstance(parsed, list) and parsed is not None:
        problem = "it is not a single list"
    raise ValueError(
        f"param '{name}' starts with '[' but is not a flow list like [\"a\", \"b\"] or [a, b] ({problem})"
    )


def parse_param_args(items: Iterable[str]) -> dict[str, str]:
    """``-p key=value`` options as a dict; a malformed or repeated key is BadInput.

    Values are never echoed back: a -p value may be a secret.
    """
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(
                f"-p '{key or item}' is not key=value.", key=key or None, fix="write -p name=value."
            )
        if key in params:
            raise BadInput(
                f"param '{key}' is given twice with -p.",
                key=key,
                fix=f"pass -p {key}=VALUE once (the two values disagree or repeat).",
            )
        params[key] = value
    return params


def resolve_params(
    loaded: LoadedRunbook, given: dict[str, str], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Typed params; any problem is BadInput (exit 2).

    Each declared param comes from, in this order:

    1. ``-p name=value`` (``given``);
    2. the environment variable ``MAINTAINER_PARAM_<NAME>`` (``environ``, default ``os.environ``):
       the param name upper-cased, every character that is not a letter or digit turned into
       ``_`` (``db-password`` -> ``MAINTAINER_PARAM_DB_PASSWORD``). This keeps secrets out of
       ``ps``, shell history and crontabs. A value given both ways: ``-p`` wins;
    3. the runbook's ``default``.

    Values from the environment are typed and validated exactly like ``-p`` values, and their
    errors name the variable. Variables for params the runbook does not declare are ignored.
    """
    environ = os.environ if environ is None else environ
    specs = loaded.model.params
    problems: list[BadInput] = []
    for key in given:
        if key not in specs:
            problems.append(
                BadInput(
                    f"unknown param '{key}' for runbook {loaded.ref}.",
                    key=key,
                    fix=_did_you_mean(key, specs, "params") + f" (maintainer runbooks show {loaded.ref}).",
                )
            )
    values: dict[str, Any] = {}
    for key, spec in specs.items():
        var = env_var_for(key)
        if key in given or var in environ:
            from_env = key not in given
            try:
                values[key] = coerce_param(key, spec, environ[var] if from_env else given[key])
            except ValueError as exc:
                if from_env:
                    problems.append(
                        BadInput(
                            f"{exc} (from the environment variable {var}).",
                            key=var,
                            fix=f"set {var} to a value of type {spec.type}, or pass -p {key}=VALUE.",
                        )
                    )
                else:
                    fix = f"pass -p {key}=VALUE of type {spec.type}."
                    if spec.type == "list":
                        fix = f"""pass -p {key}=a,b or -p '{key}=["a", "b"]' (JSON or YAML flow list)."""
                    problems.append(BadInput(f"{exc}.", key=key, fix=fix))
        elif spec.default is not None:
            values[key] = spec.default
        elif spec.is_required:
            problems.append(
                BadInput(
                    f"runbook {loaded.ref} needs param '{key}' ({spec.description or spec.type}).",
                    key=key,
                    fix=f"pass -p {key}=VALUE, or set the environment variable {var}.",
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
    """Validate one file, a directory, or every runbook of the project: (files checked, problems).

    Every problem comes back in one pass, misnamed files (``1.0.yml``, ``1.0.0.yaml``) included.
    A project without runbooks/ is BadInput (there is nothing to validate: a wrong --project).
    """
    if target is None:
        files = runbook_files(project)
    elif target.is_dir():
        files = sorted(target.rglob("*.yml")) + sorted(target.rglob("*.yaml"))
    else:
        files = [target]
    problems: list[BadInput] = []
    for path in files:
        if target is None and (misplaced := _misplaced(path)) is not None:
            problems.append(misplaced)
            continue
        try:
            load(path, project)
        except ValidationFailed as exc:
            problems.extend(exc.problems)
        except BadInput as exc:
            problems.append(exc)
    return len(files), problems
