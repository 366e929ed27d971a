"""``os_packages``: OS package updates of the site's host, through playbooks/os-packages.yml.

The playbook (run by ansible-runner, for this site only) does the package manager's work: apt on
Debian/Ubuntu, dnf on the RHEL family; ``scope: security`` (the default) takes only security updates,
``all`` every upgrade. It returns the raw outputs (a simulated apt-get run, ``dnf check-update``, the
installed versions before and after) and this module reads them:

- ``dry_run`` (and ``mode: list``) simulates and lists each package with its installed version and
  the one it would get, changing nothing on the host;
- ``run`` upgrades and records every package whose installed version changed, before and after, as a
  change for the change log.

Several sites may live on one host: their package work (and reboots, see ``reboot``) takes turns
through ``host_lock``, so one site never reboots a host while another one's dpkg is running there.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import StepCancelled, StepFailed
from .base import Action, ActionResult, Args, StepContext
from .playbook import PlaybookRun, run_playbook

PLAYBOOK = "os-packages.yml"
REPORT_TASK = "os_packages report"
#: how many packages a one-line summary names before it says "and N more"
SUMMARY_NAMES = 8


class OsPackagesArgs(Args):
    #: list: report what an upgrade would do (changes nothing); upgrade: do it
    mode: Literal["list", "upgrade"] = "upgrade"
    #: security: security updates only (apt: new version from a *-security suite; dnf: --security)
    scope: Literal["security", "all"] = "security"
    playbook: str = PLAYBOOK  # under the project's playbooks/


# ------------------------------------------------------------------ one host, one package job at a time

_host_locks: dict[str, threading.Lock] = {}
_host_locks_guard = threading.Lock()


def host_key(label: str) -> str:
    """The host a transport label names: 'user@host:port' -> 'host:port' ('local' stays 'local').

    Sites on one host take turns whichever user they log in as: the packages and the reboot are
    the host's, not the user's.
    """
    return label.rpartition("@")[2]


@contextmanager
def host_lock(ctx: StepContext, what: str) -> Iterator[None]:
    """Hold the site's host for package work or a reboot (sites sharing a host take turns)."""
    key = host_key(ctx.transport.label)
    with _host_locks_guard:
        lock = _host_locks.setdefault(key, threading.Lock())
    if not lock.acquire(blocking=False):
        ctx.log(f"waiting: another site on {key} is updating packages or rebooting it")
        while not lock.acquire(timeout=0.5):
            if ctx.cancel.is_set():
                raise StepCancelled(f"stopped while waiting to {what}: another site held the host {key}")
    try:
        yield
    finally:
        lock.release()


# ------------------------------------------------------------------ reading the package managers' outputs


@dataclass(frozen=True)
class PackageChange:
    """One package: its installed version (None: not installed) and the one it gets (None: removed)."""

    name: str
    arch: str | None
    before: str | None
    after: str | None
    origin: str | None = None

    def listed(self) -> dict[str, Any]:
        """As a dry run lists it."""
        item: dict[str, Any] = {"name": self.name, "from": self.before, "to": self.after}
        if self.arch:
            item["arch"] = self.arch
        if self.origin:
            item["origin"] = self.origin
        return item

    def change(self) -> dict[str, Any]:
        """As the change log records it."""
        return {
            "what": "package",
            "name": self.name,
            "arch": self.arch,
            "before": self.before,
            "after": self.after,
        }

    def arrow(self) -> str:
        return f"{self.name} {self.before or '(new)'} → {self.after or '(removed)'}"


# apt-get -s: "Inst NAME [OLD] (NEW ORIGIN, ORIGIN [ARCH])" ("[OLD]" absent for a new package),
# "Remv NAME [OLD]"; ORIGIN is "Label:Version/Suite", e.g. "Debian-Security:12/bookworm-security"
_APT_INST = re.compile(r"^Inst (?P<name>\S+)(?: \[(?P<old>[^\]]*)\])? \((?P<new>\S+) (?P<rest>.*)\)")
_APT_REMV = re.compile(r"^Remv (?P<name>\S+)(?: \[(?P<old>[^\]]*)\])?")
_APT_ARCH = re.compile(r"^(?P<origin>.*?)\s*\[(?P<arch>[^\]]+)\]$")


def parse_apt_simulation(text: str) -> list[PackageChange]:
    """The packages an ``apt-get -s`` run would install, upgrade or remove, in its order."""
    found = []
    for line in text.splitlines():
        inst = _APT_INST.match(line)
        if inst:
            rest = inst["rest"].strip()
            arch_match = _APT_ARCH.match(rest)
            origin, arch = (arch_match["origin"], arch_match["arch"]) if arch_match else (rest, None)
            found.append(PackageChange(inst["name"], arch, inst["old"], inst["new"], origin.strip() or None))
            continue
        remv = _APT_REMV.match(line)
        if remv:
            found.append(PackageChange(remv["name"], None, remv["old"], None))
    return found


