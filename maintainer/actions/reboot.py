"""``reboot``: reboot the site's host when its updates need it, inside its maintenance window.

What says a reboot is needed (checked when the step runs, over the site's transport):

- ``/var/run/reboot-required`` (Debian, Ubuntu: kernel, libc, ... packages leave it; with
  ``reboot-required.pkgs`` naming them), under ``maintainer_apt_root`` when that is set;
- ``needs-restarting -r`` (RHEL family, dnf-utils) exiting 1;
- ``needrestart -b`` (Debian, when installed) reporting a newer kernel than the running one.

Services still running old (deleted) libraries are found by ``needrestart -b``, ``needs-restarting -s``
or else by reading ``/proc/*/maps``; they are reported as ``restart_pending`` (a reboot clears them).

A needed reboot happens only when the site's ``maintenance_window`` is open at that moment (a site
without one is always open, as everywhere in maintainer), ``policy`` is ``auto``, and the site is not
this machine (``ansible_connection: local``). Otherwise the step reports ``reboot: pending`` and
records a ``reboot_pending`` change; the site stays ok.

The reboot runs ``maintainer_reboot_command`` (default ``shutdown -r now``; the SSH user needs the right
to run it: root, or e.g. ``sudo -n systemctl reboot``), then waits until SSH answers again with a new
boot id (``maintainer_boot_id_command``, default ``cat /proc/sys/kernel/random/boot_id``), at most
``maintainer_reboot_timeout`` seconds (default 600).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .. import windows
from ..errors import StepCancelled, StepFailed, TransportError, Unreachable
from .base import Action, ActionResult, Args, StepContext, tail
from .os_packages import host_lock

DEFAULT_REBOOT_COMMAND = "shutdown -r now"
DEFAULT_BOOT_ID_COMMAND = "cat /proc/sys/kernel/random/boot_id"
DEFAULT_REBOOT_TIMEOUT = 600.0
#: how long a reboot command may take to return (systemctl/shutdown only queue the reboot)
COMMAND_SECONDS = 60.0
#: pause between attempts to reach the host again
POLL_SECONDS = 2.0
#: one attempt to read the boot id (connecting included)
PROBE_SECONDS = 15.0


class RebootArgs(Args):
    #: auto: reboot when needed and the window is open; never: only report that one is pending
    policy: Literal["auto", "never"] = "auto"


# ------------------------------------------------------------------ detection

#: read-only; ROOT is maintainer_apt_root without its trailing '/' (empty for the host itself)
DETECT_SCRIPT = r"""
if [ -e "$ROOT/var/run/reboot-required" ]; then
  echo "FILE reboot-required"
  pkgs="$ROOT/var/run/reboot-required.pkgs"
  if [ -r "$pkgs" ]; then sed 's/^/PKG /' "$pkgs"; fi
fi
# the running system's own checks mean nothing for another root
[ -z "$ROOT" ] || exit 0
if command -v needs-restarting >/dev/null 2>&1; then
  needs-restarting -r >/dev/null 2>&1
  echo "NEEDS-RESTARTING-R $?"
  needs-restarting -s 2>/dev/null | sed 's/^/SVC /'
fi
if command -v needrestart >/dev/null 2>&1; then
  needrestart -b -r l 2>/dev/null
