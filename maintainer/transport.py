"""How actions reach a site: a local subprocess or SSH.

A ``Transport`` runs commands on one host and moves files there. A command
given as a string is a shell script run by ``bash -c`` (like Ansible's
``shell``); a sequence is an argv, quoted with ``shlex`` for the remote side,
never glued together from user values.

``Connections`` hands out one transport per host, shared by every site that
lives on it, and closes them all at the end of a run.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KILL_GRACE_SECONDS = 2.0


@dataclass
class CommandResult:
    rc: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out


def shell_line(
    command: str | Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
) -> str:
    """One bash line that runs ``command`` in ``cwd`` with ``env``, every value quoted.

    The command runs in a subshell so that ``cd`` and variables never leak
    into the next command of a reused remote shell. ``wrapper`` (e.g. GNU
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
    return "( " + " ".join(parts) + " )"


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
    ) -> CommandResult:
        """Run a command; a timeout kills the command's whole process group."""

    @abstractmethod
    def read_file(self, path: str) -> bytes | None:
        """The file's bytes, or None if it does not exist."""

    @abstractmethod
    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        """Write atomically: a temp file beside ``path``, fsync, rename."""

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
        timed_out = False
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, err = proc.communicate()
        return CommandResult(
            rc=proc.returncode,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            duration=time.monotonic() - started,
            timed_out=timed_out,
        )

    def read_file(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        atomic_write(Path(path), data, mode)


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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


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


def host_key(site_vars: Mapping[str, Any], name: str) -> HostKey:
    connection = str(site_vars.get("ansible_connection", "ssh"))
    if connection == "local":
        return HostKey("local")
    if connection not in ("ssh", "paramiko", "smart"):
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