def parse_installed(text: str) -> dict[tuple[str, str], set[str]]:
    """Installed versions by (name, arch), from lines 'NAME ARCH VERSION STATUS'.

    The playbook prints them with dpkg-query (``${db:Status-Status}``: only 'installed' counts) or
    rpm (always 'installed'); rpm may list several versions of one name (kernels), hence sets.
    """
    installed: dict[tuple[str, str], set[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[3] == "installed":
            installed.setdefault((fields[0], fields[1]), set()).add(fields[2])
    return installed


def installed_changes(before: str, after: str) -> list[PackageChange]:
    """What changed between two package listings (``parse_installed``): upgrades, new packages, removals."""
    old, new = parse_installed(before), parse_installed(after)
    changes = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key, set()), new.get(key, set())
        if was == now:
            continue
        gone, added = sorted(was - now), sorted(now - was)
        changes.append(PackageChange(key[0], key[1], ", ".join(gone) or None, ", ".join(added) or None))
    return changes


# dnf check-update: "NAME.ARCH  [EPOCH:]VERSION-RELEASE  REPO"; a long NAME.ARCH is alone on its line
# and the rest follows on the next; "Obsoleting Packages" starts a section of replacements
_DNF_LINE = re.compile(r"^(?P<name>\S+)\.(?P<arch>[^.\s]+)\s+(?P<evr>\S+)\s+(?P<repo>\S+)$")


def parse_dnf_check_update(text: str, installed: str) -> list[PackageChange]:
    """The upgrades ``dnf check-update`` lists, with the installed versions from rpm (``parse_installed``)."""
    versions = parse_installed(installed)
    found = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Obsoleting Packages"):
            break
        if not line or line.startswith(("Last metadata expiration", "Security:")):
            continue
        if pending:
            line, pending = f"{pending} {line}", ""
        match = _DNF_LINE.match(line)
        if match is None:
            if len(line.split()) == 1:  # wrapped: NAME.ARCH alone, the rest on the next line
                pending = line
            continue
        before = ", ".join(sorted(versions.get((match["name"], match["arch"]), set()))) or None
        found.append(PackageChange(match["name"], match["arch"], before, match["evr"], match["repo"]))
    return found


@dataclass
class Report:
    """What the playbook's last task returned."""

    family: str  # apt or dnf
    planned: list[PackageChange]
    changed: list[PackageChange]

    @classmethod
    def from_playbook(cls, done: PlaybookRun) -> Report:
        results = done.task_results(REPORT_TASK)
        report = results[-1].get("os_packages_report") if results else None
        if not isinstance(report, dict) or report.get("family") not in ("apt", "dnf"):
            raise StepFailed(
                f"playbook {done.playbook} returned no package report (its task '{REPORT_TASK}' "
                "must print the os_packages_report variable)",
                outputs=done.outputs,
            )
        family = str(report["family"])
        planned_text, before = str(report.get("planned") or ""), str(report.get("before") or "")
        if family == "apt":
            planned = parse_apt_simulation(planned_text)
        else:
            planned = parse_dnf_check_update(planned_text, before)
        after = str(report.get("after") or "")
        changed = installed_changes(before, after) if after else []
        return cls(family, planned, changed)


def summary(verb: str, changes: list[PackageChange], scope: str) -> str:
    if not changes:
        kind = "security updates" if scope == "security" else "updates"
        return f"no {kind} to install" if verb == "would upgrade" else f"no {kind} were installed"
    named = ", ".join(c.arrow() for c in changes[:SUMMARY_NAMES])
    more = f" and {len(changes) - SUMMARY_NAMES} more" if len(changes) > SUMMARY_NAMES else ""
    return f"{verb} {len(changes)} package(s) ({scope}): {named}{more}"


class OsPackagesAction(Action):
    name = "os_packages"
    Args = OsPackagesArgs
    summary = "OS package updates through playbooks/os-packages.yml (apt, dnf): list, or upgrade and record"

    def _list(self, ctx: StepContext, args: OsPackagesArgs) -> dict[str, Any]:
        done = run_playbook(ctx, args.playbook, {"patch_mode": "list", "patch_scope": args.scope})
        done.check(ctx)
        report = Report.from_playbook(done)
        return {
            "summary": summary("would upgrade", report.planned, args.scope),
            "family": report.family,
            "scope": args.scope,
            "packages": [c.listed() for c in report.planned],
            "count": len(report.planned),
        }

    def dry_run(self, ctx: StepContext, args: OsPackagesArgs) -> dict[str, Any]:
        # read-only: the playbook simulates, with a private copy of the package index
        return self._list(ctx, args)

    def run(self, ctx: StepContext, args: OsPackagesArgs) -> ActionResult:
        if args.mode == "list":
            return ActionResult(outputs=self._list(ctx, args))
        with host_lock(ctx, "update packages"):
            done = run_playbook(ctx, args.playbook, {"patch_mode": "upgrade", "patch_scope": args.scope})
        done.check(ctx)
        report = Report.from_playbook(done)
        outputs = {
            "summary": summary("upgraded", report.changed, args.scope),
            "family": report.family,
            "scope": args.scope,
            "packages": [c.listed() for c in report.changed],
            "count": len(report.changed),
        }
        if not report.changed:
            return ActionResult(outputs=outputs)
        # one line for people (the run's summary shows it), then every package for the record
        overview = {
            "what": "packages",
            "family": report.family,
            "scope": args.scope,
            "count": len(report.changed),
            "summary": outputs["summary"],
        }
        return ActionResult(
            outputs=outputs, changes=[overview, *(c.change() for c in report.changed)], changed=True
        )
