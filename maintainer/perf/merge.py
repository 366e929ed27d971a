"""Put maintainer's own settings into a server's config file and keep everything else as it is.

A tuned config is rendered as a *fragment*: only the settings maintainer manages, each with the
comment lines that give its reason (they start with ``MARK``). ``merge_ini`` (PHP-FPM pools,
php.ini, my.cnf) and ``merge_nginx`` (nginx.conf) write the fragment into the operator's file:

- a setting the file has is changed where it stands (its indentation kept); the ``MARK`` comment
  lines right above it are maintainer's from an earlier run and are replaced by the new reason;
- a setting the file lacks is added to its section or block, after the managed settings already
  there (or at the start of the block), and a section or block the file lacks is added at its end;
- every other line (the operator's settings, comments, includes, server blocks, blank lines) is
  kept byte for byte, so a diff of the result shows the real change and nothing else.

Both raise ``MergeError`` (a message for people) on a file they cannot read safely (an unclosed
block or quote): rather no change than a guessed one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: the comment text that marks maintainer's reason lines (after '#' or ';')
MARK = "maintainer:"
#: nginx directives that may appear more than once in a context: told apart by their arguments
_NGINX_KEYED_BY_ARGS = {"map": -1, "geo": -1, "split_clients": -1, "upstream": 0}


class MergeError(ValueError):
    pass


# ------------------------------------------------------------------ ini (PHP-FPM, php.ini, my.cnf)

_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_KEY = re.compile(r"^\s*([^=;#\s][^=]*?)\s*=")


def _is_mark(line: str, prefixes: tuple[str, ...]) -> bool:
    stripped = line.strip()
    return any(stripped.startswith(p) and stripped[len(p) :].strip().startswith(MARK) for p in prefixes)


@dataclass
class _IniItem:
    key: str
    lines: list[str]  # its reason comments, then the setting


def _ini_fragment(text: str, prefixes: tuple[str, ...]) -> list[tuple[str | None, list[_IniItem]]]:
    """The fragment's sections (None: before any header) and their settings with reason comments."""
    sections: list[tuple[str | None, list[_IniItem]]] = [(None, [])]
    pending: list[str] = []
    for line in text.splitlines():
        header = _SECTION.match(line)
        if header:
            sections.append((header[1].strip(), []))
            pending = []
        elif not line.strip():
            pending = []
        elif line.strip().startswith(prefixes):  # only reason comments travel with their setting
            if _is_mark(line, prefixes):
                pending.append(line.strip())
        else:
            key = _KEY.match(line)
            if not key:
                raise MergeError(f"the template renders a line that is no 'key = value': {line.strip()!r}")
            sections[-1][1].append(_IniItem(key[1], [*pending, line.strip()]))
            pending = []
    return [(name, items) for name, items in sections if items]


def merge_ini(current: str, fragment: str, *, comments: tuple[str, ...] = (";", "#")) -> str:
    """``current`` with the fragment's settings set in their sections (see the module's docstring)."""
    lines = current.splitlines()
    for section, items in _ini_fragment(fragment, comments):
        start, end = _ini_section(lines, section)
        if start is None:  # the file lacks the section: add it at the end
            if lines and lines[-1].strip():
                lines.append("")
            lines.append(f"[{section}]")
            start = end = len(lines)
        last_managed: int | None = None
        for item in items:
            key_lines = [n for n in range(start, end) if (m := _KEY.match(lines[n])) and m[1] == item.key]
            if key_lines:
                first = key_lines[0]
                indent = _indent(lines[first])
                mark_start = first
                while mark_start > start and _is_mark(lines[mark_start - 1], comments):
                    mark_start -= 1
                setting = indent + item.lines[-1]
                replaced = [indent + line for line in item.lines[:-1]] + [setting]
                lines[mark_start : first + 1] = replaced
                shift = len(replaced) - (first + 1 - mark_start)
                end += shift
                # a key set twice (the later one wins in PHP and MariaDB): both say the new value
                for n in key_lines[1:]:
                    lines[n + shift] = _indent(lines[n + shift]) + item.lines[-1]
                last_managed = mark_start + len(replaced) - 1
            else:
                where = last_managed + 1 if last_managed is not None else _ini_insert_at(lines, start, end)
                lines[where:where] = item.lines
                end += len(item.lines)
                last_managed = where + len(item.lines) - 1
    return "\n".join(lines) + "\n"


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _ini_section(lines: list[str], section: str | None) -> tuple[int | None, int]:
    """The body of ``section`` in ``lines``: (first line after its header, the next header's line)."""
    start: int | None = 0 if section is None else None
    for n, line in enumerate(lines):
        header = _SECTION.match(line)
        if not header:
            continue
        if start is not None:
            return start, n
        if header[1].strip() == section:
            start = n + 1
    return start, len(lines)


