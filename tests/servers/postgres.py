"""A throwaway PostgreSQL on 127.0.0.1 for integration tests.

``postgres_server`` (session scope) runs ``initdb`` into a temp dir and starts
``postgres`` on a free port, listening on 127.0.0.1 and on a socket in that
dir, waits for ``pg_isready`` and stops the server by its own PID at the end
(SIGINT: a fast shutdown, which does not wait for clients). PostgreSQL refuses
to run as root: as root, both run as the tests' user ``mtest`` (``setpriv``,
which execs, so the PID is the postmaster's). ``running_postgres()`` does the
same for benchmarks.

Authentication is as on a real server: the superuser ``postgres`` is trusted
on the socket only (the tests' own SQL); everyone else needs a password,
stored and checked as SCRAM-SHA-256, over TCP and the socket alike.

``postgres_db`` (function scope) is one fresh database owned by its own login
role with a password, as a site has; the role may create databases (a
restore into another database makes one) and nothing else. ``seed()`` fills
it with what a dump must carry, all owned by the site role: tables with
non-ASCII text, bytea, arrays and jsonb, a foreign key, an odd table name, a
column named like a row alias, a view, functions, a trigger and sequences.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.sshd import TEST_USER, _ensure_test_user, free_port

START_TIMEOUT = 30.0
SUPERUSER = "postgres"

#: a table name a backup must quote everywhere (double quote, space, semicolon, non-ASCII)
ODD_TABLE = 'odd "name"; é'


def pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with a server (Debian's layout), or None."""
    found = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        if (path / "postgres").exists() and (path / "initdb").exists() and path.parent.name.isdigit():
            found.append((int(path.parent.name), path))
    return max(found)[1] if found else None


def sql_string(value: str) -> str:
    """A PostgreSQL string literal (standard_conforming_strings is on)."""
    return "'" + value.replace("'", "''") + "'"


