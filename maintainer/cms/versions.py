"""Versions as WordPress and its tools compare them, and version ranges.

``compare`` is PHP's ``version_compare()``, ported step by step from php-src
(ext/standard/versioning.c): WordPress, WP-CLI, Drupal, Joomla and the vulnerability feeds
(Wordfence Intelligence, WPScan, Patchstack) all compare versions with it, so a range written
for them means here what it means there:

- ``-``, ``_`` and ``+`` separate parts like ``.``, and so does a change between digits and
  letters: ``1.0.0-beta2`` is ``1.0.0.beta.2``;
- numbers compare as numbers (``6.10`` > ``6.9``), a missing part is older than a number
  (``6.4`` < ``6.4.0`` < ``6.4.1``);
- words rank ``dev`` < ``alpha`` = ``a`` < ``beta`` = ``b`` < ``RC`` = ``rc`` < (a number or
  nothing) < ``pl`` = ``p``, any other word below ``dev``: ``6.5-RC1`` < ``6.5`` and
  ``1.0.0-beta`` < ``1.0.0``. As in PHP, the words are case-sensitive (``Beta`` is not ``beta``).

``VersionRange`` is one interval (either end open or closed, or unbounded); ``parse_range``
reads the two ways a feed file writes one (see docs/VULN-FEED.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_SPECIAL_FORMS = (
    ("dev", 0),
    ("alpha", 1),
    ("a", 1),
    ("beta", 2),
    ("b", 2),
    ("RC", 3),
    ("rc", 3),
    ("#", 4),
    ("pl", 5),
    ("p", 5),
)
#: what a number (or a missing part) compares as against a word
_NUMBER = "#N#"


def _isdigit(char: str) -> bool:
    return "0" <= char <= "9"


def _isalnum(char: str) -> bool:
    return _isdigit(char) or "a" <= char <= "z" or "A" <= char <= "Z"


def canonical(version: str) -> str:
    """PHP's ``php_canonicalize_version``: ``1.0.0-beta2`` -> ``1.0.0.beta.2``."""
    if not version:
        return version
    out = [version[0]]
    previous = version[0]
    for char in version[1:]:
        if char in "-_+":
            if out[-1] != ".":
                out.append(".")
        elif (char != "." and previous != ".") and (_isdigit(previous) != _isdigit(char)):
            # a change between digits and non-digits starts a new part
            if out[-1] != ".":
                out.append(".")
            out.append(char)
        elif not _isalnum(char):
            if out[-1] != ".":
                out.append(".")
        else:
            out.append(char)
        previous = char
    return "".join(out)


def _special_order(form: str) -> int:
    for name, order in _SPECIAL_FORMS:
        if form.startswith(name):
            return order
    return -1


def _special(form1: str, form2: str) -> int:
    diff = _special_order(form1) - _special_order(form2)
    return (diff > 0) - (diff < 0)


def compare(version1: str, version2: str) -> int:
    """-1, 0 or 1, as PHP's ``version_compare($version1, $version2)``."""
    if not version1 or not version2:
        if not version1 and not version2:
            return 0
        return 1 if version1 else -1
    rest1 = version1 if version1[0] == "#" else canonical(version1)
    rest2 = version2 if version2[0] == "#" else canonical(version2)
    more1 = more2 = True  # php-src's n1/n2: a '.' followed the last part
    result = 0
    while rest1 and rest2 and more1 and more2:
        part1, dot1, after1 = rest1.partition(".")
        part2, dot2, after2 = rest2.partition(".")
        more1, more2 = bool(dot1), bool(dot2)
        digit1, digit2 = _isdigit(part1[:1] or "x"), _isdigit(part2[:1] or "x")
        if digit1 and digit2:
            number1, number2 = int(part1), int(part2)
            result = (number1 > number2) - (number1 < number2)
        elif not digit1 and not digit2:
            result = _special(part1, part2)
        elif digit1:
            result = _special(_NUMBER, part2)
        else:
            result = _special(part1, _NUMBER)
        if result:
            break
        if more1:
            rest1 = after1
        if more2:
            rest2 = after2
    if result == 0:
        if more1:
            result = 1 if _isdigit(rest1[:1] or "x") else compare(rest1, _NUMBER)
        elif more2:
            result = -1 if _isdigit(rest2[:1] or "x") else compare(_NUMBER, rest2)
    return result


def newest(versions: list[str]) -> str | None:
    """The highest of ``versions`` (None for none)."""
    best: str | None = None
    for version in versions:
        if best is None or compare(version, best) > 0:
            best = version
    return best


