"""Actions are found through the ``maintainer.actions`` entry-point group.

Built-ins are registered the same way third-party ones are (see
pyproject.toml). A plugin that fails to import warns and is left out;
it does not take the whole tool down.
"""

from __future__ import annotations

import warnings
from functools import cache, lru_cache
from importlib.metadata import entry_points

from .base import Action

GROUP = "maintainer.actions"

# used only when the package's metadata is missing (running from a source tree
# that was never installed); an installed maintainer always has its entry points
_BUILTINS = {
    "debug": "maintainer.actions.debug:DebugAction",
    "shell": "maintainer.actions.shell:ShellAction",
    "http_check": "maintainer.actions.http_check:HttpCheckAction",
    "template": "maintainer.actions.template:TemplateAction",
    "playbook": "maintainer.actions.playbook:PlaybookAction",
    "backup": "maintainer.actions.backup:BackupAction",
    "backup_prune": "maintainer.actions.backup_prune:BackupPruneAction",
    "restore": "maintainer.actions.restore:RestoreAction",
    "perf_facts": "maintainer.actions.perf_facts:PerfFactsAction",
    "perf_configs": "maintainer.actions.perf_configs:PerfConfigsAction",
    "http_bench": "maintainer.actions.http_bench:HttpBenchAction",
    "perf_compare": "maintainer.actions.perf_compare:PerfCompareAction",
    "os_packages": "maintainer.actions.os_packages:OsPackagesAction",
    "reboot": "maintainer.actions.reboot:RebootAction",
    "cms.verify": "maintainer.actions.cms_verify:CmsVerifyAction",
    "cms.vulnerabilities": "maintainer.actions.cms_vulnerabilities:CmsVulnerabilitiesAction",
    "restore_drill": "maintainer.actions.restore_drill:RestoreDrillAction",
    "health_check": "maintainer.actions.health_check:HealthCheckAction",
    "cms.version": "maintainer.actions.cms_update:CmsVersionAction",
    "cms.updates": "maintainer.actions.cms_update:CmsUpdatesAction",
    "cms.update": "maintainer.actions.cms_update:CmsUpdateAction",
    "cms.maintenance": "maintainer.actions.cms_update:CmsMaintenanceAction",
    "cms.db_update": "maintainer.actions.cms_update:CmsDbUpdateAction",
    "cms.cache_flush": "maintainer.actions.cms_update:CmsCacheFlushAction",
}


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    return {**_BUILTINS, **found}


def names() -> list[str]:
    return sorted(_entry_points())


@cache
def get(name: str) -> Action | None:
    """The action registered under ``name``, or None if unknown or broken."""
    target = _entry_points().get(name)
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    try:
        import importlib

        cls = getattr(importlib.import_module(module_name), attr)
        action = cls()
    except Exception as exc:  # a broken plugin must not break every run
        warnings.warn(f"action '{name}' ({target}) failed to load: {exc}", stacklevel=2)
        return None
    if not isinstance(action, Action):
        warnings.warn(f"action '{name}' ({target}) is not a maintainer Action", stacklevel=2)
        return None
    return action
