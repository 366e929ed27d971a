"""Site locks, kept on the target itself so two controllers exclude each other.

A lock is a small JSON file ``<lock_dir>/<site>.lock`` created with O_EXCL
(noclobber). Its holder refreshes its mtime while the run lasts; a lock
whose mtime is older than the TTL belongs to a run that is gone and is
broken, and the break is reported so the change log records it. Every
check-and-break happens under ``flock`` on a guard file, so two controllers
cannot both break the same stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LockHeld, TransportError
from .transport import LocalTransport, Transport

DEFAULT_LOCK_DIR = "~/.maintainer/locks"

# Positional args: dir, name, info, ttl, mode, run_id, dead_run_id. Exit 0 = taken
# (prints ACQUIRED or "BROKE <old info>"), 3 = held (prints the holder's info).
_REMOTE_SCRIPT = r"""
set -u
dir=$1 name=$2 info=$3 ttl=$4 mode=$5 run_id=$6 dead=${7:-}
case $dir in "~"|"~/"*) dir="$HOME${dir#\~}";; esac
mkdir -p -m 0700 "$dir" || exit 10
f="$dir/$name.lock"
exec 9>"$dir/.guard"
flock -w 10 9 || exit 11
case $mode in
acquire)
  if (set -C; printf '%s\n' "$info" > "$f") 2>/dev/null; then echo ACQUIRED; exit 0; fi
  now=$(date +%s); m=$(stat -c %Y "$f" 2>/dev/null || echo "$now")
  if [ $((now - m)) -gt "$ttl" ] || { [ -n "$dead" ] && grep -qF "\"$dead\"" "$f"; }; then
    old=$(cat "$f" 2>/dev/null); rm -f "$f"
    printf '%s\n' "$info" > "$f"; printf 'BROKE %s\n' "$old"; exit 0
  fi
  cat "$f" 2>/dev/null; exit 3;;
refresh) grep -qF "$run_id" "$f" 2>/dev/null && touch "$f";;
release) if grep -qF "$run_id" "$f" 2>/dev/null; then rm -f "$f"; fi;;
esac
"""


@dataclass(eq=False)  # held locks live in a set, by identity
class SiteLock:
    transport: Transport
    lock_dir: str
    site: str
    run_id: str
    #: the holder whose stale lock this run broke, if it did
    broken: dict[str, Any] | None = None


def _parse_info(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text.strip())
        return data if isinstance(data, dict) else {"holder": text.strip()}
    except ValueError:
        return {"holder": text.strip() or "unknown"}


def acquire(
    transport: Transport,
    site: str,
    info: dict[str, Any],
    *,
    lock_dir: str = DEFAULT_LOCK_DIR,
    ttl: float = 900,
    wait: float = 0,
    cancel: threading.Event | None = None,
) -> SiteLock:
    """Take the site's lock, waiting up to ``wait`` seconds; raises LockHeld.

    A lock held by a run of this same controller whose process is gone (a
    crash, a kill -9) is broken at once instead of after the TTL. ``cancel``
    (SIGINT/SIGTERM) ends the wait at once, with LockHeld.
    """
    cancel = cancel or threading.Event()
    payload = json.dumps(info, sort_keys=True)
    run_id = str(info["run_id"])
    site = _file_name(site)
    deadline = time.monotonic() + wait
    dead: str | None = None
    while True:
        taken, detail = _try(transport, lock_dir, site, payload, ttl, run_id, dead)
        if taken:
            return SiteLock(transport, lock_dir, site, run_id, broken=detail)
        dead = _dead_local_holder(detail or {}, str(info.get("holder", "")))
        if dead:
            continue
        if time.monotonic() >= deadline or cancel.is_set():
            raise LockHeld(site, detail or {})
        # A stop request must not wait out --wait-lock: systemd or cron would KILL us first.
        cancel.wait(min(1.0, max(0.05, deadline - time.monotonic())))


def _file_name(site: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", site)


def _dead_local_holder(holder: dict[str, Any], our_holder: str) -> str | None:
    """The holder's run id if it ran on this controller and its process is gone."""
    host = str(holder.get("holder", "")).rpartition("@")[2]
    pid, run_id = holder.get("pid"), holder.get("run_id")
    if not run_id or not isinstance(pid, int) or host != our_holder.rpartition("@")[2]:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return str(run_id)
    except PermissionError:
        return None  # alive, another user's process
    return None


def _try(
    transport: Transport,
    lock_dir: str,
    site: str,
    payload: str,
    ttl: float,
    run_id: str,
    dead: str | None = None,
) -> tuple[bool, dict[str, Any] | None]:
    if isinstance(transport, LocalTransport):
        return _local(lock_dir, site, payload, ttl, "acquire", run_id, dead)
    result = transport.run(
        [
            "bash", "-c", _REMOTE_SCRIPT, "lock",
            lock_dir, site, payload, str(int(ttl)), "acquire", run_id, dead or "",
        ],
        timeout=30,
    )  # fmt: skip
    if result.rc == 0:
        line = result.stdout.strip()
        return True, _parse_info(line[6:]) if line.startswith("BROKE ") else None
    if result.rc == 3:
        return False, _parse_info(result.stdout)
    raise TransportError(
        f"could not take the lock for site '{site}' in {lock_dir} on {transport.label} "
        f"(rc {result.rc}): {result.stderr.strip() or result.stdout.strip()}"
    )


def refresh(lock: SiteLock) -> None:
    _call(lock, "refresh")


def release(lock: SiteLock) -> None:
    _call(lock, "release")


def _call(lock: SiteLock, mode: str) -> None:
    if isinstance(lock.transport, LocalTransport):
        _local(lock.lock_dir, lock.site, "", 0, mode, lock.run_id)
        return
    lock.transport.run(
        ["bash", "-c", _REMOTE_SCRIPT, "lock", lock.lock_dir, lock.site, "", "0", mode, lock.run_id],
        timeout=30,
    )


def _local(
    lock_dir: str, site: str, payload: str, ttl: float, mode: str, run_id: str, dead: str | None = None
) -> tuple[bool, dict[str, Any] | None]:
    """The same protocol as the shell script, in-process: no fork per lock."""
    directory = Path(os.path.expanduser(lock_dir))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{site}.lock"
    with open(directory / ".guard", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if mode == "acquire":
            broken = None
            with contextlib.suppress(FileNotFoundError):
                current = path.read_text()
                expired = time.time() - path.stat().st_mtime > ttl
                if expired or (dead and _parse_info(current).get("run_id") == dead):
                    broken = _parse_info(current)
                    path.unlink()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                try:
                    return False, _parse_info(path.read_text())
                except FileNotFoundError:
                    return False, {}
            with os.fdopen(fd, "w") as fh:
                fh.write(payload + "\n")
            return True, broken
        try:
            held_by_us = run_id in path.read_text()
        except FileNotFoundError:
            return True, None
        if held_by_us:
            if mode == "refresh":
                os.utime(path)
            elif mode == "release":
                path.unlink()
        return True, None