def _ini_insert_at(lines: list[str], start: int, end: int) -> int:
    """After the section's last line that is not blank (new settings go to its end)."""
    where = end
    while where > start and not lines[where - 1].strip():
        where -= 1
    return where


# ------------------------------------------------------------------ nginx


@dataclass
class _Directive:
    name: str
    args: list[str]
    start: int  # offset of the first character of its line
    end: int  # offset just after its ';' or '}'
    indent: str
    children: list[_Directive] = field(default_factory=list)
    body_start: int | None = None  # offset after '{' (blocks only)
    body_end: int | None = None  # offset of the closing '}'
    comments_start: int = -1  # offset of the first line of its MARK comments right above it

    @property
    def key(self) -> str:
        index = _NGINX_KEYED_BY_ARGS.get(self.name)
        if index is not None and self.args:
            return f"{self.name} {self.args[index]}"
        return self.name


def _parse_nginx(text: str) -> list[_Directive]:
    """nginx's config syntax: directives with their offsets, blocks with their children."""
    root: list[_Directive] = []
    stack: list[_Directive] = []
    words: list[str] = []
    first = -1  # offset where the current directive's first word starts
    i, n = 0, len(text)

    def line_start(offset: int) -> int:
        return text.rfind("\n", 0, offset) + 1

    def make(end: int) -> _Directive:
        if not words:
            raise MergeError(f"line {text.count(chr(10), 0, end) + 1}: a ';' or '{{' without a directive")
        start = line_start(first)
        indent = text[start:first]
        if indent.strip():  # another directive on the same line before it: no clean line of its own
            start, indent = first, ""
        directive = _Directive(words[0], words[1:], start, end, indent)
        directive.comments_start = _mark_comments_start(text, start)
        (stack[-1].children if stack else root).append(directive)
        return directive

    while i < n:
        char = text[i]
        if char == "#":
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
        elif char.isspace():
            i += 1
        elif char == ";":
            make(i + 1)
            words, i = [], i + 1
        elif char == "{":
            block = make(i + 1)
            block.body_start = i + 1
            stack.append(block)
            words, i = [], i + 1
        elif char == "}":
            if words:
                raise MergeError(f"line {text.count(chr(10), 0, i) + 1}: a directive without ';' before '}}'")
            if not stack:
                raise MergeError(f"line {text.count(chr(10), 0, i) + 1}: a '}}' that closes no block")
            block = stack.pop()
            block.body_end, block.end = i, i + 1
            i += 1
        else:
            if not words:
                first = i
            start = i
            if char in "'\"":
                close = i + 1
                while close < n and text[close] != char:
                    close += 2 if text[close] == "\\" else 1
                if close >= n:
                    raise MergeError(f"line {text.count(chr(10), 0, i) + 1}: an unclosed quote")
                i = close + 1
            else:
                while i < n and not text[i].isspace() and text[i] not in ";{}#":
                    i += 2 if text[i] == "\\" else 1
            words.append(text[start:i])
    if stack:
        raise MergeError(f"the block '{stack[-1].name}' is not closed (a '}}' is missing)")
    if words:
        raise MergeError(f"the last directive '{words[0]}' has no ';'")
    return root


