"""``perf_facts``: what the host has (CPUs, RAM, versions, PHP-FPM worker sizes); changes nothing.

Its dry run reads the same facts, so a plan shows them. A later ``perf_configs`` step of the
same run computes its tuning from exactly these facts.
"""

from __future__ import annotations

from typing import Any

from ..perf import facts as perf_facts
from .base import Action, ActionResult, Args, StepContext

#: where a run keeps the facts for the steps after (StepContext.state)
STATE_KEY = "perf_facts"


def read_facts(ctx: StepContext) -> perf_facts.Facts:
    """The site's facts: read now (and kept for later steps of this run)."""
    site_vars = ctx.site.vars
    result = ctx.sh(perf_facts.command(site_vars))
    found = perf_facts.from_output(result.stdout, site_vars)
    ctx.state[STATE_KEY] = found
    return found


def facts_of(ctx: StepContext) -> perf_facts.Facts:
    """The facts an earlier ``perf_facts`` step of this run read, else read now."""
    kept = ctx.state.get(STATE_KEY)
    return kept if isinstance(kept, perf_facts.Facts) else read_facts(ctx)


class PerfFactsArgs(Args):
    pass


class PerfFactsAction(Action):
    name = "perf_facts"
    Args = PerfFactsArgs
    summary = "read CPUs, RAM, PHP/nginx/MariaDB versions, PHP-FPM worker sizes; changes nothing"

    def _outputs(self, found: perf_facts.Facts) -> dict[str, Any]:
        return {**found.as_dict(), "summary": found.summary()}

    def dry_run(self, ctx: StepContext, args: PerfFactsArgs) -> dict[str, Any]:
        return self._outputs(read_facts(ctx))  # it only reads: the plan shows the real facts

    def run(self, ctx: StepContext, args: PerfFactsArgs) -> ActionResult:
        found = read_facts(ctx)
        ctx.log(found.summary())
        return ActionResult(outputs=self._outputs(found))
