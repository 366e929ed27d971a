"""maintainer: versioned maintenance runbooks over site inventories, with a tamper-evident change log.

The library's front door is :func:`run`::

    from maintainer import RunOptions, run
    result = run(RunOptions(runbook="site-health", inventory=["inventories/example.yml"]))
    result.exit_code, result.failed
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["RunOptions", "RunResult", "__version__", "run"]


def __getattr__(name: str) -> Any:
    # lazy, so that `maintainer --help` does not import ansible and boto3
    if name in ("RunOptions", "RunResult", "run"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)
