"""SSHTransport against a real sshd (tests/servers/sshd.py); no mocks.

The server runs on this machine, so a few checks look at /proc directly to
prove what happened on the "remote" side.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paramiko
import pytest

from maintainer.errors import TransportError, Unreachable
from maintainer.ssh import PARAMIKO_LOG, SSHTransport
from maintainer.transport import Connections
from tests.helpers import wait_gone
from tests.servers.sshd import SSHServer, _login_works, free_port


def make(server: SSHServer, **extra: Any) -> SSHTransport:
    return SSHTransport.from_vars(server.host, server.port, server.user, server.site_vars(**extra))


@pytest.fixture
def ssh(sshd_server: SSHServer) -> Iterator[SSHTransport]:
    transport = make(sshd_server)
    yield transport
    transport.close()


@pytest.fixture
def exec_ssh(sshd_server: SSHServer) -> Iterator[SSHTransport]:
    transport = make(sshd_server, maintainer_ssh_mode="exec")
    yield transport
    transport.close()


# -- commands -------------------------------------------------------------


def test_rc_stdout_stderr_come_back_separately(ssh: SSHTransport, sshd_server: SSHServer) -> None:
    result = ssh.run("echo out; echo err >&2; echo out2")
    assert (result.rc, result.stdout, result.stderr) == (0, "out\nout2\n", "err\n")
    assert result.ok and not result.timed_out
    assert ssh.label == f"mtest@127.0.0.1:{sshd_server.port}"
    assert ssh.run("id -un").stdout == "mtest\n"


def test_output_without_trailing_newline(ssh: SSHTransport) -> None:
    result = ssh.run("printf abc; printf def >&2")
    assert (result.stdout, result.stderr) == ("abc", "def")
    empty = ssh.run("true")
    assert (empty.rc, empty.stdout, empty.stderr) == (0, "", "")
    # a line that looks like a frame must not confuse the framing
    fake = ssh.run("printf 'mt0123:7\\n'; printf 'mt0123\\n' >&2; exit 3")
    assert (fake.rc, fake.stdout, fake.stderr) == (3, "mt0123:7\n", "mt0123\n")


def test_large_output_on_both_streams(ssh: SSHTransport) -> None:
    result = ssh.run("head -c 3000000 /dev/zero | tr '\\0' o; head -c 1000000 /dev/zero | tr '\\0' e >&2")
    assert result.stdout == "o" * 3_000_000
    assert result.stderr == "e" * 1_000_000


def test_nonzero_rc(ssh: SSHTransport) -> None:
    result = ssh.run("echo partial; exit 42")
    assert (result.rc, result.stdout, result.ok) == (42, "partial\n", False)
    assert ssh.run(["false"]).rc == 1
    missing = ssh.run("no-such-command-here")
    assert missing.rc == 127 and "not found" in missing.stderr
    # `exit` ends only the command's own subshell, never the reused shell
    assert ssh.run("exit 0").rc == 0
    assert ssh.run("echo alive").stdout == "alive\n"
    assert ssh.shells_opened == 1


NASTY = (
    "sp ace 'single' \"double\" $(touch {ws}/pwned1) `touch {ws}/pwned2` ; touch {ws}/pwned3 \\\nline2 $HOME"
)


def test_cwd_env_and_argv_quoting_prevent_injection(ssh: SSHTransport, sshd_server: SSHServer) -> None:
    ws = sshd_server.workspace("quoting")
    value = NASTY.format(ws=ws)
    nasty_dir = f"{ws}/d ir 'q' \"dq\" $(touch pwned4) `touch pwned5` ;x\nnl"
    assert ssh.run(["mkdir", "-p", nasty_dir]).ok

    result = ssh.run('pwd; printf %s "$NASTY"', cwd=nasty_dir, env={"NASTY": value, "PLAIN": "x"})
    assert result.ok, result.stderr
    assert result.stdout == f"{nasty_dir}\n{value}"

    argv = ["printf", "<%s>", "a b", "$(id)", "'", '"', "\n", "; rm -rf /", "`id`"]
    assert ssh.run(argv).stdout == "<a b><$(id)><'><\"><\n><; rm -rf /><`id`>"

    home = ssh.run("echo $HOME").stdout.strip()
    for where in (ws, Path(nasty_dir), Path(home)):
        assert not list(where.glob("pwned*")), f"injection ran in {where}"
    # cd and variables stay inside the command: nothing leaks into the reused shell
    ssh.run("cd /; export LEAK=1", cwd=str(ws))
    assert ssh.run('pwd; echo "${LEAK:-none}"').stdout == f"{home}\nnone\n"


def test_sequential_commands_reuse_one_shell_session(ssh: SSHTransport) -> None:
    for i in range(50):
        assert ssh.run(f"echo {i}").stdout == f"{i}\n"
    assert ssh.connections_opened == 1
    assert ssh.sessions_opened == 1
    assert ssh.shells_opened == 1
    assert ssh.execs_opened == 0


def test_concurrent_commands_from_threads_share_one_connection(ssh: SSHTransport) -> None:
    def work(t: int) -> None:
        for i in range(15):
            r = ssh.run(f"printf '%s-%s' {t} {i}; printf 'err-{t}' >&2; exit {i % 3}")
            assert (r.rc, r.stdout, r.stderr) == (i % 3, f"{t}-{i}", f"err-{t}")

    with ThreadPoolExecutor(12) as pool:
        for future in [pool.submit(work, t) for t in range(12)]:
            future.result()
    assert ssh.connections_opened == 1
    assert 1 <= ssh.peak_shells <= 8


def test_pool_stays_under_sshd_max_sessions(ssh: SSHTransport, sshd_server: SSHServer) -> None:
    """12 slow commands + stdin (exec) calls + SFTP at once: capped, and none refused by sshd."""
    ws = sshd_server.workspace("pool")

    def slow(i: int) -> str:
        return ssh.run(f"sleep 0.4; echo {i}").stdout

    def with_stdin(i: int) -> str:
        return ssh.run("cat", stdin=f"in{i}".encode()).stdout

    def sftp(i: int) -> bytes | None:
        ssh.write_file(f"{ws}/f{i}", b"x%d" % i)
        return ssh.read_file(f"{ws}/f{i}")

    with ThreadPoolExecutor(20) as pool:
        slows = [pool.submit(slow, i) for i in range(12)]
        stdins = [pool.submit(with_stdin, i) for i in range(4)]
        files = [pool.submit(sftp, i) for i in range(4)]
        assert [f.result() for f in slows] == [f"{i}\n" for i in range(12)]
        assert [f.result() for f in stdins] == [f"in{i}" for i in range(4)]
        assert [f.result() for f in files] == [b"x%d" % i for i in range(4)]
    assert ssh.peak_shells == 8
    assert ssh.connections_opened == 1


def test_stdin_is_fed_to_the_command(ssh: SSHTransport) -> None:
    assert ssh.run("cat; echo done >&2", stdin=b"hello\nworld").stdout == "hello\nworld"
    # more data in and out than SSH's window: no deadlock between feeding and reading
    big = b"0123456789abcdef" * 300_000  # 4.8 MB
    result = ssh.run("cat", stdin=big, timeout=60)
    assert result.ok and result.stdout.encode() == big
    assert ssh.run("wc -c", stdin=b"").stdout.strip() == "0"
    # without stdin the command reads /dev/null, never the shell's own input
    assert ssh.run("cat").stdout == ""
    assert ssh.run("echo after").stdout == "after\n"


@pytest.mark.parametrize(
    ("script", "min_seconds", "max_seconds"),
    [
        ("sleep 300 & echo $! >> {p}; sleep 300 & echo $! >> {p}; echo $$ >> {p}; wait", 1, 2.5),
        # ignores TERM: gets KILL once the grace period is over
        (
            "trap '' TERM; sleep 300 & echo $! >> {p}; sleep 300 & echo $! >> {p}; echo $$ >> {p}; wait",
            2.9,
            8,
        ),
        # the command dies on TERM but a child ignoring TERM lives on: swept by the final KILL
        ("(trap '' TERM; exec sleep 300) & echo $! >> {p}; echo $$ >> {p}; sleep 300", 2.9, 8),
    ],
    ids=["plain", "ignores-term", "child-ignores-term"],
)
def test_timeout_kills_the_whole_process_group(
    ssh: SSHTransport,
    sshd_server: SSHServer,
    script: str,
    min_seconds: float,
    max_seconds: float,
    request: pytest.FixtureRequest,
) -> None:
    ws = sshd_server.workspace(f"timeout-{request.node.callspec.id}")
    pidfile = f"{ws}/pids"
    result = ssh.run(script.format(p=pidfile), timeout=1)
    assert result.timed_out and not result.ok
    assert min_seconds <= result.duration < max_seconds
    pids = [int(x) for x in (ssh.read_file(pidfile) or b"").split()]
    assert len(pids) >= 2
    assert wait_gone(pids) == []
    # the same shell session is still usable
    assert ssh.run("echo still here").stdout == "still here\n"
    assert ssh.shells_opened == 1


def test_timeout_gives_term_handlers_their_grace_period(ssh: SSHTransport, sshd_server: SSHServer) -> None:
    ws = sshd_server.workspace("grace")
    script = f"trap 'sleep 0.5; echo cleaned > {ws}/done; exit 0' TERM; sleep 300 & wait"
    result = ssh.run(script, timeout=0.5)
    assert result.timed_out
    assert ssh.read_file(f"{ws}/done") == b"cleaned\n"


def test_fast_command_with_timeout_is_not_timed_out(ssh: SSHTransport) -> None:
    result = ssh.run("echo quick; exit 124", timeout=30)
    assert (result.rc, result.stdout, result.timed_out) == (124, "quick\n", False)


def test_dead_shell_is_discarded_and_replaced(ssh: SSHTransport) -> None:
    assert ssh.run("echo one").ok
    with pytest.raises(TransportError, match="shell session ended"):
        ssh.run("kill -KILL $PPID; sleep 0.5")  # $PPID is the reused shell itself
    assert ssh.run("echo two").stdout == "two\n"
    assert ssh.shells_opened == 2
    assert ssh.connections_opened == 1


def test_falls_back_to_exec_when_the_shell_does_not_answer(sshd_server: SSHServer) -> None:
    transport = make(sshd_server)
    transport.shell_command = "exit 0"  # a remote side where the pooled shell ends at once
    try:
        r = transport.run("printf out; printf err >&2; exit 4")
        assert (r.rc, r.stdout, r.stderr) == (4, "out", "err")
        assert transport.run("echo again").stdout == "again\n"
        assert transport.shells_opened == 1  # tried once, then exec for good
        assert transport.execs_opened == 2
    finally:
        transport.close()


def test_exec_mode_runs_one_session_per_command(exec_ssh: SSHTransport, sshd_server: SSHServer) -> None:
    r = exec_ssh.run("printf out; printf err >&2; exit 5")
    assert (r.rc, r.stdout, r.stderr) == (5, "out", "err")
    assert exec_ssh.run("pwd", cwd="/tmp", env={"A": "$(id)"}).stdout == "/tmp\n"
    assert exec_ssh.run('printf %s "$A"', env={"A": "$(id) 'x'"}).stdout == "$(id) 'x'"
    assert exec_ssh.run("cat", stdin=b"piped").stdout == "piped"

    ws = sshd_server.workspace("exec-timeout")
    pidfile = f"{ws}/pids"
    result = exec_ssh.run(f"sleep 300 & echo $! >> {pidfile}; echo $$ >> {pidfile}; sleep 300", timeout=1)
    assert result.timed_out
    pids = [int(x) for x in (exec_ssh.read_file(pidfile) or b"").split()]
    assert len(pids) == 2 and wait_gone(pids) == []

    assert exec_ssh.shells_opened == 0
    assert exec_ssh.execs_opened == 5
    assert exec_ssh.connections_opened == 1


def test_per_command_latency(
    ssh: SSHTransport, exec_ssh: SSHTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    ssh.run("true")
    exec_ssh.run("true")
    n_shell, n_exec = 300, 30
    started = time.perf_counter()
    for _ in range(n_shell):
        ssh.run("true")
    shell_ms = (time.perf_counter() - started) / n_shell * 1000
    started = time.perf_counter()
    for _ in range(n_exec):
        exec_ssh.run("true")
    exec_ms = (time.perf_counter() - started) / n_exec * 1000
    with capsys.disabled():
        print(f"\nper command: shell session {shell_ms:.2f} ms, exec session {exec_ms:.2f} ms")


# -- files ----------------------------------------------------------------


def _stat(ssh: SSHTransport, path: str) -> tuple[str, int]:
    mode, inode = ssh.run(["stat", "-c", "%a %i", path]).stdout.split()
    return mode, int(inode)


def test_write_file_is_atomic_and_keeps_mode(ssh: SSHTransport, sshd_server: SSHServer) -> None:
    ws = sshd_server.workspace("files")
    path = f"{ws}/config.php"
    assert ssh.read_file(path) is None

    ssh.write_file(path, b"v1")
    assert ssh.read_file(path) == b"v1"
    assert _stat(ssh, path)[0] == "644"
    assert ssh.run(["stat", "-c", "%U", path]).stdout == "mtest\n"

    assert ssh.run(["chmod", "600", path]).ok
    _, inode_before = _stat(ssh, path)
    ssh.write_file(path, b"v2 longer content")
    mode, inode_after = _stat(ssh, path)
    assert mode == "600"  # kept
    assert inode_after != inode_before  # replaced by a rename, never rewritten in place
    assert ssh.read_file(path) == b"v2 longer content"

    ssh.write_file(path, b"v3", mode=0o640)
    assert _stat(ssh, path)[0] == "640"
    ssh.write_file(f"{ws}/readonly", b"ro", mode=0o400)  # chmod before writing must not block the write
    assert ssh.read_file(f"{ws}/readonly") == b"ro"

    blob = bytes(range(256)) * 4000  # binary, ~1 MB
    ssh.write_file(f"{ws}/blob", blob)
    assert ssh.read_file(f"{ws}/blob") == blob
    assert ssh.read_file(f"{ws}/empty-not-there") is None
    ssh.write_file(f"{ws}/empty", b"")
    assert ssh.read_file(f"{ws}/empty") == b""

    leftovers = ssh.run(f"ls -A {ws} | grep '\\.tmp$' || true").stdout
    assert leftovers == ""
    assert ssh.sessions_opened == 2  # one shell + one SFTP session, reused


def test_write_file_errors_are_transport_errors(ssh: SSHTransport, sshd_server: SSHServer) -> None:
    with pytest.raises(TransportError, match="cannot write"):
        ssh.write_file(f"{sshd_server.workspace('err')}/no/such/dir/f", b"x")
    with pytest.raises(TransportError, match="cannot write"):
        ssh.write_file("/root/forbidden", b"x")  # mtest may not write there


# -- connecting -----------------------------------------------------------


def test_closed_port_is_unreachable_refused(sshd_server: SSHServer) -> None:
    transport = SSHTransport.from_vars("127.0.0.1", free_port(), "mtest", sshd_server.site_vars())
    with pytest.raises(Unreachable) as err:
        transport.connect()
    assert "refused" in err.value.reason
    assert err.value.host == transport.label
    with pytest.raises(Unreachable, match="refused"):
        transport.run("true")  # lazily, too


def test_silent_port_times_out(sshd_server: SSHServer) -> None:
    with socket.socket() as listener:  # accepts TCP but never speaks SSH
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        transport = SSHTransport.from_vars(
            "127.0.0.1", port, "mtest", sshd_server.site_vars(maintainer_connect_timeout=1)
        )
        started = time.monotonic()
        with pytest.raises(Unreachable, match="no SSH handshake"):
            transport.connect()
        assert time.monotonic() - started < 5


def test_handshake_timeout_leaves_no_paramiko_traceback(
    sshd_server: SSHServer, caplog: pytest.LogCaptureFixture
) -> None:
    """paramiko's own error lines (and traceback) for a silent port go to our log at DEBUG only."""
    caplog.set_level(logging.DEBUG)
    with socket.socket() as listener:  # accepts TCP but never sends an SSH banner
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        transport = SSHTransport.from_vars(
            "127.0.0.1", port, "mtest", sshd_server.site_vars(maintainer_connect_timeout=1)
        )
        with pytest.raises(Unreachable) as err:
            transport.connect()
        # paramiko's transport thread logs its error as it ends, after connect() gave up
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
            isinstance(t, paramiko.Transport) and t.is_alive() for t in threading.enumerate()
        ):
            time.sleep(0.05)
    assert err.value.reason == (
        f"no SSH handshake with 127.0.0.1:{port} within 1s (is an SSH server listening on that port?)"
    )
    ours = [r for r in caplog.records if r.name.startswith(PARAMIKO_LOG)]
    assert any("protocol banner" in r.getMessage() for r in ours)  # kept, for debugging
    assert [r.getMessage() for r in ours if r.levelno > logging.DEBUG] == []


