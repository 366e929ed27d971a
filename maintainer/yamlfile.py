"""YAML loading that remembers where every key and item came from.

Validation errors must name the file and line, so mappings load as
``LineDict`` and sequences as ``LineList``, each knowing the line of its
own start and of each of its keys or items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import BadInput


class LineDict(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]


class LineList(list[Any]):
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise BadInput(
                f"duplicate key '{key}'",
                line=key_node.start_mark.line + 1,
                key=str(key),
                fix="remove one of the two.",
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[str(key)] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load(path: Path) -> Any:
    """Parse one YAML document; errors become BadInput with file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BadInput("file not found.", file=path, fix="check the path.") from exc
    except UnicodeDecodeError as exc:
        raise BadInput("not UTF-8 text.", file=path, fix="save the file as UTF-8.") from exc
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except BadInput as exc:
        exc.file = str(path)
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise BadInput(
            f"invalid YAML: {exc.problem or exc}",
            file=path,
            line=line,
            fix="correct the YAML syntax (indentation, quoting, a missing ':').",
        ) from exc
    except yaml.YAMLError as exc:
        raise BadInput(f"invalid YAML: {exc}", file=path) from exc


def line_of(data: Any, loc: tuple[str | int, ...]) -> int | None:
    """The line of the deepest node of ``loc`` that exists in ``data``."""
    line: int | None = getattr(data, "line", None) or None
    node = data
    for part in loc:
        if isinstance(node, LineDict) and isinstance(part, str):
            if part in node.key_lines:
                line = node.key_lines[part]
            if part not in node:
                break
            node = node[part]
        elif isinstance(node, LineList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line
