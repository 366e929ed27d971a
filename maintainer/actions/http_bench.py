"""``http_bench``: a fixed short load against a URL from the controller: TTFB p50/p95 and requests/s.

The figures are recorded in the change log (as a ``measurement``), so a tuning run keeps its
before and after even when the change was rolled back.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..errors import StepCancelled, StepFailed
from ..perf import bench
from .base import Action, ActionResult, Args, StepContext


class HttpBenchArgs(Args):
    url: str
    requests: int = Field(default=100, ge=1, le=100_000)
    concurrency: int = Field(default=4, ge=1, le=256)
    warmup: int = Field(default=10, ge=0, le=100_000)
    timeout: float = Field(default=10.0, gt=0)
    method: str = "GET"
    #: a browser's: compressed answers, so nginx's gzip settings count
    headers: dict[str, str] = Field(default_factory=lambda: {"Accept-Encoding": "gzip"})
    status: int | list[int] = 200
    #: every measured answer must contain this (a fast error page is no speed-up)
    contains: str | None = None
    #: failed requests tolerated among the measured ones
    max_errors: int = Field(default=0, ge=0)
    verify_tls: bool = True
    #: names the measurement in the change log, e.g. before / after
    label: str | None = None


class HttpBenchAction(Action):
    name = "http_bench"
    Args = HttpBenchArgs
    summary = "a fixed short HTTP load from the controller: TTFB p50/p95, requests per second"

    def dry_run(self, ctx: StepContext, args: HttpBenchArgs) -> dict[str, Any]:
        return {
            "summary": f"would send {args.warmup} warm-up + {args.requests} requests, "
            f"{args.concurrency} at a time, to {args.url}",
        }

    def run(self, ctx: StepContext, args: HttpBenchArgs) -> ActionResult:
        load = bench.Load(
            url=args.url,
            requests=args.requests,
            concurrency=args.concurrency,
            warmup=args.warmup,
            timeout=args.timeout,
            method=args.method,
            headers=args.headers,
            status=(args.status,) if isinstance(args.status, int) else tuple(args.status),
            contains=args.contains or None,
            verify_tls=args.verify_tls,
        )
        try:
            figures = bench.run(load, ctx.cancel)
        except ValueError as exc:
            raise StepFailed(str(exc)) from exc
        if ctx.cancel.is_set():
            raise StepCancelled("stopped: the run was interrupted during the measurement", outputs=figures)
        if figures["errors"] > args.max_errors or figures["ok"] == 0:
            raise StepFailed(
                f"{figures['errors']} of {args.requests} requests to {args.url} failed "
                f"(at most {args.max_errors} allowed), e.g. {figures['first_error']}",
                outputs=figures,
            )
        label = f"{args.label}: " if args.label else ""
        described = bench.describe(figures)
        ctx.log(f"{label}{described} ({args.requests} requests, {args.concurrency} at a time)")
        change = {
            "kind": "measurement",
            "label": args.label,
            **{k: figures[k] for k in ("url", "requests", "concurrency", "warmup", "errors")},
            **{k: figures[k] for k in (*bench.METRICS, "bytes")},
            "summary": f"{label}{described}",
        }
        return ActionResult(outputs=figures, changes=[change])
