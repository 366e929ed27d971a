"""Keep secrets out of output, logs and the change log.

Two rules, applied everywhere something is shown or recorded:
- a value is masked by what it is: under a key that names a secret (password,
  token, ...), or under a key registered as secret (a ``secret`` param, a var
  that was vault-encrypted), whatever its length;
- any known secret value (vault values, ``secret`` params, secret-named vars),
  and the forms our template filters make of it (``quote``, ``to_json``,
  ``b64encode``), is masked wherever it appears inside a string, e.g. in a
  rendered command. Values shorter than 4 characters only as whole tokens, so
  a secret "ab" leaves "table" alone.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

MASK = "********"

#: the last word of a secret key: db_password, ansible_ssh_pass, api_token, basic_auth
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "passphrase",
        "secret",
        "token",
        "credential",
        "credentials",
        "auth",
    }
)
#: secrets named by their last two words (api_key, aws_secret_access_key, privateKey), or as one word
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key")})
_SECRET_COMPOUNDS = frozenset(a + b for a, b in _SECRET_PAIRS)
# the words of a key: split on anything not alphanumeric (_ - . space) and on camelCase
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# keys that name a path or a switch, not a secret (most already end in another word)
_NOT_SECRET_KEY = re.compile(r"(_file|_path|_checking|_method|_type|_user(name)?)$", re.IGNORECASE)
# secrets shorter than this are masked inside free text only as whole tokens
_SHORT = 4


def key_words(key: object) -> list[str]:
    """The lowercase words of a key, numbers left out: 'awsSecretAccessKey2' -> aws secret access key."""
    return [word.lower() for word in _WORD.findall(str(key)) if not word.isdigit()]


def is_secret_key(key: object) -> bool:
    """Whether a key names a secret by its last word(s): not 'token_ttl', 'compass_theme', 'author'."""
    if _NOT_SECRET_KEY.search(str(key)):
        return False
    words = key_words(key)
    if not words:
        return False
    last = words[-1]
    return last in _SECRET_WORDS or last in _SECRET_COMPOUNDS or tuple(words[-2:]) in _SECRET_PAIRS


def derived_forms(secret: str) -> set[str]:
    """A secret and what the template filters make of it, so a rendered command masks it too."""
    return {
        secret,
        shlex.quote(secret),  # | quote
        secret.replace("'", "'\"'\"'"),  # the secret inside a longer quoted string
        json.dumps(secret)[1:-1],  # | to_json, alone or inside a structure
        base64.b64encode(secret.encode()).decode(),  # | b64encode
    }


def _alternative(secret: str) -> str:
    """The regex for one secret: anywhere, or as a whole token when it is short."""
    pattern = re.escape(secret)
    if len(secret) >= _SHORT:
        return pattern
    # not inside a longer alphanumeric word: "ab" is masked in "pw=ab", not in "table"
    before = r"(?<![^\W_])" if secret[0].isalnum() else ""
    after = r"(?![^\W_])" if secret[-1].isalnum() else ""
    return before + pattern + after


class Redactor:
    """Masks known secrets inside any JSON-like structure: by key and by value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        # registered secret keys: last key -> the keys that must lead to it (suffix of the path)
        self._keys: dict[str, set[tuple[str, ...]]] = {}
        self.add(secrets)

    def add(self, secrets: Iterable[object]) -> None:
        """Register secret values, to be masked wherever they appear in a string."""
        new: set[str] = set()
        for secret in secrets:
            if secret is None or isinstance(secret, bool) or str(secret) == "":
                continue
            new |= derived_forms(str(secret))
        if new - self._secrets:
            self._secrets |= new
            alternatives = sorted(self._secrets, key=lambda s: (-len(s), s))
            self._pattern = re.compile("|".join(_alternative(s) for s in alternatives))

    def add_keys(self, paths: Iterable[str | Sequence[object]]) -> None:
        """Register keys whose values are secret, whatever they look like.

        A path is a key ('pw') or a sequence of keys (('db', 'login')); it matches
        a key with those parents, at any depth. List indexes are left out.
        """
        for path in paths:
            keys = (path,) if isinstance(path, str) else tuple(str(k) for k in path if not isinstance(k, int))
            if keys:
                self._keys.setdefault(keys[-1], set()).add(keys[:-1])

    def collect(self, data: Any) -> None:
        """Learn the secret values found under secret-named keys in ``data``."""
        if isinstance(data, dict):
            for key, value in data.items():
                if is_secret_key(key) and isinstance(value, str | int | float):
                    self.add([value])
                else:
                    self.collect(value)
        elif isinstance(data, list | tuple):
            for item in data:
                self.collect(item)

    def text(self, value: str) -> str:
        if self._pattern is None or not value:
            return value
        return self._pattern.sub(MASK, value)

    def __call__(self, data: Any) -> Any:
        """A copy of ``data`` with secrets masked, by key and by value."""
        return self._redact(data, ())

    def _secret_key(self, key: object, parents: tuple[str, ...]) -> bool:
        if is_secret_key(key):
            return True
        for prefix in self._keys.get(str(key), ()):
            if len(prefix) <= len(parents) and parents[len(parents) - len(prefix) :] == prefix:
                return True
        return False

    def _redact(self, data: Any, parents: tuple[str, ...]) -> Any:
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return {
                k: (
                    MASK
                    if v not in (None, "") and not isinstance(v, dict | list) and self._secret_key(k, parents)
                    else self._redact(v, parents if isinstance(k, int) else (*parents, str(k)))
                )
                for k, v in data.items()
            }
        if isinstance(data, list | tuple):
            return [self._redact(item, parents) for item in data]
        return data
