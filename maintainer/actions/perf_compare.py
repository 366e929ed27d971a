"""``perf_compare``: keep a change only if it is not slower beyond a threshold.

``before`` and ``after`` are two ``http_bench`` outputs. The step fails when any of ``metrics``
got worse by more than ``threshold`` percent (latencies up, requests/s down), so the site's
failure path restores the previous configs and the runbook's rollback reloads them.

``measured`` and ``not_measured`` name what the two measurements compare: the components that were
live for ``after``, and those installed but not active yet (e.g. MariaDB's, which apply at its next
restart). The verdict records both, so a kept change never reads as measured where it was not.
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
    #: the components active for the 'after' measurement (recorded with the verdict)
    measured: list[str] = Field(default_factory=list)
    #: the components changed but not active yet (pending a restart): not measured
    not_measured: list[str] = Field(default_factory=list)


class PerfCompareAction(Action):
    name = "perf_compare"
    Args = PerfCompareArgs
    summary = "fail when 'after' is slower than 'before' beyond a threshold (TTFB up, requests/s down)"

    def dry_run(self, ctx: StepContext, args: PerfCompareArgs) -> dict[str, Any]:
        metrics = ", ".join(bench.LABELS.get(m, m) for m in args.metrics)
        return {
            "summary": f"would keep the change unless {metrics} get worse by more than {args.threshold:g}%, "
            "else put the previous configs back"
        }

    @staticmethod
    def _scope(args: PerfCompareArgs) -> str:
        """What the measurement covered: '; measured: nginx; not measured: mariadb (pending restart)'."""
        parts = [f"measured: {', '.join(args.measured)}"] if args.measured else []
        if args.not_measured:
            parts.append(f"not measured: {', '.join(args.not_measured)} (pending restart)")
        return "".join(f"; {part}" for part in parts)

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
            "measured": args.measured,
            "not_measured": args.not_measured,
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
                "measured": args.measured,
                "not_measured": args.not_measured,
                "summary": f"rolled back, worse by more than {args.threshold:g}%: {worse_figures} "
                f"(all: {figures}){self._scope(args)}",
            }
            raise StepFailed(
                f"slower after the change by more than {args.threshold:g}%: {worse_figures} "
                f"(all: {figures}); the previous configs are put back",
                outputs=outputs,
                changes=[verdict],
            )
        ctx.log(f"kept, not worse by more than {args.threshold:g}%: {figures}{self._scope(args)}")
        change = {
            "kind": "perf_verdict",
            "verdict": "kept",
            "threshold": args.threshold,
            "metrics": metrics,
            "measured": args.measured,
            "not_measured": args.not_measured,
            "summary": f"kept, not worse by more than {args.threshold:g}%: {figures}{self._scope(args)}",
        }
        return ActionResult(outputs=outputs, changes=[change])
