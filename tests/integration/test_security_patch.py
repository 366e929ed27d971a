"""The shipped security-patch runbook, for real: apt and dpkg on an isolated root, a real reboot wait.

The packages live in a throwaway system root with local apt repositories (tests/servers/os_patching.py):
one labelled as a security suite holds mt-secfix 1.1 (which leaves /var/run/reboot-required, as kernel
updates do), an ordinary one holds mt-feature 2.0. This machine's own packages are never upgraded;
each test checks that its dpkg database and log never saw the dummy packages.

Three ansible-runner runs in all (about 5 s each): a dry run and a real run on a local site whose
maintenance window is closed (so the reboot stays pending), and a real run over SSH inside the window,
where the reboot is a stand-in that really drops SSH and brings it back with a new boot id.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, cli, local_site, make_project, read_log
from tests.servers.os_patching import OTHER_PACKAGE, SECURITY_PACKAGE, AptSandbox, RebootableHost

pytestmark = pytest.mark.slow


def closed_window() -> str:
    start = datetime.now(UTC) + timedelta(hours=6)
    return f"daily {start:%H}:00-{start + timedelta(hours=1):%H}:00 UTC"


def patch_project(root: Path, site: dict[str, Any]) -> Path:
    """A project with the shipped runbook and playbook and one site, plus its static home page."""
    docroot = root / "site"
    docroot.mkdir()
    (docroot / "index.html").write_text("<h1>Patched Site</h1>\n")
    site = {
        "docroot": str(docroot),
        "site_url": f"file://{docroot}/index.html",
        "health_marker": "Patched Site",
        **site,
    }
    project = make_project(root, {}, {"web1": site})
    shutil.copytree(REPO / "runbooks" / "security-patch", project / "runbooks" / "security-patch")
    shutil.copy2(REPO / "playbooks" / "os-packages.yml", project / "playbooks" / "os-packages.yml")
    return project


def changes_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document["sites"]["web1"]["changes"])


def test_dry_run_lists_security_updates_and_the_run_leaves_the_reboot_pending_outside_the_window(
    tmp_path: Path, apt_sandbox: AptSandbox
) -> None:
    window = closed_window()
    site = local_site(tmp_path, maintenance_window=window, **apt_sandbox.site_vars())
    project = patch_project(tmp_path, site)

    plan = cli(project, "run", "security-patch", "--dry-run", "-o", "json", timeout=180)
    assert plan.returncode == 0, plan.stderr
    steps = {s["id"]: s for s in json.loads(plan.stdout)["sites"]["web1"]["steps"]}
    preview = steps["packages"]["preview"]
    # the non-security update (mt-feature 1.0 -> 2.0) is not in the default scope
    assert preview["packages"] == [
        {"name": SECURITY_PACKAGE, "from": "1.0", "to": "1.1", "arch": "all",
         "origin": "Debian-Security:12/bookworm-security"},
    ]  # fmt: skip
    assert preview["summary"] == f"would upgrade 1 package(s) (security): {SECURITY_PACKAGE} 1.0 → 1.1"
    assert "no reboot is needed now" in steps["reboot"]["preview"]["summary"]
    assert "it would be left pending: maintenance window" in steps["reboot"]["preview"]["summary"]
    assert apt_sandbox.installed() == {SECURITY_PACKAGE: "1.0", OTHER_PACKAGE: "1.0"}, "a dry run changed nothing"
    assert not list((apt_sandbox.root / "var/lib/apt/lists").glob("*Packages*")), "nor the root's package index"

    # the window is closed: the operator patches now anyway, and the reboot waits for the window
    run = cli(project, "run", "security-patch", "--ignore-window", "--ticket", "SEC-1", "-o", "json", timeout=180)
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["sites"]["web1"]["status"] == "ok"
    assert apt_sandbox.installed() == {SECURITY_PACKAGE: "1.1", OTHER_PACKAGE: "1.0"}
    overview, package, pending = changes_of(document)
    assert overview == {
        "step": "packages", "what": "packages", "family": "apt", "scope": "security", "count": 1,
        "summary": f"upgraded 1 package(s) (security): {SECURITY_PACKAGE} 1.0 → 1.1",
    }  # fmt: skip
    assert package == {
        "step": "packages", "what": "package", "name": SECURITY_PACKAGE, "arch": "all",
        "before": "1.0", "after": "1.1",
    }  # fmt: skip
    assert pending["what"] == "reboot_pending" and pending["step"] == "reboot"
    assert pending["reasons"] == [f"/var/run/reboot-required exists (for {SECURITY_PACKAGE})"]
    assert pending["why"].startswith(f"maintenance window '{window}' is closed")
    assert "reboot pending: maintenance window" in run.stderr  # the live progress says it too

    [entry] = read_log(project)
    assert entry["ticket"] == "SEC-1" and entry["sites"]["web1"]["status"] == "ok"
    assert entry["sites"]["web1"]["changes"] == changes_of(document)
    assert [s["id"] for s in entry["sites"]["web1"]["steps"] if s["status"] == "ok"] == [
        "packages", "reboot", "health",
    ]  # fmt: skip
    assert cli(project, "log", "verify").returncode == 0
    apt_sandbox.assert_host_untouched()


def test_the_security_fix_is_installed_when_a_newer_ordinary_update_exists(
    tmp_path: Path, apt_sandbox_newer_update: AptSandbox
) -> None:
    """mt-secfix 1.1 in bookworm-security, 1.2 in bookworm: the security scope takes 1.1 (Ubuntu's usual case)."""
    sandbox = apt_sandbox_newer_update
    site = local_site(tmp_path, maintenance_window=closed_window(), **sandbox.site_vars())
    project = patch_project(tmp_path, site)

    plan = cli(project, "run", "security-patch", "--dry-run", "-o", "json", timeout=180)
    assert plan.returncode == 0, plan.stderr
    steps = {s["id"]: s for s in json.loads(plan.stdout)["sites"]["web1"]["steps"]}
    assert steps["packages"]["preview"]["packages"] == [
        {"name": SECURITY_PACKAGE, "from": "1.0", "to": "1.1", "arch": "all",
         "origin": "Debian-Security:12/bookworm-security"},
    ]  # fmt: skip

    run = cli(project, "run", "security-patch", "--ignore-window", "-o", "json", timeout=180)
    assert run.returncode == 0, run.stderr
    assert sandbox.installed() == {SECURITY_PACKAGE: "1.1", OTHER_PACKAGE: "1.0"}
    sandbox.assert_host_untouched()


def test_inside_the_window_every_update_is_installed_the_host_rebooted_and_the_site_checked(
    tmp_path: Path, apt_sandbox: AptSandbox, rebootable_sshd: RebootableHost
) -> None:
    host = rebootable_sshd
    boot_before, sshd_before = host.boot_id(), host.sshd_pid()
    site = host.server.site_vars(
        ansible_user="root",  # package work and the (stand-in) reboot need root
        ansible_ssh_args="-o ControlMaster=auto -o ControlPersist=3s",  # the master goes 3 s after the run
        ansible_pipelining=True,  # one SSH session per task
        maintainer_lock_dir=str(tmp_path / "locks"),
        maintenance_window="daily 00:00-24:00 UTC",
        maintainer_reboot_command=host.reboot_command,  # the stand-in: see tests/servers/os_patching.py
        maintainer_boot_id_command=host.boot_id_command,
        maintainer_reboot_timeout=60,
        **apt_sandbox.site_vars(),
    )
    project = patch_project(tmp_path, site)
    run = cli(project, "run", "security-patch", "-p", "scope=all", "-o", "json", timeout=240)
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["sites"]["web1"]["status"] == "ok", document["sites"]["web1"]
    assert apt_sandbox.installed() == {SECURITY_PACKAGE: "1.1", OTHER_PACKAGE: "2.0"}
    overview, *packages, reboot = changes_of(document)
    assert overview["what"] == "packages" and overview["count"] == 2 and overview["scope"] == "all"
    assert sorted((c["name"], c["before"], c["after"]) for c in packages) == [
        (OTHER_PACKAGE, "1.0", "2.0"),
        (SECURITY_PACKAGE, "1.0", "1.1"),
    ]
    assert reboot["what"] == "reboot" and reboot["reasons"] == [
        f"/var/run/reboot-required exists (for {SECURITY_PACKAGE})"
    ]
    # SSH really went away and came back: a new sshd, and the host reports a new boot
    assert reboot["before"] == {"boot_id": boot_before} and reboot["after"] == {"boot_id": host.boot_id()}
    assert host.boot_id() != boot_before and host.sshd_pid() not in (0, sshd_before)
    steps = {s["id"]: s for s in read_log(project)[-1]["sites"]["web1"]["steps"]}
    assert steps["reboot"]["status"] == "ok" and steps["reboot"].get("changed") is True
    assert steps["health"]["status"] == "ok" and steps["health"]["started"] >= steps["reboot"]["started"]
    assert not list((tmp_path / "locks").glob("*.lock")), "the site lock was released after the reboot"
    apt_sandbox.assert_host_untouched()
