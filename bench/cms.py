"""CMS update benchmark: N small WordPress sites on loopback, the dry-run plan and the full safe update.

    python -m bench.cms [--sites 50] [--concurrency 5]

Each site is the test suite's update site (tests/servers/wp_updates.py): a copy of Debian's
WordPress with the test plugins, its own database on one throwaway MariaDB, its own PHP built-in
server, the WP-CLI stand-in and a local update source. The run updates two plugins and a theme per
site (``core=none``: a core update unpacks 50 MB per site and would only make the bench longer;
the machinery's share is the same).

What is measured, in this one run (the machine is shared and noisy: compare the ratios):

- ``maintainer run cms-update --dry-run`` over every site, against a plain script that runs the
  same WP-CLI commands directly (recorded by a timing wrapper around the stand-in during
  maintainer's run, replayed in the same order);
- ``maintainer run cms-update`` (preflight, plan, backup, maintenance, update, migrations, cache,
  checks; canary batch then 25% batches, concurrency as given), against a plain script doing the
  same job on an identical second set of sites, with the same batches and concurrency: the
  recorded WP-CLI commands, the same backup through maintainer's backup library called directly
  (the backup's own speed against restic is bench/backup.py's figure), the same number of page
  fetches, and the runbook's deliberate waits (the OPcache settle time);
- per site, inside maintainer's own run: its duration minus the time its WP-CLI commands took.

The machinery's overhead is maintainer's wall time minus the plain script's, as a share of the
plain script's (goal: under 5%).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# tests.servers.wpcli first: it imports wp_updates at its end (wp_updates imported first is circular)
importlib.import_module("tests.servers.wpcli")

from maintainer.engine import make_batches  # noqa: E402
from tests.servers.mariadb import MariaDBServer, running_mariadb  # noqa: E402
from tests.servers.web import install_wordpress, site_database  # noqa: E402
from tests.servers.wp_updates import (  # noqa: E402
    WpUpdateSite,
    build_update_base,
    running_update_packages,
    update_site,
)
from tests.servers.wpcli import checksum_manifest  # noqa: E402

MAINTAINER = str(Path(sys.executable).with_name("maintainer"))
SELECTION = ["-p", "core=none", "-p", "plugins=list", "-p", "only=good-plugin,other-plugin"]
#: what the runbook fetches per site beyond the wp commands: preflight and post-check samples
FETCHES = 6
#: the runbook's deliberate waits per site in a clean run (post_check settle)
WAITS = 2.5

#: records start/end (ns) and argv of every call, then runs the real stand-in
TIMING_WRAPPER = """#!/bin/bash
start=$(date +%s%N)
{real} "$@"
rc=$?
echo "$start $(date +%s%N) $(printf '%q ' "$@")" >> {log}
exit $rc
"""


def timed_wp(site: WpUpdateSite, log: Path) -> Path:
    wrapper = site.wp_cli.with_name("wp-timed")
    wrapper.write_text(TIMING_WRAPPER.format(real=shlex.quote(str(site.wp_cli)), log=shlex.quote(str(log))))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return wrapper


def read_calls(log: Path) -> list[tuple[float, list[str]]]:
    """(seconds, argv) of every recorded call, in order."""
    return [(end - start, args) for start, end, args in read_spans(log)]


def read_spans(log: Path) -> list[tuple[float, float, list[str]]]:
    """(start, end) in epoch seconds and argv of every recorded call."""
    spans = []
    for line in log.read_text().splitlines() if log.exists() else []:
        start, end, args = line.split(" ", 2)
        spans.append((int(start) / 1e9, int(end) / 1e9, shlex.split(args)))
    return spans


def outside_wp(steps: list[dict[str, Any]], spans: list[tuple[float, float, list[str]]]) -> dict[str, float]:
    """Per step: its duration minus the WP-CLI calls that ran inside it (backup, checks, machinery)."""
    found = {}
    for step in steps:
        started = datetime.fromisoformat(step["started"].replace("Z", "+00:00")).timestamp()
        ended = started + step["duration"]
        inside = sum(e - s for s, e, _ in spans if s >= started - 0.002 and e <= ended + 0.002)
        found[f"{step['section']}:{step['id']}"] = max(0.0, step["duration"] - inside)
    return found


def write_project(root: Path, sites: dict[str, dict[str, Any]]) -> Path:
    runbook = REPO / "runbooks" / "cms-update" / "1.0.0.yml"
    (root / "runbooks" / "cms-update").mkdir(parents=True)
    shutil.copy(runbook, root / "runbooks" / "cms-update" / "1.0.0.yml")
    (root / "inventories").mkdir()
    (root / "inventories" / "bench.yml").write_text(yaml.safe_dump({"all": {"hosts": sites}}))
    (root / "maintainer.toml").write_text(
        '[maintainer]\ninventory = "inventories/bench.yml"\nlock_ttl = "30m"\n'
    )
    return root


def maintainer(project: Path, *args: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    proc = subprocess.run(
        [MAINTAINER, "--project", str(project), "run", "cms-update", *args, "--output", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "MAINTAINER_OPERATOR": "bench"},
        stdin=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"maintainer exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds, json.loads(proc.stdout)


# ------------------------------------------------------------------ the plain script (the baseline)


def replay(site: WpUpdateSite, calls: list[tuple[float, list[str]]], source_dir: str) -> None:
    """The recorded WP-CLI calls of another site, on this one (its own paths)."""
    own = str(site.docroot.parent)
    for _seconds, args in calls:
        argv = [str(site.wp_cli), *(a.replace(source_dir, own) for a in args)]
        subprocess.run(argv, capture_output=True, timeout=600)


def plain_backup(site: WpUpdateSite, out: Path) -> None:
    """The same backup as the runbook's backup step, through the backup library called directly.

    The plain script does the same work, so the difference is the machinery (engine, plan, change
    log, the steps around the work); how the backup itself compares with restic is bench/backup.py's.
    """
    from maintainer.backup.config import site_backup
    from maintainer.backup.create import create_backup
    from maintainer.backup.streams import Deadline
    from maintainer.inventory import Site
    from maintainer.transport import LocalTransport

    spec = site_backup(Site("plain", site.site_vars(backup={"target": f"file://{out}"}), []))
    create_backup(LocalTransport(), spec, Deadline(threading.Event()))


def fetch(url: str) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()


def plain_update(site: WpUpdateSite, calls: list[tuple[float, list[str]]], source_dir: str, server: MariaDBServer,
                 out: Path) -> None:  # fmt: skip
    for _ in range(FETCHES // 2):
        fetch(site.url)
    replay(site, calls, source_dir)  # the update's commands (maintenance, update, db, cache, ...)
    plain_backup(site, out)
    time.sleep(WAITS)
    for _ in range(FETCHES // 2):
        fetch(site.url)


def in_batches(count: int, concurrency: int, job: Any) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for batch in make_batches(count, [1, "25%"]):
            list(pool.map(job, batch))
    return time.perf_counter() - started


# ------------------------------------------------------------------ the run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=5)
    options = parser.parse_args()
    count = options.sites
    work = Path(tempfile.mkdtemp(prefix="maintainer-bench-cms-"))
    work.chmod(0o755)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        clock = time.perf_counter()
        server = stack.enter_context(running_mariadb())
        packages = stack.enter_context(running_update_packages())
        db = stack.enter_context(site_database(server))
        (work / "installed").mkdir()
        installed = install_wordpress(work / "installed" / "site", db)
        base = stack.enter_context(build_update_base(installed, server))
        checksums = checksum_manifest()

        def make(group: str, index: int) -> WpUpdateSite:
            directory = work / f"{group}{index:03}"
            directory.mkdir()
            directory.chmod(0o755)
            return stack.enter_context(update_site(base, packages, server, checksums, directory))

        measured = [make("m", i) for i in range(count)]
        plain = [make("p", i) for i in range(count)]
        print(f"setup: {2 * count} sites in {time.perf_counter() - clock:.1f} s", file=sys.stderr)

        logs = {i: work / f"calls-{i:03}.log" for i in range(count)}
        inventory = {
            f"site{i:03}": {
                **site.site_vars(
                    wp_cli=str(timed_wp(site, logs[i])),
                    backup={"target": f"file://{work}/store/site{i:03}"},
                ),
                "maintainer_lock_dir": str(work / "locks"),
            }
            for i, site in enumerate(measured)
        }
        project = write_project(work / "project", inventory)

        # ---- the dry-run plan: maintainer (sequential previews) vs its wp commands replayed
        dry_m, _ = maintainer(project, *SELECTION, "--dry-run")
        dry_calls = {i: read_calls(logs[i]) for i in range(count)}
        for log in logs.values():
            log.unlink(missing_ok=True)
        started = time.perf_counter()
        for i in range(count):
            replay(plain[i], dry_calls[i], str(measured[i].docroot.parent))
        dry_b = time.perf_counter() - started

        # ---- the full safe update
        run_m, doc = maintainer(project, *SELECTION, "--concurrency", str(options.concurrency))
        calls = {i: read_calls(logs[i]) for i in range(count)}
        run_b = in_batches(
            count,
            options.concurrency,
            lambda i: plain_update(
                plain[i], calls[i], str(measured[i].docroot.parent), server, work / "plain" / str(i)
            ),
        )
        statuses = {r["status"] for r in doc["sites"].values()}
        updated = sum(1 for s in measured if s.version_of("plugin", "good-plugin") == "1.1")
        plain_updated = sum(1 for s in plain if s.version_of("plugin", "good-plugin") == "1.1")

        # the document's sites by index (site007 -> 7): its order is the order they finished
        results = {int(name.removeprefix("site")): r for name, r in doc["sites"].items()}
        site_seconds = [results[i]["duration"] for i in range(count)]
        by_step: dict[str, list[float]] = {}
        outside: dict[str, list[float]] = {}
        for index, result in results.items():
            for step in result["steps"]:
                by_step.setdefault(f"{step['section']}:{step['id']}", []).append(step["duration"])
            for name, seconds in outside_wp(result["steps"], read_spans(logs[index])).items():
                outside.setdefault(name, []).append(seconds)
        wp_seconds = [sum(s for s, _ in calls[i]) for i in range(count)]
        per_site_rest = sorted(d - w for d, w in zip(site_seconds, wp_seconds, strict=True))

    wp_calls = sum(len(c) for c in calls.values()) / count
    print(f"cms-update bench: {count} WordPress sites on loopback, concurrency {options.concurrency}, "
          f"batches [1, 25%]; site statuses {sorted(statuses)}; good-plugin updated on {updated}/{count} "
          f"(plain script: {plain_updated}/{count})")  # fmt: skip
    print(f"  dry-run plan   maintainer {dry_m:8.2f} s   plain wp script {dry_b:8.2f} s   "
          f"machinery {dry_m - dry_b:+7.2f} s = {100 * (dry_m - dry_b) / dry_b:+6.1f}%")  # fmt: skip
    print(f"  safe update    maintainer {run_m:8.2f} s   plain script    {run_b:8.2f} s   "
          f"machinery {run_m - run_b:+7.2f} s = {100 * (run_m - run_b) / run_b:+6.1f}%   (goal < 5%)")  # fmt: skip
    print(f"  per site (inside maintainer's run): {wp_calls:.0f} WP-CLI calls, "
          f"{sum(wp_seconds) / count:.2f} s in them; the rest (backup, page checks, waits, machinery) "
          f"median {per_site_rest[len(per_site_rest) // 2]:.2f} s")  # fmt: skip
    medians = ", ".join(
        f"{name.removeprefix('steps:')} {sorted(values)[len(values) // 2]:.2f}"
        for name, values in by_step.items()
        if max(values) > 0.005
    )
    print(f"  median seconds per step: {medians}")
    rest = ", ".join(
        f"{name.removeprefix('steps:')} {sorted(values)[len(values) // 2]:.2f}"
        for name, values in outside.items()
        if max(values) > 0.005
    )
    print(f"  ... of which outside WP-CLI (backup, page fetches, waits, maintainer itself): {rest}")


if __name__ == "__main__":
    main()
