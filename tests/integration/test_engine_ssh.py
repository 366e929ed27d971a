"""Runbooks over a real throwaway sshd on loopback: sharing, failures, locks, ansible-runner."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from maintainer import RunOptions, run
from maintainer.engine import NullReporter
from maintainer.errors import ExitCode
from tests.helpers import make_project, read_log
from tests.servers.sshd import TEST_USER, SSHServer, free_port

pytestmark = pytest.mark.usefixtures("sshd_server")


def _site(server: SSHServer, name: str, **extra: Any) -> dict[str, Any]:
    docroot = server.workspace(name)
    return server.site_vars(
        docroot=str(docroot),
        maintainer_lock_dir=str(server.workspace(f"{name}-locks")),
        # no ControlPersist master left behind by ansible's own ssh
        ansible_ssh_args="-o ControlMaster=no",
        **extra,
    )


def _project(tmp_path: Path, runbook: str, sites: dict[str, dict[str, Any]]) -> Path:
    project = make_project(tmp_path, {"rb@1.0.0": runbook}, sites)
    return project


def _run(project: Path, **kwargs: Any) -> Any:
    return run(RunOptions(runbook="rb", project=project, **kwargs))


def test_two_sites_on_one_host_share_one_connection(sshd_server: SSHServer, tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        """
        name: rb
        version: 1.0.0
        steps:
          - id: who
            uses: shell
            with: {command: "echo $SSH_CONNECTION; id -un; pwd", cwd: "{{ site.docroot }}"}
          - id: write
            uses: shell
            with: {command: "echo {{ site.name | quote }} > index.html", cwd: "{{ site.docroot }}"}
        """,
        {"shop1": _site(sshd_server, "shop1"), "shop2": _site(sshd_server, "shop2")},
    )
    result = _run(project)
    assert result.exit_code == ExitCode.OK, {n: s.error for n, s in result.sites.items()}
    outs = {n: s.steps[0].outputs["stdout"].split("\n") for n, s in result.sites.items()}
    # the client side of $SSH_CONNECTION (ip and port) is the same TCP connection for both sites
    assert outs["shop1"][0].split()[:2] == outs["shop2"][0].split()[:2]
    assert outs["shop1"][1] == TEST_USER
    assert outs["shop1"][2] == str(sshd_server.workspace("shop1"))
    assert (sshd_server.workspace("shop2") / "index.html").read_text() == "shop2\n"
    assert result.sites["shop1"].host == f"{TEST_USER}@127.0.0.1:{sshd_server.port}"


def test_unreachable_and_wrong_host_key_do_not_stop_other_sites(
    sshd_server: SSHServer, tmp_path: Path
) -> None:
    bad_known_hosts = tmp_path / "bad_known_hosts"
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, key = other.with_suffix(".pub").read_text().split()[:2]
    bad_known_hosts.write_text(f"[127.0.0.1]:{sshd_server.port} {key_type} {key}\n")
    unknown_known_hosts = tmp_path / "empty_known_hosts"
    unknown_known_hosts.write_text("")
    project = _project(
        tmp_path,
        """
        name: rb
        version: 1.0.0
        steps:
          - {id: ok, uses: shell, with: {command: "true"}}
        """,
        {
            "good": _site(sshd_server, "good"),
            "down": _site(sshd_server, "down", ansible_port=free_port(), maintainer_connect_timeout=3),
            "spoofed": _site(sshd_server, "spoofed", maintainer_known_hosts=str(bad_known_hosts)),
            "unknown": _site(sshd_server, "unknown", maintainer_known_hosts=str(unknown_known_hosts)),
        },
    )
    result = _run(project)
    assert result.exit_code == ExitCode.SITE_FAILED
    assert result.sites["good"].status == "ok"
    assert result.sites["down"].status == "unreachable"
    assert "refused" in (result.sites["down"].error or "")
    assert result.sites["spoofed"].status == "unreachable"
    assert "mismatch" in (result.sites["spoofed"].error or "").lower()
    assert result.sites["unknown"].status == "unreachable"
    assert str(unknown_known_hosts) in (result.sites["unknown"].error or "")
    entry = read_log(project)[-1]
    assert entry["sites"]["spoofed"]["status"] == "unreachable"


def test_failing_step_rolls_back_remote_changes(sshd_server: SSHServer, tmp_path: Path) -> None:
    site = _site(sshd_server, "rollback")
    docroot = Path(site["docroot"])
    conf = docroot / "app.conf"
    conf.write_text("before\n")
    shutil.chown(conf, TEST_USER, TEST_USER)
    project = _project(
        tmp_path,
        """
        name: rb
        version: 1.0.0
        steps:
          - id: conf
            uses: template
            with: {src: app.conf.j2, dest: "{{ site.docroot }}/app.conf", validate: "grep -q version %s"}
          - id: break
            uses: shell
            with: {command: "echo config rejected by app >&2; exit 9"}
        rollback:
          - id: note
            uses: shell
            with: {command: "echo rolled back > {{ site.docroot }}/ROLLED_BACK"}
        """,
        {"rollback": site},
    )
    (project / "templates" / "app.conf.j2").write_text("version 2 for {{ site.name }}\n")
    result = _run(project)
    site_result = result.sites["rollback"]
    assert site_result.status == "failed" and site_result.rollback == "ok"
    assert "config rejected by app" in (site_result.error or "")
    assert conf.read_text() == "before\n"
    assert (docroot / "ROLLED_BACK").exists()
    backups = list(docroot.glob("app.conf.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == "before\n"


def test_remote_timeout_kills_the_process_group(sshd_server: SSHServer, tmp_path: Path) -> None:
    site = _site(sshd_server, "slow")
    project = _project(
        tmp_path,
        """
        name: rb
        version: 1.0.0
        steps:
          - id: hang
            uses: shell
            timeout: 1
            with: {command: "sleep 411 & sleep 412; wait"}
          - {id: never, uses: shell, with: {command: "true"}}
        """,
        {"slow": site},
    )
    started = time.monotonic()
    result = _run(project)
    assert time.monotonic() - started < 15
    assert result.sites["slow"].steps[0].status == "timeout"
    assert [s.id for s in result.sites["slow"].steps] == ["hang"]
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-u", TEST_USER, "-f", "sleep 41[12]"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "the remote sleeps were killed"


def test_lock_held_by_another_controller_on_the_target(sshd_server: SSHServer, tmp_path: Path) -> None:
    site = _site(sshd_server, "locked")
    lock = Path(site["maintainer_lock_dir"]) / "locked.lock"
    lock.write_text(json.dumps({"holder": "dave@controller-2", "run_id": "other-run", "since": "t0"}))
    project = _project(
        tmp_path,
        "name: rb\nversion: 1.0.0\nsteps:\n  - {id: a, uses: shell, with: {command: 'touch ran'}}\n",
        {"locked": site},
    )
    result = _run(project)
    assert result.exit_code == ExitCode.CANNOT_START
    assert "dave@controller-2" in (result.sites["locked"].error or "")
    lock.unlink()
    result = _run(project)
    assert result.exit_code == ExitCode.OK
    assert not lock.exists()


def test_two_controllers_exclude_each_other(sshd_server: SSHServer, tmp_path: Path) -> None:
    """Two runs at once (as from two machines) on the same site: exactly one gets in."""
    site = _site(sshd_server, "contended")
    runbook = "name: rb\nversion: 1.0.0\nsteps:\n  - {id: a, uses: shell, with: {command: 'sleep 3'}}\n"
    projects = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        projects[name] = _project(tmp_path / name, runbook, {"contended": site})
    results: dict[str, Any] = {}

    def run_in(name: str) -> None:
        results[name] = _run(projects[name])

    threads = [threading.Thread(target=run_in, args=(name,)) for name in projects]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(int(r.exit_code) for r in results.values())
    assert codes == [0, 3]


def test_interrupted_run_rolls_back_over_ssh(sshd_server: SSHServer, tmp_path: Path) -> None:
    site = _site(sshd_server, "interrupted")
    docroot = Path(site["docroot"])
    project = _project(
        tmp_path,
        """
        name: rb
        version: 1.0.0
        steps:
          - {id: one, uses: shell, with: {command: "touch started; sleep 1", cwd: "{{ site.docroot }}"}}
          - {id: two, uses: shell, with: {command: "touch two", cwd: "{{ site.docroot }}"}}
        rollback:
          - {id: back, uses: shell, with: {command: "rm -f started; touch rolled-back", cwd: "{{ site.docroot }}"}}
        finally:
          - {id: fin, uses: shell, with: {command: "touch finally", cwd: "{{ site.docroot }}"}}
        """,
        {"interrupted": site},
    )
    cancel = threading.Event()

    def interrupt() -> None:
        while not (docroot / "started").exists():
            time.sleep(0.02)
        cancel.set()

    threading.Thread(target=interrupt, daemon=True).start()
    result = run(RunOptions(runbook="rb", project=project), reporter=NullReporter(), cancel=cancel)
    assert result.exit_code == ExitCode.INTERRUPTED
    assert (docroot / "rolled-back").exists() and (docroot / "finally").exists()
    assert not (docroot / "two").exists()
    assert read_log(project)[-1]["status"] == "interrupted"


@pytest.mark.slow
def test_playbook_runs_through_ansible_runner(sshd_server: SSHServer, tmp_path: Path) -> None:
    site = _site(sshd_server, "ansible")
    project = _project(
        tmp_path,
        """
        name: rb
        version: 1.0.0
        steps:
          - id: play
            uses: playbook
            with:
              playbook: touch.yml
              extra_vars: {content: "from {{ site.name }}"}
          - id: again
            uses: playbook
            with:
              playbook: touch.yml
              extra_vars: {content: "from {{ site.name }}"}
        """,
        {"ansible": site},
    )
    (project / "playbooks" / "touch.yml").write_text(
        """- hosts: all
  gather_facts: false
  tasks:
    - name: ping
      ansible.builtin.ping:
    - name: write a file
      ansible.builtin.copy:
        dest: "{{ docroot }}/from-ansible.txt"
        content: "{{ content }} run {{ maintainer_run_id }}\\n"
