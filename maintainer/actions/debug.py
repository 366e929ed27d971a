"""``debug``: show a message and pass values on as outputs; changes nothing."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Action, ActionResult, Args, StepContext


class DebugArgs(Args):
    msg: str = ""
    outputs: dict[str, Any] = Field(default_factory=dict)


class DebugAction(Action):
    name = "debug"
    Args = DebugArgs
    summary = "print a message (secrets masked) and expose 'outputs' to later steps; changes nothing"

    def run(self, ctx: StepContext, args: DebugArgs) -> ActionResult:
        if args.msg:
            ctx.log(args.msg)
        return ActionResult(outputs={"msg": args.msg, **args.outputs})