def sql_ident(value: str) -> str:
    """A PostgreSQL identifier."""
    return '"' + value.replace('"', '""') + '"'


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    #: the socket's directory (libpq's host for a socket connection)
    socket_dir: Path
    workdir: Path
    bindir: Path
    pid: int

    def client_argv(self, *args: str, database: str = SUPERUSER) -> list[str]:
        """``psql`` as the superuser through the socket, unaligned and tab-separated, stopping at an error."""
        return [
            str(self.bindir / "psql"), "--no-psqlrc", "--quiet", "--tuples-only", "--no-align",
            "--field-separator=\t", "--set=ON_ERROR_STOP=1", f"--host={self.socket_dir}",
            f"--port={self.port}", f"--username={SUPERUSER}", f"--dbname={database}", *args,
        ]  # fmt: skip

    def sql(self, query: str, database: str = SUPERUSER, *, timeout: float = 60) -> str:
        """Run SQL as the superuser; the rows, tab-separated without a header. Raises on any error."""
        result = subprocess.run(
            self.client_argv(database=database),
            input=query.encode(),
            capture_output=True,
            timeout=timeout,
            env={**os.environ, "PGCLIENTENCODING": "UTF8", "PGTZ": "UTC"},
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"SQL failed (rc {result.returncode}): {result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode()

    def backend_pids(self, user: str) -> list[int]:
        """The server processes of a user's open connections."""
        rows = self.sql(f"SELECT pid FROM pg_stat_activity WHERE usename = {sql_string(user)}")
        return [int(line) for line in rows.split()]


@dataclass
class PostgresDatabase:
    """One site database: ``name``, owned by the login role ``user`` with ``password``."""

    server: PostgresServer
    name: str
    user: str
    password: str

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def socket(self) -> str:
        return str(self.server.socket_dir)

    def sql(self, query: str, database: str | None = None) -> str:
        """Run SQL as the superuser in this database (or another); tab-separated rows."""
        return self.server.sql(query, database or self.name)

    def scratch_name(self, suffix: str) -> str:
        """A database name for a restore into another database (dropped with this one)."""
        return f"{self.name}_{suffix}"

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The inventory var ``db`` of a site using this database over TCP."""
        values: dict[str, Any] = {
            "engine": "postgresql",
            "name": self.name,
            "user": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
        }
        values.update(overrides)
        return values

    def seed(self, rows: int = 200) -> None:
        """Tables, a view, functions, a trigger and sequences, owned by the site role; ``rows``
        rows in posts and media (and post_log, which the trigger fills)."""
        odd = sql_ident(ODD_TABLE)
        self.sql(
            f"""
            SET ROLE {sql_ident(self.user)};
            CREATE SEQUENCE ticket_seq START 1000;
            CREATE TABLE posts (
                id integer PRIMARY KEY,
                title text NOT NULL,
                body text,
                status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'publish')),
                created timestamptz NOT NULL,
                tags text[],
                meta jsonb
            );
            CREATE INDEX posts_status_created ON posts (status, created);
            CREATE TABLE media (
                id integer PRIMARY KEY,
                post_id integer NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
                filename text NOT NULL,
                data bytea NOT NULL
            );
            CREATE TABLE {odd} (k text PRIMARY KEY, r text);
            CREATE TABLE post_log (
                id bigserial PRIMARY KEY,
                post_id integer NOT NULL,
                note text NOT NULL,
                ticket bigint NOT NULL DEFAULT nextval('ticket_seq')
            );
            CREATE FUNCTION log_post() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO post_log (post_id, note) VALUES (NEW.id, 'new: ' || left(NEW.title, 40));
                RETURN NEW;
            END $$;
            CREATE TRIGGER posts_log AFTER INSERT ON posts FOR EACH ROW EXECUTE FUNCTION log_post();
            INSERT INTO posts (id, title, body, status, created, tags, meta)
                SELECT g,
                       'Grüße aus Köln, 日本語のタイトル 🎉 #' || g,
                       repeat(E'Ünïcödé ☃ text; ''quotes'' and \\\\backslashes\\\\ \\t', 1 + g % 5)
                           || E'\\n-- not a comment\\n\\\\.',
                       CASE WHEN g % 3 = 0 THEN 'draft' ELSE 'publish' END,
                       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute',
                       ARRAY['tag ' || g % 7, 'ü'],
                       jsonb_build_object('n', g, 'ja', '日本')
                FROM generate_series(1, {rows}) AS g;
            INSERT INTO media (id, post_id, filename, data)
                SELECT g, g, 'bild-' || g || '.jpg',
                       '\\x00275c0a0d1aff'::bytea || sha512(g::text::bytea) || decode(md5(g::text), 'hex')
                FROM generate_series(1, {rows}) AS g;
            INSERT INTO {odd} (k, r) VALUES ('siteurl', 'https://example.test/ü'), ('empty', ''), ('null', NULL);
            CREATE VIEW published AS SELECT id, title, created FROM posts WHERE status = 'publish';
            CREATE FUNCTION post_count(s text) RETURNS bigint LANGUAGE sql STABLE
                AS $$ SELECT count(*) FROM posts WHERE status = s $$;
            """
        )


def _wait_ready(proc: subprocess.Popen[bytes], bindir: Path, socket_dir: Path, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    ping = [str(bindir / "pg_isready"), f"--host={socket_dir}", f"--port={port}", "--timeout=2"]
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        if subprocess.run(ping, capture_output=True, timeout=10).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"postgres did not answer pg_isready:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


@contextmanager
def running_postgres(*server_args: str) -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL (the fixture and bench/ use this); stopped and removed on exit.

    ``server_args`` go to ``postgres`` after ours (e.g. ``-c``, ``shared_buffers=1GB``).
    """
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server in /usr/lib/postgresql/*/bin")
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres and initdb refuse root
        _ensure_test_user()
        as_user = ["setpriv", f"--reuid={TEST_USER}", f"--regid={TEST_USER}", "--init-groups", "--"]
    # Not pytest's tmp_path (root-only 0700): the server's user and other clients reach the socket here.
    workdir = Path(tempfile.mkdtemp(prefix="maintainer-postgres-"))
    workdir.chmod(0o755)
    if as_user:
        shutil.chown(workdir, TEST_USER, TEST_USER)
    datadir = workdir / "data"
    log = workdir / "postgres.log"
    env = {**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    env.pop("LANG", None)
    proc: subprocess.Popen[bytes] | None = None
    try:
        init = subprocess.run(
            [
                *as_user, str(bindir / "initdb"), f"--pgdata={datadir}", f"--username={SUPERUSER}",
                "--encoding=UTF8", "--locale=C.UTF-8", "--auth=trust", "--no-sync", "--no-instructions",
            ],
            capture_output=True,
            timeout=120,
            cwd=workdir,
            env=env,
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout.decode()}{init.stderr.decode()}")
        # the superuser without a password on the socket only; every other login by password (SCRAM)
        (datadir / "pg_hba.conf").write_text(
            f"local all {SUPERUSER} trust\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        port = free_port()
        with log.open("wb") as log_file:  # a file, not a pipe: a full pipe would block the server
            proc = subprocess.Popen(
                [
                    *as_user, str(bindir / "postgres"), "-D", str(datadir), "-p", str(port),
                    "-k", str(workdir), "-c", "listen_addresses=127.0.0.1",
                    "-c", "password_encryption=scram-sha-256",
                    # a test server: small, and speed over durability
                    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    "-c", "shared_buffers=32MB", "-c", "max_connections=40", "-c", "max_wal_size=256MB",
                    "-c", "logging_collector=off", "-c", "log_min_messages=warning",
                    *server_args,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=workdir,
                env=env,
            )  # fmt: skip
        _wait_ready(proc, bindir, workdir, port, log)
        yield PostgresServer("127.0.0.1", port, workdir, workdir, bindir, proc.pid)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)  # by its own PID only: a fast shutdown
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if pg_bindir() is None or shutil.which("psql") is None or shutil.which("pg_dump") is None:
        pytest.skip("postgresql is not installed")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run postgres as a non-root user")
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    token = secrets.token_hex(4)
    name = f"mt_{token}"
    user = f"mtu_{token}"
    # what a .pgpass line, a connection string, a shell or SQL could trip over; unique, to look for
    password = f"pw-{secrets.token_hex(8)} :\\:\"q' #;$HOME *`x`"
    postgres_server.sql(
        f"CREATE ROLE {sql_ident(user)} LOGIN CREATEDB PASSWORD {sql_string(password)};\n"
        f"CREATE DATABASE {sql_ident(name)} OWNER {sql_ident(user)} TEMPLATE template0 ENCODING 'UTF8';\n"
    )
    try:
        yield PostgresDatabase(postgres_server, name, user, password)
    finally:
        like = re.escape(name)
        found = postgres_server.sql(
            f"SELECT datname FROM pg_database WHERE datname ~ {sql_string('^' + like)}"
        )
        drops = [f"DROP DATABASE IF EXISTS {sql_ident(db)} WITH (FORCE);" for db in found.splitlines() if db]
        # one statement a call: DROP DATABASE cannot run inside psql's implicit multi-statement transaction
        for statement in [*drops, f"DROP ROLE IF EXISTS {sql_ident(user)};"]:
            postgres_server.sql(statement)
