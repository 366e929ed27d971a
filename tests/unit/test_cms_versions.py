"""Version comparison (PHP's version_compare, as WordPress and the feeds use it) and version ranges."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess

import pytest

from maintainer.cms.versions import VersionRange, canonical, compare, newest, parse_range


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("6.4", "6.4.1"),
        ("6.4", "6.4.0"),  # a missing part is older than a number, as in PHP
        ("6.4.2", "6.4.3"),
        ("6.9", "6.10"),  # numbers, not strings
        ("6.4.3", "6.5"),
        ("1.0.0-beta", "1.0.0"),
        ("1.0.0-alpha", "1.0.0-beta"),
        ("1.0.0-dev", "1.0.0-alpha"),
        ("1.0.0-beta2", "1.0.0-RC1"),
        ("1.0.0-RC1", "1.0.0"),
        ("6.5-RC1", "6.5"),
        ("1.0.0-beta.9", "1.0.0-beta.10"),
        ("1.0.0", "1.0.0-pl1"),  # a patch level is newer than the release
        ("1.0.0-foo", "1.0.0-dev"),  # any other word ranks below dev
    ],
)
def test_wordpress_style_versions_compare_as_php_does(older: str, newer: str) -> None:
    assert compare(older, newer) == -1
    assert compare(newer, older) == 1
    assert compare(older, older) == 0


def test_separators_and_letters_are_canonicalised_like_php() -> None:
    assert canonical("1.0.0-beta2") == "1.0.0.beta.2"
    assert canonical("1.0rc1") == "1.0.rc.1"
    assert canonical("5.0_1+b") == "5.0.1.b"
    assert compare("1.0.0-beta", "1.0.0.beta") == 0
    assert compare("1.0rc1", "1.0-RC1") == 0
    assert compare("", "") == 0 and compare("", "1") == -1
    assert newest(["6.4.2", "6.10", "6.4.10"]) == "6.10" and newest([]) is None


@pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is installed by .ci/run")
def test_compare_agrees_with_php_version_compare_on_every_pair() -> None:
    versions = [
        "6.4", "6.4.0", "6.4.1", "6.10", "1.0.0-beta", "1.0.0-beta2", "1.0.0-RC1", "1.0.0rc1", "1.0.0-alpha",
        "1.0.0-dev", "1.0.0pl1", "1.0.0-p1", "1", "1.0.0.1", "2.0-Beta", "8.x-1.5", "1.0.0+build", "1.0a",
        "1..0", "1.0-", "", "1.0.0-patch", "abc", "10.1.5", "1.2.3-beta.10",
    ]  # fmt: skip
    pairs = list(itertools.product(versions, versions))
    php = subprocess.run(
        [
            "php",
            "-r",
            "$o=[]; foreach (json_decode(stream_get_contents(STDIN)) as $p) { $o[] = version_compare($p[0], $p[1]); } echo json_encode($o);",
        ],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(php.stdout)
    assert [compare(a, b) for a, b in pairs] == expected


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("<6.4.3", ["6.4.2", "6.4", "5.0", "6.4.3-RC1"], ["6.4.3", "6.5"]),
        ("<=1.2.3", ["1.2.3", "1.0"], ["1.2.4", "1.2.3.1"]),
        (">=6.0 <6.4.3", ["6.0", "6.4.2"], ["5.9.9", "6.4.3", "6.0-beta"]),
        (">=6.0, <6.4.3", ["6.1"], ["6.4.3"]),
        ("> 1.0 <= 2.0", ["1.0.1", "2.0"], ["1.0", "2.0.1"]),
        ("1.2.3", ["1.2.3"], ["1.2.4", "1.2"]),
        ("=1.2.3", ["1.2.3"], ["1.2.2"]),
        ("*", ["0.1", "99"], []),
        ("1.0.0 - 1.2.3", ["1.0.0", "1.2.3"], ["0.9", "1.2.4"]),  # Wordfence's key: both ends included
        ("* - 1.2.3", ["0.1", "1.2.3"], ["1.2.4"]),
    ],
)
def test_range_strings(text: str, inside: list[str], outside: list[str]) -> None:
    found = parse_range(text)
    assert all(v in found for v in inside), [v for v in inside if v not in found]
    assert not any(v in found for v in outside), [v for v in outside if v in found]


def test_range_objects_and_their_text() -> None:
    found = parse_range({"from": "6.0", "to_exclusive": "6.4.3"})
    assert found == VersionRange("6.0", True, "6.4.3", False)
    assert str(found) == ">=6.0 <6.4.3" and found.record() == {"from": "6.0", "to_exclusive": "6.4.3"}
    assert "6.4.3" in parse_range({"from_exclusive": "6.0", "to_inclusive": "6.4.3"})
    assert "6.0" not in parse_range({"from_exclusive": "6.0", "to_inclusive": "6.4.3"})
    assert str(parse_range({"to_inclusive": "2"})) == "<=2" and str(parse_range({})) == "*"
    assert str(parse_range("1.2.3")) == "=1.2.3"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("<1.0 <2.0", "two upper bounds"),
        (">1.0 >=2.0", "two lower bounds"),
        ("1.0 <2.0", "cannot be combined"),
        ("<1.0 >", "cannot read"),
        ({"from": "1", "fixed": "2"}, "unknown key(s) fixed"),
        ({"from": "1", "from_exclusive": "1"}, "not both"),
        ({"to_inclusive": "1", "to_exclusive": "2"}, "not both"),
        ({"from": 1}, "must be a version string"),
        (12, "a string or an object"),
    ],
)
def test_invalid_ranges_say_why(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_range(bad)
