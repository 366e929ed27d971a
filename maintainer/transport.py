"""How actions reach a site: a local subprocess or SSH.

A ``Transport`` runs commands on one host and moves files there. A command
given as a string is a shell script run by ``bash -c`` (like Ansible's
``shell``); a sequence is an argv, quoted with ``shlex`` for the remote side,
never glued together from user values.

Bulk data (a ``tar`` of a docroot, a database dump) never goes through
``run``: ``stream_out`` hands the caller a running command's stdout as a
file object, ``stream_in`` one for its stdin, so gigabytes pass through in
bounded memory.

``Connections`` hands out one transport per host, shared by every site that
lives on it, and closes them all at the end of a run.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TransportError

KILL_GRACE_SECONDS = 2.0
#: how often a running command looks at its cancel event (a stop request reaches it this fast)
CANCEL_POLL_SECONDS = 0.1
#: how much of a streaming command's stderr (and, for ``stream_in``, stdout) is kept
STREAM_TAIL_BYTES = 256 * 1024
#: unread output a ``stream_out`` reader may leave (tar's end-of-archive padding):
#: it is drained so the command ends normally; more than this stops the command
STREAM_DRAIN_LIMIT = 1024 * 1024


@dataclass
class CommandResult:
    rc: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    #: stopped by a cancel request (SIGINT/SIGTERM of the run), not finished: ``rc`` is what
    #: the killed command left (e.g. -15 or 143), -1 if it never answered
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and not self.cancelled


def shell_line(
    command: str | Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
    subshell: bool = True,
) -> str:
    """One bash line that runs ``command`` in ``cwd`` with ``env``, every value quoted.

    The command runs in a subshell so that ``cd`` and variables never leak
    into the next command of a reused remote shell (``subshell=False`` for a
    caller that makes its own). ``wrapper`` (e.g. GNU
    ``timeout``) is exec'd by that subshell in front of the command, so it
    costs no extra shell.
    """
    script = command if isinstance(command, str) else shlex.join(command)
    parts = []
    if cwd:
        parts.append(f"cd {shlex.quote(cwd)} &&")
    parts.append("exec")
    parts.extend(shlex.quote(arg) for arg in wrapper)
    if env:
        parts.append("env")
        for key, value in env.items():
            if not key.isidentifier():
                raise ValueError(f"invalid environment variable name: {key!r}")
            parts.append(shlex.quote(f"{key}={value}"))
    parts.append("bash -c")
    parts.append(shlex.quote(script))
    line = " ".join(parts)
    return f"( {line} )" if subshell else line


class StreamClosed(TransportError):
    """The command ended before it read all of its input (``stream_in``)."""

    def __init__(self, message: str, result: CommandResult) -> None:
        super().__init__(message)
        self.result = result


class CommandStream(io.RawIOBase):
    """A running command's stdout (``stream_out``) or stdin (``stream_in``) as a file object.

    Use it through those context managers: leaving the block normally ends the
    input (or stops reading), waits for the command and sets ``result``;
    leaving it with an exception kills the command first. ``result.stdout``
    holds what a ``stream_in`` command printed; ``result.stderr`` keeps at
    most the last ``STREAM_TAIL_BYTES`` of either.
    """

    result: CommandResult | None = None

    def __init__(self, feed: bool) -> None:
        super().__init__()
        self._feed = feed  # True: we write the command's stdin; False: we read its stdout

    def readable(self) -> bool:
        return not self._feed

    def writable(self) -> bool:
        return self._feed

    def readinto(self, buffer: Any) -> int:
        if self._feed:
            raise io.UnsupportedOperation("this stream is the command's stdin")
        return self._read_into(memoryview(buffer).cast("B"))

    def write(self, data: Any) -> int:
        if not self._feed:
            raise io.UnsupportedOperation("this stream is the command's stdout")
        return self._write(memoryview(data).cast("B"))

    @abstractmethod
    def _read_into(self, view: memoryview) -> int:
        """Some of the command's stdout into ``view``; 0 at its end."""

    @abstractmethod
    def _write(self, view: memoryview) -> int:
        """All of ``view`` to the command's stdin; BrokenPipeError once it stopped reading."""

    def _drain_rest(self) -> bool:
        """Read what the caller left unread, up to ``STREAM_DRAIN_LIMIT``; True if EOF came."""
        buffer = bytearray(64 * 1024)
        left = STREAM_DRAIN_LIMIT
        while left > 0:
            got = self.readinto(buffer)
            if not got:
                return True
            left -= got
        return False

    @abstractmethod
    def finish(self) -> CommandResult:
        """End the input / stop reading, wait for the command, and return its result."""

    @abstractmethod
    def kill(self) -> None:
        """Stop the command (its whole process group where we can) and release the stream."""


