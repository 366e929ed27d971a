"""A site's database, as backups see it: dump, restore, per-table checksums.

Everything runs on the site's host through its ``Transport`` (local or SSH),
with the client tools installed there (``mariadb-dump``/``mysqldump`` and
``mariadb``/``mysql``; ``pg_dump``, ``pg_restore`` and ``psql``).

The password never appears on a command line (where ``ps`` shows it to every
user of the host) nor in a message: ``db_client`` makes a private temp dir
on the host (``mktemp -d``, mode 0700), writes the credentials there with
mode 0600 (MySQL/MariaDB: an option file passed as the first option,
``--defaults-extra-file``; PostgreSQL: a ``.pgpass`` file named by
``PGPASSFILE``), and removes the dir when the block ends, however it ends::

    with db_client(transport, settings) as client:
        with transport.stream_out(client.dump_command()) as dump:
            ...  # read the dump
        client.check(dump.result, "dump")

A failing client command raises ``StepFailed`` (``StepTimeout``,
``StepCancelled``) with one paragraph naming the database and quoting the
client's stderr tail, the password masked should a server ever echo it.

A run killed with SIGKILL cannot remove its temp dir: ``db_client`` removes
the current user's own ``maintainer-db.*`` dirs older than ``STALE_WORKDIR_MINUTES``
when it makes a new one.

``table_stats`` reads every table's row count and checksum in one consistent
snapshot (``START TRANSACTION WITH CONSISTENT SNAPSHOT``; InnoDB's CHECKSUM TABLE
reads that snapshot too). mysqldump's own snapshot cannot be shared, so a
backup calls it before and after the dump: ``unstable_tables`` names the
tables whose figures changed meanwhile (the site wrote to them during the backup).

A restore pipes the dump through ``client.restore_filter`` (MySQL/MariaDB:
``DefinerFilter``), which drops the ``DEFINER=`` clauses of views, triggers,
routines and events, so the importing user, who may not have SET USER/SUPER,
becomes their definer. PostgreSQL: ``pg_restore --no-owner`` makes the importing user the
owner; in place it drops each object of the dump before making it again, all in one
transaction (``--clean --if-exists --single-transaction``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import posixpath
import re
import shlex
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import StepCancelled, StepFailed, StepTimeout
from ..redact import Redactor
from ..transport import CommandResult, Transport

log = logging.getLogger(__name__)

Engine = Literal["mysql", "mariadb", "postgresql"]

#: how much of a client's stderr a message quotes
STDERR_TAIL_CHARS = 600
#: removing the credentials dir must not hang a run's cleanup
CLEANUP_TIMEOUT = 60.0
#: a credentials dir this old (minutes since its last change) was left by a killed run
STALE_WORKDIR_MINUTES = 6 * 60
#: the name ``mktemp`` gives a credentials dir; only these are ever cleaned up
WORKDIR_PATTERN = "maintainer-db.??????????"

#: client programs by role, in order of preference, per engine family (the first found is used).
#: MariaDB 11 prints a deprecation warning for the mysql* names; Oracle MySQL hosts only have those.
_TOOLS: dict[str, dict[str, tuple[str, ...]]] = {
    "mariadb": {"dump": ("mariadb-dump", "mysqldump"), "client": ("mariadb", "mysql")},
    "mysql": {"dump": ("mysqldump", "mariadb-dump"), "client": ("mysql", "mariadb")},
    "postgresql": {"dump": ("pg_dump",), "restore": ("pg_restore",), "client": ("psql",)},
}

#: options that would put the password on the command line or replace our option file
_MYSQL_FORBIDDEN = re.compile(r"^(-p|--pass|--password|--defaults-file|--defaults-extra-file|--no-defaults)")
_PG_FORBIDDEN = re.compile(r"^(-W|--password)$")
#: the lines of a plain pg_dump that carry a random key (a new one each run)
_PG_RESTRICT = re.compile(r"^\\(un)?restrict\b")


class DatabaseSettings(BaseModel):
    """The inventory var ``db`` of a site."""

    # a validation error must not quote the password it was given
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    engine: Engine
    name: str = Field(min_length=1)
    user: str = Field(min_length=1)
    #: vault values arrive decrypted; kept out of repr() and so out of tracebacks and logs
    password: str | None = Field(default=None, repr=False)
    #: MySQL/MariaDB: "localhost" means the socket, as for the site's own code
    host: str = Field(default="localhost", min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    #: MySQL/MariaDB: the socket file; PostgreSQL: its directory (or the .s.PGSQL.<port> file)
    socket: str | None = None
    #: extra options for mysqldump / pg_dump, after ours (so ``--skip-events`` overrides ``--events``)
    dump_options: list[str] = Field(default_factory=list)

    @field_validator("name", "user", "password", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: object) -> object:
        # YAML reads `password: 123456` as a number
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("name", "user", "password", "host", "socket")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        if value is not None and ("\0" in value or "\n" in value or "\r" in value):
            raise ValueError("must not contain NUL or line breaks")
        return value

    @model_validator(mode="after")
    def _safe_dump_options(self) -> DatabaseSettings:
        forbidden = _PG_FORBIDDEN if self.engine == "postgresql" else _MYSQL_FORBIDDEN
        for option in self.dump_options:
            # pg_dump options may take their value as the next item; mysqldump's are written
            # --option=value, and a stray word would become the database or a table name
            if not self.is_postgres and not option.startswith("-"):
                raise ValueError(f"dump_options holds options ('--option=value'), not {option!r}")
            if forbidden.match(option):
                raise ValueError(
                    f"dump_options must not contain {option.split('=', 1)[0]!r}: "
                    "the password goes in db.password (maintainer passes it in a private file)"
                )
        return self

    @property
    def is_postgres(self) -> bool:
        return self.engine == "postgresql"

    def where(self) -> str:
        """host:port or the socket, for messages."""
        if self.socket and (self.is_postgres or self.host == "localhost"):
            return self.socket
        return f"{self.host}:{self.port}" if self.port else self.host


class TableStat(TypedDict):
    rows: int
    checksum: str


def unstable_tables(before: Mapping[str, TableStat], after: Mapping[str, TableStat]) -> list[str]:
    """The tables whose figures differ between two ``table_stats`` calls (or that one of them
    lacks), sorted: written to while a dump taken between the calls ran, so the figures need not
    be the dump's. A table the same in both was (but for a change undone in between) dumped as recorded.
    """
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))


class DatabaseClient(ABC):
    """Commands and queries for one database; made by ``db_client``, valid inside its block."""

    #: an in-place restore (``restore_command`` of the site's own database) that fails keeps
    #: nothing of what it did: the database is as it was before
    atomic_restore = False

    def __init__(
        self,
        transport: Transport,
        settings: DatabaseSettings,
        workdir: str,
        tools: Mapping[str, str],
        *,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> None:
        self.transport = transport
        self.settings = settings
        #: the private temp dir on the host holding the credentials
        self.workdir = workdir
        self._tools = dict(tools)
        self._cancel = cancel
        self._timeout = timeout
        self._redactor = Redactor([settings.password] if settings.password else [])

    # -- what backups use --------------------------------------------------

    @abstractmethod
    def dump_command(self) -> str:
        """A bash command that writes the whole database to stdout (run it with ``stream_out``)."""

    @abstractmethod
    def restore_command(self, target_db: str) -> str:
        """A bash command that loads a dump from stdin into ``target_db`` (run it with ``stream_in``)."""

    @abstractmethod
    def create_database(self, name: str) -> None:
        """Create an empty database (a restore drill's scratch copy); fails if it exists."""

    @abstractmethod
    def drop_database(self, name: str) -> None:
        """Drop a database if it exists; never the site's own (``settings.name``)."""

    @abstractmethod
    def database_exists(self, name: str) -> bool:
        """Whether a database of this name exists (and is visible to the user)."""

    @abstractmethod
    def table_stats(self, database: str | None = None) -> dict[str, TableStat]:
        """Exact row count and checksum of each base table (not views) of ``database``
        (default: the site's), to compare a restore with its source.

        A table's row count and checksum always describe the same rows, and every table of the
        call is read in one consistent snapshot (MySQL/MariaDB: for InnoDB tables; PostgreSQL: a
        REPEATABLE READ transaction). Compare the stats taken before and after a dump with
        ``unstable_tables``.
        """

    def schema_digest(self) -> str | None:
        """SHA-256 of the database's schema (tables with their options, views, routines, triggers,
        events), or None where it cannot be had: then every backup dumps the database again."""
        return None

    def restore_filter(
        self, write: Callable[[memoryview], object], *, source: str | None = None, target: str | None = None
    ) -> DefinerFilter | None:
        """A writer to put between the dump and ``write`` (the restore command's stdin), or None.

        ``source`` and ``target``: the dumped database and the one it goes into (when they
        differ, MySQL's dump must not alter the source: see ``DefinerFilter``).

        MySQL/MariaDB: a ``DefinerFilter`` (call its ``close()`` after the last write);
        PostgreSQL: None (``pg_restore --no-owner`` already makes the importing user the owner).
        """
        return None

    @abstractmethod
    def server_version(self) -> str:
        """The server's version string, e.g. ``10.11.6-MariaDB-0+deb12u1``."""

    @abstractmethod
    def _credentials(self) -> tuple[str, bytes]:
        """(file name in ``workdir``, content) of the credentials file."""

    def check(self, result: CommandResult | None, action: str) -> None:
        """Raise StepFailed (StepTimeout, StepCancelled) unless ``result`` is a success.

        For the caller's ``stream_out``/``stream_in`` results, e.g. ``check(dump.result, "dump")``.
        """
        what = self.describe()
        if result is None:
            raise StepFailed(f"{what}: {action} did not finish.")
        tail = self._tail(result.stderr or result.stdout)
        outputs: dict[str, object] = {"rc": result.rc, "stderr": tail}
        if result.cancelled:
            raise StepCancelled(f"{what}: {action} was stopped: the run was interrupted.", outputs=outputs)
        if result.timed_out:
            raise StepTimeout(
                f"{what}: {action} timed out after {result.duration:.0f}s and was killed"
                + (f": {tail}" if tail else "."),
                outputs=outputs,
            )
        if result.rc != 0:
            message = f"{what}: {action} failed with exit code {result.rc}: {tail or 'no error message'}"
            hint = _hint(result)
            if hint:
                message = message.rstrip(".") + f". {hint}"
            raise StepFailed(message, outputs=outputs)

    def describe(self) -> str:
        """How messages name the database: engine, name, where, and the host it is reached from."""
        s = self.settings
        return f"{s.engine} database '{s.name}' ({s.where()}) on {self.transport.label}"

    # -- helpers -----------------------------------------------------------

    @property
    def credentials_file(self) -> str:
        return posixpath.join(self.workdir, self._credentials()[0])

    def _tool(self, role: str) -> str:
        tool = self._tools.get(role)
        if tool is None:
            names = " or ".join(_TOOLS[self._family][role])
            raise StepFailed(
                f"{self.settings.engine} database '{self.settings.name}': {names} is not installed on "
                f"{self.transport.label} (not found in PATH). Install the database client tools there "
                "(e.g. the mariadb-client, mysql-client or postgresql-client package)."
            )
        return tool

    @property
    def _family(self) -> str:
        return "postgresql" if self.settings.is_postgres else self.settings.engine

    def _run(self, argv: Sequence[str] | str, action: str) -> str:
        result = self.transport.run(argv, timeout=self._timeout, cancel=self._cancel)
        self.check(result, action)
        return result.stdout

    def _tail(self, text: str) -> str:
        """The last lines of a client's output as one line, the password masked."""
        flat = " ".join(self._redactor.text(_without_echoed_sql(text)).split())
        if len(flat) > STDERR_TAIL_CHARS:
            flat = "..." + flat[-STDERR_TAIL_CHARS:]
        return flat

    def _refuse_site_db(self, name: str) -> None:
        if name == self.settings.name:
            raise StepFailed(
                f"refusing to drop database '{name}': it is the site's own database (db.name); "
                "only scratch copies are dropped."
            )


#: the mariadb client (10.11+) repeats a failed statement between these lines: a dump's
#: INSERT can be a megabyte, so it is left out of messages (the error line follows it)
_ECHOED_SQL = re.compile(r"^-{14}\n.*?\n-{14}\n", re.DOTALL | re.MULTILINE)
_ECHO_END = "\n--------------\n"


def _without_echoed_sql(text: str) -> str:
    text = _ECHOED_SQL.sub("", text)
    if _ECHO_END in text:  # the start of the statement was cut off by the output's tail limit
        text = text[text.rindex(_ECHO_END) + len(_ECHO_END) :]
    return text


def _hint(result: CommandResult) -> str:
    text = result.stderr
    if result.rc == 127 or "command not found" in text:
        return "Install the database client tools on the host."
    if "(using password:" in text or "password authentication failed" in text:
        return "Check db.user and db.password in the inventory."
    if "Access denied" in text or "command denied" in text or "permission denied" in text:
        return "The database user lacks a privilege this needs: grant it, or see db.dump_options."
    if "Can't connect" in text or "Connection refused" in text or "could not connect" in text:
        return "Check db.host, db.port and db.socket in the inventory, and that the server is running."
    return ""


# -- MySQL / MariaDB ---------------------------------------------------------


def mysql_ident(name: str) -> str:
    """A quoted MySQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def mysql_literal(value: str) -> str:
    """A MySQL string literal that means the same under any sql_mode (NO_BACKSLASH_ESCAPES too)."""
    return f"CONVERT(X'{value.encode().hex()}' USING utf8mb4)" if value else "''"


def option_value(value: str) -> str:
    """A value for a MySQL option file: quoted, so '#', ';', quotes and spaces survive."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )
    return f'"{escaped}"'


_BATCH_ESCAPE = re.compile(r"\\([0tn\\])")
_BATCH_CHARS = {"0": "\0", "t": "\t", "n": "\n", "\\": "\\"}


def unescape_batch(field: str) -> str:
    """Undo the escaping of ``mysql --batch`` output (tab, newline, backslash, NUL)."""
    return _BATCH_ESCAPE.sub(lambda m: _BATCH_CHARS[m.group(1)], field)


# -- DEFINER clauses in a dump ----------------------------------------------------

#: a definer clause is at the start of its line: only this much of a line is looked at (and held
#: back between chunks), however long the line (a dump's INSERT lines can be megabytes)
DEFINER_HEAD = 8192
#: lines that can hold a definer start so (mysqldump writes them so); row data never does
_DEFINER_LINES = (b"/*!", b"/*M!", b"CREATE ")
_ACCOUNT_PART = rb"(?:`(?:[^`\n]|``)*`|'(?:[^'\\\n]|\\.|'')*'|\"(?:[^\"\\\n]|\\.|\"\")*\"|[\w$.%:-]+)"
_DEFINER = re.compile(
    # what comes before the clause: a version comment, or CREATE [OR REPLACE] [ALGORITHM=...]
    rb"(/\*M?!\d{5,6}[ \t]+|\bCREATE[ \t]+(?:OR[ \t]+REPLACE[ \t]+)?(?:ALGORITHM[ \t]*=[ \t]*\w+[ \t]+)?)"
    rb"DEFINER[ \t]*=[ \t]*(?:CURRENT_USER(?:[ \t]*\([ \t]*\))?|"
    + _ACCOUNT_PART
    + rb"(?:[ \t]*@[ \t]*"
    + _ACCOUNT_PART
    + rb")?)"
    # what comes after it: the end of a comment that held only the clause, or the rest of the statement
    rb"([ \t]*\*/[ \t]?|[ \t]+)"
)


_ALTER_DATABASE_HEAD = b"ALTER DATABASE "
#: the head of mysqldump's ``ALTER DATABASE `db` CHARACTER SET ...`` around routines, up to the name
_ALTER_DATABASE = re.compile(rb"^ALTER DATABASE[ \t]+(?:`(?:[^`\n]|``)*`|[\w$]+)[ \t]+")


def _drop_definer(match: re.Match[bytes]) -> bytes:
    before, after = match.group(1), match.group(2)
    if b"*/" not in after:
        return before  # '/*!50013 SQL SECURITY DEFINER */', 'CREATE FUNCTION ...'
    if before.startswith(b"/*"):
        return b""  # '/*!50017 DEFINER=`u`@`h`*/ ' was nothing but the clause
    return before.rstrip() + after.lstrip()


class DefinerFilter:
    """Removes the ``DEFINER=`` clauses from mysqldump output on its way to the mysql client.

    Views, triggers, routines and events then belong to the importing user: creating
    them for another account needs SET USER (or SUPER), which a site's user lacks, and
    the import would stop half-way with ERROR 1227. The forms mysqldump and mariadb-dump
    write are handled: ``/*!50013 DEFINER=`u`@`h` SQL SECURITY DEFINER */`` (views),
    ``/*!50017 DEFINER=`u`@`h`*/`` (triggers; 50117: events, 50020: old routines) and
    ``CREATE DEFINER=`u`@`h` FUNCTION|PROCEDURE|...``.

    Line-based and streaming: only the first ``DEFINER_HEAD`` bytes of a line that starts
    like a definer line are looked at and, at a chunk's end, held back; the rest passes
    through as it came (row data is never changed). ``write`` takes any bytes-like object
    (the caller may reuse it afterwards); ``close`` passes on what is held back.
    """

    def __init__(
        self, write: Callable[[memoryview], object], *, rename: tuple[str, str] | None = None
    ) -> None:
        self._out = write
        self._carry = b""  # the start of a line that may hold a clause, shorter than DEFINER_HEAD
        self._in_line = False  # inside a line whose start was dealt with
        #: how many clauses were removed so far
        self.removed = 0
        #: ``(source, target)``: a dump of ``source`` restored into another database. Around
        #: routines mysqldump writes ``ALTER DATABASE `source` CHARACTER SET ...`` (and back):
        #: left alone it would change the live database, so those lines name the target instead
        self._rename: bytes | None = None
        self._keywords: tuple[bytes, ...] = (b"DEFINER",)
        self._starts: tuple[bytes, ...] = _DEFINER_LINES
        if rename is not None and rename[0] != rename[1]:
            self._rename = _ALTER_DATABASE_HEAD + mysql_ident(rename[1]).encode() + b" "
            self._keywords += (_ALTER_DATABASE_HEAD,)
            self._starts += (_ALTER_DATABASE_HEAD,)
        #: how many ALTER DATABASE lines were pointed at the target
        self.renamed = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        chunk = bytes(data)  # no copy for bytes; the caller may reuse a buffer or view
        if chunk:
            self._feed(self._carry + chunk if self._carry else chunk)
        return len(chunk)

    def close(self) -> None:
        """Pass on the last line if it was held back (a dump that does not end with a newline)."""
        if self._carry:
            carry, self._carry = self._carry, b""
            self._emit(memoryview(self._fix(carry)))

    def _feed(self, buf: bytes) -> None:
        self._carry = b""
        view = memoryview(buf)
        start = 0
        if self._in_line:  # the rest of a line whose start was already passed on
            newline = buf.find(b"\n")
            if newline < 0:
                self._emit(view)
                return
            start = newline + 1
            self._in_line = False
        last = buf.rfind(b"\n", start)
        end = last + 1 if last >= 0 else start  # buf[start:end] holds whole lines
        changes = self._scan(buf, start, end)
        if end < len(buf):  # a line that goes on in the next chunk
            if len(buf) - end < DEFINER_HEAD and self._may_hold_definer(buf[end : end + 16]):
                self._carry = buf[end:]  # too little of its start to tell
            else:
                if buf.startswith(self._starts, end):
                    rest = buf[end:]
                    fixed = self._fix(rest)
                    if fixed is not rest:
                        changes.append((end, len(buf), fixed))
                self._in_line = True
                end = len(buf)
        at = 0  # write the unchanged stretches between the lines that changed
        for begin, stop, replacement in changes:
            self._emit(view[at:begin])
            self._emit(memoryview(replacement))
            at = stop
        self._emit(view[at:end])

    def _scan(self, buf: bytes, start: int, end: int) -> list[tuple[int, int, bytes]]:
        """(start, end, new text) of each line in buf[start:end] that lost a clause (or was renamed)."""
        found: dict[int, tuple[int, bytes]] = {}
        for keyword in self._keywords:
            hit = buf.find(keyword, start, end)
            while hit >= 0:
                newline = buf.rfind(b"\n", start, hit)
                line_start = start if newline < 0 else newline + 1
                line_end = buf.find(b"\n", hit, end)
                line_end = end if line_end < 0 else line_end
                if (
                    line_start not in found
                    and hit - line_start < DEFINER_HEAD
                    and buf.startswith(self._starts, line_start)
                ):
                    line = buf[line_start:line_end]
                    fixed = self._fix(line)
                    if fixed is not line:
                        found[line_start] = (line_end, fixed)
                hit = buf.find(keyword, line_end, end)
        return [(begin, stop, fixed) for begin, (stop, fixed) in sorted(found.items())]

    def _may_hold_definer(self, start: bytes) -> bool:
        """Whether a line beginning with ``start`` (maybe not all of its beginning yet) can hold one."""
        return any(start.startswith(p) or p.startswith(start) for p in self._starts)

    def _fix(self, line: bytes) -> bytes:
        """The line without its definer clauses (the same object if it had none)."""
        if self._rename is not None and line.startswith(_ALTER_DATABASE_HEAD):
            target = self._rename
            fixed, count = _ALTER_DATABASE.subn(lambda _m: target, line[:DEFINER_HEAD], count=1)
            if not count:
                return line
            self.renamed += 1
            return fixed + line[DEFINER_HEAD:]
        if b"DEFINER" not in line[:DEFINER_HEAD] or not line.startswith(_DEFINER_LINES):
            return line
        head, rest = line[:DEFINER_HEAD], line[DEFINER_HEAD:]
        fixed, count = _DEFINER.subn(_drop_definer, head)
        if not count:
            return line
        self.removed += count
        return fixed + rest

    def _emit(self, data: memoryview) -> None:
        if len(data):
            self._out(data)


def strip_definers(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``DefinerFilter`` as a generator: the chunks of a dump without its DEFINER clauses."""
    out: list[bytes] = []
    stripper = DefinerFilter(lambda piece: out.append(bytes(piece)))
    for chunk in chunks:
        stripper.write(chunk)
        if out:
            yield b"".join(out)
            out.clear()
    stripper.close()
    if out:
        yield b"".join(out)


class MySQLClient(DatabaseClient):
    """mysqldump and the mysql client (MariaDB's, where installed, for engine mariadb)."""

    #: besides the default --opt (extended inserts, add-drop-table, ...): a consistent InnoDB
    #: snapshot without locks (it turns --lock-tables off), rows streamed not buffered, every
    #: schema object, binary data as hex (survives any charset), no tablespace statements
    #: (MySQL 8 would need the PROCESS privilege for them)
    DUMP_OPTIONS = (
        "--single-transaction",
        "--quick",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        "--no-tablespaces",
    )

    def _credentials(self) -> tuple[str, bytes]:
        s = self.settings
        lines = ["[client]", f"user={option_value(s.user)}"]
        if s.password is not None:
            lines.append(f"password={option_value(s.password)}")
        lines.append(f"host={option_value(s.host)}")
        if s.port is not None:
            lines.append(f"port={s.port}")
        if s.socket:
            lines.append(f"socket={option_value(s.socket)}")
        return "client.cnf", ("\n".join(lines) + "\n").encode()

    def _argv(self, role: str, *options: str) -> list[str]:
        # --defaults-extra-file is only honoured as the very first option
        return [self._tool(role), f"--defaults-extra-file={self.credentials_file}", *options]

    def dump_command(self) -> str:
        return shlex.join(
            self._argv("dump", *self.DUMP_OPTIONS, *self.settings.dump_options, "--", self.settings.name)
        )

    def restore_command(self, target_db: str) -> str:
        # stops at the first error with a non-zero exit code (no --force)
        return shlex.join(self._argv("client", "--default-character-set=utf8mb4", "--batch", "--", target_db))

    def restore_filter(
        self, write: Callable[[memoryview], object], *, source: str | None = None, target: str | None = None
    ) -> DefinerFilter:
        rename = (source, target) if source is not None and target is not None else None
        return DefinerFilter(write, rename=rename)

    def schema_digest(self) -> str:
        # --no-data keeps AUTO_INCREMENT counters in the table options: a row added and deleted
        # again changes the digest even though the table's checksum is back where it was
        argv = self._argv(
            "dump", *self.DUMP_OPTIONS, "--no-data", "--skip-comments", "--skip-dump-date",
            *self.settings.dump_options, "--", self.settings.name,
        )  # fmt: skip
        return hashlib.sha256(self._run(argv, "schema dump").encode()).hexdigest()

    def query(self, sql: str, action: str, database: str | None = None) -> list[list[str]]:
        """Run SQL; its rows, fields unescaped (``NULL`` stays the string 'NULL')."""
        argv = self._argv(
            "client", "--default-character-set=utf8mb4", "--batch", "--skip-column-names", "--execute", sql
        )
        if database is not None:
            argv += ["--", database]
        out = self._run(argv, action)
        return [[unescape_batch(field) for field in line.split("\t")] for line in out.splitlines()]

    def server_version(self) -> str:
        rows = self.query("SELECT VERSION()", "server version query")
        return rows[0][0] if rows else ""

    def create_database(self, name: str) -> None:
        # the same default character set and collation as the site's database, so the
        # restored views and routines (which carry the database collation) come out alike
        create = f"CREATE DATABASE {mysql_ident(name)}"
        sql = (
            f"SET @q = NULL;"
            f" SELECT CONCAT({mysql_literal(create)}, ' CHARACTER SET ', DEFAULT_CHARACTER_SET_NAME,"
            f" ' COLLATE ', DEFAULT_COLLATION_NAME) FROM information_schema.SCHEMATA"
            f" WHERE SCHEMA_NAME = {mysql_literal(self.settings.name)} INTO @q;"
            f" PREPARE s FROM COALESCE(@q, {mysql_literal(create + ' CHARACTER SET utf8mb4')});"
            " EXECUTE s; DEALLOCATE PREPARE s;"
        )
        self.query(sql, f"create database '{name}'")

    def drop_database(self, name: str) -> None:
        self._refuse_site_db(name)
        self.query(f"DROP DATABASE IF EXISTS {mysql_ident(name)}", f"drop database '{name}'")

    def database_exists(self, name: str) -> bool:
        # SCHEMATA compares case- and accent-insensitively: the exact match is made here;
        # with lower_case_table_names the server itself folds names, so a case-insensitive one counts
        rows = self.query(
            "SELECT HEX(SCHEMA_NAME), @@lower_case_table_names FROM information_schema.SCHEMATA"
            f" WHERE SCHEMA_NAME = {mysql_literal(name)}",
            f"looking up database '{name}'",
        )
        for row in rows:
            found = bytes.fromhex(row[0]).decode("utf-8", "replace")
            if found == name or (row[1] not in ("0", "NULL") and found.lower() == name.lower()):
                return True
        return False

    #: errors of a table that was dropped (1146) or rebuilt (1412) while the stats were read
    _RETRY_ERRORS = ("ERROR 1146 ", "ERROR 1412 ")

    def table_stats(self, database: str | None = None) -> dict[str, TableStat]:
        try:
            return self._table_stats(database)
        except StepFailed as exc:
            if isinstance(exc, StepTimeout | StepCancelled) or not any(
                code in str(exc.outputs.get("stderr", "")) for code in self._RETRY_ERRORS
            ):
                raise
            log.info("%s: %s; reading the table stats again", self.describe(), exc)
            return self._table_stats(database)  # a table list from after the DDL

    def _table_stats(self, database: str | None) -> dict[str, TableStat]:
        db = self.settings.name if database is None else database
        schema = mysql_literal(db)
        qualified = (
            f"CONCAT({mysql_literal(mysql_ident(db) + '.')}, '`', REPLACE(TABLE_NAME, '`', '``'), '`')"
        )
        # one client call, one session: both statements are built from information_schema and
        # run as prepared statements (no tables costs nothing: 'DO 0'), inside one transaction
        # WITH CONSISTENT SNAPSHOT: counts and CHECKSUM TABLE (which reads through the snapshot
        # on InnoDB) see the same rows however busy the site is. The list comes first: a table
        # made after the snapshot started could not be read in it.
        sql = (
            "SET SESSION group_concat_max_len = 1073741824; SET @counts = NULL, @sums = NULL;"
            " SELECT GROUP_CONCAT(CONCAT('SELECT ''R'', ', QUOTE(HEX(TABLE_NAME)), ', COUNT(*) FROM ',"
            f" {qualified}) ORDER BY TABLE_NAME SEPARATOR ' UNION ALL '),"
            f" CONCAT('CHECKSUM TABLE ', GROUP_CONCAT({qualified} ORDER BY TABLE_NAME SEPARATOR ', '))"
            f" FROM information_schema.TABLES WHERE TABLE_SCHEMA = {schema}"
            " AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') INTO @counts, @sums;"
            " SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ;"
            " START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY;"
            " PREPARE s FROM COALESCE(@counts, 'DO 0'); EXECUTE s; DEALLOCATE PREPARE s;"
            " PREPARE s FROM COALESCE(@sums, 'DO 0'); EXECUTE s; DEALLOCATE PREPARE s;"
            " COMMIT;"
        )
        action = f"table checksums of '{db}'"
        rows = self.query(sql, action, database=db)  # connecting to it: a missing db is an error
        counts: dict[str, int] = {}
        sums: dict[str, str] = {}
        prefix = db + "."
        for row in rows:
            if len(row) == 3 and row[0] == "R":
                counts[bytes.fromhex(row[1]).decode("utf-8", "replace")] = int(row[2])
            elif len(row) == 2 and row[0].startswith(prefix):
                sums[row[0][len(prefix) :]] = row[1]
            else:
                raise StepFailed(f"{self.describe()}: {action}: unexpected output line {row!r}")
        stats: dict[str, TableStat] = {}
        for table, count in counts.items():
            checksum = sums.get(table)
            if checksum is None or checksum == "NULL":
                raise StepFailed(
                    f"{self.describe()}: {action}: CHECKSUM TABLE gave no value for table '{table}' "
                    "(dropped while it was read?)"
                )
            stats[table] = {"rows": count, "checksum": checksum}
        return stats


# -- PostgreSQL --------------------------------------------------------------


def pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pg_literal(value: str) -> str:
    """A standard-conforming SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def conninfo_value(value: str) -> str:
    """A libpq connection-string value: single-quoted, backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


class PostgresClient(DatabaseClient):
    """pg_dump (custom format), pg_restore and psql."""

    #: the maintenance database that create/drop connect to (the target may not exist yet)
    MAINTENANCE_DB = "postgres"
    #: pg_restore --single-transaction, in place
    atomic_restore = True

    def _credentials(self) -> tuple[str, bytes]:
        # any host, port and database for this user: the socket, the site's DB and scratch copies
        password = self.settings.password or ""
        return "pgpass", f"*:*:*:{pgpass_field(self.settings.user)}:{pgpass_field(password)}\n".encode()

    def conninfo(self, database: str) -> str:
        """A libpq connection string: every value quoted, so odd names are never parsed as options."""
        s = self.settings
        host, port = s.host, s.port
        if s.socket:
            directory, filename = posixpath.split(s.socket)
            if filename.startswith(".s.PGSQL."):  # the socket file itself: its dir, and its port
                host = directory
                if port is None and filename[len(".s.PGSQL.") :].isdigit():
                    port = int(filename[len(".s.PGSQL.") :])
            else:
                host = s.socket
        parts = [f"host={conninfo_value(host)}"]
        if port is not None:
            parts.append(f"port={port}")
        parts += [f"user={conninfo_value(s.user)}", f"dbname={conninfo_value(database)}"]
        return " ".join(parts)

    def _command(self, role: str, *options: str) -> str:
        # PGPASSFILE is a path, not a secret; --no-password: never wait for a prompt
        argv = [self._tool(role), "--no-password", *options]
        return f"PGPASSFILE={shlex.quote(self.credentials_file)} {shlex.join(argv)}"

    def dump_command(self) -> str:
        # custom format (pg_restore can pick from it); uncompressed: the backup store compresses
        return self._command(
            "dump",
            "--format=custom",
            "--compress=0",
            f"--dbname={self.conninfo(self.settings.name)}",
            *self.settings.dump_options,
        )

    def restore_command(self, target_db: str) -> str:
        options = ["--no-owner", "--exit-on-error"]
        if target_db == self.settings.name:
            # in place, over the objects the dump creates again: each is dropped first (a table
            # dropped since the backup is simply made again), and all of it in one transaction,
            # so a restore that fails (an object of today's schema depends on one of the dump's)
            # leaves the live database as it was
            options += ["--clean", "--if-exists", "--single-transaction"]
        return self._command("restore", *options, f"--dbname={self.conninfo(target_db)}")

    def schema_digest(self) -> str | None:
        # what a dump holds beyond the tables' rows (which ``table_stats`` covers): the schema,
        # the sequences' positions (their setval is data: a row added and deleted again moves
        # one and leaves the table's figures as they were) and large objects (not covered: a
        # database with any is dumped every time)
        blobs = self.query("SELECT count(*) FROM pg_largeobject_metadata", "counting large objects")
        if not blobs or blobs[0][0] != "0":
            return None
        schema = self._run(
            self._command(
                "dump",
                "--schema-only",
                f"--dbname={self.conninfo(self.settings.name)}",
                *self.settings.dump_options,
                # after the site's options, which may name others; UTF8: the transport reads text
                # as UTF-8, and other bytes would all read as U+FFFD, hiding a change
                "--format=plain",
                "--compress=0",
                "--encoding=UTF8",
            ),
            "schema dump",
        )
        # pg_dump since the August 2025 releases (13.22, 14.19, 15.14, 16.10, 17.6) writes a new
        # random key on the \restrict and \unrestrict lines of every plain dump: left out
        kept = "".join(line for line in schema.splitlines(keepends=True) if not _PG_RESTRICT.match(line))
        sequences = self._run(
            self.query_command(
                "SELECT encode(convert_to(format('%I.%I', schemaname, sequencename), 'UTF8'), 'hex'),"
                " coalesce(last_value::text, '-') FROM pg_sequences ORDER BY 1",
                self.settings.name,
            ),
            "sequence positions",
        )
        return hashlib.sha256(f"{kept}\0{sequences}".encode()).hexdigest()

    def query_command(self, sql: str, database: str) -> str:
        return self._command(
            "client",
            "--no-psqlrc",
            "--quiet",
            "--tuples-only",
            "--no-align",
            "--field-separator=\t",
            "--set=ON_ERROR_STOP=1",
            f"--dbname={self.conninfo(database)}",
            f"--command={sql}",
        )

    def query(self, sql: str, action: str, database: str | None = None) -> list[list[str]]:
        out = self._run(self.query_command(sql, database or self.settings.name), action)
        return [line.split("\t") for line in out.splitlines() if line]

    def server_version(self) -> str:
        rows = self.query("SHOW server_version", "server version query")
        return rows[0][0] if rows else ""

    def create_database(self, name: str) -> None:
        # template0: nothing the site's template1 holds collides with what the dump creates;
        # the encoding and locale of the site's database, not the server's defaults (SQL_ASCII
        # on a cluster made under LANG=C), so its text fits and sorts alike
        found = self.query(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database"
            f" WHERE datname = {pg_literal(self.settings.name)}",
            f"reading the encoding of database '{self.settings.name}'",
            database=self.MAINTENANCE_DB,
        )
        create = f"CREATE DATABASE {pg_ident(name)} TEMPLATE template0"
        if found and len(found[0]) == 3:
            encoding, collate, ctype = found[0]
            create += f" ENCODING {pg_literal(encoding)} LC_COLLATE {pg_literal(collate)}"
            create += f" LC_CTYPE {pg_literal(ctype)}"
        self.query(create, f"create database '{name}'", database=self.MAINTENANCE_DB)

    def drop_database(self, name: str) -> None:
        self._refuse_site_db(name)
        self.query(
            f"DROP DATABASE IF EXISTS {pg_ident(name)}", f"drop database '{name}'", self.MAINTENANCE_DB
        )

    def database_exists(self, name: str) -> bool:
        rows = self.query(
            f"SELECT 1 FROM pg_database WHERE datname = {pg_literal(name)}",
            f"looking up database '{name}'",
            database=self.MAINTENANCE_DB,
        )
        return bool(rows)

    #: count and an order-independent digest of each base table, in one statement:
    #: query_to_xml runs the per-table query that format() builds; the digest is the md5 of
    #: the sorted md5s of the rows' text forms (32 bytes a row, not the whole table, in memory).
    #: ROW(r.*), not r: a column named r would stand for the row. Sorted bytewise (COLLATE "C").
    STATS_SQL = (
        "SELECT encode(convert_to(t.table_schema, 'UTF8'), 'hex'),"
        " encode(convert_to(t.table_name, 'UTF8'), 'hex'),"
        " (xpath('/row/c/text()', x))[1]::text, (xpath('/row/h/text()', x))[1]::text"
        " FROM information_schema.tables AS t,"
        " LATERAL query_to_xml(format('SELECT count(*) AS c,"
        " md5(coalesce(string_agg(d, '''' ORDER BY d COLLATE \"C\"), '''')) AS h"
        " FROM (SELECT md5(ROW(r.*)::text) AS d FROM %I.%I AS r) AS s', t.table_schema, t.table_name),"
        " false, true, '') AS x"
        " WHERE t.table_type = 'BASE TABLE' AND t.table_schema NOT IN ('pg_catalog', 'information_schema')"
        " ORDER BY 1, 2"
    )

    def table_stats(self, database: str | None = None) -> dict[str, TableStat]:
        db = self.settings.name if database is None else database
        action = f"table checksums of '{db}'"
        stats: dict[str, TableStat] = {}
        # one implicit transaction (one command string), REPEATABLE READ: every table's
        # figures come from one snapshot, however busy the site is
        sql = f"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; {self.STATS_SQL}"
        for row in self.query(sql, action, database=db):
            if len(row) != 4:
                raise StepFailed(f"{self.describe()}: {action}: unexpected output line {row!r}")
            schema, table = (bytes.fromhex(field).decode("utf-8", "replace") for field in row[:2])
            key = table if schema == "public" else f"{schema}.{table}"
            stats[key] = {"rows": int(row[2]), "checksum": row[3]}
        return stats


# -- the context manager -------------------------------------------------------


def _setup_command(tools: Sequence[str]) -> str:
    """Remove this user's stale credential dirs (find names them on stderr), make the private
    dir (printed first), then list the client tools found in PATH.

    Only directories (not symlinks) that the current user owns, named as mktemp names ours,
    directly in the temp dir mktemp uses, and unchanged for ``STALE_WORKDIR_MINUTES``: a run
    killed with SIGKILL left them, with a password inside. The cleanup never fails the setup.
    """
    names = " ".join(shlex.quote(tool) for tool in tools)
    stale = (
        f'find "$t" -mindepth 1 -maxdepth 1 -type d -name {shlex.quote(WORKDIR_PATTERN)} -user "$(id -u)"'
        f" -mmin +{STALE_WORKDIR_MINUTES} -print -exec rm -rf -- {{}} +"
    )
    return (
        f'umask 077 && t="${{TMPDIR:-/tmp}}" && {{ {stale} >&2 2>/dev/null || true; }}'
        ' && d=$(mktemp -d "$t/maintainer-db.XXXXXXXXXX") && printf \'%s\\n\' "$d"'
        f" && {{ command -v {names} || true; }}"
    )


@contextlib.contextmanager
def db_client(
    transport: Transport,
    settings: DatabaseSettings,
    cancel: threading.Event | None = None,
    *,
    timeout: float | None = None,
) -> Iterator[DatabaseClient]:
    """A client for the site's database, its credentials in a private temp dir on the host.

    ``cancel`` stops the client's own queries (``timeout`` bounds each); the temp dir
    is removed when the block ends, whatever happens in it.
    """
    family = _TOOLS["postgresql" if settings.is_postgres else settings.engine]
    wanted = [tool for tools in family.values() for tool in tools]
    result = transport.run(_setup_command(wanted), timeout=60, cancel=cancel)
    lines = result.stdout.splitlines()
    workdir = lines[0].strip() if lines else ""
    if not result.ok or not workdir.startswith("/"):
        if workdir.startswith("/"):
            _remove(transport, workdir)
        if result.cancelled:
            raise StepCancelled(
                f"{settings.engine} database '{settings.name}': stopped: the run was interrupted."
            )
        raise StepFailed(
            f"{settings.engine} database '{settings.name}': could not make a private temp dir on "
            f"{transport.label} (mktemp -d, exit code {result.rc}): "
            f"{' '.join(result.stderr.split())[-STDERR_TAIL_CHARS:] or 'no error message'}",
            outputs={"rc": result.rc, "stderr": result.stderr[-STDERR_TAIL_CHARS:]},
        )
    # find prints each stale dir it removes (on stderr): "$t/maintainer-db.XXXXXXXXXX"
    stale = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("/") and posixpath.basename(line).startswith("maintainer-db.")
    ]
    if stale:
        log.warning(
            "%s: removed %d credentials dir(s) left by killed runs: %s",
            transport.label,
            len(stale),
            ", ".join(stale),
        )
    found = {posixpath.basename(line.strip()) for line in lines[1:] if line.strip()}
    chosen = {
        role: next(tool for tool in tools if tool in found)
        for role, tools in family.items()
        if any(tool in found for tool in tools)
    }
    cls: type[DatabaseClient] = PostgresClient if settings.is_postgres else MySQLClient
    client = cls(transport, settings, workdir, chosen, cancel=cancel, timeout=timeout)
    failed = True
    try:
        filename, content = client._credentials()
        transport.write_file(posixpath.join(workdir, filename), content, mode=0o600)
        yield client
        failed = False
    finally:
        removed = _remove(transport, workdir)
        if not removed and not failed:
            raise StepFailed(
                f"could not remove {workdir} on {transport.label}, which holds the credentials of "
                f"database '{settings.name}': delete it by hand."
            )


def _remove(transport: Transport, workdir: str) -> bool:
    try:
        result = transport.run(["rm", "-rf", "--", workdir], timeout=CLEANUP_TIMEOUT)
    except Exception:  # the connection may be gone: the caller's own error matters more
        log.warning("%s: could not remove %s", transport.label, workdir, exc_info=True)
        return False
    if not result.ok:
        log.warning("%s: could not remove %s: %s", transport.label, workdir, result.stderr.strip())
    return result.ok
