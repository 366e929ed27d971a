"""A throwaway OpenSSH server on 127.0.0.1 for integration tests (see ENV.md).

``sshd_server`` (session scope) starts ``/usr/sbin/sshd`` from a private
config in a temp dir, logs in as the dedicated user ``mtest`` with a fresh
ed25519 key, and writes a known_hosts file so strict host-key checking stays
on in tests too. ``free_port()`` is a plain helper for other server fixtures.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SSHD = "/usr/sbin/sshd"  # sshd refuses to start from a relative path
TEST_USER = "mtest"
START_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class SSHServer:
    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    workdir: Path

    def site_vars(self, **extra: Any) -> dict[str, Any]:
        """Inventory vars for a site on this server (usable by ansible-playbook too)."""
        site: dict[str, Any] = {
            "ansible_host": self.host,
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_ssh_private_key_file": str(self.key_file),
            "maintainer_known_hosts": str(self.known_hosts),
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts}",
        }
        site.update(extra)
        return site

    def workspace(self, name: str) -> Path:
        """A directory under the server's workdir owned by the test user (a remote docroot)."""
        path = self.workdir / "ws" / name
        path.mkdir(parents=True, exist_ok=True)
        (self.workdir / "ws").chmod(0o755)
        shutil.chown(path, TEST_USER, TEST_USER)
        return path


def _ensure_test_user() -> None:
    if subprocess.run(["id", TEST_USER], capture_output=True).returncode != 0:
        made = subprocess.run(["useradd", "-m", "-s", "/bin/bash", TEST_USER], capture_output=True, text=True)
        if made.returncode not in (0, 9):  # 9: another test worker made it meanwhile
            raise RuntimeError(f"useradd {TEST_USER} failed: {made.stderr}")
    # useradd leaves the account locked ('!'), which sshd refuses without PAM; /etc/shadow's lock
    # lets one worker at a time change it
    for _ in range(50):
        if subprocess.run(["usermod", "-p", "*", TEST_USER], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["usermod", "-p", "*", TEST_USER], check=True)


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def _login_works(port: int, key: Path, known_hosts: Path) -> bool:
    cmd = [
        "ssh", "-F", "/dev/null", "-p", str(port), "-i", str(key),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=2",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
        f"{TEST_USER}@127.0.0.1", "true",
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SSHServer]:
    if os.geteuid() != 0:
        pytest.skip("the sshd fixture needs root (test user, sshd privilege separation)")
    if not os.path.exists(SSHD):
        pytest.skip("openssh-server is not installed")
    with running_sshd() as server:
        yield server


@contextmanager
def running_sshd() -> Iterator[SSHServer]:
    """Start a throwaway sshd (the fixture and bench/ use this); stopped and removed on exit."""
    _ensure_test_user()
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir

    # Not pytest's tmp_path: that is 0700 root-only, and mtest must read authorized_keys.
    workdir = Path(tempfile.mkdtemp(prefix="maintainer-sshd-"))
    workdir.chmod(0o755)
    proc: subprocess.Popen[bytes] | None = None
    try:
        host_key = workdir / "host_ed25519"
        client_key = workdir / "client_ed25519"
        host_pub = _keygen(host_key)
        client_pub = _keygen(client_key)
        authorized = workdir / "authorized_keys"
        authorized.write_text(client_pub + "\n")
        authorized.chmod(0o644)

        port = free_port()
        known_hosts = workdir / "known_hosts"
        key_type, key_b64 = host_pub.split()[:2]
        known_hosts.write_text(f"[127.0.0.1]:{port} {key_type} {key_b64}\n")

        config = workdir / "sshd_config"
        config.write_text(
            f"Port {port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {host_key}\n"
            f"PidFile {workdir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {authorized}\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\n"
            "StrictModes no\n"
            "UsePAM no\n"
            # sshd's default; SSHTransport stays below it (8 shells + SFTP + exec)
            "MaxSessions 10\n"
            "MaxStartups 100:30:200\n"
            "Subsystem sftp internal-sftp\n"
        )
        log_file = (workdir / "sshd.log").open("wb")  # a file, not a pipe: a full pipe would block sshd
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log_file.close()

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"sshd exited with {proc.returncode}:\n{(workdir / 'sshd.log').read_text()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                if _login_works(port, client_key, known_hosts):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not accept a login:\n{(workdir / 'sshd.log').read_text()}")
            time.sleep(0.05)

        yield SSHServer("127.0.0.1", port, TEST_USER, client_key, known_hosts, workdir)
    finally:
        if proc is not None:
            proc.terminate()  # by its own PID only
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
