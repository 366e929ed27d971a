"""The SSH transport: one paramiko connection per host, shared by its sites.

Commands go through a small pool of long-lived ``bash --noprofile --norc``
sessions on that connection: a new SSH session costs about 45 ms, a line sent
to an open shell well under a millisecond. Each command line is framed by a
random token that the shell prints after it, with the exit code on stdout and
alone on stderr, so rc, stdout and stderr come back separately even when the
output lacks a trailing newline. Calls with ``stdin`` data, and every call in
``maintainer_ssh_mode: exec``, use one SSH session per command instead, and
so do streams (``stream_out``/``stream_in``): their bytes flow through the
session's own channel under SSH flow control, so memory stays bounded. A
stream's command runs as a job in its own process group and first reports
its session bash's pid, so an aborted stream kills the whole remote group the
way a cancelled command is killed, not just the channel.

A timeout is enforced on the remote side by GNU ``timeout``, which runs the
command in its own process group and signals the whole group (TERM, then KILL
after a grace period); the client keeps a deadline of its own in case the
remote never answers.

Files move over SFTP on the same connection; writes are atomic (temp file in
the same directory, chmod, fsync, ``posix-rename``).

A stop request (the ``cancel`` event of ``run``) kills the running command's
process group from one extra session beside the pool: each shell tells its PID
when it starts (an exec session's bash tells it first thing on stderr), and the
command runs as that bash's child in a group of its own (GNU ``timeout`` makes
one), so the group to kill is found under that PID; the killed command then
answers as usual and its pooled shell stays usable (see ``_Canceller``).

Host keys are checked strictly: an unknown or changed key refuses the
connection unless the site sets ``maintainer_host_key_checking: false``.
known_hosts is read as OpenSSH reads it (``_KnownHosts``): hashed names,
wildcards, ``@revoked`` keys (refused), ``@cert-authority`` lines (skipped:
host certificates are not supported), malformed lines (warned about, ignored).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hmac
import logging
import os
import posixpath
import re
import secrets
import select
import shlex
import socket
import stat
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey
from paramiko.sftp import CMD_EXTENDED

from .errors import BadInput, TransportError, Unreachable
from .transport import (
    CANCEL_POLL_SECONDS,
    KILL_GRACE_SECONDS,
    CommandResult,
    CommandStream,
    Tail,
    Transport,
    shell_line,
)

log = logging.getLogger(__name__)
#: paramiko's own log lines for our connections (set_log_channel), kept apart so
#: that we can tone down the ones we handle ourselves
PARAMIKO_LOG = f"{__name__}.paramiko"

DEFAULT_CONNECT_TIMEOUT = 10.0
KEEPALIVE_SECONDS = 15
#: sshd's MaxSessions defaults to 10 sessions per connection. One is kept for
#: SFTP and one as slack: sshd still counts a session for a moment after we
#: close it (until its shell exits and the channel is collected).
MAX_SESSIONS = 10
MAX_CHANNELS = MAX_SESSIONS - 2  # shells + exec sessions open at once
MAX_SHELLS = 8
#: how long past its timeout (plus kill grace) we wait for a command's answer
#: before we give up on the session
ANSWER_SLACK_SECONDS = 5.0
#: GNU timeout exits 124 when it timed out, 137 when it had to use KILL
TIMEOUT_CODES = (124, 137)
MODES = ("shell", "exec")
#: the site vars that shape a connection (read by from_vars): sites on one host
#: may share a transport only if these agree
CONNECTION_VARS = (
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_ssh_pass",
    "ansible_password",
    "maintainer_known_hosts",
    "maintainer_host_key_checking",
    "maintainer_connect_timeout",
    "maintainer_ssh_mode",
)


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey, ca_lines: Sequence[int] = ()) -> None:
        super().__init__(f"host key for {hostname} not found in known_hosts")
        self.hostname = hostname
        self.key = key
        self.ca_lines = list(ca_lines)  # @cert-authority lines that match the host (unsupported)


class _RevokedHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey, line: int) -> None:
        super().__init__(f"host key for {hostname} is marked @revoked")
        self.hostname = hostname
        self.key = key
        self.line = line


class _KnownHosts:
    """A known_hosts file read the way OpenSSH reads it, line by line.

    Plain lines (host patterns with ``*``, ``?`` and ``!`` negation, hashed
    ``|1|salt|hash`` names) are parsed with paramiko's ``HostKeyEntry``.
    ``@revoked`` lines list keys that are refused even where another line
    accepts them. ``@cert-authority`` lines are skipped: host certificates are
    not supported (the unknown-key message says so when one matches the host).
    A malformed line is ignored with a warning naming file:line, as OpenSSH does.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.keys: list[tuple[list[str], paramiko.PKey, int]] = []
        self.revoked: list[tuple[list[str], paramiko.PKey, int]] = []
        self.cert_authorities: list[tuple[list[str], int]] = []

    @classmethod
    def load(cls, path: str) -> _KnownHosts:
        """Parse ``path`` (cached while the file is unchanged); a missing file knows no host."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return cls(path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with _known_hosts_lock:
            cached = _known_hosts_cache.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            with open(path, "rb") as fh:
                text = fh.read().decode("utf-8", "replace")
            known = cls(path)
            for lineno, line in enumerate(text.splitlines(), 1):
                known._add(line.strip(), lineno)
            _known_hosts_cache[path] = (stamp, known)
            return known

    def _add(self, line: str, lineno: int) -> None:
        if not line or line.startswith("#"):
            return
        problem = self._parse(line, lineno)
        if problem:
            log.warning("%s:%d: malformed known_hosts line ignored (%s)", self.path, lineno, problem)

    def _parse(self, line: str, lineno: int) -> str | None:
        """Take one line in; what is wrong with it, if anything."""
        fields = line.split()
        marker = fields.pop(0) if fields[0].startswith("@") else ""
        if marker not in ("", "@revoked", "@cert-authority"):
            return f"unknown marker {marker}"
        if len(fields) < 3:
            return "expected host patterns, key type and key"
        patterns = fields[0].split(",")
        if not all(_valid_pattern(p) for p in patterns):
            return "bad host pattern"
        if marker == "@cert-authority":
            log.debug(
                "%s:%d: @cert-authority skipped: host certificates are not supported", self.path, lineno
            )
            self.cert_authorities.append((patterns, lineno))
            return None
        try:
            entry = HostKeyEntry.from_line(" ".join(fields[:3]), lineno)
        except (InvalidHostKey, paramiko.SSHException, ValueError, TypeError, IndexError) as exc:
            return f"bad {fields[1]} key: {type(exc).__name__}"
        if entry is None or entry.key is None:
            log.debug("%s:%d: key type %s is not supported; line skipped", self.path, lineno, fields[1])
            return None
        (self.revoked if marker else self.keys).append((patterns, entry.key, lineno))
        return None

    def lookup(self, name: str) -> tuple[list[paramiko.PKey], list[tuple[paramiko.PKey, int]], list[int]]:
        """For host ``name`` (``host`` or ``[host]:port``): its keys, its revoked keys, its CA lines."""
        keys = [key for patterns, key, _ in self.keys if _host_matches(patterns, name)]
        revoked = [(key, n) for patterns, key, n in self.revoked if _host_matches(patterns, name)]
        cas = [n for patterns, n in self.cert_authorities if _host_matches(patterns, name)]
        return keys, revoked, cas


_known_hosts_lock = threading.Lock()
_known_hosts_cache: dict[str, tuple[tuple[int, int, int], _KnownHosts]] = {}


def _valid_pattern(pattern: str) -> bool:
    if not pattern.startswith("|1|"):
        return bool(pattern.lstrip("!"))
    try:
        _, _, salt, digest = pattern.split("|")
        return len(base64.b64decode(salt, validate=True)) == 20 and bool(base64.b64decode(digest))
    except (ValueError, binascii.Error):
        return False


def _host_matches(patterns: list[str], name: str) -> bool:
    """OpenSSH's host pattern list: any positive match, and no negated (``!``) one."""
    name = name.lower()
    matched = False
    for pattern in patterns:
        if pattern.startswith("|1|"):
            hashed = paramiko.HostKeys.hash_host(name, pattern)
            matched = matched or hmac.compare_digest(hashed.encode(), pattern.encode())
            continue
        negated = pattern.startswith("!")
        glob = pattern[1:] if negated else pattern
        if _glob_regex(glob.lower()).fullmatch(name):
            if negated:
                return False
            matched = True
    return matched


