"""The exception hierarchy and the exit codes it maps to.

Every error the library raises on purpose is a ``MaintainerError``; its
subclass decides the exit code, and its ``__str__`` is the one paragraph a
user sees. Foreign exceptions are wrapped at the edge with ``raise ... from``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import IntEnum
from pathlib import Path
from typing import Any


class ExitCode(IntEnum):
    OK = 0  # all done and healthy
    SITE_FAILED = 1  # the run finished but some site failed (rolled back or left safe)
    BAD_INPUT = 2  # usage, validation, missing credential: nothing was run
    CANNOT_START = 3  # a lock is held or the maintenance window is closed
    INTERNAL = 4  # a bug
    INTERRUPTED = 130  # SIGINT/SIGTERM: in-flight sites rolled back, run recorded


class MaintainerError(Exception):
    """Root of every error raised on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def details(self) -> dict[str, Any]:
        """Extra fields for the ``--output json`` error document."""
        return {}


class BadInput(MaintainerError):
    """Invalid user input: names where (file, line, key) and how to fix it."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.key = key
        self.fix = fix

    def where(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.key:
            parts.append(f"key '{self.key}'")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            # "... was given Fix: ..." reads as one sentence: end the message first
            if not text.rstrip().endswith((".", "!", "?")):
                text = text.rstrip().removesuffix(":") + "."
            text += f" Fix: {self.fix}"
        return text


class ValidationFailed(BadInput):
    """Several problems at once (e.g. every problem of a runbook)."""

    def __init__(self, problems: list[BadInput], *, file: str | Path | None = None) -> None:
        self.problems = problems
        head = f"{len(problems)} problem(s) found"
        super().__init__(head, file=file)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class CannotStart(MaintainerError):
    """The run could not start: lock held, window closed."""

    exit_code = ExitCode.CANNOT_START


class LockHeld(CannotStart):
    def __init__(self, site: str, holder: dict[str, object]) -> None:
        self.site = site
        self.holder = holder
        who = holder.get("holder", "unknown")
        run_id = holder.get("run_id", "?")
        since = holder.get("since", "?")
        super().__init__(
            f"site '{site}' is locked by {who} (run {run_id}, since {since}). "
            "Wait for that run, retry with --wait-lock SECONDS, or, if that run is gone, "
            "the lock is broken automatically once it is older than its TTL."
        )


class TransportError(MaintainerError):
    """A command could not be sent or its result not read."""

    exit_code = ExitCode.SITE_FAILED


class Unreachable(TransportError):
    """The host could not be reached or refused us (network, host key, auth)."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host} unreachable: {reason}")


class StepFailed(MaintainerError):
    """An action failed; carries what a user needs to see (command, rc, output tail)."""

    exit_code = ExitCode.SITE_FAILED

    def __init__(
        self,
        message: str,
        *,
        outputs: dict[str, object] | None = None,
        changes: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.outputs = outputs or {}
        #: what the step changed before it failed (a restore that got half-way): recorded all the same
        self.changes = changes or []


class StepTimeout(StepFailed):
    pass


class StepCancelled(StepFailed):
    """The run was stopped (SIGINT/SIGTERM) while the step ran; its command was killed."""


class StoreError(MaintainerError):
    """A backup store could not be used: unreachable, access denied, bucket missing, disk full."""

    exit_code = ExitCode.SITE_FAILED

    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"backup store {location}: {message}")
        self.location = location


class ObjectMissing(StoreError):
    """An object the caller needs (a pack, a manifest) is not in the store."""

    def __init__(self, location: str, key: str) -> None:
        super().__init__(location, f"object '{key}' is missing")
        self.key = key


class ObjectExists(StoreError):
    """A write-once object (a manifest) is already there."""

    def __init__(self, location: str, key: str) -> None:
        super().__init__(location, f"object '{key}' already exists")
        self.key = key


class BackupDamaged(StepFailed):
    """A backup's content does not match its manifest (corrupted or missing objects).

    ``outputs`` (when raised from a restore) says what was restored all the same.
    """


class RecordFailed(MaintainerError):
    """The run happened but its change-log entry could not be appended."""

    exit_code = ExitCode.INTERNAL

    def __init__(self, message: str, entry: dict[str, Any]) -> None:
        super().__init__(message)
        self.entry = entry

    def details(self) -> dict[str, Any]:
        # cron and CI still learn what each site did, even though the log refused it
        return {"unrecorded_run": self.entry}


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """ "did you mean 'x'? " for a misspelt ``word`` (followed by the caller's fix), else ""."""
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


REPORT_URL = "https://github.com/maintainer-dev/maintainer/issues"