def _mark_comments_start(text: str, start: int) -> int:
    """Where the MARK comment lines right above the line at ``start`` begin (``start``: none)."""
    begin = start
    while begin > 0:
        previous = text.rfind("\n", 0, begin - 1) + 1
        if not _is_mark(text[previous : begin - 1], ("#",)):
            break
        begin = previous
    return begin


@dataclass
class _Edit:
    start: int
    end: int
    text: str


def _reindent(text: str, old_indent: str, new_indent: str) -> str:
    """The rendered lines of a directive (and its comments), moved from one indentation to another."""
    out = []
    for line in text.split("\n"):
        out.append(new_indent + line[len(old_indent) :] if line.startswith(old_indent) else new_indent + line)
    return "\n".join(out)


def _child_indent(text: str, block: _Directive | None, siblings: list[_Directive]) -> str:
    if siblings:
        return siblings[0].indent
    return "" if block is None else block.indent + "    "


def _rendered(fragment: str, item: _Directive) -> str:
    """The fragment's lines of ``item``: its MARK comments and the directive, as written there."""
    return fragment[item.comments_start : item.end]


def _plan_nginx(
    text: str,
    fragment: str,
    current: list[_Directive],
    wanted: list[_Directive],
    block: _Directive | None,
    edits: list[_Edit],
) -> None:
    by_key: dict[str, _Directive] = {}
    for directive in current:
        by_key.setdefault(directive.key, directive)
    indent = _child_indent(text, block, current)
    # new directives go after the last managed one already in this block, else at its start
    anchor: int | None = None
    pending: list[str] = []

    def flush() -> None:
        if not pending:
            return
        if anchor is not None:
            edits.append(_Edit(anchor, anchor, "".join("\n" + p for p in pending)))
        elif block is None:  # the main context: at the top, after the file's opening comments
            top = _after_leading_comments(text)
            edits.append(_Edit(top, top, "".join(p + "\n" for p in pending)))
        else:
            assert block.body_start is not None
            at = _line_end(text, block.body_start)
            edits.append(_Edit(at, at, "".join("\n" + p for p in pending)))
        pending.clear()

    for item in wanted:
        existing = by_key.get(item.key)
        if existing is None:
            pending.append(_reindent(_rendered(fragment, item), item.indent, indent))
            continue
        flush()
        if item.children and existing.body_start is not None and item.key != item.name:
            # a keyed block (map $var): replaced whole, it is maintainer's
            edits.append(
                _Edit(
                    existing.comments_start,
                    existing.end,
                    _reindent(_rendered(fragment, item), item.indent, existing.indent),
                )
            )
        elif item.children and existing.body_start is not None:  # events, http: into the block
            _plan_nginx(text, fragment, existing.children, item.children, existing, edits)
        else:
            edits.append(
                _Edit(
                    existing.comments_start,
                    existing.end,
                    _reindent(_rendered(fragment, item), item.indent, existing.indent),
                )
            )
        anchor = _line_end(text, existing.end)
    flush()


def _line_end(text: str, offset: int) -> int:
    """The end of the line ``offset`` is on (a trailing comment stays with its directive)."""
    newline = text.find("\n", offset)
    return len(text) if newline < 0 else newline


def _after_leading_comments(text: str) -> int:
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.lstrip().startswith("#"):
            break
        offset += len(line)
    return offset


def merge_nginx(current: str, fragment: str) -> str:
    """``current`` (an nginx.conf) with the fragment's directives set in their blocks."""
    try:
        ours = _parse_nginx(fragment)
    except MergeError as exc:
        raise MergeError(f"the rendered template: {exc}") from None
    theirs = _parse_nginx(current)
    edits: list[_Edit] = []
    _plan_nginx(current, fragment, theirs, ours, None, edits)
    out = current
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        out = out[: edit.start] + edit.text + out[edit.end :]
    return out if out.endswith("\n") else out + "\n"