"""
    )
    result = _run(project)
    assert result.exit_code == ExitCode.OK, result.sites["ansible"].error
    first, second = result.sites["ansible"].steps
    assert first.outputs["changed"] == 1 and first.outputs["failed"] == 0 and first.outputs["ok"] == 2
    assert second.outputs["changed"] == 0, "idempotent on the second run"
    text = (Path(site["docroot"]) / "from-ansible.txt").read_text()
    assert text.startswith("from ansible run ")
    assert read_log(project)[-1]["sites"]["ansible"]["changes"][0]["kind"] == "playbook"


@pytest.mark.slow
def test_failing_playbook_fails_the_site(sshd_server: SSHServer, tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        "name: rb\nversion: 1.0.0\nsteps:\n  - {id: play, uses: playbook, with: {playbook: fail.yml}}\n",
        {"ansiblefail": _site(sshd_server, "ansiblefail")},
    )
    (project / "playbooks" / "fail.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: this task fails on purpose\n      ansible.builtin.command: /bin/false\n"
    )
    result = _run(project)
    site = result.sites["ansiblefail"]
    assert site.status == "failed" and site.steps[0].outputs["failed"] == 1
    assert "playbook fail.yml failed" in (site.error or "")
    # the engineer reads which task failed and why, not a raw tail of ansible's output
    assert "task 'this task fails on purpose'" in (site.error or "")
    assert "non-zero return code" in (site.error or "")
