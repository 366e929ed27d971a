"""What every action is: a class with an argument schema, a dry-run view, and a run.

An action never prints and never exits: it returns an ``ActionResult`` or
raises ``StepFailed`` carrying what a user needs (command, rc, output tail).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict

from ..errors import StepCancelled, StepFailed, StepTimeout
from ..redact import Redactor
from ..transport import CommandResult, Transport

if TYPE_CHECKING:
    from ..inventory import Inventory, Site


#: a string-typed argument that also takes numbers and booleans (a rendered "{{ 90 }}" is an int)
Text = Annotated[
    str,
    BeforeValidator(
        lambda v: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
    ),
]


class Args(BaseModel):
    """Base for action arguments: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class RunInfo:
    """The ``run`` variable of templates."""

    id: str
    operator: str
    ticket: str | None
    runbook: str
    version: str
    dry_run: bool = False

    def as_context(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operator": self.operator,
            "ticket": self.ticket,
            "runbook": self.runbook,
            "version": self.version,
            "dry_run": self.dry_run,
        }


@dataclass
class StepContext:
    """Everything an action may use for one step on one site."""

    site: Site
    transport: Transport
    project_dir: Path
    inventory_sources: list[Path]
    run: RunInfo
    redactor: Redactor
    timeout: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    log: Callable[[str], None] = lambda _msg: None
    vault_password_file: str | None = None
    #: the template context of the step (site, params, steps, run)
    variables: dict[str, Any] = field(default_factory=dict)
    #: per-site scratch space shared by the steps of one run (e.g. undo data)
    state: dict[str, Any] = field(default_factory=dict)

    def sh(self, command: Any, *, ok_codes: tuple[int, ...] = (0,), **kwargs: Any) -> CommandResult:
        """Run a command on the site; a bad rc or a timeout raises StepFailed.

        A stop request (``cancel``) kills the running command and raises StepCancelled.
        """
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("cancel", self.cancel)
        result = self.transport.run(command, **kwargs)
        if result.cancelled:
            raise StepCancelled(
                f"stopped: the run was interrupted and the command was killed after {result.duration:.1f}s",
                outputs={"rc": result.rc, "stdout": result.stdout, "stderr": result.stderr},
            )
        if result.timed_out:
            raise StepTimeout(
                f"timed out after {self.timeout:g}s and was killed",
                outputs={"rc": result.rc, "stdout": result.stdout, "stderr": result.stderr},
            )
        if result.rc not in ok_codes:
            raise StepFailed(
                f"exited with {result.rc}: {tail(result.stderr or result.stdout)}",
                outputs={"rc": result.rc, "stdout": result.stdout, "stderr": result.stderr},
            )
        return result


@dataclass
class ActionResult:
    outputs: dict[str, Any] = field(default_factory=dict)
    #: before/after facts for the change log, e.g. {"what": "file", "path": ..., "before": sha, "after": sha}
    changes: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = False


class Action:
    """Subclass, set ``name`` and ``Args``, implement ``run``."""

    name: ClassVar[str]
    Args: ClassVar[type[Args]] = Args
    summary: ClassVar[str] = ""
    #: True when ``undo`` can reverse a completed step (the engine calls it on failure)
    undoable: ClassVar[bool] = False

    def check_site(self, site: Site, args: Any, project_dir: Path) -> None:
        """Raise BadInput for a site this step cannot run on (its vars, at plan time: nothing runs).

        ``project_dir`` is where relative files (templates, feeds) are looked up.
        """

    def check_site_in_inventory(self, site: Site, args: Any, project_dir: Path, inventory: Inventory) -> None:
        """``check_site`` for checks that need the inventory's other hosts (the engine calls this one)."""
        self.check_site(site, args, project_dir)

    def dry_run(self, ctx: StepContext, args: Any) -> dict[str, Any]:
        """What the step would do, without changing anything (shown by --dry-run)."""
        return {}

    def run(self, ctx: StepContext, args: Any) -> ActionResult:
        raise NotImplementedError

    def undo(self, ctx: StepContext, args: Any, result: ActionResult) -> bool:
        """Reverse a completed step when the site fails; return False if not undoable."""
        return False


def tail(text: str, lines: int = 5, width: int = 400) -> str:
    """The last lines of command output, for one-paragraph error messages."""
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    joined = " | ".join(kept)
    return joined[-width:] if joined else "(no output)"