def _other_host_key(tmp_path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    return " ".join((tmp_path / "other.pub").read_text().split()[:2])


def test_host_key_mismatch_is_refused_loudly(sshd_server: SSHServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd_server.port} {_other_host_key(tmp_path)}\n")
    transport = make(sshd_server, maintainer_known_hosts=str(known))
    with pytest.raises(Unreachable) as err:
        transport.connect()
    assert "HOST KEY MISMATCH" in err.value.reason
    assert "man-in-the-middle" in err.value.reason
    assert str(known) in err.value.reason


def test_unknown_host_key_names_the_file_and_the_fix(sshd_server: SSHServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd_server.port + 1} {_other_host_key(tmp_path)}\n")  # other port
    transport = make(sshd_server, maintainer_known_hosts=str(known))
    with pytest.raises(Unreachable) as err:
        transport.connect()
    reason = err.value.reason
    assert "not in known_hosts" in reason and str(known) in reason
    assert f"ssh-keyscan -p {sshd_server.port} 127.0.0.1 >> {known}" in reason

    missing = make(sshd_server, maintainer_known_hosts=str(tmp_path / "absent"))
    with pytest.raises(Unreachable, match="does not exist"):
        missing.connect()


def _server_key(server: SSHServer) -> str:
    """The test sshd's host key as ``type base64``."""
    return " ".join(server.known_hosts.read_text().split()[1:3])


def _openssh_accepts(server: SSHServer, known: Path) -> bool:
    """What OpenSSH's own client makes of the same known_hosts file (strict checking)."""
    return _login_works(server.port, server.key_file, known)


def test_known_hosts_markers_hashes_and_bad_lines_are_read_like_openssh(
    sshd_server: SSHServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = _other_host_key(tmp_path)
    name = f"[127.0.0.1]:{sshd_server.port}"
    hashed = tmp_path / "hashed"
    hashed.write_text(f"{name} {_server_key(sshd_server)}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(hashed)], check=True, capture_output=True)
    assert hashed.read_text().startswith("|1|")
    known = tmp_path / "known_hosts"
    known.write_text(
        "# a comment, then a blank line\n"
        "\n"
        f"@cert-authority *.example.com {other}\n"  # 3: skipped (not for this host)
        f"@revoked * {other}\n"  # 4: some other key is revoked
        "not-a-key-line\n"  # 5: malformed
        "host.example ssh-ed25519 !!!not-base64!!!\n"  # 6: malformed
        "host.example ssh-unknown-type AAAAC3NzaC1lZDI1NTE5\n"  # 7: a type we cannot use: skipped quietly
        "@bogus-marker host.example ssh-ed25519 AAAA\n"  # 8: malformed
        f"{hashed.read_text()}"  # 9: the server, hashed name
    )
    assert _openssh_accepts(sshd_server, known)
    transport = make(sshd_server, maintainer_known_hosts=str(known))
    try:
        assert transport.run("echo in").stdout == "in\n"
    finally:
        transport.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [w.split(": ")[0] for w in warnings] == [f"{known}:5", f"{known}:6", f"{known}:8"], warnings
    assert all("malformed known_hosts line ignored" in w for w in warnings)


def test_wildcards_and_negation_in_known_hosts(sshd_server: SSHServer, tmp_path: Path) -> None:
    key = _server_key(sshd_server)
    known = tmp_path / "known_hosts"
    known.write_text(f"nothere,[127.0.0.?]:*,!other {key}\n")
    transport = make(sshd_server, maintainer_known_hosts=str(known))
    try:
        assert transport.run("echo in").stdout == "in\n"
    finally:
        transport.close()
    known.write_text(f"*,![127.0.0.1]:{sshd_server.port} {key}\n")  # negated: not for this host
    with pytest.raises(Unreachable, match="not in known_hosts"):
        make(sshd_server, maintainer_known_hosts=str(known)).connect()


@pytest.mark.parametrize("also_listed", [True, False], ids=["also-listed", "only-revoked"])
def test_revoked_host_key_is_refused(sshd_server: SSHServer, tmp_path: Path, also_listed: bool) -> None:
    key = _server_key(sshd_server)
    known = tmp_path / "known_hosts"
    plain = f"[127.0.0.1]:{sshd_server.port} {key}\n" if also_listed else ""
    known.write_text(f"{plain}@revoked * {key}\n")
    assert not _openssh_accepts(sshd_server, known)
    transport = make(sshd_server, maintainer_known_hosts=str(known))
    with pytest.raises(Unreachable) as err:
        transport.run("true")
    reason = err.value.reason
    assert f"is marked @revoked in {known}" in reason, reason
    assert "ssh-ed25519 key SHA256:" in reason and "refusing to connect" in reason
    # the explicit opt-out of host-key checking still refuses a revoked key, as OpenSSH does
    unchecked = make(sshd_server, maintainer_known_hosts=str(known), maintainer_host_key_checking=False)
    with pytest.raises(Unreachable, match="is marked @revoked"):
        unchecked.connect()


def test_cert_authority_lines_are_named_in_the_unknown_key_message(
    sshd_server: SSHServer, tmp_path: Path
) -> None:
    ca = _other_host_key(tmp_path)
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority [127.0.0.1]:* {ca}\n")
    with pytest.raises(Unreachable) as err:
        make(sshd_server, maintainer_known_hosts=str(known)).connect()
    assert "not in known_hosts" in err.value.reason
    assert f"@cert-authority line matches this host ({known} line 1)" in err.value.reason
    assert "does not support host certificates" in err.value.reason

    known.write_text(f"@cert-authority *.example.com {ca}\n")  # a CA for other hosts: not mentioned
    with pytest.raises(Unreachable) as err:
        make(sshd_server, maintainer_known_hosts=str(known)).connect()
    assert "not in known_hosts" in err.value.reason and "certificate" not in err.value.reason


def test_host_key_checking_opt_out(
    sshd_server: SSHServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transport = make(
        sshd_server,
        maintainer_known_hosts=str(tmp_path / "absent"),
        maintainer_host_key_checking="false",  # as an INI inventory would give it
    )
    try:
        assert transport.run("echo in").stdout == "in\n"
    finally:
        transport.close()
    assert not (tmp_path / "absent").exists()  # nothing is written to known_hosts
    assert "host key checking is off" in caplog.text


@pytest.mark.parametrize("mode", ["shell", "exec"])
def test_lost_connection_fails_the_command_and_reconnects(sshd_server: SSHServer, mode: str) -> None:
    ssh = make(sshd_server, maintainer_ssh_mode=mode)
    try:
        _lose_connection_midway(ssh)
    finally:
        ssh.close()


def _lose_connection_midway(ssh: SSHTransport) -> None:
    assert ssh.run("echo before").ok
    client = ssh._client
    assert client is not None
    paramiko_transport = client.get_transport()
    assert paramiko_transport is not None

    def drop_connection() -> None:  # what a network failure looks like to us
        time.sleep(0.3)
        paramiko_transport.sock.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=drop_connection).start()
    with pytest.raises(TransportError, match="may or may not have completed"):
        ssh.run("sleep 2")  # keeps running remotely for a moment after the drop
    deadline = time.monotonic() + 5
    while paramiko_transport.is_active() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ssh.run("echo after").stdout == "after\n"
    assert ssh.read_file("/etc/hostname") is not None
    assert ssh.connections_opened == 2


def test_default_known_hosts_and_settings() -> None:
    transport = SSHTransport.from_vars("example.invalid", 22, "deploy", {})
    assert transport.known_hosts.endswith("/.ssh/known_hosts")
    assert transport.host_key_checking is True
    assert transport.connect_timeout == 10.0
    assert transport.mode == "shell"
    assert transport.label == "deploy@example.invalid:22"


def test_wrong_key_is_an_authentication_failure(sshd_server: SSHServer, tmp_path: Path) -> None:
    _other_host_key(tmp_path)  # any key that is not in authorized_keys
    transport = make(sshd_server, ansible_ssh_private_key_file=str(tmp_path / "other"))
    with pytest.raises(Unreachable) as err:
        transport.connect()
    assert "authentication failed for user 'mtest'" in err.value.reason


def test_password_is_never_shown(
    sshd_server: SSHServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-Pa55"
    caplog.set_level(logging.DEBUG)
    site = sshd_server.site_vars(ansible_password=secret)
    del site["ansible_ssh_private_key_file"]
    transport = SSHTransport.from_vars(sshd_server.host, sshd_server.port, sshd_server.user, site)
    with pytest.raises(Unreachable) as err:
        transport.connect()  # the test sshd has PasswordAuthentication no
    assert "authentication failed" in err.value.reason
    assert secret not in str(err.value)
    assert secret not in repr(transport)
    assert secret not in caplog.text


def test_close_leaves_nothing_open_and_next_use_reconnects(ssh: SSHTransport) -> None:
    ssh.connect()
    assert ssh.run("echo a").ok
    assert ssh.read_file("/etc/hostname") is not None
    client = ssh._client
    assert client is not None
    paramiko_transport = client.get_transport()
    assert paramiko_transport is not None
    channels = list(paramiko_transport._channels.values())
    assert len(channels) == 2  # the shell and SFTP

    ssh.close()
    assert not paramiko_transport.is_active()
    assert all(ch.closed for ch in channels)
    assert ssh._client is None and ssh._sftp is None
    assert ssh.run("echo b").stdout == "b\n"
    assert ssh.connections_opened == 2


def test_sites_on_one_host_share_one_transport(sshd_server: SSHServer) -> None:
    connections = Connections()
    try:
        a = connections.for_site(sshd_server.site_vars(), "site-a")
        b = connections.for_site(sshd_server.site_vars(), "site-b")
        assert a is b and isinstance(a, SSHTransport)
        results: list[str] = []
        threads = [
            threading.Thread(target=lambda n=n: results.append(a.run(f"echo {n}").stdout)) for n in range(4)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(results) == [f"{n}\n" for n in range(4)]
        assert a.connections_opened == 1
    finally:
        connections.close()
