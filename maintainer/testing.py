"""Helpers for testing actions, ours and third-party ones, without a runbook.

    from maintainer.testing import action_context
    ctx = action_context(tmp_path)                 # a local site, real transport
    result = MyAction().run(ctx, MyAction.Args(x=1))

The context is real: commands run through ``LocalTransport`` (or any
transport you pass), so an action is tested against what it really does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .actions.base import RunInfo, StepContext
from .inventory import Site
from .redact import Redactor
from .transport import LocalTransport, Transport


def action_context(
    project_dir: Path,
    *,
    site_vars: dict[str, Any] | None = None,
    site_name: str = "test-site",
    params: dict[str, Any] | None = None,
    transport: Transport | None = None,
    timeout: float | None = 60,
    secrets: list[str] | None = None,
) -> StepContext:
    """A StepContext for one local (or given) site, as the engine would build it."""
    site = Site(site_name, {"ansible_connection": "local", **(site_vars or {})}, [])
    run = RunInfo(id="test-run", operator="tester", ticket=None, runbook="test", version="0.0.0")
    redactor = Redactor(secrets or [])
    redactor.collect(site.vars)
    ctx = StepContext(
        site=site,
        transport=transport or LocalTransport(),
        project_dir=project_dir,
        inventory_sources=[],
        run=run,
        redactor=redactor,
        timeout=timeout,
    )
    ctx.variables = {
        "site": {"name": site_name, **site.vars},
        "params": params or {},
        "run": run.as_context(),
        "steps": {},
    }
    return ctx