class Tail:
    """The last ``limit`` bytes written to it: a command's stderr without unbounded memory."""

    def __init__(self, limit: int = STREAM_TAIL_BYTES) -> None:
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self.dropped = 0

    def add(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        while self._size - len(self._chunks[0]) >= self.limit:
            first = self._chunks.popleft()
            self._size -= len(first)
            self.dropped += len(first)

    def text(self) -> str:
        data = b"".join(self._chunks)[-self.limit :]
        note = f"[... {self.dropped} earlier bytes not kept ...]\n" if self.dropped else ""
        return note + data.decode("utf-8", "replace")


class Transport(ABC):
    """Runs commands on one host; safe to share between threads."""

    #: how the host is named in messages and the change log, e.g. ``mtest@127.0.0.1:2222``
    label: str = "local"

    @abstractmethod
    def run(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        cancel: threading.Event | None = None,
    ) -> CommandResult:
        """Run a command; a timeout kills the command's whole process group.

        Setting ``cancel`` while the command runs kills its whole process group
        too (TERM, then KILL after ``KILL_GRACE_SECONDS``) and returns at once
        with ``cancelled=True``.
        """

    @abstractmethod
    def read_file(self, path: str) -> bytes | None:
        """The file's bytes, or None if it does not exist."""

    @abstractmethod
    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        """Write atomically: a temp file beside ``path``, fsync, rename."""

    @contextlib.contextmanager
    def stream_out(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[CommandStream]:
        """Read a command's stdout as it is produced (``tar -cf -``, ``mysqldump``).

        After the block, ``stream.result`` tells how the command ended; the
        caller decides whether a non-zero exit is a failure.
        """
        with self._streaming(command, cwd, env, timeout, feed=False) as stream:
            yield stream

    @contextlib.contextmanager
    def stream_in(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[CommandStream]:
        """Write a command's stdin as we go (``tar -xf -``, ``mysql``).

        If the command exits before it has read everything, ``write`` stops the
        block with ``StreamClosed``, which carries the command's result.
        """
        with self._streaming(command, cwd, env, timeout, feed=True) as stream:
            yield stream

    @contextlib.contextmanager
    def _streaming(
        self,
        command: str | Sequence[str],
        cwd: str | None,
        env: Mapping[str, str] | None,
        timeout: float | None,
        *,
        feed: bool,
    ) -> Iterator[CommandStream]:
        stream = self._open_stream(command, cwd=cwd, env=env, timeout=timeout, feed=feed)
        try:
            yield stream
        except BrokenPipeError:
            # The command stopped reading its stdin: its exit code and stderr say why.
            result = stream.finish()
            raise StreamClosed(
                f"the command exited (rc {result.rc}) before it read all of its input: "
                f"{result.stderr.strip()[-2000:] or 'no message'}",
                result,
            ) from None
        except BaseException:
            stream.kill()
            raise
        stream.finish()

    @abstractmethod
    def _open_stream(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None,
        env: Mapping[str, str] | None,
        timeout: float | None,
        feed: bool,
    ) -> CommandStream:
        """Start the command with its stdin (``feed``) or stdout connected to the stream."""

    def connect(self) -> None:  # noqa: B027 - optional hook
        """Open the connection now (raises ``Unreachable``); local needs nothing."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; further use reconnects."""


class LocalTransport(Transport):
    label = "local"

    def run(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        cancel: threading.Event | None = None,
    ) -> CommandResult:
        argv = ["bash", "-c", command] if isinstance(command, str) else list(command)
        full_env = {**os.environ, **env} if env else None
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # own process group, so a timeout kills all of it
        )
        timed_out = cancelled = False
        if cancel is None:
            try:
                out, err = proc.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                out, err = proc.communicate()
        else:
            out, err, timed_out, cancelled = _communicate_until(proc, stdin, started, timeout, cancel)
        return CommandResult(
            rc=proc.returncode,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            duration=time.monotonic() - started,
            timed_out=timed_out,
            cancelled=cancelled,
        )

    def read_file(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        atomic_write(Path(path), data, mode)

    def _open_stream(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None,
        env: Mapping[str, str] | None,
        timeout: float | None,
        feed: bool,
    ) -> CommandStream:
        argv = ["bash", "-c", command] if isinstance(command, str) else list(command)
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        return _LocalStream(proc, feed, timeout)


class _LocalStream(CommandStream):
    def __init__(self, proc: subprocess.Popen[bytes], feed: bool, timeout: float | None) -> None:
        super().__init__(feed)
        self._proc = proc
        self._started = time.monotonic()
        self._timed_out = False
        self._err = Tail()
        self._out = Tail()
        self._readers = [_drain(proc.stderr, self._err)]
        if feed:
            self._readers.append(_drain(proc.stdout, self._out))
        self._timer = None
        if timeout is not None:
            self._timer = threading.Timer(timeout, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        self._timed_out = True
        _kill_group(self._proc)

    def _read_into(self, view: memoryview) -> int:
        return self._proc.stdout.readinto1(view)  # type: ignore[union-attr]

    def _write(self, view: memoryview) -> int:
        self._proc.stdin.write(view)  # type: ignore[union-attr]
        return len(view)

    def finish(self) -> CommandResult:
        if self.result is not None:
            return self.result
        if not self._feed and not self._drain_rest():
            _kill_group(self._proc)
        pipe = self._proc.stdin if self._feed else self._proc.stdout
        with contextlib.suppress(OSError):
            pipe.close()  # type: ignore[union-attr]
        self._proc.wait()
        return self._done()

    def kill(self) -> None:
        if self.result is None:
            _kill_group(self._proc)
            self.finish()

    def _done(self) -> CommandResult:
        if self._timer is not None:
            self._timer.cancel()
        for reader in self._readers:
            reader.join()
        self.result = CommandResult(
            rc=self._proc.returncode,
            stdout=self._out.text(),
            stderr=self._err.text(),
            duration=time.monotonic() - self._started,
            timed_out=self._timed_out,
        )
        super().close()
        return self.result


def _drain(pipe: Any, into: Tail) -> threading.Thread:
    def pump() -> None:
        with pipe:
            while chunk := pipe.read1(65536):
                into.add(chunk)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Temp file in the same directory, fsync, rename; keeps the old mode unless told."""
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _communicate_until(
    proc: subprocess.Popen[bytes],
    stdin: bytes | None,
    started: float,
    timeout: float | None,
    cancel: threading.Event,
) -> tuple[bytes, bytes, bool, bool]:
    """communicate() that also watches ``cancel``: (stdout, stderr, timed_out, cancelled)."""
    deadline = None if timeout is None else started + timeout
    data = stdin
    while True:
        wait = CANCEL_POLL_SECONDS
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - time.monotonic()))
        try:
            out, err = proc.communicate(data, timeout=wait)
            return out, err, False, False
        except subprocess.TimeoutExpired:
            data = None  # communicate() keeps feeding what it was given first
            if cancel.is_set():
                _kill_group(proc)
                out, err = proc.communicate()
                return out, err, False, True
            if deadline is not None and time.monotonic() >= deadline:
                _kill_group(proc)
                out, err = proc.communicate()
                return out, err, True, False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """TERM the command's process group; KILL what is left of it after the grace period.

    The grace period is for the whole group, not just its leader: a child that
    ignores TERM (and would keep the output pipes open) gets KILL too.
    """
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(KILL_GRACE_SECONDS)
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process is in the process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Something is left; zombies (orphans that init has not reaped yet) need no grace.
    try:
        stats = list(Path("/proc").glob("[0-9]*/stat"))
    except OSError:
        return True
    for stat in stats:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


@dataclass(frozen=True)
class HostKey:
    """What identifies one connection: sites with the same key share it."""

    connection: str  # "local" or "ssh"
    host: str = ""
    port: int = 22
    user: str = ""
    # every var that changes how we connect (key, known_hosts, ...): two sites on one
    # host with different settings must not share a connection, or one site's host-key
    # check would be skipped by reusing the other's already verified connection
    settings: tuple[tuple[str, str], ...] = ()


class Connections:
    """One transport per host, created on first use and shared by its sites."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._transports: dict[HostKey, Transport] = {}

    def for_site(self, site_vars: Mapping[str, Any], name: str) -> Transport:
        key = host_key(site_vars, name)
        with self._lock:
            transport = self._transports.get(key)
            if transport is None:
                transport = make_transport(key, site_vars)
                self._transports[key] = transport
            return transport

    def close(self) -> None:
        with self._lock:
            transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            transport.close()


#: Ansible connection plugins that reach a host over SSH (short names)
SSH_LIKE = frozenset({"ssh", "paramiko", "paramiko_ssh", "smart"})


def connection_kind(site_vars: Mapping[str, Any]) -> str:
    """'local' or 'ssh' for the connections maintainer supports; otherwise the name as given."""
    raw = str(site_vars.get("ansible_connection") or "ssh")
    short = raw.rsplit(".", 1)[-1]  # ansible.builtin.local -> local
    if short == "local":
        return "local"
    return "ssh" if short in SSH_LIKE else raw


def host_key(site_vars: Mapping[str, Any], name: str) -> HostKey:
    connection = connection_kind(site_vars)
    if connection == "local":
        return HostKey("local")
    if connection != "ssh":
        from .errors import BadInput

        raise BadInput(
            f"ansible_connection '{connection}' is not supported by maintainer.",
            key=f"{name}.ansible_connection",
            fix="use 'local' or 'ssh'.",
        )
    from .ssh import CONNECTION_VARS

    return HostKey(
        "ssh",
        host=str(site_vars.get("ansible_host") or site_vars.get("ansible_ssh_host") or name),
        port=int(site_vars.get("ansible_port") or site_vars.get("ansible_ssh_port") or 22),
        user=str(site_vars.get("ansible_user") or site_vars.get("ansible_ssh_user") or _login_name()),
        settings=tuple((k, str(site_vars[k])) for k in CONNECTION_VARS if k in site_vars),
    )


def _login_name() -> str:
    import getpass

    return getpass.getuser()


def make_transport(key: HostKey, site_vars: Mapping[str, Any]) -> Transport:
    if key.connection == "local":
        return LocalTransport()
    from .ssh import SSHTransport

    return SSHTransport.from_vars(key.host, key.port, key.user, site_vars)
