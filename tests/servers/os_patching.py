"""OS patching for real, without touching this machine's packages.

``apt_sandbox`` builds an isolated system root for apt and dpkg (``maintainer_apt_root``) and two local
apt repositories in a temp directory:

- ``security``: its Release says ``Label: Debian-Security``, ``Suite: bookworm-security``, as
  security.debian.org's does, so apt shows its packages' origin as a security suite; it holds
  ``mt-secfix`` 1.1;
- ``main``: an ordinary suite (``Label: Debian``, ``Suite: bookworm``) with ``mt-secfix`` 1.0 and
  ``mt-feature`` 2.0, a non-security update that the default scope must leave alone.

The dummy packages are built here with ``dpkg-deb --build``; the repositories' ``Packages`` and
``Release`` files are written by hand (no apt-utils needed). The root starts with ``mt-secfix`` 1.0 and
``mt-feature`` 1.0 installed by ``dpkg --root``. ``mt-secfix`` 1.1 needs a reboot: Debian's kernel
and libc packages create ``/var/run/reboot-required`` from their postinst; the dummy ships the file in
its payload instead (dpkg would run a postinst chrooted into the root, which has no shell).

``rebootable_sshd`` is a throwaway sshd (``tests.servers.sshd.running_sshd``) with a STAND-IN for a
reboot, because a real reboot cannot run here: ``host.reboot_command`` (run over SSH as root) makes the
sshd go away with every connection it holds, changes the boot id that ``host.boot_id_command`` reads,
empties the sandbox's ``var/run`` as a reboot empties /run, and starts the sshd again a moment later.
So waiting for SSH to come back, and telling a new boot from the old one, are exercised for real.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from tests.servers.sshd import SSHD, SSHServer, running_sshd

SECURITY_PACKAGE = "mt-secfix"
OTHER_PACKAGE = "mt-feature"
#: (package, version, in which repository; None: only installed at the start)
PACKAGES = [
    (SECURITY_PACKAGE, "1.0", "main"),
    (SECURITY_PACKAGE, "1.1", "security"),
    (OTHER_PACKAGE, "1.0", None),
    (OTHER_PACKAGE, "2.0", "main"),
]
REPOSITORIES = {
    "security": {"Origin": "Debian", "Label": "Debian-Security", "Suite": "bookworm-security"},
    "main": {"Origin": "Debian", "Label": "Debian", "Suite": "bookworm"},
}
#: Ubuntu's usual case, for ``apt_sandbox_newer_update``: an ordinary update newer than the security fix
NEWER_UPDATE = (SECURITY_PACKAGE, "1.2", "main")
HOST_DPKG_STATUS = Path("/var/lib/dpkg/status")
HOST_DPKG_LOG = Path("/var/log/dpkg.log")


def _build_deb(out: Path, name: str, version: str) -> Path:
    tree = out / "build" / f"{name}_{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nSection: misc\nPriority: optional\n"
        f"Maintainer: maintainer tests <tests@example.invalid>\nDescription: dummy package for tests\n"
    )
    share = tree / "usr" / "share" / name
    share.mkdir(parents=True)
    (share / "VERSION").write_text(f"{version}\n")
    if name == SECURITY_PACKAGE and version != "1.0":
        run_dir = tree / "var" / "run"
        run_dir.mkdir(parents=True)
        (run_dir / "reboot-required").write_text("*** System restart required ***\n")
        (run_dir / "reboot-required.pkgs").write_text(f"{name}\n")
    deb = out / f"{name}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def _write_repository(folder: Path, debs: list[Path], fields: dict[str, str]) -> None:
    """A flat repository ('deb file:FOLDER ./'): the .debs, Packages and an unsigned Release."""
    folder.mkdir(parents=True)
    stanzas = []
    for deb in debs:
        shutil.copy2(deb, folder / deb.name)
        data = deb.read_bytes()
        control = subprocess.run(
            ["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True
        ).stdout.strip()
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\nSHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    packages = "\n".join(stanzas).encode()
    (folder / "Packages").write_bytes(packages)
    release = "".join(f"{key}: {value}\n" for key, value in fields.items())
    release += (
        f"Codename: {fields['Suite']}\nVersion: 12\nDate: {formatdate(usegmt=True)}\n"
        f"Architectures: all amd64\nSHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n"
    )
    (folder / "Release").write_text(release)


@dataclass(frozen=True)
class AptSandbox:
    root: Path  # the isolated system root: maintainer_apt_root
    repositories: Path

    def site_vars(self) -> dict[str, Any]:
        return {"maintainer_apt_root": str(self.root)}

    def installed(self) -> dict[str, str]:
        """Installed package versions in the root (dpkg-query on its own database)."""
        out = subprocess.run(
            ["dpkg-query", f"--admindir={self.root}/var/lib/dpkg", "-W", "-f=${Package} ${Version}\\n"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())

    def assert_host_untouched(self) -> None:
        """This machine's own dpkg database and log never saw the dummy packages."""
        for path in (HOST_DPKG_STATUS, HOST_DPKG_LOG):
            text = path.read_text(errors="replace") if path.exists() else ""
            assert SECURITY_PACKAGE not in text and OTHER_PACKAGE not in text, f"{path} mentions a test package"


