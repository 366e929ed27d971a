"""``perf_compare``: keep a change only if it is not slower beyond a threshold.

``before`` and ``after`` are two ``http_bench`` outputs. The step fails when any of ``metrics``
got worse by more than ``threshold`` percent (latencies up, requests/s down), so the site's
failure path restores the previous configs and the runbook's rollback reloads them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..errors import StepFailed
from ..perf import bench
from .base import Action, ActionResult, Args, StepContext

Metric = Literal["ttfb_p50_ms", "ttfb_p95_ms", "ttfb_max_ms", "rps"]
DEFAULT_METRICS: tuple[Metric, ...] = ("ttfb_p50_ms", "ttfb_p95_ms", "rps")


class PerfCompareArgs(Args):
    before: dict[str, Any]
    after: dict[str, Any]
    #: percent: how much worse a metric may get before the change is refused
    threshold: float = Field(default=10.0, ge=0)
    metrics: list[Metric] = Field(default_factory=lambda: list(DEFAULT_METRICS), min_length=1)
    #: a latency that rose by less than this many ms never counts as worse (noise on a fast page)
    min_ms: float = Field(default=2.0, ge=0)


class PerfCompareAction(Action):
    name = "perf_compare"
    Args = PerfCompareArgs
    summary = "fail when 'after' is slower than 'before' beyond a threshold (TTFB up, requests/s down)"

    def dry_run(self, ctx: StepContext, args: PerfCompareArgs) -> dict[str, Any]:
        metrics = ", ".join(args.metrics)
        return {"summary": f"would keep the change unless {metrics} get worse by > {args.threshold:g}%"}

    def run(self, ctx: StepContext, args: PerfCompareArgs) -> ActionResult:
        try:
            metrics = bench.compare(
                args.before,
                args.after,
                threshold_percent=args.threshold,
                metrics=args.metrics,
                min_ms=args.min_ms,
            )
        except KeyError as exc:
            raise StepFailed(
                f"'before' and 'after' must be http_bench outputs: {exc.args[0]} is missing"
            ) from exc
        except (TypeError, ValueError) as exc:
            raise StepFailed(f"'before' and 'after' must be http_bench outputs: {exc}") from exc
        worse = [name for name, m in metrics.items() if m["worse"]]
        figures = bench.describe_changes(metrics)
        outputs: dict[str, object] = {
            "verdict": "worse" if worse else "kept",
            "worse": worse,
            "threshold": args.threshold,
            "metrics": metrics,
        }
        if worse:
            worse_figures = bench.describe_changes({n: metrics[n] for n in worse})
            verdict = {  # recorded (status failed) although the change is rolled back
                "kind": "perf_verdict",
                "verdict": "worse",
                "worse": worse,
                "threshold": args.threshold,
                "before": {k: args.before.get(k) for k in bench.METRICS if k in args.before},
                "after": {k: args.after.get(k) for k in bench.METRICS if k in args.after},
                "metrics": metrics,
                "summary": f"rolled back, worse beyond {args.threshold:g}%: {worse_figures} (all: {figures})",
            }
            raise StepFailed(
                f"slower after the change, beyond {args.threshold:g}%: {worse_figures} (all: {figures})",
                outputs=outputs,
                changes=[verdict],
            )
        ctx.log(f"kept: {figures} (threshold {args.threshold:g}%)")
        change = {
            "kind": "perf_verdict",
            "verdict": "kept",
            "threshold": args.threshold,
            "metrics": metrics,
            "summary": f"kept: {figures}",
        }
        return ActionResult(outputs=outputs, changes=[change])
