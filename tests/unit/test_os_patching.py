"""Reading the package managers' and reboot checks' outputs; the reboot decision.

apt's outputs are the ones the integration tests really get (tests/integration/test_security_patch.py).
There is no dnf, needrestart or needs-restarting on this machine: their samples below are written in
the formats their documentation gives (dnf check-update: NAME.ARCH EVR REPO, exit 100 when there
are updates; needrestart's README.batch: NEEDRESTART-* lines; needs-restarting -r: exit 1), and are
labelled as such.
"""

from __future__ import annotations

import ctypes.util
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maintainer.actions.os_packages import (
    PackageChange,
    installed_changes,
    parse_apt_simulation,
    parse_dnf_check_update,
    summary,
)
from maintainer.actions.reboot import detect, parse_detection, pending_reason
from maintainer.testing import action_context

APT_SIMULATION = """\
Reading package lists...
Building dependency tree...
The following NEW packages will be installed:
  linux-image-6.1.0-28-amd64
The following packages will be upgraded:
  libssl3 linux-image-amd64 openssl
Inst libssl3 [3.0.14-1~deb12u2] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
Inst linux-image-6.1.0-28-amd64 (6.1.119-1 Debian-Security:12/stable-security [amd64])
Inst linux-image-amd64 [6.1.115-1] (6.1.119-1 Debian:12.8/stable, Debian-Security:12/stable-security [amd64]) []
Inst tzdata [2024a-0+deb12u1] (2024b-0+deb12u1 Debian:12.8/stable-updates [all])
Inst libc6:i386 [2.36-9+deb12u8] (2.36-9+deb12u9 Debian:12.8/stable [i386])
Remv oldthing [1:0.9-2]
Conf libssl3 (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
"""


def test_apt_simulation_gives_name_from_to_and_origin() -> None:
    found = parse_apt_simulation(APT_SIMULATION)
    assert [c.listed() for c in found] == [
        {"name": "libssl3", "from": "3.0.14-1~deb12u2", "to": "3.0.15-1~deb12u1", "arch": "amd64",
         "origin": "Debian-Security:12/stable-security"},
        {"name": "linux-image-6.1.0-28-amd64", "from": None, "to": "6.1.119-1", "arch": "amd64",
         "origin": "Debian-Security:12/stable-security"},
        {"name": "linux-image-amd64", "from": "6.1.115-1", "to": "6.1.119-1", "arch": "amd64",
         "origin": "Debian:12.8/stable, Debian-Security:12/stable-security"},
        {"name": "tzdata", "from": "2024a-0+deb12u1", "to": "2024b-0+deb12u1", "arch": "all",
         "origin": "Debian:12.8/stable-updates"},
        {"name": "libc6:i386", "from": "2.36-9+deb12u8", "to": "2.36-9+deb12u9", "arch": "i386",
         "origin": "Debian:12.8/stable"},
        {"name": "oldthing", "from": "1:0.9-2", "to": None},
    ]  # fmt: skip
    assert parse_apt_simulation("0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n") == []


APT_POLICY_FILES = """\
Package files:
 100 /var/lib/dpkg/status
     release a=now
 500 http://archive.ubuntu.com/ubuntu jammy-updates/main amd64 Packages
     release v=22.04,o=Ubuntu,a=jammy-updates,n=jammy,l=Ubuntu,c=main,b=amd64
     origin archive.ubuntu.com
 500 http://security.ubuntu.com/ubuntu jammy-security/main amd64 Packages
     release v=22.04,o=Ubuntu,a=jammy-security,n=jammy,l=Ubuntu,c=main,b=amd64
     origin security.ubuntu.com
 500 http://archive.ubuntu.com/ubuntu jammy/main amd64 Packages
     release v=22.04,o=Ubuntu,a=jammy,n=jammy,l=Ubuntu,c=main,b=amd64
     origin archive.ubuntu.com
Pinned packages:
"""
APT_POLICY_PACKAGES = """\
libc6:
  Installed: 2.35-0ubuntu3.6
  Candidate: 2.35-0ubuntu3.8
  Version table:
     2.35-0ubuntu3.8 500
        500 http://archive.ubuntu.com/ubuntu jammy-updates/main amd64 Packages
     2.35-0ubuntu3.7 500
        500 http://security.ubuntu.com/ubuntu jammy-security/main amd64 Packages
 *** 2.35-0ubuntu3.6 100
        100 /var/lib/dpkg/status
     2.35-0ubuntu3.1 500
        500 http://security.ubuntu.com/ubuntu jammy-security/main amd64 Packages
openssl:
  Installed: 3.0.2-0ubuntu1.14
  Candidate: 3.0.2-0ubuntu1.15
  Version table:
     3.0.2-0ubuntu1.15 500
        500 http://archive.ubuntu.com/ubuntu jammy-updates/main amd64 Packages
        500 http://security.ubuntu.com/ubuntu jammy-security/main amd64 Packages
 *** 3.0.2-0ubuntu1.14 100
        100 /var/lib/dpkg/status
tzdata:
  Installed: 2024a-0ubuntu0.22.04
  Candidate: 2024b-0ubuntu0.22.04
  Version table:
     2024b-0ubuntu0.22.04 500
        500 http://archive.ubuntu.com/ubuntu jammy-updates/main amd64 Packages
 *** 2024a-0ubuntu0.22.04 100
        100 /var/lib/dpkg/status
     2024a-0ubuntu0.22.04.1 500
        500 http://security.ubuntu.com/ubuntu jammy-security/main amd64 Packages
"""


