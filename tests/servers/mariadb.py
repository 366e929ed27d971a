"""A throwaway MariaDB on 127.0.0.1 for integration tests (see ENV.md).

``mariadb_server`` (session scope) initialises a datadir in a temp dir, starts
``mariadbd`` on a free port plus a socket in that dir, waits for
``mariadb-admin ping`` and stops the server by its own PID at the end.
``running_mariadb()`` does the same for benchmarks.

``mariadb_db`` (function scope) is one fresh database with its own user and
password, as a site has: the user may do anything in that database and in
scratch databases named ``<name>_...`` (restore drills), nothing else. No
global privileges: ``mysqldump --single-transaction --routines --triggers
--events`` needs none (SELECT, SHOW VIEW, TRIGGER and EVENT on the database,
plus being the routines' definer; LOCK TABLES, PROCESS and RELOAD are not
used). ``seed()`` fills it with what a dump must carry: InnoDB tables with
utf8mb4 text, binary BLOBs, an odd table name, a view, a trigger, a stored
function and an event, all defined by the site user.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.sshd import free_port

MARIADBD = "/usr/sbin/mariadbd"
START_TIMEOUT = 30.0

#: a table name a backup must quote everywhere (backtick, space, semicolon, non-ASCII)
ODD_TABLE = "odd `name; é"


def sql_string(value: str) -> str:
    """A MariaDB string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def sql_ident(value: str) -> str:
    """A MariaDB identifier."""
    return "`" + value.replace("`", "``") + "`"


