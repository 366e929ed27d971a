"""``shell``: run a command on the site, like Ansible's shell module."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Action, ActionResult, Args, StepContext, Text


class ShellArgs(Args):
    #: a string is a bash script; a list is an argv run without a shell
    command: str | list[str]
    cwd: str | None = None
    env: dict[str, Text] = Field(default_factory=dict)
    ok_codes: list[int] = Field(default_factory=lambda: [0])
    #: the command only reads (a check, a fact): the step is not recorded as a change
    read_only: bool = False


class ShellAction(Action):
    name = "shell"
    Args = ShellArgs
    summary = "run a command on the site (bash script or argv); outputs rc, stdout, stderr"

    def dry_run(self, ctx: StepContext, args: ShellArgs) -> dict[str, Any]:
        return {"would_run": args.command, "cwd": args.cwd, "on": ctx.transport.label}

    def run(self, ctx: StepContext, args: ShellArgs) -> ActionResult:
        result = ctx.sh(args.command, cwd=args.cwd, env=args.env or None, ok_codes=tuple(args.ok_codes))
        return ActionResult(
            outputs={
                "rc": result.rc,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "seconds": round(result.duration, 4),
            },
            changed=not args.read_only,
        )
