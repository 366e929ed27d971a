"""Redactor: which keys name secrets, short secrets, the forms filters make of a secret."""

from __future__ import annotations

import pytest

from maintainer.redact import MASK, Redactor, is_secret_key, key_words
from maintainer.templating import render


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "pass",
        "ansible_ssh_pass",
        "ansible_become_pass",
        "ansible_password",
        "db_password",
        "vault_db_password",
        "db_password_2",
        "smtp-passwd",
        "gpg.passphrase",
        "aws_secret_access_key",
        "secret_key",
        "api_key",
        "apikey",
        "stripe_apikey",
        "private_key",
        "api_token",
        "AUTH_TOKEN",
        "basic_auth",
        "dbPassword",
        "awsSecretAccessKey",
        "APIKey",
        "credentials",
        "vault_smtp_relay_secret",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "compass_theme",
        "passenger_max_pool_size",
        "passenger_enabled",
        "token_ttl",
        "author",
        "oauth_client_id",
        "ansible_ssh_private_key_file",
        "password_file",
        "vault_password_path",
        "maintainer_host_key_checking",
        "auth_method",
        "secret_type",
        "db_user",
        "keyPassFile",
        "api_keys_url",
        "docroot",
        "",
        42,
    ],
)
def test_not_secret_keys(key: object) -> None:
    assert not is_secret_key(key)


def test_key_words_split_on_separators_and_camel_case() -> None:
    assert key_words("awsSecretAccessKey") == ["aws", "secret", "access", "key"]
    assert key_words("APIKey") == ["api", "key"]
    assert key_words("x-db.pass_2") == ["x", "db", "pass"]


def test_db_dict_password_masked_by_key() -> None:
    redactor = Redactor()
    site_vars = {"db": {"engine": "mariadb", "user": "app", "password": "pw"}, "compass_theme": "default"}
    redactor.collect(site_vars)
    assert redactor(site_vars) == {
        "db": {"engine": "mariadb", "user": "app", "password": MASK},
        "compass_theme": "default",
    }
    assert redactor.text("mysql -u app -ppw") == "mysql -u app -ppw"  # inside a word: left alone
    assert redactor.text("password: pw") == f"password: {MASK}"


def test_short_secrets_masked_only_as_whole_tokens() -> None:
    redactor = Redactor(["ab", "x9z", "7"])
    assert (
        redactor.text("table ab x9z ax9z x9zz pw=ab 'ab' ab.")
        == f"table {MASK} {MASK} ax9z x9zz pw={MASK} '{MASK}' {MASK}."
    )
    assert redactor.text("port 7 of 77") == f"port {MASK} of 77"
    assert redactor(["ab", {"note": "a cab"}]) == [MASK, {"note": "a cab"}]


def test_long_secrets_masked_anywhere() -> None:
    redactor = Redactor(["abcd"])
    assert redactor.text("xabcdx") == f"x{MASK}x"


def test_short_secret_with_punctuation_at_its_edge() -> None:
    redactor = Redactor(["!x"])
    assert redactor.text("a!x b") == f"a{MASK} b"  # not alphanumeric at the start: no boundary there
    assert redactor.text("!xy") == "!xy"


def test_registered_keys_mask_whatever_the_value() -> None:
    redactor = Redactor()
    redactor.add_keys(["pw", ("db", "login"), ("users", 0, "pin")])
    data = {
        "pw": "1",
        "db": {"login": "u", "host": "h"},
        "login": "visible",
        "users": [{"pin": 12, "name": "n"}],
        "step": {"pw": "2"},
        "empty": {"pw": ""},
    }
    assert redactor(data) == {
        "pw": MASK,
        "db": {"login": MASK, "host": "h"},
        "login": "visible",
        "users": [{"pin": MASK, "name": "n"}],
        "step": {"pw": MASK},
        "empty": {"pw": ""},
    }


def test_booleans_and_empty_values_are_not_registered() -> None:
    redactor = Redactor()
    redactor.collect({"use_token": True, "api_token": "", "db_password": None})
    redactor.add([False, None, ""])
    assert redactor.text("True False None") == "True False None"


@pytest.mark.parametrize("secret", ["hun'ter 22", 'q"uo\\te', "ünï", "x9z", "a'b"])
@pytest.mark.parametrize(
    "template",
    [
        "cmd {{ params.pw | quote }} end",
        "cmd {{ ('user:' ~ params.pw) | quote }} end",
        "cmd {{ params | to_json }} end",
        "cmd {{ params.pw | to_json }} end",
        "cmd {{ {'a': [params.pw]} | to_json(indent=2) }} end",
        "cmd {{ params.pw | b64encode }} end",
    ],
)
def test_forms_made_by_our_filters_are_masked(secret: str, template: str) -> None:
    redactor = Redactor([secret])
    rendered = render(template, {"params": {"pw": secret}})
    masked = redactor.text(rendered)
    assert MASK in masked, rendered
    assert masked.startswith("cmd ") and masked.endswith(" end")
    for fragment in ("hun", "ter 22", "uo", "ünï", "\\u00fcn", "x9z"):
        if fragment in rendered:
            assert fragment not in masked, (rendered, masked)
