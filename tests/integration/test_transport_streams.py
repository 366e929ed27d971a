"""Streams: bulk data through a running command's stdout or stdin, locally and over the real sshd."""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from maintainer.errors import TransportError
from maintainer.ssh import SSHTransport
from maintainer.transport import LocalTransport, StreamClosed, Transport
from tests.helpers import wait_gone
from tests.servers.sshd import SSHServer

MB = 1024 * 1024


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    if request.param == "local":
        yield LocalTransport()
        return
    server: SSHServer = request.getfixturevalue("sshd_server")
    ssh = SSHTransport.from_vars(server.host, server.port, server.user, server.site_vars())
    yield ssh
    ssh.close()


@pytest.fixture
def workdir(transport: Transport, request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A directory the transport's user can write to."""
    if isinstance(transport, SSHTransport):
        server: SSHServer = request.getfixturevalue("sshd_server")
        return server.workspace(request.node.name)
    return tmp_path


def test_stream_out_delivers_every_byte_in_bounded_memory(transport: Transport, workdir: Path) -> None:
    source = workdir / "blob"
    with source.open("wb") as fh:  # 64 MB that no compressor or cache can fake
        for i in range(64):
            fh.write(hashlib.sha256(str(i).encode()).digest() * (MB // 32))
    expected = hashlib.sha256(source.read_bytes()).hexdigest()

    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        with transport.stream_out(["cat", str(source)]) as out:
            while chunk := out.read(MB):
                digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.result is not None and out.result.ok, out.result
    assert digest.hexdigest() == expected
    assert peak < 16 * MB, f"peak {peak / MB:.1f} MB while streaming 64 MB"


def test_stream_in_feeds_stdin_and_keeps_what_the_command_printed(transport: Transport) -> None:
    digest = hashlib.sha256()
    with transport.stream_in("sha256sum; echo finished >&2") as stdin:
        for i in range(32):
            block = bytes([i]) * MB
            digest.update(block)
            stdin.write(block)
    assert stdin.result is not None
    assert stdin.result.rc == 0
    assert stdin.result.stdout.split()[0] == digest.hexdigest()
    assert stdin.result.stderr == "finished\n"


def test_a_failing_command_reports_its_exit_code_and_stderr(transport: Transport) -> None:
    with transport.stream_out("printf partial; echo 'dump failed: server gone' >&2; exit 3") as out:
        data = out.read()
    assert data == b"partial"
    assert out.result is not None
    assert (out.result.rc, out.result.stderr) == (3, "dump failed: server gone\n")


def test_cwd_and_env_are_quoted_not_glued(transport: Transport, workdir: Path) -> None:
    odd = workdir / "dir with 'quotes' and $x"
    odd.mkdir()
    with transport.stream_out(
        'printf "%s|%s" "$PWD" "$VALUE"', cwd=str(odd), env={"VALUE": "a;b $(x)"}
    ) as out:
        data = out.read()
    assert data.decode() == f"{odd}|a;b $(x)"


def test_a_command_that_stops_reading_raises_stream_closed_with_its_result(transport: Transport) -> None:
    command = "head -c 10 >/dev/null; echo 'disk full' >&2; exit 5"
    with pytest.raises(StreamClosed) as caught, transport.stream_in(command) as stdin:
        for _ in range(256):
            stdin.write(b"x" * MB)
    assert caught.value.result.rc == 5
    assert "disk full" in str(caught.value)


def test_an_exception_in_the_block_kills_the_whole_process_group(transport: Transport, workdir: Path) -> None:
    pids = workdir / "pids"
    command = f"sleep 300 & echo $! > {pids}; yes"  # a background child and a busy writer
    with pytest.raises(KeyError), transport.stream_out(command) as out:
        out.read(100)
        raise KeyError("the upload failed")
    child = int(pids.read_text())
    assert wait_gone([child], 10) == [], "the background child outlived the aborted stream"


def test_timeout_kills_the_command(transport: Transport) -> None:
    started = time.monotonic()
    with transport.stream_out("echo begun; sleep 60", timeout=0.5) as out:
        assert out.read() == b"begun\n"
    assert out.result is not None and out.result.timed_out
    assert time.monotonic() - started < 10


def test_streams_work_as_file_objects_for_tarfile(transport: Transport, workdir: Path) -> None:
    import tarfile

    (workdir / "site").mkdir()
    (workdir / "site" / "index.php").write_text("<?php echo 'hi';")
    command = ["tar", "-C", str(workdir / "site"), "-cf", "-", "."]
    with transport.stream_out(command) as out, tarfile.open(fileobj=out, mode="r|") as tar:
        names = sorted(member.name for member in tar)
    assert names == [".", "./index.php"]
    assert out.result is not None and out.result.ok, out.result  # tar's padding was drained, not cut


def test_ssh_prefers_aes_gcm(sshd_server: SSHServer) -> None:
    ssh = SSHTransport.from_vars(
        sshd_server.host, sshd_server.port, sshd_server.user, sshd_server.site_vars()
    )
    try:
        assert ssh.run("true").ok
        assert ssh._client is not None
        link = ssh._client.get_transport()
        assert link is not None and link.local_cipher == "aes128-gcm@openssh.com"
    finally:
        ssh.close()


def test_ssh_streams_release_their_sessions(sshd_server: SSHServer) -> None:
    ssh = SSHTransport.from_vars(
        sshd_server.host, sshd_server.port, sshd_server.user, sshd_server.site_vars()
    )
    try:
        for _ in range(20):  # more than sshd's MaxSessions: a leaked session would block
            with ssh.stream_out("echo x") as out:
                assert out.read() == b"x\n"
        assert ssh.run("echo still fine").ok
        assert ssh.connections_opened == 1
    finally:
        ssh.close()


def test_a_lost_connection_is_an_error_not_a_short_stream(sshd_server: SSHServer) -> None:
    ssh = SSHTransport.from_vars(
        sshd_server.host, sshd_server.port, sshd_server.user, sshd_server.site_vars()
    )
    try:
        with pytest.raises(TransportError), ssh.stream_out("yes") as out:
            out.read(100)
            ssh.close()  # the connection goes away under the reader
            while out.read(MB):
                pass
    finally:
        ssh.close()


def test_a_reader_that_stops_early_stops_the_command(transport: Transport) -> None:
    started = time.monotonic()
    with transport.stream_out("yes") as out:
        assert out.read(4) == b"y\ny\n"
    assert out.result is not None and not out.result.ok
    assert time.monotonic() - started < 10


def test_a_little_unread_output_is_drained_so_the_command_ends_normally(transport: Transport) -> None:
    with transport.stream_out("printf header; head -c 10240 /dev/zero") as out:
        assert out.read(6) == b"header"
    assert out.result is not None and out.result.ok, out.result


def test_ssh_streams_pass_paramikos_512_mb_rekey_point(sshd_server: SSHServer) -> None:
    # paramiko starts a re-key after 512 MB; when the command ends just then, the
    # channel close waits for the re-key inside the thread that must run it, and
    # 30 s later comes "Key-exchange timed out waiting for key negotiation".
    ssh = SSHTransport.from_vars(
        sshd_server.host, sshd_server.port, sshd_server.user, sshd_server.site_vars()
    )
    size = 512 * MB  # ends just after paramiko would have started its re-key
    received = 0
    try:
        with ssh.stream_out(["head", "-c", str(size), "/dev/zero"]) as out:
            while chunk := out.read(MB):
                received += len(chunk)
        assert out.result is not None and out.result.ok
        assert received == size
        assert ssh.run("echo after").stdout == "after\n"
    finally:
        ssh.close()
