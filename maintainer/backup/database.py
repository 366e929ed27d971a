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
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re
import shlex
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
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


class DatabaseClient(ABC):
    """Commands and queries for one database; made by ``db_client``, valid inside its block."""

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
    def table_stats(self, database: str | None = None) -> dict[str, TableStat]:
        """Exact row count and checksum of each base table (not views) of ``database``
        (default: the site's), to compare a restore with its source."""

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

    def table_stats(self, database: str | None = None) -> dict[str, TableStat]:
        db = self.settings.name if database is None else database
        schema = mysql_literal(db)
        qualified = (
            f"CONCAT({mysql_literal(mysql_ident(db) + '.')}, '`', REPLACE(TABLE_NAME, '`', '``'), '`')"
        )
        # one client call: both statements are built from information_schema and run as
        # prepared statements, so a database with no tables costs nothing ('DO 0')
        sql = (
            "SET SESSION group_concat_max_len = 1073741824; SET @counts = NULL, @sums = NULL;"
            " SELECT GROUP_CONCAT(CONCAT('SELECT ''R'', ', QUOTE(HEX(TABLE_NAME)), ', COUNT(*) FROM ',"
            f" {qualified}) ORDER BY TABLE_NAME SEPARATOR ' UNION ALL '),"
            f" CONCAT('CHECKSUM TABLE ', GROUP_CONCAT({qualified} ORDER BY TABLE_NAME SEPARATOR ', '))"
            f" FROM information_schema.TABLES WHERE TABLE_SCHEMA = {schema}"
            " AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') INTO @counts, @sums;"
            " PREPARE s FROM COALESCE(@counts, 'DO 0'); EXECUTE s; DEALLOCATE PREPARE s;"
            " PREPARE s FROM COALESCE(@sums, 'DO 0'); EXECUTE s; DEALLOCATE PREPARE s;"
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
        return self._command(
            "restore", "--no-owner", "--exit-on-error", f"--dbname={self.conninfo(target_db)}"
        )

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
        # template0: nothing the site's template1 holds collides with what the dump creates
        self.query(
            f"CREATE DATABASE {pg_ident(name)} TEMPLATE template0",
            f"create database '{name}'",
            database=self.MAINTENANCE_DB,
        )

    def drop_database(self, name: str) -> None:
        self._refuse_site_db(name)
        self.query(
            f"DROP DATABASE IF EXISTS {pg_ident(name)}", f"drop database '{name}'", self.MAINTENANCE_DB
        )

    #: count and an order-independent digest of each base table, in one statement:
    #: query_to_xml runs the per-table query that format() builds; the digest is the md5 of
    #: the sorted md5s of the rows' text forms (32 bytes a row, not the whole table, in memory)
    STATS_SQL = (
        "SELECT encode(convert_to(t.table_schema, 'UTF8'), 'hex'),"
        " encode(convert_to(t.table_name, 'UTF8'), 'hex'),"
        " (xpath('/row/c/text()', x))[1]::text, (xpath('/row/h/text()', x))[1]::text"
        " FROM information_schema.tables AS t,"
        " LATERAL query_to_xml(format('SELECT count(*) AS c,"
        " md5(coalesce(string_agg(md5(r::text),  ORDER BY md5(r::text)), )) AS h"
        " FROM %I.%I AS r', t.table_schema, t.table_name), false, true, '') AS x"
        " WHERE t.table_type = 'BASE TABLE' AND t.table_schema NOT IN ('pg_catalog', 'information_schema')"
        " ORDER BY 1, 2"
    )

    def table_stats(self, database: str | None = None) -> dict[str, TableStat]:
        db = self.settings.name if database is None else database
        action = f"table checksums of '{db}'"
        stats: dict[str, TableStat] = {}
        for row in self.query(self.STATS_SQL, action, database=db):
            if len(row) != 4:
                raise StepFailed(f"{self.describe()}: {action}: unexpected output line {row!r}")
            schema, table = (bytes.fromhex(field).decode("utf-8", "replace") for field in row[:2])
            key = table if schema == "public" else f"{schema}.{table}"
            stats[key] = {"rows": int(row[2]), "checksum": row[3]}
        return stats


# -- the context manager -------------------------------------------------------


def _setup_command(tools: Sequence[str]) -> str:
    """Make the private dir (printed first), then list the client tools found in PATH."""
    names = " ".join(shlex.quote(tool) for tool in tools)
    return (
        'umask 077 && d=$(mktemp -d "${TMPDIR:-/tmp}/maintainer-db.XXXXXXXXXX") && printf \'%s\\n\' "$d"'
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
