"""Stop requests (the engine's cancel event) reach a running command, locally and over the real sshd.

The sshd runs on this machine, so the tests read the "remote" pid files and
/proc directly to prove that the whole process group is gone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from maintainer import RunOptions, run
from maintainer.errors import StepCancelled
from maintainer.ssh import SSHTransport
from maintainer.testing import action_context
from maintainer.transport import KILL_GRACE_SECONDS, LocalTransport, Transport
from tests.helpers import make_project, process_alive, wait_gone
from tests.servers.sshd import SSHServer


@pytest.fixture(params=["local", "ssh-shell", "ssh-exec"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    if request.param == "local":
        yield LocalTransport()
        return
    server: SSHServer = request.getfixturevalue("sshd_server")
    mode = request.param.removeprefix("ssh-")
    ssh = SSHTransport.from_vars(
        server.host, server.port, server.user, server.site_vars(maintainer_ssh_mode=mode)
    )
    yield ssh
    ssh.close()


@pytest.fixture
def workdir(transport: Transport, request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A directory the transport's user can write to (and this test can read)."""
    if isinstance(transport, SSHTransport):
        server: SSHServer = request.getfixturevalue("sshd_server")
        return server.workspace(request.node.name.replace("[", "-").rstrip("]"))
    return tmp_path


def _pids(pidfile: Path, count: int) -> list[int]:
    try:
        pids = [int(x) for x in pidfile.read_text().split()]
    except (FileNotFoundError, ValueError):
        return []
    return pids if len(pids) >= count else []


def _cancel_when_started(pidfile: Path, count: int) -> tuple[threading.Event, list[float]]:
    """An event that is set once ``count`` pids are in ``pidfile``; the list gets the time it was set."""
    cancel = threading.Event()
    when: list[float] = []

    def watch() -> None:
        deadline = time.monotonic() + 30
        while not _pids(pidfile, count) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # well into the command
        when.append(time.monotonic())
        cancel.set()

    threading.Thread(target=watch, daemon=True).start()
    return cancel, when


# a shell with a background child and a foreground one, both far longer than any test
SLEEPERS = "echo $$ >> {p}; sleep 200 & echo $! >> {p}; echo started; sleep 200"


@pytest.mark.parametrize("timeout", [60, None], ids=["with-timeout", "no-timeout"])
def test_cancel_kills_the_running_command_and_its_group(
    transport: Transport, workdir: Path, timeout: float | None
) -> None:
    pidfile = workdir / "pids"
    cancel, when = _cancel_when_started(pidfile, 2)
    started = time.monotonic()
    result = transport.run(SLEEPERS.format(p=pidfile), timeout=timeout, cancel=cancel)
    returned = time.monotonic()
    assert result.cancelled and not result.ok and not result.timed_out, result
    assert result.stdout == "started\n"
    assert returned - when[0] < 1.5, "the stop request took too long to reach the command"
    assert result.duration <= returned - started
    assert wait_gone(_pids(pidfile, 2)) == []
    # the transport (for SSH: the very same pooled shell) goes on working
    after = transport.run("echo after", timeout=timeout)
    assert (after.rc, after.stdout, after.cancelled) == (0, "after\n", False)
    if isinstance(transport, SSHTransport) and transport.mode == "shell":
        assert transport.shells_opened == 1
        assert transport.execs_opened == 0


def test_cancel_kills_what_ignores_term_after_the_grace_period(transport: Transport, workdir: Path) -> None:
    pidfile = workdir / "pids"
    script = f"trap '' TERM; echo $$ >> {pidfile}; sleep 200 & echo $! >> {pidfile}; wait"
    cancel, when = _cancel_when_started(pidfile, 2)
    result = transport.run(script, timeout=60, cancel=cancel)
    waited = time.monotonic() - when[0]
    assert result.cancelled and not result.ok
    assert KILL_GRACE_SECONDS - 0.2 <= waited < KILL_GRACE_SECONDS + 3
    assert wait_gone(_pids(pidfile, 2), seconds=1) == []
    assert transport.run("echo after").stdout == "after\n"


def test_cancel_gives_term_handlers_their_grace_period(transport: Transport, workdir: Path) -> None:
    pidfile = workdir / "pids"
    done = workdir / "cleaned"
    script = f"trap 'sleep 0.5; echo cleaned > {done}; exit 0' TERM; echo $$ >> {pidfile}; sleep 200 & wait"
    cancel, _ = _cancel_when_started(pidfile, 1)
    result = transport.run(script, timeout=60, cancel=cancel)
    # the handler exits 0, but the command did not finish: still cancelled, not ok
    assert result.cancelled and not result.ok
    assert done.read_text() == "cleaned\n"


