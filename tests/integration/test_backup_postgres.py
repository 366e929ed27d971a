"""PostgreSQL backups against a real server: through the real CLI (backup, wreck, restore in place and
into another database, the password in no output and on no command line), in-process (the unchanged
dump shared, a failed in-place restore that keeps nothing), and the client itself (a dump killed
half-way, a wrong password, a socket, another encoding, the schema digest).

Every comparison is made independently of maintainer's own ``table_stats``: row count and md5 of
the ordered rows of each table, as the superuser, plus the schema objects and sequence positions.
"""

from __future__ import annotations

import os
import posixpath
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zstandard

from maintainer.backup.config import BackupSettings, SiteBackup
from maintainer.backup.create import create_backup
from maintainer.backup.database import DatabaseSettings, PostgresClient, db_client
from maintainer.backup.manifest import load_manifest
from maintainer.backup.restore import restore_backup
from maintainer.backup.streams import Deadline
from maintainer.errors import StepFailed
from maintainer.transport import LocalTransport
from tests.backup_helpers import make_site
from tests.helpers import local_site, read_log
from tests.integration.test_backup import project_with, run_json, site_change
from tests.servers.postgres import ODD_TABLE, PostgresDatabase, sql_ident, sql_string

Checksums = dict[str, tuple[int, str]]


def table_checksums(db: PostgresDatabase, database: str | None = None) -> Checksums:
    """Every base table of the public schema: (rows, md5 of its rows' text in bytewise order)."""
    tables = db.sql(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1",
        database,
    ).splitlines()
    if not tables:
        return {}
    query = " UNION ALL ".join(
        f"SELECT {sql_string(name)}, count(*), md5(coalesce(string_agg(t::text, E'\\n'"
        f" ORDER BY t::text COLLATE \"C\"), '')) FROM public.{sql_ident(name)} AS t"
        for name in tables
    )
    found: Checksums = {}
    for line in db.sql(query, database).splitlines():
        name, rows, digest = line.split("\t")
        found[name] = (int(rows), digest)
    return found


def schema_objects(db: PostgresDatabase, database: str | None = None) -> str:
    """Views, functions, triggers, indexes and sequence positions, with what owns them, as text."""
    return db.sql(
        "SELECT 'view', viewname, viewowner FROM pg_views WHERE schemaname = 'public'"
        " UNION ALL SELECT 'function', p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p"
        "  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
        " UNION ALL SELECT 'trigger', tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal"
        " UNION ALL SELECT 'index', indexname, tablename FROM pg_indexes WHERE schemaname = 'public'"
        " UNION ALL SELECT 'sequence', sequencename, sequenceowner || ' ' || coalesce(last_value::text, '-')"
        "  FROM pg_sequences WHERE schemaname = 'public'"
        " UNION ALL SELECT 'table', tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"
        " ORDER BY 1, 2;",
        database,
    )