@dataclass(frozen=True)
class VersionRange:
    """Versions between ``low`` and ``high``; a missing end is unbounded."""

    low: str | None = None
    low_inclusive: bool = True
    high: str | None = None
    high_inclusive: bool = False

    def __contains__(self, version: object) -> bool:
        if not isinstance(version, str):
            return False
        if self.low is not None:
            low = compare(version, self.low)
            if low < 0 or (low == 0 and not self.low_inclusive):
                return False
        if self.high is not None:
            high = compare(version, self.high)
            if high > 0 or (high == 0 and not self.high_inclusive):
                return False
        return True

    def __str__(self) -> str:
        if self.low is None and self.high is None:
            return "*"
        if self.low is not None and self.low == self.high and self.low_inclusive and self.high_inclusive:
            return f"={self.low}"
        parts = []
        if self.low is not None:
            parts.append(f"{'>=' if self.low_inclusive else '>'}{self.low}")
        if self.high is not None:
            parts.append(f"{'<=' if self.high_inclusive else '<'}{self.high}")
        return " ".join(parts)

    def record(self) -> dict[str, str]:
        """The object form of docs/VULN-FEED.md."""
        data: dict[str, str] = {}
        if self.low is not None:
            data["from" if self.low_inclusive else "from_exclusive"] = self.low
        if self.high is not None:
            data["to_inclusive" if self.high_inclusive else "to_exclusive"] = self.high
        return data


_COMPARATOR = re.compile(r"(<=|>=|==|=|<|>)?\s*([0-9A-Za-z][0-9A-Za-z.+_~-]*)")
_HYPHEN_RANGE = re.compile(r"^\s*(\S+)\s+-\s+(\S+)\s*$")
_RANGE_KEYS = {"from", "from_exclusive", "to_inclusive", "to_exclusive"}


def parse_range(value: Any) -> VersionRange:
    """A range from a string (``"<6.4.3"``, ``">=6.0 <6.4.3"``, ``"1.0 - 1.2.3"``, ``"*"``,
    ``"1.2.3"``) or an object (``{"from": "6.0", "to_exclusive": "6.4.3"}``); ValueError if invalid."""
    if isinstance(value, dict):
        return _range_from_object(value)
    if not isinstance(value, str):
        raise ValueError(f"a version range is a string or an object, not {type(value).__name__}")
    text = value.strip()
    if text in ("", "*"):
        return VersionRange()
    hyphen = _HYPHEN_RANGE.match(text)
    if hyphen:  # Wordfence's "FROM - TO": both ends included, '*' for unbounded
        start, end = hyphen.group(1), hyphen.group(2)
        return VersionRange(None if start == "*" else start, True, None if end == "*" else end, True)
    low: str | None = None
    high: str | None = None
    low_inclusive, high_inclusive = True, False
    exact = False
    position = 0
    for match in _COMPARATOR.finditer(text):
        gap = text[position : match.start()]
        if gap.strip(" ,"):
            raise ValueError(f"cannot read {gap.strip()!r} in version range {value!r}")
        position = match.end()
        operator, version = match.group(1) or "=", match.group(2)
        if exact or (operator in ("=", "==") and (low is not None or high is not None)):
            raise ValueError(f"an exact version cannot be combined with bounds: {value!r}")
        if operator in ("=", "=="):
            low = high = version
            low_inclusive = high_inclusive = exact = True
        elif operator in (">", ">="):
            if low is not None:
                raise ValueError(f"two lower bounds in version range {value!r}")
            low, low_inclusive = version, operator == ">="
        else:
            if high is not None:
                raise ValueError(f"two upper bounds in version range {value!r}")
            high, high_inclusive = version, operator == "<="
    if text[position:].strip(" ,"):
        raise ValueError(f"cannot read {text[position:].strip()!r} in version range {value!r}")
    return VersionRange(low, low_inclusive, high, high_inclusive)


def _range_from_object(value: dict[str, Any]) -> VersionRange:
    unknown = set(value) - _RANGE_KEYS
    if unknown:
        known = ", ".join(sorted(_RANGE_KEYS))
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))} in version range (use {known})")
    if "from" in value and "from_exclusive" in value:
        raise ValueError("a version range has 'from' or 'from_exclusive', not both")
    if "to_inclusive" in value and "to_exclusive" in value:
        raise ValueError("a version range has 'to_inclusive' or 'to_exclusive', not both")
    for key, bound in value.items():
        if not isinstance(bound, str) or not bound.strip():
            raise ValueError(f"'{key}' of a version range must be a version string")
    low = value.get("from", value.get("from_exclusive"))
    high = value.get("to_inclusive", value.get("to_exclusive"))
    return VersionRange(
        low=None if low in (None, "*") else low,
        low_inclusive="from_exclusive" not in value,
        high=None if high in (None, "*") else high,
        high_inclusive="to_inclusive" in value,
    )