def test_cancel_set_before_the_command_starts(transport: Transport) -> None:
    cancel = threading.Event()
    cancel.set()
    started = time.monotonic()
    result = transport.run("sleep 200", timeout=60, cancel=cancel)
    assert result.cancelled and not result.ok
    assert time.monotonic() - started < 5


def test_a_cancel_event_that_is_never_set_changes_nothing(transport: Transport) -> None:
    cancel = threading.Event()
    result = transport.run("sleep 0.3; echo out; echo err >&2; exit 3", timeout=60, cancel=cancel)
    assert (result.rc, result.stdout, result.stderr, result.cancelled) == (3, "out\n", "err\n", False)
    fed = transport.run("cat", stdin=b"in", timeout=60, cancel=cancel)
    assert (fed.rc, fed.stdout, fed.cancelled) == (0, "in", False)


def test_cancel_with_every_pooled_shell_busy(sshd_server: SSHServer) -> None:
    """Eight cancelled commands fill the pool (and SFTP is open): the kill still gets a session."""
    ssh = SSHTransport.from_vars(
        sshd_server.host, sshd_server.port, sshd_server.user, sshd_server.site_vars()
    )
    ws = sshd_server.workspace("cancel-busy-pool")
    try:
        assert ssh.read_file("/etc/hostname") is not None  # the SFTP session is open too
        cancel = threading.Event()
        pidfiles = [ws / f"pids{i}" for i in range(8)]

        def slow(i: int) -> tuple[bool, float]:
            result = ssh.run(SLEEPERS.format(p=pidfiles[i]), timeout=60, cancel=cancel)
            return result.cancelled, time.monotonic()

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(slow, i) for i in range(8)]
            deadline = time.monotonic() + 30
            while not all(_pids(p, 2) for p in pidfiles) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert ssh.peak_shells == 8
            cancel.set()
            set_at = time.monotonic()
            outcomes = [f.result(timeout=30) for f in futures]
        assert all(cancelled for cancelled, _ in outcomes)
        assert max(at for _, at in outcomes) - set_at < 5
        assert 1 <= ssh.kill_sessions <= 8
        assert wait_gone([pid for p in pidfiles for pid in _pids(p, 2)]) == []
        assert ssh.run("echo after").stdout == "after\n"
        assert ssh.shells_opened == 8
    finally:
        ssh.close()


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_step_context_sh_passes_the_cancel_event(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    transport: Transport
    if where == "ssh":
        server: SSHServer = request.getfixturevalue("sshd_server")
        transport = SSHTransport.from_vars(server.host, server.port, server.user, server.site_vars())
        pidfile = server.workspace("sh-cancel") / "pids"
    else:
        transport = LocalTransport()
        pidfile = tmp_path / "pids"
    ctx = action_context(tmp_path, transport=transport)
    threading.Timer(0.5, ctx.cancel.set).start()
    started = time.monotonic()
    try:
        with pytest.raises(StepCancelled, match="interrupted") as err:
            ctx.sh(f"echo $$ > {pidfile}; sleep 200")
    finally:
        transport.close()
    assert time.monotonic() - started < 3
    assert err.value.outputs["rc"] != 0
    assert wait_gone(_pids(pidfile, 1)) == []


def test_a_stopped_run_does_not_wait_for_the_remote_command(sshd_server: SSHServer, tmp_path: Path) -> None:
    """The engine's cancel (SIGINT/SIGTERM) reaches a long command over SSH: the run ends at once."""
    ws = sshd_server.workspace("engine-cancel")
    pidfile = ws / "pids"
    project = make_project(
        tmp_path,
        {
            "slow@1.0.0": f"""
            name: slow
            version: 1.0.0
            steps:
              - id: wait
                uses: shell
                with: {{command: "echo $$ > {pidfile}; sleep 60"}}
              - id: never
                uses: shell
                with: {{command: "touch {ws}/never"}}
            """
        },
        {"remote": sshd_server.site_vars(maintainer_lock_dir=str(ws / "locks"))},
    )
    cancel, when = _cancel_when_started(pidfile, 1)
    result = run(RunOptions(runbook="slow", project=project), cancel=cancel)
    assert time.monotonic() - when[0] < 5, "the run waited for the remote command"
    assert result.sites["remote"].status != "ok"
    assert not (ws / "never").exists()
    pids = _pids(pidfile, 1)
    assert pids and not process_alive(pids[0])