class SecretWatch:
    """Reads every process's command line and environment (what ``ps`` and ``ps e`` show) in a
    loop while a block runs: the password must never be in either."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.leaks: list[str] = []
        self.client_commands: set[str] = set()
        self._seen: set[tuple[str, bytes]] = set()
        self._stop = threading.Event()

    @contextmanager
    def watching(self) -> Iterator[None]:
        self._stop.clear()
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.01):
            self._scan()

    def _scan(self) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if (pid, cmdline) in self._seen:
                    continue  # its environment is the one it was started (exec'd) with
                self._seen.add((pid, cmdline))
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            for what, data in (("cmdline", cmdline), ("environ", environ)):
                if self.secret in data:
                    self.leaks.append(f"{what} of {pid}: {data[:300]!r}")
            if b"--dbname=" in cmdline:
                self.client_commands.add(posixpath.basename(cmdline.split(b"\0")[0].decode(errors="replace")))


def pg_site(tmp_path: Path, db: PostgresDatabase) -> tuple[Path, Path]:
    """A local site with a few files and the PostgreSQL database; (project, store)."""
    docroot = make_site(tmp_path / "site", small=5, big_bytes=10_000)
    store = tmp_path / "store"
    vars_ = local_site(tmp_path, docroot=str(docroot), db=db.settings(), backup={"target": f"file://{store}"})
    return project_with(tmp_path, {"shop": vars_}), store


# ------------------------------------------------------------------ through the CLI


def test_backup_wreck_restore_in_place_and_into_another_database(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    postgres_db.seed(200)
    project, store = pg_site(tmp_path, postgres_db)
    tables_before, objects_before = table_checksums(postgres_db), schema_objects(postgres_db)
    assert set(tables_before) == {"posts", "media", "post_log", ODD_TABLE}
    assert tables_before["post_log"][0] == 200  # the trigger wrote them
    watch = SecretWatch(postgres_db.password)
    outputs: list[str] = []

    def run(*args: str) -> tuple[int, Any]:
        with watch.watching():
            proc, doc = run_json(project, *args)
        outputs.extend([proc.stdout, proc.stderr])
        return proc.returncode, doc

    rc, doc = run("run", "backup")
    assert rc == 0, outputs[-1]
    change = site_change(doc, "shop", "backup")
    database = change["databases"][0]
    assert (database["name"], database["engine"], database["tables"], database["dump"]) == (
        postgres_db.name, "postgresql", 4, "new",
    )  # fmt: skip
    assert change["warnings"] == []
    [dump] = (store / "shop" / "db").rglob("*.zst")
    assert dump.name == f"{postgres_db.name}.custom.zst"
    assert zstandard.ZstdDecompressor().decompressobj().decompress(dump.read_bytes())[:5] == b"PGDMP"

    # wreck it: a table dropped, rows changed and deleted, a view and a function gone, a sequence moved
    postgres_db.sql(
        "DROP TABLE post_log; UPDATE posts SET title = 'x' WHERE id < 50; DELETE FROM media WHERE id > 150;"
        f" UPDATE {sql_ident(ODD_TABLE)} SET k = 'changed' WHERE k = 'empty';"
        " DROP VIEW published; DROP FUNCTION post_count(text); SELECT setval('ticket_seq', 5000);"
    )
    assert table_checksums(postgres_db) != tables_before

    rc, doc = run("restore", "shop", "--yes", "--db-only")
    assert rc == 0, outputs[-1]
    restored = site_change(doc, "shop", "restore")
    assert restored["database"] == postgres_db.name and restored["tables"] == 4
    assert restored["table_mismatches"] == [] and restored["files"] == 0
    assert table_checksums(postgres_db) == tables_before
    assert schema_objects(postgres_db) == objects_before

    scratch = postgres_db.scratch_name("copy")
    rc, doc = run("restore", "shop", "--db-only", "--db", scratch)
    assert rc == 0, outputs[-1]
    assert site_change(doc, "shop", "restore")["database"] == scratch
    assert table_checksums(postgres_db, scratch) == tables_before
    assert schema_objects(postgres_db, scratch) == objects_before  # owned by the site's user there too
    assert postgres_db.sql("SELECT post_count('publish'), count(*) FROM published", scratch) == "134\t134\n"

    # the password was in no output, log, command line or environment (ps, ps e)
    assert watch.client_commands & {"pg_dump", "pg_restore", "psql"}, "no database client was seen running"
    assert watch.leaks == []
    everything = "".join(outputs) + (project / "changelog.jsonl").read_text()
    assert postgres_db.password not in everything
    assert [e["runbook"]["name"] for e in read_log(project)] == ["backup", "restore", "restore"]


# ------------------------------------------------------------------ backups and restores, in-process


def backup_spec(tmp_path: Path, db: PostgresDatabase) -> SiteBackup:
    """The database alone, to a local store (what the CLI builds from the inventory)."""
    settings = BackupSettings(target=f"file://{tmp_path / 'store'}")
    return SiteBackup("shop", None, settings, DatabaseSettings(**db.settings()))


def test_an_unchanged_database_shares_its_dump_and_a_failed_in_place_restore_keeps_nothing(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    postgres_db.seed(200)  # a dump bigger than a pipe holds: pg_restore stops before reading it all
    spec, transport = backup_spec(tmp_path, postgres_db), LocalTransport()
    store = spec.store()

    def backup() -> dict[str, Any]:
        record = create_backup(transport, spec, Deadline(threading.Event())).record()
        assert record["warnings"] == []
        return dict(record["databases"][0], id=record["backup_id"])

    first = backup()
    assert first["dump"] == "new"
    tables, objects = table_checksums(postgres_db), schema_objects(postgres_db)
    second = backup()  # same schema digest, same figures for every table: the dump is shared
    assert second["dump"] == f"unchanged since {load_manifest(store, first['id']).databases[0].dumped}"
    # no table's rows changed, only a sequence (its setval is in the dump): dumped again
    postgres_db.sql("SELECT nextval('ticket_seq')")
    assert backup()["dump"] == "new"
    postgres_db.sql("SELECT setval('ticket_seq', 1199)")  # back where it was for the restore below

    # since the backup: rows changed, and a view of the site's that depends on a table of the dump
    postgres_db.sql(
        "UPDATE posts SET title = 'after the backup'; DELETE FROM post_log WHERE id > 10;"
        f" SET ROLE {sql_ident(postgres_db.user)}; CREATE VIEW titles AS SELECT title FROM posts;"
    )
    live = table_checksums(postgres_db)
    manifest = load_manifest(store, second["id"])
    with pytest.raises(StepFailed) as failed:
        restore_backup(transport, spec, store, manifest, Deadline(threading.Event()), files=False)
    error = str(failed.value)
    assert f"importing the dump into database '{postgres_db.name}' failed with exit code 1" in error, error
    assert "view public.titles depends on table public.posts" in error, error
    assert error.endswith(f"Nothing of it was kept: the live database '{postgres_db.name}' is as it was.")
    assert postgres_db.password not in error
    assert table_checksums(postgres_db) == live  # one transaction: none of it stayed

    postgres_db.sql("DROP VIEW titles")
    result = restore_backup(transport, spec, store, manifest, Deadline(threading.Event()), files=False)
    assert (result.database, result.tables, result.table_mismatches) == (postgres_db.name, 4, [])
    assert table_checksums(postgres_db) == tables
    assert schema_objects(postgres_db) == objects


# ------------------------------------------------------------------ the client itself


def test_a_dump_killed_half_way_fails_clearly_and_the_password_is_never_on_a_command_line(
    postgres_db: PostgresDatabase,
) -> None:
    # ~24 MB of dump (TOAST keeps it small on disk): far more than the pipe holds, so pg_dump
    # is still running, blocked on its stdout, while we look at it and end its connection
    postgres_db.sql(
        f"SET ROLE {sql_ident(postgres_db.user)}; CREATE TABLE bulk (id integer PRIMARY KEY, pad text);"
        " INSERT INTO bulk SELECT g, repeat(chr(65 + g % 26), 100000) FROM generate_series(1, 240) AS g;"
    )
    transport = LocalTransport()
    with db_client(transport, DatabaseSettings(**postgres_db.settings())) as client:
        assert isinstance(client, PostgresClient)
        with transport.stream_out(client.dump_command()) as dump:
            first = dump.read(64 * 1024)
            assert first.startswith(b"PGDMP")
            pids = postgres_db.server.backend_pids(postgres_db.user)
            assert pids, "the dump ended before it could be stopped"
            running = {
                pid: (Path(f"/proc/{pid}/cmdline").read_bytes(), Path(f"/proc/{pid}/environ").read_bytes())
                for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                if _is_pg_dump(pid)
            }
            postgres_db.server.sql(f"SELECT pg_terminate_backend({pids[0]})")
            rest = dump.read()
        assert 64 * 1024 < len(first) + len(rest) < 24_000_000
        with pytest.raises(StepFailed) as failed:
            client.check(dump.result, "dump")
        credentials = client.credentials_file

    [(cmdline, environ)] = running.values()
    assert f"--dbname=host='127.0.0.1' port={postgres_db.port} user='{postgres_db.user}'".encode() in cmdline
    assert f"PGPASSFILE={credentials}".encode() in environ.split(b"\0")
    assert postgres_db.password.encode() not in cmdline + environ
    message = str(failed.value)
    assert f"'{postgres_db.name}'" in message and "exit code" in message and "\n" not in message
    assert "terminat" in message, message
    assert postgres_db.password not in message


def _is_pg_dump(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return posixpath.basename(argv0.decode(errors="replace")) == "pg_dump"


def test_a_socket_connection_a_wrong_password_and_a_missing_database(postgres_db: PostgresDatabase) -> None:
    transport = LocalTransport()
    socket = postgres_db.settings(
        host="localhost", port=None, socket=f"{postgres_db.socket}/.s.PGSQL.{postgres_db.port}"
    )
    with db_client(transport, DatabaseSettings(**socket)) as client:
        assert client.server_version().startswith(("15", "16", "17", "18"))
        assert client.database_exists(postgres_db.name)
        assert not client.database_exists(postgres_db.scratch_name("missing"))
        with pytest.raises(StepFailed, match="does not exist"):
            client.table_stats(postgres_db.scratch_name("missing"))
        with pytest.raises(StepFailed, match="site's own database"):
            client.drop_database(postgres_db.name)
        client.drop_database(postgres_db.scratch_name("never_there"))  # IF EXISTS

    wrong = "wrong-Pa55word-that-must-not-leak"
    with (
        pytest.raises(StepFailed) as failed,
        db_client(transport, DatabaseSettings(**postgres_db.settings(password=wrong))) as client,
    ):
        workdir = client.workdir
        client.table_stats()
    message = str(failed.value)
    assert "password authentication failed" in message and f"'{postgres_db.name}'" in message
    assert "db.password" in message  # the hint
    assert wrong not in message and wrong not in repr(failed.value.outputs)
    assert not posixpath.exists(workdir)


def test_a_copy_keeps_the_site_databases_encoding_and_the_stats_see_every_column(
    postgres_db: PostgresDatabase,
) -> None:
    # a LATIN1 site database on a UTF8 server: a copy made with the server's defaults would hold
    # the same text in other bytes
    latin = postgres_db.scratch_name("latin1")
    postgres_db.server.sql(
        f"CREATE DATABASE {sql_ident(latin)} OWNER {sql_ident(postgres_db.user)} TEMPLATE template0"
        " ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
    )
    postgres_db.sql(
        f"SET ROLE {sql_ident(postgres_db.user)}; CREATE TABLE t (r text, k integer);"
        " INSERT INTO t VALUES ('Grüße', 1), ('Köln', 2);",
        latin,
    )
    copy = postgres_db.scratch_name("latin1_copy")
    transport = LocalTransport()
    with db_client(transport, DatabaseSettings(**postgres_db.settings(name=latin))) as client:
        client.create_database(copy)
        with (
            transport.stream_out(client.dump_command()) as dump,
            transport.stream_in(client.restore_command(copy)) as restore,
        ):
            restore.write(dump.read())
        client.check(dump.result, "dump")
        client.check(restore.result, "restore")
        source, restored = client.table_stats(), client.table_stats(copy)
        assert source == restored and source["t"]["rows"] == 2
        assert table_checksums(postgres_db, copy) == table_checksums(postgres_db, latin) != {}
        # a schema change in a non-ASCII word of a LATIN1 database changes the digest
        postgres_db.sql("ALTER TABLE t ALTER r SET DEFAULT 'é'", latin)
        digest = client.schema_digest()
        postgres_db.sql("ALTER TABLE t ALTER r SET DEFAULT 'è'", latin)
        assert client.schema_digest() not in (digest, None)
        # a column named like the row alias: every column counts, not only that one
        postgres_db.sql("UPDATE t SET k = 3 WHERE k = 2", latin)
        assert client.table_stats()["t"] != source["t"]
    assert (
        postgres_db.server.sql(
            f"SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database WHERE datname = {sql_string(copy)}"
        )
        == "LATIN1\tC\n"
    )


def test_the_schema_digest_is_stable_and_sees_schema_and_sequences(postgres_db: PostgresDatabase) -> None:
    postgres_db.seed(5)
    with db_client(LocalTransport(), DatabaseSettings(**postgres_db.settings())) as client:
        first = client.schema_digest()
        # rows are not the schema; pg_dump's random \\restrict keys are left out
        postgres_db.sql("UPDATE posts SET title = 'rows are not the schema'; ANALYZE posts")
        assert first is not None and client.schema_digest() == first
        postgres_db.sql("SELECT nextval('post_log_id_seq')")
        moved = client.schema_digest()
        assert moved != first
        user = sql_ident(postgres_db.user)
        postgres_db.sql(f"SET ROLE {user}; CREATE INDEX media_filename ON media (filename)")
        assert client.schema_digest() not in (first, moved)
        postgres_db.sql(f"SET ROLE {user}; SELECT lo_from_bytea(0, 'a large object')")
        assert client.schema_digest() is None  # its content is in no figure: dumped every time
