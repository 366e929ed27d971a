"""Test-only actions, registered the way a third-party plugin would be."""

from __future__ import annotations

from maintainer.actions.base import Action, ActionResult, Args, StepContext


class ExplodingAction(Action):
    """Has a bug: raises something that is not a MaintainerError."""

    name = "explode"
    Args = Args

    def run(self, ctx: StepContext, args: Args) -> ActionResult:
        raise ZeroDivisionError("division by zero in a plugin")