def test_the_playbooks_security_choice_takes_the_newest_security_version_below_a_newer_update(
    tmp_path: Path,
) -> None:
    """The script playbooks/os-packages.yml chooses security versions with, over a fake apt-cache.

    libc6: -updates (3.8) is newer than -security (3.7): 3.7 is taken, as unattended-upgrades does;
    openssl: the candidate itself is in -security; tzdata: only older-or-equal ones in -security.
    """
    import os

    import yaml

    play = yaml.safe_load((Path(__file__).parents[2] / "playbooks" / "os-packages.yml").read_text())[0]
    apt = next(t for t in play["tasks"][3]["block"] if t.get("name") == "APT (Debian, Ubuntu)")
    task = next(t for t in apt["block"] if "newest security version" in t["name"])
    script = task["ansible.builtin.shell"]["cmd"]
    (tmp_path / "files.txt").write_text(APT_POLICY_FILES)
    (tmp_path / "packages.txt").write_text(APT_POLICY_PACKAGES)
    fake = tmp_path / "apt-cache"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$3" = "" ]; then cat {tmp_path / "files.txt"}; '
        f'else echo "$@" > {tmp_path / "args.txt"}; cat {tmp_path / "packages.txt"}; fi\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "MODE": "upgrade", "WORK": str(tmp_path),
           "NAMES": "libc6 openssl tzdata"}  # fmt: skip
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["libc6=2.35-0ubuntu3.7", "openssl=3.0.2-0ubuntu1.15"]
    assert (tmp_path / "args.txt").read_text().split() == ["-q", "policy", "libc6", "openssl", "tzdata"]


def test_installed_changes_record_upgrades_new_packages_and_removals() -> None:
    before = "a amd64 1.0 installed\nb all 2.0 installed\nc amd64 1.0 installed\nd amd64 3.0 config-files\n"
    after = "a amd64 1.1 installed\nb all 2.0 installed\nn amd64 0.1 installed\nd amd64 3.0 config-files\n"
    assert [c.change() for c in installed_changes(before, after)] == [
        {"what": "package", "name": "a", "arch": "amd64", "before": "1.0", "after": "1.1"},
        {"what": "package", "name": "c", "arch": "amd64", "before": "1.0", "after": None},
        {"what": "package", "name": "n", "arch": "amd64", "before": None, "after": "0.1"},
    ]
    # rpm keeps several kernels: a new one is an addition, not a replacement
    kernels = "kernel-core x86_64 5.14.0-362.8.1.el9_3 installed\n"
    newer = kernels + "kernel-core x86_64 5.14.0-362.13.1.el9_3 installed\n"
    assert [c.change() for c in installed_changes(kernels, newer)] == [
        {"what": "package", "name": "kernel-core", "arch": "x86_64", "before": None,
         "after": "5.14.0-362.13.1.el9_3"},
    ]  # fmt: skip


# a sample in the format dnf documents for check-update (NAME.ARCH, [EPOCH:]VERSION-RELEASE, REPO;
# a long NAME.ARCH alone on its line), not captured output: there is no dnf here
DNF_CHECK_UPDATE_SAMPLE = """\
Last metadata expiration check: 0:14:42 ago on Fri 07 Feb 2025 09:29:06 AM UTC.

openssl.x86_64                     1:3.0.7-27.el9_4                 baseos
openssl-libs.x86_64                1:3.0.7-27.el9_4                 baseos
python3-a-very-long-package-name-indeed.noarch
                                   2.1-3.el9_4                      appstream
Obsoleting Packages
grub2-tools.x86_64                 1:2.06-80.el9_4                  baseos
"""
RPM_QA_SAMPLE = """\
openssl x86_64 1:3.0.7-25.el9_3 installed
openssl-libs x86_64 1:3.0.7-25.el9_3 installed
python3-a-very-long-package-name-indeed noarch 2.1-1.el9 installed
"""