@pytest.fixture(scope="session")
def _dummy_debs() -> Iterator[dict[tuple[str, str], Path]]:
    if not shutil.which("dpkg-deb") or not shutil.which("apt-get"):
        pytest.skip("apt and dpkg are needed for the patching tests")
    out = Path(tempfile.mkdtemp(prefix="maintainer-debs-"))
    try:
        yield {(name, version): _build_deb(out, name, version) for name, version, _ in [*PACKAGES, NEWER_UPDATE]}
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def apt_sandbox(_dummy_debs: dict[tuple[str, str], Path]) -> Iterator[AptSandbox]:
    with _sandbox(_dummy_debs, PACKAGES) as sandbox:
        yield sandbox


@pytest.fixture
def apt_sandbox_newer_update(_dummy_debs: dict[tuple[str, str], Path]) -> Iterator[AptSandbox]:
    """As ``apt_sandbox``, plus mt-secfix 1.2 in ``main``: newer than the security fix 1.1."""
    with _sandbox(_dummy_debs, [*PACKAGES, NEWER_UPDATE]) as sandbox:
        yield sandbox


@contextlib.contextmanager
def _sandbox(
    _dummy_debs: dict[tuple[str, str], Path], packages: list[tuple[str, str, str | None]]
) -> Iterator[AptSandbox]:
    if os.geteuid() != 0:
        pytest.skip("dpkg --root needs root (file ownership, chroot)")
    # not pytest's tmp_path (0700): apt fetches file: URIs as its unprivileged _apt user
    base = Path(tempfile.mkdtemp(prefix="maintainer-apt-"))
    base.chmod(0o755)
    try:
        repositories = base / "repositories"
        for repo, fields in REPOSITORIES.items():
            debs = [_dummy_debs[(n, v)] for n, v, where in packages if where == repo]
            _write_repository(repositories / repo, debs, fields)
        root = base / "root"
        for folder in (
            "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers",
            "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt", "var/run",
            "etc/apt/apt.conf.d", "etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/trusted.gpg.d",
        ):  # fmt: skip
            (root / folder).mkdir(parents=True)
        for name in ("status", "available"):
            (root / "var/lib/dpkg" / name).touch()
        (root / "etc/apt/sources.list").write_text(
            "".join(f"deb [trusted=yes] file:{repositories / repo} ./\n" for repo in REPOSITORIES)
        )
        first = [_dummy_debs[(SECURITY_PACKAGE, "1.0")], _dummy_debs[(OTHER_PACKAGE, "1.0")]]
        subprocess.run(
            ["dpkg", f"--root={root}", f"--log={root}/var/log/dpkg.log", "-i", *map(str, first)],
            check=True,
            capture_output=True,
        )
        yield AptSandbox(root, repositories)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ a host that can "reboot"

_STAND_IN = """#!/bin/sh
# STAND-IN FOR A REBOOT, tests only (tests/servers/os_patching.py): a real reboot cannot run here.
# Like a reboot seen from an SSH client: sshd and every connection it holds go away, /run is empty
# again, the boot id changes, and sshd answers again a moment later. Returns at once, as
# 'systemctl reboot' does; the work goes on detached.
touch "{dir}/reboot-stand-in.ran"
setsid sh -c '
  dir=$1 run=$2
  sleep 0.5
  pid=$(cat "$dir/sshd.pid")
  kill $(pgrep -P "$pid") "$pid" 2>/dev/null
  rm -rf "$run"/reboot-required*
  cat /proc/sys/kernel/random/uuid > "$dir/boot_id"
  sleep 1
  {sshd} -f "$dir/sshd_config" -E "$dir/sshd-after-reboot.log"
' stand-in "{dir}" "{run}" </dev/null >/dev/null 2>&1 &
"""


@dataclass(frozen=True)
class RebootableHost:
    server: SSHServer
    reboot_command: str
    boot_id_command: str

    def boot_id(self) -> str:
        return (self.server.workdir / "boot_id").read_text().strip()

    def sshd_pid(self) -> int:
        """The PID sshd's PidFile names (0 while there is none)."""
        try:
            return int((self.server.workdir / "sshd.pid").read_text())
        except (FileNotFoundError, ValueError):
            return 0


def _stop(pid: int) -> None:
    """Stop the restarted sshd (a child of nobody we own) and its sessions, by PID."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for target in [*map(int, children), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGTERM)


@pytest.fixture
def rebootable_sshd(apt_sandbox: AptSandbox) -> Iterator[RebootableHost]:
    """An sshd whose 'reboot' (a stand-in, see above) also clears the sandbox root's var/run."""
    if os.geteuid() != 0 or not os.path.exists(SSHD):
        pytest.skip("the sshd fixture needs root and openssh-server")
    with running_sshd() as server:
        (server.workdir / "boot_id").write_text(f"{uuid.uuid4()}\n")
        script = server.workdir / "reboot-stand-in.sh"
        script.write_text(_STAND_IN.format(sshd=SSHD, dir=server.workdir, run=apt_sandbox.root / "var/run"))
        script.chmod(0o755)
        host = RebootableHost(server, str(script), f"cat {server.workdir / 'boot_id'}")
        first_pid = host.sshd_pid()
        try:
            yield host
        finally:
            # after a stand-in reboot the sshd running is a new one (running_sshd stops the first):
            # it may still be starting, so give it a moment to write its PID, then stop it
            if (server.workdir / "reboot-stand-in.ran").exists():
                deadline = time.monotonic() + 5
                while host.sshd_pid() == first_pid and time.monotonic() < deadline:
                    time.sleep(0.1)
                if host.sshd_pid() not in (0, first_pid):
                    _stop(host.sshd_pid())