@functools.lru_cache(maxsize=1024)
def _glob_regex(glob: str) -> re.Pattern[str]:
    """``*`` and ``?`` wildcards only, as in OpenSSH (``[`` is literal: ``[host]:port``)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob))


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """Strict checking against our own reading of known_hosts (paramiko's own host keys stay empty).

    paramiko asks the policy about every key, so revoked keys, several keys of
    one type and wildcard patterns all get OpenSSH's answer. The key types known
    for the host are offered first in the key exchange, as OpenSSH does.
    """

    def __init__(self, known: _KnownHosts, name: str) -> None:
        keys, self.revoked, self.ca_lines = known.lookup(name)
        withdrawn = {key.asbytes() for key, _ in self.revoked}
        self.keys = [key for key in keys if key.asbytes() not in withdrawn]  # @revoked wins

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        blob = key.asbytes()
        for revoked, lineno in self.revoked:
            if revoked.asbytes() == blob:
                raise _RevokedHostKey(hostname, key, lineno)
        if any(known.asbytes() == blob for known in self.keys):
            return
        if self.keys:
            same_type = [k for k in self.keys if k.get_name() == key.get_name()]
            raise paramiko.BadHostKeyException(hostname, key, (same_type or self.keys)[0])
        raise _UnknownHostKey(hostname, key, self.ca_lines)

    def transport_factory(self, sock: Any, **kwargs: Any) -> paramiko.Transport:
        transport = _FastTransport(sock, **kwargs)
        if self.keys:
            options = transport.get_security_options()
            offered = list(options.key_types)
            first: list[str] = []
            for key in self.keys:
                name = key.get_name()
                for algorithm in ("rsa-sha2-512", "rsa-sha2-256", name) if name == "ssh-rsa" else (name,):
                    if algorithm in offered and algorithm not in first:
                        first.append(algorithm)
            options.key_types = first + [a for a in offered if a not in first]
        return transport


class _AcceptWithWarning(paramiko.WarningPolicy):
    """The explicit opt-out: accept any host key, but say so in our own log.

    A key marked ``@revoked`` in known_hosts is still refused, as OpenSSH does
    with ``StrictHostKeyChecking no``.
    """

    def __init__(self, revoked: Sequence[tuple[paramiko.PKey, int]] = ()) -> None:
        self.revoked = list(revoked)

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        for revoked, lineno in self.revoked:
            if revoked.asbytes() == key.asbytes():
                raise _RevokedHostKey(hostname, key, lineno)
        log.warning(
            "%s: host key checking is off (maintainer_host_key_checking: false); accepting %s",
            hostname,
            _describe(key),
        )


class _FastTransport(paramiko.Transport):
    """paramiko's Transport tuned for bulk streams.

    AES-GCM is tried first, as OpenSSH does: paramiko lists the CTR ciphers
    (plus a separate HMAC) first, and with GCM a stream moves about 400 MB/s
    on loopback instead of about 240 MB/s. Servers without GCM still get CTR.

    paramiko starts a re-key after 512 MB in either direction; when a channel
    closes just then, its transport thread waits for that re-key inside the
    very thread that must run it, and 30 s later the stream breaks with
    "Key-exchange timed out waiting for key negotiation" (paramiko #822). We
    leave re-keying to the server, which OpenSSH does by its own RekeyLimit
    (for AES, after 4 billion blocks); ours only triggers past 64 GiB.
    """

    REKEY_BYTES = 1 << 36

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.packetizer.REKEY_BYTES = self.REKEY_BYTES
        self.packetizer.REKEY_BYTES_OVERFLOW_MAX = self.REKEY_BYTES

    _preferred_ciphers = (
        *(
            c
            for c in ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
            if c in paramiko.Transport._cipher_info
        ),
        *(c for c in paramiko.Transport._preferred_ciphers if "gcm" not in c),
    )


class _ShellLost(Exception):
    """The shell session ended (or broke) before answering."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent  # False: the command never reached the shell, so a retry is safe


class _NoAnswer(Exception):
    """The deadline passed before the command's answer came back."""

    def __init__(self, out: bytes, err: bytes) -> None:
        super().__init__("no answer before the deadline")
        self.out = out
        self.err = err


class _Canceller:
    """Watches a running command's cancel event for the thread reading its answer.

    The command runs under a remote bash (a pooled shell, or an exec session's
    bash, which reports its PID first) as that bash's child, in a process group
    of its own (GNU timeout makes one). Once the event is set, a helper thread
    kills that group from another session (``SSHTransport._kill_commands_of``)
    while the reader keeps reading: the killed command's answer then comes back
    as usual and a pooled shell stays usable. A kill that finds nothing (the
    command had not started yet) is repeated until the answer comes.
    """

    def __init__(
        self, transport: SSHTransport, event: threading.Event, host_pid: int | None, token: str = ""
    ) -> None:
        self.transport = transport
        self.event = event
        self.host_pid = host_pid
        self.token = token
        self.triggered = False
        self.deadline = 0.0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, deadline: float | None) -> float | None:
        """The reader's deadline, shortened once the event is set (which starts the kill)."""
        if not self.triggered:
            if not self.event.is_set():
                return deadline
            self.triggered = True
            self.deadline = time.monotonic() + self._patience()
            self._thread = threading.Thread(target=self._kill, daemon=True)
            self._thread.start()
        return self.deadline if deadline is None else min(deadline, self.deadline)

    def _patience(self) -> float:
        # opening the kill session (retried while sshd is at MaxSessions), the grace period, slack
        return self.transport.connect_timeout + KILL_GRACE_SECONDS + ANSWER_SLACK_SECONDS

    def take_pid(self, err: bytearray) -> None:
        """Take the exec session's ``token:pid`` line out of its stderr, once it is complete."""
        prefix = self.token.encode() + b":"
        start = err.find(prefix)
        end = err.find(b"\n", start) if start >= 0 else -1
        if end >= 0:
            self.host_pid = int(err[start + len(prefix) : end])
            del err[start : end + 1]

    def finish(self) -> bool:
        """The answer is in: stop killing, wait for a kill under way; True if it was cancelled."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(self._patience())
            self._thread = None
        return self.triggered

    def _kill(self) -> None:
        while not self._done.is_set() and time.monotonic() < self.deadline:
            if self.host_pid:
                self.transport._kill_commands_of(self.host_pid)
                wait = 1.0  # the answer follows a kill at once; if not, the command had not started
            else:
                wait = 0.05  # the exec session has not told its PID yet
            if self._done.wait(wait):
                return


class _Shell:
    """One remote ``bash`` reading command lines from its stdin."""

    def __init__(self, channel: paramiko.Channel, generation: int, pid: int) -> None:
        self.channel = channel
        self.generation = generation
        self.pid = pid  # the remote bash's PID: its children are the running command (see _Canceller)
        self.broken = False

    def alive(self) -> bool:
        ch = self.channel
        return not (self.broken or ch.closed or ch.eof_received or ch.exit_status_ready())

    def drain(self) -> None:
        """Drop stray output (e.g. from a previous command's background children)."""
        ch = self.channel
        while ch.recv_ready():
            ch.recv(65536)
        while ch.recv_stderr_ready():
            ch.recv_stderr(65536)

    def close(self) -> None:
        self.broken = True
        try:
            self.channel.close()
        except Exception:  # closing a dead channel must not hide the real error
            log.debug("closing a shell channel failed", exc_info=True)


class SSHTransport(Transport):
    """Runs commands and moves files on one host over one SSH connection."""

    #: what each pooled session runs; commands are then written to its stdin
    shell_command = "exec bash --noprofile --norc"

    def __init__(
        self,
        host: str,
        port: int = 22,
        user: str = "root",
        *,
        key_file: str | None = None,
        password: str | None = None,
        known_hosts: str | None = None,
        host_key_checking: bool = True,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        mode: str = "shell",
        max_shells: int = MAX_SHELLS,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.host = host
        self.port = int(port)
        self.user = user
        self.key_file = os.path.expanduser(key_file) if key_file else None
        self._password = password  # never logged, never in repr
        self.known_hosts = os.path.expanduser(known_hosts or "~/.ssh/known_hosts")
        self.host_key_checking = host_key_checking
        self.connect_timeout = float(connect_timeout)
        self.mode = mode
        self.max_shells = max(1, min(max_shells, MAX_CHANNELS))
        self.label = f"{user}@{host}:{self.port}"

        # One lock guards the connection, the shell pool and the counters;
        # the condition wakes threads waiting for a free session slot.
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
        self._client: paramiko.SSHClient | None = None
        self._generation = 0  # bumped on every (re)connect and close: old shells are dropped
        self._idle: list[_Shell] = []
        self._shells = 0  # shells that exist in this generation (idle or busy)
        self._channels = 0  # shells + exec sessions open now (SFTP not counted)
        self._shell_unusable = False  # the remote shell failed its handshake: use exec
        # SFTP is one session for the whole connection, used by one thread at a time.
        self._sftp_lock = threading.Lock()
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_generation = -1
        # Cancelled commands are killed from one extra session beside the pool; requests
        # that come in while a kill runs are batched into the next one (see _kill_commands_of).
        self._kill_cond = threading.Condition()
        self._kill_pending: set[int] = set()
        self._killing: set[int] = set()

        #: counters, for tests and diagnostics
        self.connections_opened = 0
        self.sessions_opened = 0  # every SSH session channel: shells, execs, SFTP
        self.shells_opened = 0
        self.peak_shells = 0  # most shells open at the same time
        self.execs_opened = 0
        self.kill_sessions = 0  # sessions opened to kill cancelled commands

    @classmethod
    def from_vars(cls, host: str, port: int, user: str, site_vars: Mapping[str, Any]) -> SSHTransport:
        """Build from a site's inventory vars (Ansible's names where they exist)."""
        key_file = site_vars.get("ansible_ssh_private_key_file") or site_vars.get("ansible_private_key_file")
        password = site_vars.get("ansible_ssh_pass") or site_vars.get("ansible_password")
        mode = str(site_vars.get("maintainer_ssh_mode", "shell")).strip().lower()
        if mode not in MODES:
            raise BadInput(
                f"unknown SSH mode '{mode}'.",
                key="maintainer_ssh_mode",
                fix="use 'shell' (default: commands through a reused shell) or 'exec'.",
            )
        try:
            connect_timeout = float(site_vars.get("maintainer_connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        except (TypeError, ValueError):
            raise BadInput(
                "maintainer_connect_timeout must be a number of seconds.",
                key="maintainer_connect_timeout",
            ) from None
        return cls(
            host,
            port,
            user,
            key_file=str(key_file) if key_file else None,
            password=str(password) if password else None,
            known_hosts=str(site_vars.get("maintainer_known_hosts") or "") or None,
            host_key_checking=_as_bool(site_vars.get("maintainer_host_key_checking", True)),
            connect_timeout=connect_timeout,
            mode=mode,
        )

    def __repr__(self) -> str:
        return f"SSHTransport({self.label!r}, mode={self.mode!r})"

    def __enter__(self) -> SSHTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection -------------------------------------------------------

    def connect(self) -> None:
        with self._lock:
            self._ensure_connected()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            idle, self._idle = self._idle, []
            self._generation += 1
            self._shells = 0
            self._channels = 0
            self._slot_freed.notify_all()
        # Not under _sftp_lock: a transfer in progress must not delay close();
        # closing the client below ends it, and the next use opens a new session.
        sftp, self._sftp = self._sftp, None
        for shell in idle:
            shell.close()
        if sftp is not None:
            try:
                sftp.close()
            except Exception:
                log.debug("closing SFTP failed", exc_info=True)
        if client is not None:
            client.close()  # closes the transport and every channel still on it

    def _ensure_connected(self) -> paramiko.Transport:
        """The live paramiko transport, connecting first if needed; hold ``_lock``."""
        if self._client is not None:
            t = self._client.get_transport()
            if t is not None and t.is_active():
                return t
            # The connection died (network, sshd restart): start over.
            log.info("%s: connection lost, reconnecting", self.label)
            self._client.close()
            self._client = None
            self._idle = []
            self._shells = 0
            self._channels = 0
            self._generation += 1
        self._client = self._open_client()
        self._generation += 1
        self.connections_opened += 1
        t = self._client.get_transport()
        assert t is not None
        return t

    def _open_client(self) -> paramiko.SSHClient:
        if self.key_file and not os.path.exists(self.key_file):
            raise Unreachable(self.label, f"private key file {self.key_file} does not exist")
        client = paramiko.SSHClient()
        client.set_log_channel(PARAMIKO_LOG)
        factory: Any = _FastTransport
        if self.host_key_checking:
            # We read known_hosts ourselves (paramiko's reader stops at @revoked and
            # @cert-authority lines) and decide in the policy; nothing is written back.
            try:
                known = _KnownHosts.load(self.known_hosts)
            except OSError as exc:
                raise Unreachable(
                    self.label, f"cannot read known_hosts file {self.known_hosts}: {exc.strerror or exc}"
                ) from exc
            policy = _KnownHostsPolicy(known, self._host_key_name())
            client.set_missing_host_key_policy(policy)
            factory = policy.transport_factory
        else:
            # Explicit opt-out: accept whatever the server offers (unless revoked), with a warning.
            try:
                revoked = _KnownHosts.load(self.known_hosts).lookup(self._host_key_name())[1]
            except OSError:
                revoked = []
            client.set_missing_host_key_policy(_AcceptWithWarning(revoked))
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            # Without it each small command write waits for Nagle: ~44 ms -> ~2 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Only try default keys and the agent when nothing was configured,
            # so a site's explicit credentials are what decides.
            explicit = bool(self.key_file or self._password)
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                password=self._password,
                key_filename=self.key_file,
                sock=sock,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
                allow_agent=not explicit,
                look_for_keys=not explicit,
                transport_factory=factory,
            )
        except (OSError, EOFError, paramiko.SSHException) as exc:
            client.close()
            if sock is not None:
                sock.close()
            raise Unreachable(self.label, self._explain(exc)) from exc
        t = client.get_transport()
        assert t is not None
        t.set_keepalive(KEEPALIVE_SECONDS)
        log.debug("%s: connected", self.label)
        return client

    def _host_key_name(self) -> str:
        """How known_hosts names this host (and how paramiko asks about it)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _explain(self, exc: BaseException) -> str:
        """One clear sentence for a failed connect (never includes the password)."""
        where = f"{self.host}:{self.port}"
        name = self._host_key_name()
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused by {where} (is sshd running and listening on that port?)"
        if isinstance(exc, TimeoutError):
            return f"connection to {where} timed out after {self.connect_timeout:g}s"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve host name '{self.host}': {exc.strerror}"
        if isinstance(exc, _RevokedHostKey):
            return (
                f"host key for {name} ({_describe(exc.key)}) is marked @revoked in {self.known_hosts} "
                f"(line {exc.line}): refusing to connect. The server still offers a key that was "
                "withdrawn, or someone is impersonating it; have the host's key replaced and verified."
            )
        if isinstance(exc, _UnknownHostKey):
            missing = "" if os.path.exists(self.known_hosts) else " (that file does not exist)"
            certs = ""
            if exc.ca_lines:
                lines = ", ".join(map(str, exc.ca_lines))
                certs = (
                    f" A @cert-authority line matches this host ({self.known_hosts} line {lines}), but "
                    "maintainer does not support host certificates: add the host's own key."
                )
            return (
                f"host key for {name} is not in known_hosts file {self.known_hosts}{missing} "
                f"(strict host-key checking; the server offered {_describe(exc.key)}). "
                f"Verify that key, then add it: ssh-keyscan -p {self.port} {self.host} >> {self.known_hosts}"
                f"{certs}"
            )
        if isinstance(exc, paramiko.BadHostKeyException):
            return (
                f"HOST KEY MISMATCH for {name}: the server offered {_describe(exc.key)} but "
                f"known_hosts file {self.known_hosts} expects {_describe(exc.expected_key)}. "
                "Someone may be intercepting the connection (man-in-the-middle attack), or the "
                "host key was changed. Do not continue before you have verified the new key; "
                f"then replace the old entry: ssh-keygen -R '{name}' -f {self.known_hosts}"
            )
        if isinstance(exc, paramiko.AuthenticationException) or (
            isinstance(exc, paramiko.SSHException) and "No authentication methods" in str(exc)
        ):
            tried = (
                f"key file {self.key_file}"
                if self.key_file
                else "a password"
                if self._password
                else "the SSH agent and default keys"
            )
            if self.key_file and self._password:
                tried += " and a password"
            return f"authentication failed for user '{self.user}' (tried {tried})"
        if isinstance(exc, OSError):
            return f"cannot connect to {where}: {exc.strerror or exc}"
        if "protocol banner" in str(exc) or "No existing session" in str(exc):
            # the server accepted TCP but never finished the SSH handshake
            return (
                f"no SSH handshake with {where} within {self.connect_timeout:g}s "
                "(is an SSH server listening on that port?)"
            )
        return f"SSH handshake with {where} failed: {exc}"

    # -- commands ---------------------------------------------------------

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
        # A command that may be cancelled needs a process group of its own, which
        # GNU timeout gives it; without a timeout, "timeout 0" does only that.
        line = shell_line(
            command, cwd=cwd, env=env, wrapper=_timeout_argv(timeout, own_group=cancel is not None)
        )
        # stdin data cannot be fed through the shared shell: stream it over its own session.
        if self.mode == "exec" or stdin is not None or self._shell_unusable:
            return self._run_exec(line, timeout, stdin, cancel)
        started = time.monotonic()
        for _attempt in range(2):
            shell = self._take_shell()
            if shell is None:  # no shell could be opened: fall back to exec for this call
                return self._run_exec(line, timeout, stdin, cancel)
            try:
                return self._run_in_shell(shell, line, timeout, started, cancel)
            except _ShellLost as exc:
                if exc.sent:
                    raise TransportError(
                        f"{self.label}: the remote shell session ended while running a command "
                        f"({exc}); it may or may not have completed."
                    ) from exc
                # The shell was already dead before we sent anything: safe to retry once.
            finally:
                self._give_back(shell)
        raise TransportError(f"{self.label}: could not send the command to a remote shell")

    def _run_in_shell(
        self,
        shell: _Shell,
        line: str,
        timeout: float | None,
        started: float,
        cancel: threading.Event | None = None,
    ) -> CommandResult:
        token = _token()
        script = (
            f"{_guarded(line, timeout is not None or cancel is not None, with_stdin=False)}; "
            f"printf '%s:%d\\n' {token} \"$__mt_rc\"; printf '%s\\n' {token} >&2\n"
        )
        shell.drain()
        try:
            shell.channel.sendall(script.encode())
        except OSError as exc:
            shell.broken = True
            raise _ShellLost(f"cannot send: {exc}", sent=False) from exc
        deadline = _deadline(started, timeout)
        stop = None if cancel is None else _Canceller(self, cancel, shell.pid)
        try:
            rc, out, err = _read_frame(shell.channel, token.encode(), deadline, stop)
        except _ShellLost:
            shell.broken = True
            if stop is not None and stop.finish():
                return _result(-1, b"", b"", started, timed_out=False, cancelled=True)
            raise
        except _NoAnswer as exc:
            # The remote timeout (or our kill) should have answered long ago: give the session up.
            shell.broken = True
            cancelled = stop is not None and stop.finish()
            if cancelled:
                log.warning("%s: a cancelled command did not end; closing its shell session", self.label)
            return _result(-1, exc.out, exc.err, started, timed_out=not cancelled, cancelled=cancelled)
        if stop is not None and stop.finish():
            return _result(rc, out, err, started, timed_out=False, cancelled=True)
        return _result(rc, out, err, started, timed_out=_timed_out(rc, timeout, started))

    def _run_exec(
        self, line: str, timeout: float | None, stdin: bytes | None, cancel: threading.Event | None = None
    ) -> CommandResult:
        started = time.monotonic()
        grouped = timeout is not None or cancel is not None
        script = f'{_guarded(line, grouped, with_stdin=stdin is not None)}; exit "$__mt_rc"'
        stop = None
        if cancel is not None:
            # the session's bash first reports its PID on stderr: its children are the command
            stop = _Canceller(self, cancel, None, _token())
            script = f"printf '%s:%d\\n' {stop.token} \"$$\" >&2; {script}"
        chan, generation = self._open_exec_channel()
        try:
            chan.exec_command(f"bash --noprofile --norc -c {shlex.quote(script)}")
            feeder = None
            if stdin:
                # A separate thread, so a command that writes a lot before it reads
                # all of its input cannot deadlock against us.
                feeder = threading.Thread(target=_feed, args=(chan, stdin), daemon=True)
                feeder.start()
            else:
                chan.shutdown_write()
            deadline = _deadline(started, timeout)
            try:
                rc, out, err = _read_until_exit(chan, deadline, stop)
            except _NoAnswer as exc:
                cancelled = stop is not None and stop.finish()
                if cancelled:
                    log.warning("%s: a cancelled command did not end; closing its session", self.label)
                return _result(-1, exc.out, exc.err, started, timed_out=not cancelled, cancelled=cancelled)
            if stop is not None and stop.finish():
                return _result(rc, out, err, started, timed_out=False, cancelled=True)
            if rc == -1 and not chan.get_transport().is_active():
                raise TransportError(
                    f"{self.label}: the connection was lost while running a command; "
                    "it may or may not have completed."
                )
            if feeder is not None:
                feeder.join(1.0)
            return _result(rc, out, err, started, timed_out=_timed_out(rc, timeout, started))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise TransportError(f"{self.label}: SSH session failed: {exc}") from exc
        finally:
            if stop is not None:
                stop.finish()
            chan.close()
            self._release_exec_slot(generation)

    # -- streams ----------------------------------------------------------

    def _open_stream(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None,
        env: Mapping[str, str] | None,
        timeout: float | None,
        feed: bool,
    ) -> CommandStream:
        token = _token()
        line = shell_line(command, cwd=cwd, env=env, wrapper=_timeout_argv(timeout), subshell=False)
        # With job control on (set -m) the background job leads a process group of its
        # own; its first act is to report the session bash's pid ($$) on stderr, before
        # the command can write there, so an abort kills that bash's command group the
        # way a cancelled command is killed (_kill_commands_of).
        script = (
            f"set -m; ( printf '%s:%d\\n' {token} \"$$\" >&2; {line} ) "
            f"{'<&0' if feed else '</dev/null'} & wait $! 2>/dev/null; exit $?"
        )
        chan, generation = self._open_exec_channel()
        try:
            chan.settimeout(STREAM_POLL_SECONDS)
            chan.exec_command(f"bash --noprofile --norc -c {shlex.quote(script)}")
            if not feed:
                chan.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            chan.close()
            self._release_exec_slot(generation)
            raise TransportError(f"{self.label}: cannot start a streaming command: {exc}") from exc
        return _SSHStream(self, chan, generation, token, feed, timeout)

    # -- the session pool -------------------------------------------------

    def _take_shell(self) -> _Shell | None:
        """A free shell, a new one if the pool may grow, else wait; None if none can open."""
        while True:
            with self._lock:
                while True:
                    transport = self._ensure_connected()
                    while self._idle:
                        shell = self._idle.pop()
                        if shell.alive():
                            return shell
                        self._drop_shell(shell)
                    if self._shells < self.max_shells and self._channels < MAX_CHANNELS:
                        self._shells += 1
                        self._channels += 1
                        self.peak_shells = max(self.peak_shells, self._shells)
                        generation = self._generation
                        break
                    self._slot_freed.wait()
            # Open outside the lock: other threads keep using their shells meanwhile.
            try:
                return self._open_shell(transport, generation)
            except Exception as exc:
                with self._lock:
                    if generation == self._generation:
                        self._shells -= 1
                        self._channels -= 1
                        self._slot_freed.notify()
                    if isinstance(exc, paramiko.ChannelException) and self._shells > 0:
                        # sshd allows fewer sessions than we thought (MaxSessions):
                        # keep the pool at its current size and wait for a free shell.
                        log.info(
                            "%s: sshd refused another session; pool capped at %d shells",
                            self.label,
                            self._shells,
                        )
                        self.max_shells = self._shells
                        continue
                    if not isinstance(
                        exc, OSError | EOFError | paramiko.SSHException | _ShellLost | _NoAnswer
                    ):
                        raise  # a bug, not the remote side: counters are restored above
                    if isinstance(exc, _ShellLost | _NoAnswer) and transport.is_active():
                        self._shell_unusable = True  # the session opened but bash never answered
                log.warning(
                    "%s: cannot open a remote shell session (%s); using one SSH session per command",
                    self.label,
                    exc,
                )
                return None

    def _open_shell(self, transport: paramiko.Transport, generation: int) -> _Shell:
        chan = self._open_session(transport)
        with self._lock:
            self.sessions_opened += 1
            self.shells_opened += 1
        try:
            chan.exec_command(self.shell_command)
            # Handshake: whatever the login prints (motd, rc-file noise) comes before
            # this token and is thrown away; it also proves that bash answers, and
            # tells its PID (in place of an exit code), which a cancel needs.
            token = _token()
            chan.sendall(f"printf '%s:%d\\n' {token} \"$$\"; printf '%s\\n' {token} >&2\n".encode())
            pid, _, _ = _read_frame(chan, token.encode(), time.monotonic() + self.connect_timeout)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            chan.close()
            if transport.is_active():
                # The session opened, so the connection is fine: the shell itself is
                # unusable here (it exited before the handshake, "Socket is closed").
                raise _ShellLost(f"the shell exited before answering ({exc})") from exc
            raise
        except BaseException:
            chan.close()
            raise
        return _Shell(chan, generation, pid)

    def _give_back(self, shell: _Shell) -> None:
        with self._lock:
            if shell.generation != self._generation:
                shell.close()  # from a closed connection; already uncounted
            elif shell.alive():
                self._idle.append(shell)
            else:
                self._drop_shell(shell)
            self._slot_freed.notify()

    def _drop_shell(self, shell: _Shell) -> None:
        """Close a dead shell of the current generation; hold ``_lock``."""
        shell.close()
        self._shells -= 1
        self._channels -= 1

    def _open_exec_channel(self) -> tuple[paramiko.Channel, int]:
        with self._lock:
            while True:
                transport = self._ensure_connected()
                if self._channels < MAX_CHANNELS:
                    break
                if self._idle:  # trade an idle shell for this session
                    self._drop_shell(self._idle.pop())
                    continue
                self._slot_freed.wait()
            self._channels += 1
            self.sessions_opened += 1
            self.execs_opened += 1
            generation = self._generation
        try:
            return self._open_session(transport), generation
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._release_exec_slot(generation)
            raise TransportError(f"{self.label}: cannot open an SSH session: {exc}") from exc

    def _open_session(self, transport: paramiko.Transport) -> paramiko.Channel:
        """open_session, retried briefly while sshd still counts sessions we just closed."""
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.01
        while True:
            try:
                return transport.open_session(timeout=self.connect_timeout)
            except paramiko.SSHException:
                # ChannelException normally; paramiko hands a concurrent failure's
                # exception to only one thread, the others get a bare SSHException.
                if time.monotonic() + delay > deadline or not transport.is_active():
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _release_exec_slot(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._channels -= 1
            self._slot_freed.notify()

    # -- cancel -----------------------------------------------------------

    def _kill_commands_of(self, host_pid: int) -> None:
        """Kill what the remote bash ``host_pid`` runs: TERM its command's process group, KILL after grace.

        Kills go over one extra session beside the pool (which leaves room for
        it under sshd's MaxSessions), never through the pool, whose shells may
        all be busy with the very commands to kill. Requests that come while a
        kill runs are batched into the next one, so stopping eight commands
        costs one session and one grace period, not eight.
        """
        with self._kill_cond:
            self._kill_pending.add(host_pid)
            while host_pid in self._kill_pending or host_pid in self._killing:
                if self._killing:  # another thread's batch runs; ours comes next
                    self._kill_cond.wait()
                    continue
                batch = self._killing = set(self._kill_pending)
                self._kill_pending.clear()
                self._kill_cond.release()
                try:
                    self._run_kill_script(sorted(batch))
                finally:
                    self._kill_cond.acquire()
                    self._killing = set()
                    self._kill_cond.notify_all()

    def _run_kill_script(self, pids: list[int]) -> None:
        with self._lock:
            client = self._client
        transport = client.get_transport() if client is not None else None
        if transport is None or not transport.is_active():
            log.warning("%s: cannot stop the cancelled command: the connection is gone", self.label)
            return
        try:
            chan = self._open_session(transport)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            log.warning("%s: cannot open a session to stop the cancelled command: %s", self.label, exc)
            return
        with self._lock:
            self.sessions_opened += 1
            self.kill_sessions += 1
        try:
            args = " ".join(str(pid) for pid in pids)
            chan.exec_command(f"bash --noprofile --norc -c {shlex.quote(_KILL_SCRIPT)} mt-kill {args}")
            chan.shutdown_write()
            deadline = time.monotonic() + KILL_GRACE_SECONDS + ANSWER_SLACK_SECONDS
            rc, _, err = _read_until_exit(chan, deadline)
            if rc != 0:
                log.warning("%s: stopping a cancelled command failed (rc %d): %r", self.label, rc, err[-500:])
        except (OSError, EOFError, paramiko.SSHException, _NoAnswer) as exc:
            log.warning("%s: stopping the cancelled command failed: %s", self.label, exc)
        finally:
            chan.close()

    # -- files ------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        """The connection's SFTP session, opened on first use; hold ``_sftp_lock``."""
        with self._lock:
            transport = self._ensure_connected()
            generation = self._generation
        sftp = self._sftp
        if sftp is not None and self._sftp_generation == generation and not sftp.get_channel().closed:
            return sftp
        if sftp is not None:
            sftp.close()
        try:
            chan = self._open_session(transport)
            chan.invoke_subsystem("sftp")
            sftp = paramiko.SFTPClient(chan)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise TransportError(f"{self.label}: cannot open an SFTP session: {exc}") from exc
        with self._lock:
            self.sessions_opened += 1
        self._sftp, self._sftp_generation = sftp, generation
        return sftp

    def read_file(self, path: str) -> bytes | None:
        with self._sftp_lock:
            sftp = self._sftp_client()
            try:
                with sftp.open(path, "rb") as fh:
                    fh.prefetch()
                    return bytes(fh.read())
            except FileNotFoundError:
                return None
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise TransportError(f"{self.label}: cannot read {path}: {exc}") from exc

    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        directory, name = posixpath.split(path)
        tmp = posixpath.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        with self._sftp_lock:
            sftp = self._sftp_client()
            try:
                if mode is None:
                    try:
                        mode = stat.S_IMODE(sftp.stat(path).st_mode or 0o644)
                    except FileNotFoundError:
                        mode = 0o644
                # "x": never follow or clobber something already at the temp name
                with sftp.open(tmp, "wbx") as fh:
                    fh.chmod(mode)  # before any data: a secret is never readable by others
                    fh.set_pipelined(True)
                    fh.write(data)
                    fh.flush()
                    _fsync(sftp, fh)
                sftp.posix_rename(tmp, path)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    sftp.remove(tmp)  # don't leave the temp file behind
                raise TransportError(f"{self.label}: cannot write {path}: {exc}") from exc


# -- helpers --------------------------------------------------------------


class _QuietParamiko(logging.Filter):
    """paramiko's ERROR lines (and the tracebacks it logs line by line) go to our log at DEBUG.

    Every failure they describe (a handshake that timed out, a refused session
    open, a lost connection) also reaches us as an exception, which we retry or
    report as one clear sentence; without this, logging's last-resort handler
    would print paramiko's traceback on stderr in the middle of our output.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


for _name in (PARAMIKO_LOG, f"{PARAMIKO_LOG}.sftp"):  # transport and channels; SFTP
    logging.getLogger(_name).addFilter(_QuietParamiko())


STREAM_POLL_SECONDS = 1.0


class _SSHStream(CommandStream):
    """One exec session whose stdout (or stdin) is the stream; see ``SSHTransport._open_stream``."""

    def __init__(
        self,
        transport: SSHTransport,
        chan: paramiko.Channel,
        generation: int,
        token: str,
        feed: bool,
        timeout: float | None,
    ) -> None:
        super().__init__(feed)
        self._transport = transport
        self._chan = chan
        self._generation = generation
        self._timeout = timeout
        self._started = time.monotonic()
        self._deadline = _deadline(self._started, timeout)
        self._host_pid: int | None = None  # the session bash; the command leads a group under it
        self._eof = False
        self._err = Tail()
        self._out = Tail()
        self._threads = [_pump(lambda n: self._stderr_with_pid(token, n), self._err)]
        if feed:
            self._threads.append(_pump(chan.recv, self._out))

    def _read_into(self, view: memoryview) -> int:
        if self._eof:
            return 0
        while True:
            try:
                data = self._chan.recv(len(view))
            except TimeoutError:
                self._check_deadline()
                continue
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise TransportError(f"{self._transport.label}: stream broken: {exc}") from exc
            if not data:
                self._eof = True
                return 0
            view[: len(data)] = data
            return len(data)

    def _write(self, view: memoryview) -> int:
        sent = 0
        while sent < len(view):
            if self._chan.exit_status_ready() or self._chan.closed:
                raise BrokenPipeError("the remote command is no longer reading")
            try:
                sent += self._chan.send(view[sent:])
            except TimeoutError:
                self._check_deadline()
            except OSError as exc:
                raise BrokenPipeError(str(exc)) from exc
        return sent

    def _check_deadline(self) -> None:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise TransportError(
                f"{self._transport.label}: no data from the streaming command well past its "
                f"{self._timeout:g}s timeout; giving the session up"
            )

    def _stderr_with_pid(self, token: str, size: int) -> bytes:
        """recv_stderr that first takes off the ``token:pid`` line the script prints."""
        if self._host_pid is not None:
            return bytes(self._chan.recv_stderr(size))
        head = b""
        while b"\n" not in head:
            chunk = self._chan.recv_stderr(size)
            if not chunk:
                return head
            head += chunk
        first, _, rest = head.partition(b"\n")
        prefix = token.encode() + b":"
        if first.startswith(prefix):
            self._host_pid = int(first[len(prefix) :])
            return rest or self._stderr_with_pid(token, size)
        self._host_pid = 0  # not our line (cannot happen with bash): nothing to kill
        return head

    def finish(self) -> CommandResult:
        if self.result is not None:
            return self.result
        note = ""
        try:
            if self._feed:
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    self._chan.shutdown_write()
            elif not self._eof and not self._drain_rest():
                note = "[the reader stopped before the end of the output]\n"
                self._kill_remote()
            while not self._chan.status_event.wait(STREAM_POLL_SECONDS):
                self._check_deadline()
            rc = self._chan.recv_exit_status()
            for thread in self._threads:
                thread.join(STREAM_POLL_SECONDS)
            if rc == -1:
                raise TransportError(
                    f"{self._transport.label}: the connection was lost while a streaming command ran; "
                    "it may or may not have completed"
                )
        finally:
            self._chan.close()
            self._transport._release_exec_slot(self._generation)
        self.result = CommandResult(
            rc=rc,
            stdout=self._out.text(),
            stderr=note + self._err.text(),
            duration=time.monotonic() - self._started,
            timed_out=_timed_out(rc, self._timeout, self._started),
        )
        super().close()
        return self.result

    def kill(self) -> None:
        if self.result is not None:
            return
        try:
            self._kill_remote()
        finally:
            self._chan.close()
            self._transport._release_exec_slot(self._generation)
            self.result = CommandResult(-1, self._out.text(), self._err.text(), 0.0)
            super().close()

    def _kill_remote(self) -> None:
        """TERM the command's process group, KILL it after the grace period; best effort."""
        # the stderr pump reads the pid line the script prints first; stdout can be read before it
        # is (a busy machine): wait for it, or the command would be left running
        waited = time.monotonic() + 2.0
        while self._host_pid is None and not self._chan.exit_status_ready() and time.monotonic() < waited:
            time.sleep(0.01)
        if self._host_pid and not self._chan.exit_status_ready():
            self._transport._kill_commands_of(self._host_pid)


def _pump(recv: Any, into: Tail) -> threading.Thread:
    """A thread that keeps reading ``recv`` into ``into`` until EOF (so flow control never stalls)."""

    def pump() -> None:
        while True:
            try:
                chunk = recv(65536)
            except TimeoutError:
                continue
            except (OSError, EOFError, paramiko.SSHException):
                return
            if not chunk:
                return
            into.add(bytes(chunk))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def _token() -> str:
    return "mt" + secrets.token_hex(16)


#: Run as ``bash -c _KILL_SCRIPT mt-kill PID...``: for each remote bash PID, TERM the process
#: group of each of its children that leads a group of its own (the running command under GNU
#: timeout); a child still in the bash's group has just been forked and gets a moment to make
#: its group. Then the grace period for every live (not zombie) member of those groups, then
#: KILL. /proc only: no procps needed.
_KILL_SCRIPT = r"""
declare -A own sig
for s; do read -r l < "/proc/$s/stat" 2>/dev/null && f=(${l##*) }) && own[$s]=${f[2]}; done
scan() {
  pending= live=
  for p in /proc/[0-9]*/stat; do
    read -r l < "$p" 2>/dev/null || continue
    f=(${l##*) })
    [ -n "${sig[${f[2]}]}" ] && [ "${f[0]}" != Z ] && live=1
    [ "$1" = term ] && [ -n "${own[${f[1]}]}" ] || continue
    if [ "${f[2]}" = "${own[${f[1]}]}" ]; then pending=1
    elif [ -z "${sig[${f[2]}]}" ]; then sig[${f[2]}]=1; live=1; kill -TERM -- "-${f[2]}" 2>/dev/null
    fi
  done
}
for _ in 1 2 3 4 5 6 7 8 9 10; do scan term; [ -z "$pending" ] && break; sleep 0.05; done
for _ in $(seq TICKS); do [ -z "$live" ] && exit 0; sleep 0.1; scan; done
for g in "${!sig[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
exit 0
""".replace("TICKS", str(max(1, round(KILL_GRACE_SECONDS * 10)))).strip()


def _timeout_argv(timeout: float | None, *, own_group: bool = False) -> list[str]:
    """GNU timeout in front of the command: it leads its own process group and signals all of it.

    ``own_group`` without a timeout gives ``timeout 0``: just the process group
    (that a cancel kills), no time limit.
    """
    if timeout is None:
        return ["timeout", "0"] if own_group else []
    seconds = f"{max(timeout, 0.001):.3f}"  # 0 would mean "no timeout" to GNU timeout
    return ["timeout", "-k", f"{KILL_GRACE_SECONDS:g}", seconds]


def _guarded(line: str, grouped: bool, *, with_stdin: bool) -> str:
    """Bash that runs ``line`` and leaves its exit code in ``$__mt_rc``.

    ``grouped``: ``line`` execs GNU ``timeout`` (see ``_timeout_argv``),
    which makes itself a process-group leader and sends TERM to the whole
    group, so background children get it too (and KILL after the grace period
    if the command is still running). It runs in the background so we learn
    its PID, which is the group id: once it has answered 124/137, whatever is
    left of the group gets the rest of the grace period to exit after the
    TERM, then KILL, so neither TERM handlers nor children that ignore TERM
    are left behind.
    """
    redirect = "<&0" if with_stdin else "</dev/null"
    if not grouped:
        return f"{line} {redirect}; __mt_rc=$?"
    ticks = max(1, round(KILL_GRACE_SECONDS * 10))  # grace, in steps of 0.1 s
    return (
        f"{line} {redirect} & "
        '__mt_pid=$!; wait "$__mt_pid" 2>/dev/null; __mt_rc=$?; '  # 2>/dev/null: no "Killed" notice
        f"case $__mt_rc in {'|'.join(map(str, TIMEOUT_CODES))}) __mt_n=0; "
        # live members only: zombies (not yet reaped by init) need no grace; without
        # pgrep (or its -r) the loop ends at once and the KILL comes right away
        f'while [ $__mt_n -lt {ticks} ] && pgrep -g "$__mt_pid" -r R,S,D,T,t,W,I >/dev/null 2>&1; '
        "do sleep 0.1; __mt_n=$((__mt_n + 1)); done; "
        'kill -KILL -- "-$__mt_pid" 2>/dev/null;; esac'
    )


def _deadline(started: float, timeout: float | None) -> float | None:
    """When we stop waiting for an answer: well after the remote timeout's KILL."""
    return None if timeout is None else started + timeout + KILL_GRACE_SECONDS + ANSWER_SLACK_SECONDS


def _timed_out(rc: int, timeout: float | None, started: float) -> bool:
    # GNU timeout answers 124/137; the command itself could too, but not after
    # the deadline had passed on our side (the remote clock starts later).
    return timeout is not None and rc in TIMEOUT_CODES and time.monotonic() - started >= timeout


def _result(
    rc: int, out: bytes, err: bytes, started: float, *, timed_out: bool, cancelled: bool = False
) -> CommandResult:
    return CommandResult(
        rc=rc,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        duration=time.monotonic() - started,
        timed_out=timed_out,
        cancelled=cancelled,
    )


def _wait_readable(chan: paramiko.Channel, deadline: float | None, most: float = 1.0) -> None:
    """Sleep until the channel has data or news, at most ``most`` seconds at a time."""
    wait = most if deadline is None else max(0.0, min(most, deadline - time.monotonic()))
    try:
        select.select([chan.fileno()], [], [], wait)
    except (OSError, ValueError):  # closed under us by close(): the caller re-checks
        time.sleep(min(wait, 0.05))


def _read_frame(
    chan: paramiko.Channel, token: bytes, deadline: float | None, stop: _Canceller | None = None
) -> tuple[int, bytes, bytes]:
    """Read one command's answer from a shell: ``out TOKEN:rc\\n`` and ``err TOKEN\\n``."""
    out = bytearray()
    err = bytearray()
    rc: int | None = None
    err_done = False
    out_marker = token + b":"
    out_scan = err_scan = 0
    poll = 1.0 if stop is None else CANCEL_POLL_SECONDS
    while rc is None or not err_done:
        if stop is not None:
            deadline = stop.check(deadline)
            if stop.triggered and time.monotonic() >= stop.deadline:
                raise _NoAnswer(bytes(out), bytes(err))
        got = False
        if rc is None and chan.recv_ready():
            out += chan.recv(65536)
            got = True
            value, out_scan = _cut_marker_line(out, out_marker, out_scan)
            if value is not None:
                rc = int(value)
        if not err_done and chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
            got = True
            value, err_scan = _cut_marker_line(err, token, err_scan)
            err_done = value is not None
        if got:
            continue
        if chan.closed or chan.eof_received or chan.exit_status_ready():
            raise _ShellLost("the shell exited or its channel closed")
        if deadline is not None and time.monotonic() >= deadline:
            raise _NoAnswer(bytes(out), bytes(err))
        _wait_readable(chan, deadline, poll)
    return rc, bytes(out), bytes(err)


def _cut_marker_line(buf: bytearray, marker: bytes, scan: int) -> tuple[bytes | None, int]:
    """Find ``marker VALUE\\n`` in ``buf`` from ``scan``; once complete, cut it (and what follows)
    off ``buf`` and return VALUE. Else None and where the next search may start."""
    idx = buf.find(marker, scan)
    if idx < 0:
        return None, max(0, len(buf) - len(marker))
    end = buf.find(b"\n", idx + len(marker))
    if end < 0:
        return None, idx
    value = bytes(buf[idx + len(marker) : end])
    del buf[idx:]
    return value, idx


def _read_until_exit(
    chan: paramiko.Channel, deadline: float | None, stop: _Canceller | None = None
) -> tuple[int, bytes, bytes]:
    """Read an exec session's output to EOF, then its exit status."""
    out = bytearray()
    err = bytearray()
    poll = 1.0 if stop is None else CANCEL_POLL_SECONDS
    while True:
        if stop is not None:
            deadline = stop.check(deadline)
            if stop.triggered and time.monotonic() >= stop.deadline:
                raise _NoAnswer(bytes(out), bytes(err))
        got = False
        if chan.recv_ready():
            out += chan.recv(65536)
            got = True
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
            got = True
            if stop is not None and stop.host_pid is None:
                stop.take_pid(err)
        if got:
            continue
        if chan.eof_received or chan.closed:
            break
        if deadline is not None and time.monotonic() >= deadline:
            raise _NoAnswer(bytes(out), bytes(err))
        _wait_readable(chan, deadline, poll)
    if stop is not None and stop.host_pid is None:
        stop.take_pid(err)
    # The exit status comes right after EOF; without one (killed by a signal) it is -1.
    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
    if not chan.status_event.wait(wait):
        raise _NoAnswer(bytes(out), bytes(err))
    return chan.recv_exit_status(), bytes(out), bytes(err)


def _feed(chan: paramiko.Channel, data: bytes) -> None:
    try:
        chan.sendall(data)
        chan.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        log.debug("feeding stdin failed (the command may have exited early)", exc_info=True)


def _fsync(sftp: paramiko.SFTPClient, fh: paramiko.SFTPFile) -> None:
    """fsync@openssh.com, if the server has it (paramiko has no public API for it)."""
    try:
        sftp._request(CMD_EXTENDED, "fsync@openssh.com", fh.handle)
    except (OSError, paramiko.SSHException):
        log.debug("SFTP server without fsync@openssh.com; relying on rename only")


def _describe(key: paramiko.PKey) -> str:
    return f"{key.get_name()} key {key.fingerprint}"


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "off", "0", "n", "")
    return bool(value)
