"""Jinja2 rendering of runbook values: sandboxed, strict, cached.

Values are rendered like Ansible does: a string that is a single
``{{ expression }}`` keeps the expression's native type (a list stays a
list), any other string with template syntax renders to a string.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, Undefined, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: the names a runbook template may use at top level
CONTEXT_ROOTS = frozenset({"site", "params", "steps", "run"})
#: template files (the ``template`` action) also see the step's ``vars``
FILE_CONTEXT_ROOTS = CONTEXT_ROOTS | {"vars"}

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


def _to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, sort_keys=True, default=str)


def _b64encode(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _make_env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    env.filters.update(
        {
            # quote is how runbooks put values into shell commands safely
            "quote": lambda v: shlex.quote(str(v)),
            "to_json": _to_json,
            "b64encode": _b64encode,
            "basename": lambda v: os.path.basename(str(v)),
            "dirname": lambda v: os.path.dirname(str(v)),
            "bool": lambda v: (
                str(v).strip().lower() in ("1", "true", "yes", "on") if isinstance(v, str) else bool(v)
            ),
        }
    )
    return env


ENV = _make_env()


def has_template(value: str) -> bool:
    return "{{" in value or "{%" in value


@lru_cache(maxsize=4096)
def _compiled_template(source: str) -> Any:
    return ENV.from_string(source)


@lru_cache(maxsize=4096)
def _compiled_expression(source: str) -> Any:
    return ENV.compile_expression(source, undefined_to_none=False)


def _defined(value: Any) -> Any:
    """An expression's value; a compiled expression hands back Undefined instead of raising."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template inside ``value`` (str, list, dict), recursively."""
    if isinstance(value, str):
        if not has_template(value):
            return value
        match = _SINGLE_EXPR.match(value)
        if match:
            return _defined(_compiled_expression(match.group("expr"))(**context))
        return _compiled_template(value).render(**context)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def evaluate(condition: str | bool, context: Mapping[str, Any]) -> bool:
    """A ``when:`` condition: a bare expression or a ``{{ }}`` template."""
    if isinstance(condition, bool):
        return condition
    text = condition.strip()
    match = _SINGLE_EXPR.match(text)
    expr = match.group("expr") if match else text
    result = _defined(_compiled_expression(expr)(**context))
    if isinstance(result, str):
        return result.strip().lower() in ("1", "true", "yes", "on")
    return bool(result)


def parse_template(value: str, *, expression: bool = False) -> nodes.Template:
    """Parse (and compile, so an unknown filter is found too) for static checks.

    Raises jinja2.TemplateSyntaxError.
    """
    if expression:
        match = _SINGLE_EXPR.match(value)
        value = "{{ " + (match.group("expr") if match else value) + " }}"
    tree = ENV.parse(value)
    ENV.compile(tree)
    return tree


# ------------------------------------------------------------ template files


@lru_cache(maxsize=32)
def file_env(root: str) -> ImmutableSandboxedEnvironment:
    """The environment for template files under ``root`` (a project's templates/).

    The same sandbox, strictness, filters, tests and globals as runbook values;
    the loader refuses paths that leave ``root``.
    """
    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(root),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(ENV.filters)
    env.tests.update(ENV.tests)
    env.globals.update(ENV.globals)
    return env


def file_template(root: Path, src: str) -> Template:
    """The compiled template ``root/src``: what the template action renders.

    Raises jinja2.TemplateNotFound, or TemplateSyntaxError (with ``lineno``).
    """
    return file_env(str(root)).get_template(src)


def parse_file(root: Path, src: str) -> tuple[nodes.Template, Path]:
    """``root/src`` compiled (as the action would) and parsed, for static checks: (tree, file)."""
    env = file_env(str(root))
    template = env.get_template(src)  # TemplateNotFound, TemplateSyntaxError
    assert env.loader is not None
    source, filename, _ = env.loader.get_source(env, src)
    return env.parse(source, src, filename), Path(filename or template.filename or root / src)


def referenced_files(tree: nodes.Template) -> list[tuple[str, int]]:
    """(name, line) of every template ``tree`` includes, imports or extends by a literal name."""
    found: list[tuple[str, int]] = []
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        assert isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport)
        target = node.template
        candidates = target.items if isinstance(target, nodes.Tuple | nodes.List) else [target]
        for item in candidates:
            if isinstance(item, nodes.Const) and isinstance(item.value, str):
                found.append((item.value, node.lineno))
    return found


def located_references(tree: nodes.Template) -> Iterator[tuple[str, str | None, int]]:
    """Every (root name, first attribute, line) the template reads, e.g. ('params', 'url', 3)."""
    undeclared = meta.find_undeclared_variables(tree)
    consumed: set[int] = set()
    found: list[tuple[int, str, str | None]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target = node.node
        if isinstance(target, nodes.Name) and target.name in undeclared:
            attr: str | None = None
            if isinstance(node, nodes.Getattr):
                attr = node.attr
            elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
                attr = node.arg.value if isinstance(node.arg.value, str) else None
            consumed.add(id(target))
            found.append((node.lineno, target.name, attr))
    for name_node in tree.find_all(nodes.Name):
        assert isinstance(name_node, nodes.Name)
        if name_node.ctx == "load" and name_node.name in undeclared and id(name_node) not in consumed:
            found.append((name_node.lineno, name_node.name, None))
    for lineno, root, attr in sorted(found, key=lambda f: f[0]):
        yield root, attr, lineno


def references(tree: nodes.Template) -> Iterator[tuple[str, str | None]]:
    """Every (root name, first attribute) the template reads, e.g. ('params', 'url'), once each."""
    seen: set[tuple[str, str | None]] = set()
    for root, attr, _ in located_references(tree):
        if (root, attr) not in seen:
            seen.add((root, attr))
            yield root, attr


@lru_cache(maxsize=4096)
def _roots(source: str) -> frozenset[str]:
    return frozenset(root for root, _ in references(ENV.parse(source)))


def reads(value: Any, root: str) -> bool:
    """Whether any template inside ``value`` reads the variable ``root`` (e.g. 'steps')."""
    if isinstance(value, str):
        return has_template(value) and root in _roots(value)
    if isinstance(value, dict):
        return any(reads(v, root) for v in value.values())
    if isinstance(value, list):
        return any(reads(v, root) for v in value)
    return False


__all__ = [
    "CONTEXT_ROOTS",
    "ENV",
    "FILE_CONTEXT_ROOTS",
    "TemplateError",
    "evaluate",
    "file_env",
    "file_template",
    "has_template",
    "located_references",
    "parse_file",
    "parse_template",
    "reads",
    "referenced_files",
    "references",
    "render",
]
