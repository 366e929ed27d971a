"""What the real CLI prints for SSH sites that cannot be reached: one clear line, no library noise."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.helpers import cli, make_project
from tests.servers.sshd import SSHServer

RUNBOOK = """
name: rb
version: 1.0.0
steps:
  - {id: ok, uses: shell, with: {command: "true"}}
"""


def test_silent_port_and_revoked_key_are_one_line_each(sshd_server: SSHServer, tmp_path: Path) -> None:
    """A listener that never sends a banner, and a known_hosts with @revoked/@cert-authority lines."""
    key = " ".join(sshd_server.known_hosts.read_text().split()[1:3])
    revoked = tmp_path / "revoked_known_hosts"
    revoked.write_text(
        f"@cert-authority *.example.com {key}\n[127.0.0.1]:{sshd_server.port} {key}\n@revoked * {key}\n"
    )
    with socket.socket() as listener:  # accepts TCP, never speaks SSH
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        locks = str(sshd_server.workspace("cli-messages-locks"))
        project = make_project(
            tmp_path / "project",
            {"rb@1.0.0": RUNBOOK},
            {
                "silent": sshd_server.site_vars(
                    ansible_port=port, maintainer_connect_timeout=1, maintainer_lock_dir=locks
                ),
                "revoked": sshd_server.site_vars(
                    maintainer_known_hosts=str(revoked), maintainer_lock_dir=locks
                ),
                "good": sshd_server.site_vars(maintainer_lock_dir=locks),
            },
        )
        proc = cli(project, "run", "rb")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output  # some sites unreachable, not an internal error (4)
    assert f"no SSH handshake with 127.0.0.1:{port} within 1s" in output
    assert f"is marked @revoked in {revoked}" in output
    for noise in ("Traceback", "Exception (client)", "protocol banner", "paramiko", "InvalidHostKey"):
        assert noise not in output, output
