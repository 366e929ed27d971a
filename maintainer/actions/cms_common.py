"""What the ``cms.*`` actions share: the site's CMS adapter over the step's transport."""

from __future__ import annotations

from collections.abc import Sequence

from ..cms.base import CmsAdapter, CmsError, Runner, adapter_class, adapter_for
from ..errors import StepFailed
from ..inventory import Site
from ..transport import CommandResult
from .base import StepContext

#: how many per-item records (findings) one step writes into the change log; the outputs keep all
MAX_RECORDED = 100
#: every exit code is an answer: the adapters read the tools' output, not their exit codes
ANY_EXIT = tuple(range(256))


def site_runner(ctx: StepContext) -> Runner:
    """Runs an argv on the site; a timeout or a stop request still raises (StepTimeout, StepCancelled)."""

    def run(argv: Sequence[str]) -> CommandResult:
        try:
            return ctx.sh(list(argv), ok_codes=ANY_EXIT)
        except OSError as exc:
            # a local site runs the argv itself: a missing tool is an OSError here, exit 127 over SSH
            rc = 127 if isinstance(exc, FileNotFoundError) else 126
            return CommandResult(rc, "", f"{argv[0]}: {exc.strerror or exc}", 0.0)

    return run


def site_adapter(ctx: StepContext) -> CmsAdapter:
    return adapter_for(ctx.site, site_runner(ctx))


def check_cms_site(site: Site) -> None:
    """At plan time: a known ``cms`` and the vars its adapter needs (BadInput otherwise)."""
    adapter_class(site.cms).check_site(site)


def step_failed(exc: CmsError) -> StepFailed:
    return StepFailed(str(exc), outputs=exc.outputs)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
