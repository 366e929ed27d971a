from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import TemplateError, UndefinedError
from jinja2.exceptions import SecurityError

from maintainer.redact import MASK, Redactor, is_secret_key
from maintainer.templating import evaluate, render

CTX = {
    "site": {"name": "shop", "docroot": "/var/www/a b"},
    "params": {"n": 3, "names": ["x", "y"]},
    "steps": {},
    "run": {},
}


def test_single_expression_keeps_its_type() -> None:
    assert render("{{ params.n }}", CTX) == 3
    assert render("{{ params.names }}", CTX) == ["x", "y"]
    assert render("n={{ params.n }}", CTX) == "n=3"
    assert render({"a": ["{{ site.name }}"]}, CTX) == {"a": ["shop"]}


def test_quote_filter_makes_shell_values_safe() -> None:
    assert render("ls {{ site.docroot | quote }}", CTX) == "ls '/var/www/a b'"
    assert render('{{ "x\'; rm -rf /" | quote }}', CTX) == "'x'\"'\"'; rm -rf /'"


def test_undefined_is_an_error_not_empty() -> None:
    with pytest.raises(UndefinedError):
        render("{{ site.nope }}", CTX)
    with pytest.raises(UndefinedError):
        render("{{ nothing }}", CTX)


def test_sandbox_blocks_python_internals() -> None:
    with pytest.raises(SecurityError):
        render("{{ ''.__class__.__mro__ }}", CTX)
    with pytest.raises((SecurityError, TemplateError)):
        render("{{ site.items.__globals__ }}", CTX)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("params.n > 2", True),
        ("{{ params.n > 5 }}", False),
        (True, True),
        ("'x' in params.names", True),
        ("false", False),
    ],
)
def test_when_conditions(condition: object, expected: bool) -> None:
    assert evaluate(condition, CTX) is expected  # type: ignore[arg-type]


def test_redactor_masks_by_key_and_by_value() -> None:
    redactor = Redactor()
    redactor.collect({"db": {"password": "hunter2hunter2", "user": "app"}, "api_token": "tok-123456"})
    assert redactor({"db": {"password": "hunter2hunter2", "user": "app"}}) == {
        "db": {"password": MASK, "user": "app"}
    }
    assert redactor.text("mysql -phunter2hunter2 -u app") == f"mysql -p{MASK} -u app"
    assert redactor(["tok-123456 used"]) == [f"{MASK} used"]


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("db_pass", True),
        ("api_key", True),
        ("aws_secret_access_key", True),
        ("ansible_ssh_private_key_file", False),
        ("maintainer_host_key_checking", False),
        ("docroot", False),
        ("ansible_user", False),
    ],
)
def test_secret_key_names(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_located_references_give_each_line() -> None:
    from maintainer.templating import ENV, located_references, references

    tree = ENV.parse(
        "a\n{{ params.x }}\n{% for i in site.items %}{{ i }}{{ steps.s.outputs }}{% endfor %}\n{{ nope }}"
    )
    found = list(located_references(tree))
    assert ("params", "x", 2) in found and ("steps", "s", 3) in found and ("nope", None, 4) in found
    assert all(root != "i" for root, _, _ in found)
    assert set(references(tree)) == {(r, a) for r, a, _ in found}


def test_unknown_filter_is_a_static_error() -> None:
    from jinja2 import TemplateSyntaxError

    from maintainer.templating import parse_template

    with pytest.raises(TemplateSyntaxError, match="no_such"):
        parse_template("{{ params.x | no_such }}")


def test_template_files_share_the_value_filters_and_stay_inside_their_root(tmp_path: Path) -> None:
    from jinja2 import TemplateNotFound

    from maintainer.templating import file_template, parse_file, referenced_files

    (tmp_path / "t.j2").write_text("{{ site.docroot | quote }}\n{% include 'part.j2' %}\n")
    (tmp_path / "part.j2").write_text("")
    assert file_template(tmp_path, "t.j2").render(site={"docroot": "/a b"}).startswith("'/a b'")
    tree, file = parse_file(tmp_path, "t.j2")
    assert file == tmp_path / "t.j2" and referenced_files(tree) == [("part.j2", 2)]
    with pytest.raises(TemplateNotFound):
        parse_file(tmp_path / "sub", "../t.j2")