def test_dnf_check_update_sample_with_installed_versions() -> None:
    found = parse_dnf_check_update(DNF_CHECK_UPDATE_SAMPLE, RPM_QA_SAMPLE)
    assert [(c.name, c.arch, c.before, c.after, c.origin) for c in found] == [
        ("openssl", "x86_64", "1:3.0.7-25.el9_3", "1:3.0.7-27.el9_4", "baseos"),
        ("openssl-libs", "x86_64", "1:3.0.7-25.el9_3", "1:3.0.7-27.el9_4", "baseos"),
        ("python3-a-very-long-package-name-indeed", "noarch", "2.1-1.el9", "2.1-3.el9_4", "appstream"),
    ]
    assert parse_dnf_check_update("", RPM_QA_SAMPLE) == []


def test_summaries_name_the_packages() -> None:
    changes = [PackageChange(f"p{i}", "all", "1", "2") for i in range(10)]
    assert summary("would upgrade", [], "security") == "no security updates to install"
    assert summary("upgraded", [], "all") == "no updates were installed"
    text = summary("would upgrade", changes, "all")
    assert text.startswith("would upgrade 10 package(s) (all): p0 1 → 2, p1 1 → 2") and text.endswith("and 2 more")


def test_reboot_detection_outputs() -> None:
    debian = "FILE reboot-required\nPKG linux-image-6.1.0-28-amd64\nPKG libc6\nPKG libc6\n"
    need = parse_detection(debian)
    assert need.required and need.reasons == [
        "/var/run/reboot-required exists (for linux-image-6.1.0-28-amd64, libc6)"
    ]
    # needrestart -b, in the format of its README.batch (sample, not captured output)
    batch = (
        "NEEDRESTART-VER: 3.6\nNEEDRESTART-KCUR: 6.1.0-27-amd64\nNEEDRESTART-KEXP: 6.1.0-28-amd64\n"
        "NEEDRESTART-KSTA: 3\nNEEDRESTART-SVC: nginx.service\nNEEDRESTART-SVC: php8.2-fpm.service\n"
        "NEEDRESTART-SESS: root @ session #28017\n"
    )
    need = parse_detection(batch)
    assert need.reasons == ["a newer kernel 6.1.0-28-amd64 is installed (running 6.1.0-27-amd64)"]
    assert need.services == ["nginx.service", "php8.2-fpm.service"]
    assert not parse_detection(batch.replace("KSTA: 3", "KSTA: 1")).required
    # needs-restarting -r exits 1 when a reboot is needed; -s lists services (sample)
    rhel = parse_detection("NEEDS-RESTARTING-R 1\nSVC sshd.service\nSVC chronyd.service\n")
    assert rhel.required and rhel.services == ["sshd.service", "chronyd.service"]
    assert not parse_detection("NEEDS-RESTARTING-R 0\n").required
    procs = parse_detection("PROC 812 nginx.service nginx\nPROC 4242 - python3\nPROC 813 nginx.service nginx\n")
    assert not procs.required and procs.services == ["nginx.service", "python3[4242]"]


def _window_closed_now() -> str:
    start = datetime.now(UTC) + timedelta(hours=6)
    end = start + timedelta(hours=1)
    return f"daily {start:%H}:00-{end:%H}:00 UTC"


