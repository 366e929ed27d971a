"""Fan-out benchmark: maintainer vs ansible-playbook, per-step overhead, 1,000-site scheduling.

Run as root (it starts a throwaway sshd on loopback, like the tests):

    .venv/bin/python -m bench.fanout [--sites 50]

Prints wall times and ratios measured in this one run; machines are shared and
noisy, so compare the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from maintainer import RunOptions, run  # noqa: E402
from maintainer.engine import plan, prepare  # noqa: E402
from maintainer.transport import Connections  # noqa: E402
from tests.servers.sshd import SSHServer, running_sshd  # noqa: E402

COMMANDS = [
    "uptime",
    'df -P "$HOME" | tail -n 1',
    "echo {{ site.name }} > {{ site.docroot }}/fanout.txt",
]
ANSIBLE_COMMANDS = [
    c.replace("{{ site.name }}", "{{ inventory_hostname }}").replace("{{ site.docroot }}", "{{ docroot }}")
    for c in COMMANDS
]


def write_project(
    root: Path, sites: dict[str, dict[str, Any]], steps: list[dict[str, Any]], concurrency: int
) -> Path:
    (root / "runbooks" / "bench").mkdir(parents=True)
    runbook = {"name": "bench", "version": "1.0.0", "concurrency": concurrency, "steps": steps}
    (root / "runbooks" / "bench" / "1.0.0.yml").write_text(yaml.safe_dump(runbook, sort_keys=False))
    (root / "inventories").mkdir()
    (root / "inventories" / "bench.yml").write_text(yaml.safe_dump({"all": {"hosts": sites}}))
    (root / "maintainer.toml").write_text('[maintainer]\ninventory = "inventories/bench.yml"\n')
    return root


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def fanout(server: SSHServer, work: Path, count: int) -> None:
    sites = {}
    for i in range(count):
        name = f"site{i:03d}"
        sites[name] = server.site_vars(
            docroot=str(server.workspace(name)),
            maintainer_lock_dir=str(server.workspace("locks")),
            ansible_ssh_args="-o ControlMaster=auto -o ControlPersist=60s",
        )
    steps = [{"id": f"c{i}", "uses": "shell", "with": {"command": c}} for i, c in enumerate(COMMANDS)]
    project = write_project(work / "fanout", sites, steps, concurrency=count)
    playbook = work / "fanout" / "playbook.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "all",
                    "gather_facts": False,
                    "tasks": [{"ansible.builtin.shell": c} for c in ANSIBLE_COMMANDS],
                }
            ],
            sort_keys=False,
        )
    )
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "LANG": "C.UTF-8", "ANSIBLE_PIPELINING": "1", "ANSIBLE_NOCOLOR": "1"}

    lib_s, result = timed(lambda: run(RunOptions(runbook="bench", project=project)))
    assert int(result.exit_code) == 0, {n: s.error for n, s in result.sites.items() if s.status != "ok"}
    cli_s, proc = timed(
        lambda: subprocess.run(
            [str(bin_dir / "maintainer"), "--project", str(project), "run", "bench", "-o", "json"],
            capture_output=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ans_s, proc = timed(
        lambda: subprocess.run(
            [
                str(bin_dir / "ansible-playbook"),
                "-f",
                str(count),
                "-i",
                str(project / "inventories" / "bench.yml"),
                str(playbook),
            ],
            capture_output=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    subprocess.run(
        ["pkill", "-f", r"ssh: .*\[mux\]"], capture_output=True
    )  # ansible's ControlPersist masters
    print(f"fan-out: {count} sites x {len(COMMANDS)} commands on one loopback sshd")
    print(f"  maintainer (library)          {lib_s:8.3f} s")
    print(f"  maintainer (CLI, cold start)  {cli_s:8.3f} s")
    print(f"  ansible-playbook -f {count:<3}       {ans_s:8.3f} s")
    print(f"  ratio ansible / maintainer CLI     {ans_s / cli_s:6.1f}x   (goal >= 10x)")
    print(f"  ratio ansible / maintainer library {ans_s / lib_s:6.1f}x")


def step_overhead(server: SSHServer, work: Path, steps_count: int = 201) -> None:
    """Engine cost per step: the slope between a 1-step and an N-step run, minus the bare command."""
    for label, site in (
        ("ssh", server.site_vars(docroot="/tmp", maintainer_lock_dir=str(server.workspace("locks-oh")))),
        ("local", {"ansible_connection": "local", "maintainer_lock_dir": str(work / "locks-local")}),
    ):
        projects = {}
        for n in (1, steps_count):
            steps = [{"id": f"s{i}", "uses": "shell", "with": {"command": "true"}} for i in range(n)]
            projects[n] = write_project(work / f"overhead-{label}-{n}", {"one": site}, steps, concurrency=1)
        # the command itself, through the same kind of transport, without the engine
        connections = Connections()
        transport = connections.for_site(site, "one")
        transport.connect()
        transport.run("true")
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(100):
                transport.run("true", timeout=3600)  # steps always carry a timeout
            samples.append((time.perf_counter() - started) / 100)
        connections.close()
        bare = statistics.median(samples)
        medians = {}
        for n, project in projects.items():
            times = []
            for _ in range(3):
                seconds, result = timed(
                    lambda project=project: run(RunOptions(runbook="bench", project=project))
                )
                assert int(result.exit_code) == 0
                times.append(seconds)
            medians[n] = statistics.median(times)
        per_step = (medians[steps_count] - medians[1]) / (steps_count - 1)
        print(
            f"per step over {label:<5}: {per_step * 1000:6.2f} ms, the command alone {bare * 1000:6.2f} ms, "
            f"maintainer overhead {(per_step - bare) * 1000:5.2f} ms   (goal < 2 ms); "
            f"fixed cost of a run (load, connect, lock, log) {medians[1] * 1000:.0f} ms"
        )


def many_local_sites(work: Path, count: int = 1000) -> None:
    sites = {
        f"s{i:04d}": {"ansible_connection": "local", "maintainer_lock_dir": str(work / "locks-many")}
        for i in range(count)
    }
    steps = [
        {"id": f"n{i}", "uses": "debug", "with": {"msg": "{{ site.name }} step " + str(i)}} for i in range(3)
    ]
    project = write_project(work / "many", sites, steps, concurrency=50)
    options = RunOptions(runbook="bench", project=project)
    load_s, (proj, loaded, inventory, params) = timed(lambda: prepare(options))
    plan_s, _ = timed(lambda: plan(proj, loaded, inventory, params, options))
    total_s, result = timed(lambda: run(options))
    assert int(result.exit_code) == 0 and len(result.sites) == count
    print(
        f"{count} local sites x 3 no-op steps: inventory+runbook load {load_s:.3f} s, plan {plan_s:.3f} s, "
        f"whole run (load, plan, locks, execute, change log) {total_s:.3f} s"
    )
    print(f"  plan + schedule + execute without loading: {total_s - load_s:.3f} s   (goal < 2 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/fanout.py needs root: it starts a throwaway sshd and a test user, like the tests")
    with tempfile.TemporaryDirectory(prefix="maintainer-bench-") as tmp, running_sshd() as server:
        work = Path(tmp)
        fanout(server, work, args.sites)
        step_overhead(server, work)
        many_local_sites(work)


if __name__ == "__main__":
    main()