@dataclass(frozen=True)
class MariaDBServer:
    host: str
    port: int
    socket: Path
    workdir: Path
    pid: int

    def client_argv(self, *args: str) -> list[str]:
        """The ``mariadb`` client as root through the socket."""
        return [
            "mariadb", "--no-defaults", f"--socket={self.socket}", "--user=root",
            "--default-character-set=utf8mb4", *args,
        ]  # fmt: skip

    def sql(self, query: str, database: str | None = None, *, timeout: float = 60) -> str:
        """Run SQL as root; the rows, tab-separated without a header. Raises on any error."""
        argv = self.client_argv("--batch", "--skip-column-names", *([database] if database else []))
        result = subprocess.run(argv, input=query.encode(), capture_output=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"SQL failed (rc {result.returncode}): {result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode()

    def connection_ids(self, user: str) -> list[int]:
        """Ids of the connections a user has open right now."""
        rows = self.sql(f"SELECT ID FROM information_schema.PROCESSLIST WHERE USER = {sql_string(user)}")
        return [int(line) for line in rows.split()]


@dataclass
class MariaDBDatabase:
    """One site database: ``name``, its ``user`` and ``password``, reachable over TCP or the socket."""

    server: MariaDBServer
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
        return str(self.server.socket)

    def sql(self, query: str) -> str:
        """Run SQL as root in this database; tab-separated rows."""
        return self.server.sql(query, self.name)

    def scratch_name(self, suffix: str) -> str:
        """A database name the user may create and drop (a restore drill's target)."""
        return f"{self.name}_{suffix}"

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The inventory var ``db`` of a site using this database over TCP."""
        values: dict[str, Any] = {
            "engine": "mariadb",
            "name": self.name,
            "user": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
        }
        values.update(overrides)
        return values

    def seed(self, rows: int = 200) -> None:
        """Tables, a view, a trigger, a function and an event, with ``rows`` rows in each big table."""
        definer = f"{sql_string(self.user)}@'%'"
        odd = sql_ident(ODD_TABLE)
        self.sql(
            f"""
            CREATE TABLE posts (
                id INT UNSIGNED NOT NULL PRIMARY KEY,
                title VARCHAR(200) NOT NULL,
                body MEDIUMTEXT,
                status ENUM('draft', 'publish') NOT NULL DEFAULT 'draft',
                created DATETIME NOT NULL,
                KEY status_created (status, created)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
            CREATE TABLE media (
                id INT UNSIGNED NOT NULL PRIMARY KEY,
                post_id INT UNSIGNED NOT NULL,
                filename VARCHAR(255) NOT NULL,
                data BLOB NOT NULL,
                CONSTRAINT media_post FOREIGN KEY (post_id) REFERENCES posts (id) ON DELETE CASCADE
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
            CREATE TABLE {odd} (
                k VARCHAR(64) NOT NULL PRIMARY KEY,
                v TEXT
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
            CREATE TABLE post_log (
                id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                post_id INT UNSIGNED NOT NULL,
                note VARCHAR(100) NOT NULL
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
            CREATE DEFINER={definer} TRIGGER posts_log AFTER INSERT ON posts FOR EACH ROW
                INSERT INTO post_log (post_id, note) VALUES (NEW.id, CONCAT('new: ', LEFT(NEW.title, 40)));
            INSERT INTO posts (id, title, body, status, created)
                SELECT seq,
                       CONCAT('Grüße aus Köln, 日本語のタイトル 🎉 #', seq),
                       CONCAT(REPEAT('Ünïcödé ☃ text; ''quotes'' and \\\\backslashes\\\\ ', 1 + seq % 5), '\\n-- not a comment'),
                       IF(seq % 3, 'publish', 'draft'),
                       '2024-01-01 00:00:00' + INTERVAL seq MINUTE
                FROM seq_1_to_{rows};
            INSERT INTO media (id, post_id, filename, data)
                SELECT seq, seq, CONCAT('bild-', seq, '.jpg'),
                       CONCAT(CHAR(0, 39, 92, 10, 13, 26, 255), UNHEX(SHA2(seq, 512)), UNHEX(MD5(seq)))
                FROM seq_1_to_{rows};
            INSERT INTO {odd} (k, v) VALUES ('siteurl', 'https://example.test/ü'), ('empty', ''), ('null', NULL);
            CREATE DEFINER={definer} SQL SECURITY DEFINER VIEW published AS
                SELECT id, title, created FROM posts WHERE status = 'publish';
            CREATE DEFINER={definer} FUNCTION post_count(s VARCHAR(20)) RETURNS INT READS SQL DATA
                RETURN (SELECT COUNT(*) FROM posts WHERE status = s);
            CREATE DEFINER={definer} EVENT purge_log ON SCHEDULE EVERY 1 DAY DISABLE
                DO DELETE FROM post_log WHERE id < 0;
            """
        )


def _wait_ready(proc: subprocess.Popen[bytes], socket_path: Path, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    ping = [
        "mariadb-admin",
        "--no-defaults",
        f"--socket={socket_path}",
        "--user=root",
        "--connect-timeout=2",
        "ping",
    ]
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        if socket_path.exists() and subprocess.run(ping, capture_output=True, timeout=10).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"mariadbd did not answer ping:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


@contextmanager
def running_mariadb(*server_args: str) -> Iterator[MariaDBServer]:
    """Start a throwaway MariaDB (the fixture and bench/ use this); stopped and removed on exit.

    ``server_args`` go to ``mariadbd`` after ours (e.g. ``--innodb-buffer-pool-size=1G``).
    """
    # Not pytest's tmp_path (root-only 0700): the ssh test user reaches the socket through here.
    workdir = Path(tempfile.mkdtemp(prefix="maintainer-mariadb-"))
    workdir.chmod(0o755)
    datadir = workdir / "data"
    socket_path = workdir / "mysql.sock"
    log = workdir / "mariadbd.log"
    as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root without it
    small_redo = "--innodb-log-file-size=8M"  # a 26 MB datadir instead of 114 MB
    proc: subprocess.Popen[bytes] | None = None
    try:
        install = subprocess.run(
            [
                "mariadb-install-db", "--no-defaults", f"--datadir={datadir}",
                "--auth-root-authentication-method=normal", "--skip-test-db", *as_root, small_redo,
            ],
            capture_output=True,
            timeout=120,
        )  # fmt: skip
        if install.returncode != 0:
            raise RuntimeError(
                f"mariadb-install-db failed:\n{install.stdout.decode()}{install.stderr.decode()}"
            )
        port = free_port()
        with log.open("wb") as log_file:  # a file, not a pipe: a full pipe would block the server
            proc = subprocess.Popen(
                [
                    MARIADBD, "--no-defaults", f"--datadir={datadir}", f"--socket={socket_path}",
                    f"--port={port}", "--bind-address=127.0.0.1", f"--pid-file={workdir / 'mysqld.pid'}",
                    *as_root, "--skip-name-resolve", small_redo,
                    # a test server: speed over durability
                    "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-doublewrite=0", "--skip-log-bin", *server_args,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        _wait_ready(proc, socket_path, log)
        yield MariaDBServer("127.0.0.1", port, socket_path, workdir, proc.pid)
    finally:
        if proc is not None:
            proc.terminate()  # by its own PID only: a clean shutdown
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    if not os.path.exists(MARIADBD) or shutil.which("mariadb-install-db") is None:
        pytest.skip("mariadb-server is not installed")
    with running_mariadb() as server:
        yield server


@pytest.fixture
def mariadb_db(mariadb_server: MariaDBServer) -> Iterator[MariaDBDatabase]:
    token = secrets.token_hex(4)
    name = f"mt_{token}"
    user = f"mtu_{token}"
    # every character an option file, a shell or SQL could trip over; unique, so tests can look for it
    password = f"pw-{secrets.token_hex(8)} \"q' #;$HOME \\n`x`"
    scratch = sql_ident(name.replace("_", "\\_") + "\\_%")
    mariadb_server.sql(
        f"CREATE DATABASE {sql_ident(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
        f"CREATE USER {sql_string(user)}@'%' IDENTIFIED BY {sql_string(password)};\n"
        f"GRANT ALL PRIVILEGES ON {sql_ident(name)}.* TO {sql_string(user)}@'%';\n"
        f"GRANT ALL PRIVILEGES ON {scratch}.* TO {sql_string(user)}@'%';\n"
    )
    try:
        yield MariaDBDatabase(mariadb_server, name, user, password)
    finally:
        pattern = sql_string(name.replace("_", "\\_") + "%")
        drops = [
            f"DROP DATABASE IF EXISTS {sql_ident(db)};"
            for db in mariadb_server.sql(f"SHOW DATABASES LIKE {pattern}").splitlines()
        ]
        mariadb_server.sql("\n".join([*drops, f"DROP USER IF EXISTS {sql_string(user)}@'%';"]))