def test_a_reboot_waits_for_the_window_and_never_reboots_this_machine(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ssh = {"ansible_host": "db1.example.com", "ansible_connection": "ssh"}
    ctx = action_context(tmp_path, site_vars={**ssh, "maintenance_window": "daily 00:00-24:00 UTC"})
    assert pending_reason(ctx, "auto", now) is None
    assert pending_reason(ctx, "never", now) == "the runbook says reboot=never"
    ctx = action_context(tmp_path, site_vars=ssh)  # no window: always open, as for every runbook
    assert pending_reason(ctx, "auto", now) is None
    ctx = action_context(tmp_path, site_vars={**ssh, "maintenance_window": _window_closed_now()})
    why = pending_reason(ctx, "auto", now)
    assert why is not None and why.startswith("maintenance window 'daily") and "next window opens" in why
    local = action_context(tmp_path)
    assert "reboot it by hand" in (pending_reason(local, "auto", now) or "")


def test_reboot_required_file_under_the_packages_root(tmp_path: Path) -> None:
    """The real detection script, over the real local transport, on an isolated root."""
    root = tmp_path / "root"
    (root / "var" / "run").mkdir(parents=True)
    ctx = action_context(tmp_path, site_vars={"maintainer_apt_root": f"{root}/"})
    assert not detect(ctx).required
    (root / "var" / "run" / "reboot-required").write_text("*** System restart required ***\n")
    (root / "var" / "run" / "reboot-required.pkgs").write_text("mt-secfix\n")
    need = detect(ctx)
    assert need.reasons == ["/var/run/reboot-required exists (for mt-secfix)"] and need.services == []


@pytest.mark.skipif(bool(shutil.which("needrestart") or shutil.which("needs-restarting")), reason="reads /proc")
def test_a_process_running_a_replaced_library_is_found(tmp_path: Path) -> None:
    """A real process maps a shared library that is then deleted, as an upgrade replaces one."""
    library = ctypes.util.find_library("z")
    source = next((p for p in (Path("/lib/x86_64-linux-gnu") / str(library), Path(f"/usr/lib/{library}")) if p.exists()), None)
    if source is None:
        pytest.skip("no libz to copy")
    copy = tmp_path / "libmtstale.so.1"
    shutil.copy2(source, copy)
    code = f"import ctypes, sys, time; ctypes.CDLL({str(copy)!r}); print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        copy.unlink()
        deadline = time.monotonic() + 5
        found: list[str] = []
        while time.monotonic() < deadline:
            found = detect(action_context(tmp_path)).services
            if any(s.endswith(f"[{proc.pid}]") for s in found):
                break
            time.sleep(0.1)
        assert any(s.endswith(f"[{proc.pid}]") for s in found), found
    finally:
        proc.kill()
        proc.wait()


def test_reboot_waits_for_a_new_boot_id_and_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RebootAction's reboot-and-wait over the real local transport, with stand-in commands (this machine
    is never rebooted: the 'reboot' only writes a new boot id)."""
    from maintainer.actions import reboot
    from maintainer.actions.reboot import RebootAction
    from maintainer.errors import StepFailed

    monkeypatch.setattr(reboot, "POLL_SECONDS", 0.2)

    boot_id = tmp_path / "boot_id"
    boot_id.write_text("first\n")
    stand_in = {
        "maintainer_boot_id_command": f"cat {boot_id}",
        "maintainer_reboot_command": f"echo second > {boot_id}",
    }
    before, after, seconds = RebootAction()._reboot(action_context(tmp_path, site_vars=stand_in))
    assert (before, after) == ("first", "second") and seconds >= 0

    failing = {**stand_in, "maintainer_reboot_command": "echo 'Access denied' >&2; exit 1"}
    with pytest.raises(StepFailed, match=r"the reboot command .* failed \(rc 1\): Access denied"):
        RebootAction()._reboot(action_context(tmp_path, site_vars=failing))

    never_back = {**stand_in, "maintainer_reboot_command": "true", "maintainer_reboot_timeout": 1}
    with pytest.raises(StepFailed, match=r"did not come back from its reboot within 1s \(maintainer_reboot_timeout\): it still has the boot id"):
        RebootAction()._reboot(action_context(tmp_path, site_vars=never_back))


def test_sites_on_one_host_take_turns_whichever_user_they_log_in_as() -> None:
    """The host lock is keyed on host:port, not user@host:port: two users on one host still serialize."""
    import threading
    from types import SimpleNamespace
    from typing import Any

    from maintainer.actions.os_packages import host_key, host_lock

    assert host_key("alice@web1.example:22") == host_key("root@web1.example:22") == "web1.example:22"
    assert host_key("alice@web1.example:2222") != host_key("alice@web1.example:22")
    assert host_key("local") == "local"

    logged: list[str] = []

    def ctx(user: str) -> Any:
        transport = SimpleNamespace(label=f"{user}@lock-test.invalid:22")
        return SimpleNamespace(transport=transport, log=logged.append, cancel=threading.Event())

    order: list[str] = []
    with host_lock(ctx("alice"), "update packages"):
        def bob() -> None:
            with host_lock(ctx("bob"), "reboot"):
                order.append("bob")

        other = threading.Thread(target=bob)
        other.start()
        other.join(1.0)
        assert other.is_alive(), "bob waits while alice holds the host"
        order.append("alice")
    other.join(5)
    assert order == ["alice", "bob"]
    assert logged == ["waiting: another site on lock-test.invalid:22 is updating packages or rebooting it"]
