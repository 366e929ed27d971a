"""health_check's error-log message: each distinct fatal once, with the component it comes from."""

from __future__ import annotations

from maintainer.actions.health_check import describe_fatals

FATAL = (
    "PHP Fatal error:  Uncaught Error: Call to undefined function nope() in "
    "/srv/shop/wp-content/plugins/broken-plugin/broken-plugin.php:7"
)


def test_the_same_fatal_on_every_request_is_named_once_with_its_count_and_plugin() -> None:
    lines = [f"[29-Nov-2026 23:28:2{i} UTC] {FATAL}" for i in range(3)]
    text = describe_fatals(lines)
    assert text == f"(x3, plugin broken-plugin) {FATAL}"


def test_distinct_errors_are_all_listed_up_to_the_limit() -> None:
    lines = [f"[t] PHP Parse error: syntax error in /srv/a{i}.php:1" for i in range(5)]
    text = describe_fatals(lines, shown=3)
    assert text.count("PHP Parse error") == 3 and text.endswith("(and 2 other distinct error(s))")
    assert "plugin" not in text