elif ! command -v needs-restarting >/dev/null 2>&1; then
  # processes that still map a shared library that was replaced (deleted) on disk
  for maps in $(grep -lE '\.so(\.[0-9][^ /]*)? \(deleted\)$' /proc/[0-9]*/maps 2>/dev/null); do
    pid=${maps#/proc/}; pid=${pid%/maps}
    [ "$pid" = "$$" ] && continue
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
    unit=$(sed -n 's#^[0-9]*:[^:]*:.*/\([^/]*\.service\)$#\1#p' "/proc/$pid/cgroup" 2>/dev/null | head -n 1)
    echo "PROC $pid ${unit:--} $comm"
  done
fi
exit 0
"""

_PROC = re.compile(r"^PROC (?P<pid>\d+) (?P<unit>\S+) (?P<comm>.*)$")


@dataclass
class RebootNeed:
    """What the host says about reboots and restarts."""

    reasons: list[str] = field(default_factory=list)
    #: systemd units (or, without one, 'COMMAND[PID]') running deleted libraries
    services: list[str] = field(default_factory=list)

    @property
    def required(self) -> bool:
        return bool(self.reasons)


def parse_detection(text: str) -> RebootNeed:
    """Read ``DETECT_SCRIPT``'s output (including ``needrestart -b``'s own ``NEEDRESTART-*`` lines)."""
    need = RebootNeed()
    packages: list[str] = []
    kernel = {"KCUR": "", "KEXP": "", "KSTA": ""}
    services: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        key, _, value = line.partition(" ")
        if key == "FILE":
            need.reasons.append("/var/run/reboot-required exists")
        elif key == "PKG" and value:
            packages.append(value.strip())
        elif key == "NEEDS-RESTARTING-R" and value.strip() == "1":
            need.reasons.append("needs-restarting -r: core libraries or services were updated since boot")
        elif key == "SVC" and value.strip():
            services.append(value.strip())
        elif key.startswith("NEEDRESTART-"):
            name = key.removeprefix("NEEDRESTART-").rstrip(":")
            if name in kernel:
                kernel[name] = value.strip()
            elif name == "SVC" and value.strip():
                services.append(value.strip())
        elif key == "PROC":
            match = _PROC.match(line)
            if match:
                unit = match["unit"]
                services.append(unit if unit != "-" else f"{match['comm'].strip()}[{match['pid']}]")
    if packages and need.reasons:
        need.reasons[0] += f" (for {', '.join(dict.fromkeys(packages))})"
    # needrestart's kernel status: 2 = ABI-compatible upgrade pending, 3 = version upgrade pending
    if kernel["KSTA"] in ("2", "3"):
        expected = f" {kernel['KEXP']}" if kernel["KEXP"] else ""
        need.reasons.append(f"a newer kernel{expected} is installed (running {kernel['KCUR'] or '?'})")
    need.services = list(dict.fromkeys(services))
    return need


def apt_root(ctx: StepContext) -> str:
    """maintainer_apt_root without its trailing '/' ('' for the host's own root)."""
    return str(ctx.site.vars.get("maintainer_apt_root") or "/").rstrip("/")


def detect(ctx: StepContext) -> RebootNeed:
    result = ctx.sh(DETECT_SCRIPT, env={"ROOT": apt_root(ctx)})
    return parse_detection(result.stdout)


# ------------------------------------------------------------------ the decision


def pending_reason(ctx: StepContext, policy: str, now: datetime) -> str | None:
    """Why a needed reboot must not happen now, or None when it may."""
    if policy == "never":
        return "the runbook says reboot=never"
    spec = ctx.site.vars.get(windows.VAR)
    if spec is not None:
        try:
            window = windows.parse_window(spec)
        except ValueError as exc:
            raise StepFailed(f"invalid {windows.VAR}: {exc}") from exc
        if not window.is_open(now):
            return window.closed_message(now)
    if ctx.site.connection == "local":
        return "the site is this machine (ansible_connection: local): reboot it by hand"
    return None


def _site_seconds(ctx: StepContext, var: str, default: float) -> float:
    value = ctx.site.vars.get(var, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise StepFailed(f"{var} must be a number of seconds, not {value!r}") from None
    if seconds <= 0:
        raise StepFailed(f"{var} must be more than 0 seconds, not {value!r}")
    return seconds


class RebootAction(Action):
    name = "reboot"
    Args = RebootArgs
    summary = "reboot the host when updates need it, inside the maintenance window; else report it pending"

    def dry_run(self, ctx: StepContext, args: RebootArgs) -> dict[str, Any]:
        need = detect(ctx)
        why_not = pending_reason(ctx, args.policy, datetime.now(UTC))
        now = (
            f"a reboot is needed now ({'; '.join(need.reasons)})"
            if need.required
            else "no reboot is needed now (checked again when the step runs)"
        )
        then = "it would be left pending: " + why_not if why_not else "a needed reboot would happen now"
        return {
            "summary": f"{now}; {then}",
            "reboot_required": need.required,
            "reasons": need.reasons,
            "restart_pending": need.services,
            "would_reboot": need.required and why_not is None,
        }

    def run(self, ctx: StepContext, args: RebootArgs) -> ActionResult:
        with host_lock(ctx, "reboot"):
            # checked while holding the host: a site that shares it may have rebooted it meanwhile
            need = detect(ctx)
            restarts = (
                [
                    {
                        "what": "restart_pending",
                        "services": need.services,
                        "summary": f"services running replaced libraries: {', '.join(need.services)}",
                    }
                ]
                if need.services
                else []
            )
            outputs: dict[str, Any] = {
                "reboot": "not_required",
                "rebooted": False,
                "reasons": need.reasons,
                "restart_pending": need.services,
            }
            if not need.required:
                return ActionResult(outputs=outputs, changes=restarts)
            why_not = pending_reason(ctx, args.policy, datetime.now(UTC))
            if why_not is not None:
                outputs.update(reboot="pending", why=why_not)
                ctx.log(f"reboot pending: {why_not}")
                pending = {
                    "what": "reboot_pending",
                    "reasons": need.reasons,
                    "why": why_not,
                    "summary": f"reboot pending: {why_not}",
                }
                return ActionResult(outputs=outputs, changes=[pending, *restarts])
            before, after, seconds = self._reboot(ctx)
        outputs.update(reboot="done", rebooted=True, seconds=seconds, restart_pending=[])
        return ActionResult(
            outputs=outputs,
            changed=True,
            changes=[
                {
                    "what": "reboot",
                    "reasons": need.reasons,
                    "before": {"boot_id": before},
                    "after": {"boot_id": after},
                    "seconds": seconds,
                    "summary": f"rebooted ({'; '.join(need.reasons)}); SSH answered again after {seconds:g}s",
                }
            ],
        )

    def _reboot(self, ctx: StepContext) -> tuple[str, str, float]:
        """Reboot and wait for the host: (boot id before, boot id after, seconds until it answered)."""
        command = str(ctx.site.vars.get("maintainer_reboot_command") or DEFAULT_REBOOT_COMMAND)
        boot_id_command = str(ctx.site.vars.get("maintainer_boot_id_command") or DEFAULT_BOOT_ID_COMMAND)
        limit = _site_seconds(ctx, "maintainer_reboot_timeout", DEFAULT_REBOOT_TIMEOUT)
        if ctx.timeout:
            limit = min(limit, ctx.timeout)
        before = ctx.sh(boot_id_command).stdout.strip()
        if not before:
            raise StepFailed(
                f"'{boot_id_command}' printed no boot id: cannot tell when the host has rebooted"
            )
        ctx.log(f"rebooting {ctx.transport.label}: {command}")
        started = time.monotonic()
        try:
            result = ctx.transport.run(command, timeout=COMMAND_SECONDS, cancel=ctx.cancel)
        except (TransportError, Unreachable):
            pass  # the connection went down with the host: what a reboot does
        else:
            if result.cancelled:
                raise StepCancelled("stopped while the reboot command ran: the host may be rebooting")
            if not result.ok:
                raise StepFailed(
                    f"the reboot command '{command}' failed (rc {result.rc}): "
                    f"{tail(result.stderr or result.stdout)}",
                    outputs={"rc": result.rc, "stdout": result.stdout, "stderr": result.stderr},
                )
        # from here on, every attempt starts a fresh connection: the old one dies with the host
        ctx.transport.close()
        last_error = "it did not answer yet"
        while True:
            if ctx.cancel.wait(POLL_SECONDS):
                raise StepCancelled("stopped while waiting for the host to come back from its reboot")
            try:
                probe = ctx.transport.run(boot_id_command, timeout=PROBE_SECONDS)
                now = probe.stdout.strip()
                if probe.ok and now and now != before:
                    return before, now, round(time.monotonic() - started, 1)
                last_error = "it still has the boot id it had before" if probe.ok else f"rc {probe.rc}"
            except (TransportError, Unreachable) as exc:
                last_error = str(exc)
            ctx.transport.close()
            if time.monotonic() - started > limit:
                raise StepFailed(
                    f"the host did not come back from its reboot within {limit:g}s "
                    f"(maintainer_reboot_timeout): {last_error}"
                )
