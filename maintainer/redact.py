"""Keep secrets out of output, logs and the change log.

Two rules, applied everywhere something is shown or recorded:
- a value under a key that names a secret (password, token, ...) is masked;
- any known secret value (vault values, ``secret`` params, secret-named vars)
  is masked wherever it appears inside a string, e.g. in a rendered command.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "********"

_SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|credential|auth)",
    re.IGNORECASE,
)
# keys that match the pattern above but name a path or a switch, not a secret
_NOT_SECRET_KEY = re.compile(r"(_file|_path|_checking|_method|_type|_user(name)?)$", re.IGNORECASE)


def is_secret_key(key: object) -> bool:
    text = str(key)
    return bool(_SECRET_KEY.search(text)) and not _NOT_SECRET_KEY.search(text)


class Redactor:
    """Masks known secret values inside any JSON-like structure."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[object]) -> None:
        # short values would mask unrelated text ("1", "yes"): they are still
        # masked by key, just not searched for inside other strings
        new = {str(s) for s in secrets if s is not None and len(str(s)) >= 4}
        if new - self._secrets:
            self._secrets |= new
            alternatives = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in alternatives))

    def collect(self, data: Any) -> None:
        """Learn the secret values found under secret-named keys in ``data``."""
        if isinstance(data, dict):
            for key, value in data.items():
                if is_secret_key(key) and isinstance(value, str | int | float):
                    self.add([str(value)])
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
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return {
                k: (
                    MASK
                    if is_secret_key(k) and v not in (None, "") and not isinstance(v, dict | list)
                    else self(v)
                )
                for k, v in data.items()
            }
        if isinstance(data, list | tuple):
            return [self(item) for item in data]
        return data
