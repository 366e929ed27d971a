"""Database dumps, restores and table checksums against a real MariaDB, locally and over the real sshd."""

from __future__ import annotations

import logging
import os
import posixpath
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from maintainer.backup.database import (
    DatabaseClient,
    DatabaseSettings,
    DefinerFilter,
    TableStat,
    db_client,
    unstable_tables,
)
from maintainer.errors import StepFailed
from maintainer.transport import LocalTransport, Transport, host_key, make_transport
from tests.servers.mariadb import ODD_TABLE, MariaDBDatabase, sql_ident, sql_string
from tests.servers.sshd import SSHServer


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    if request.param == "local":
        yield LocalTransport()
        return
    server: SSHServer = request.getfixturevalue("sshd_server")
    site_vars = server.site_vars()
    ssh = make_transport(host_key(site_vars, "site"), site_vars)
    yield ssh
    ssh.close()


def exists(transport: Transport, path: str) -> bool:
    return transport.run(["test", "-e", path]).rc == 0


def copy(transport: Transport, client: DatabaseClient, target: str) -> int:
    """Stream a dump straight into a restore; the bytes that went through."""
    size = 0
    with (
        transport.stream_out(client.dump_command()) as dump,
        transport.stream_in(client.restore_command(target)) as restore,
    ):
        while chunk := dump.read(1 << 20):
            restore.write(chunk)
            size += len(chunk)
    client.check(dump.result, "dump")
    client.check(restore.result, f"restore into '{target}'")
    return size


def test_a_dump_restored_into_a_scratch_db_has_the_same_tables_rows_and_checksums(
    transport: Transport, mariadb_db: MariaDBDatabase
) -> None:
    mariadb_db.seed(rows=500)
    settings = DatabaseSettings(**mariadb_db.settings())
    scratch = mariadb_db.scratch_name("drill")
    with db_client(transport, settings) as client:
        workdir = client.workdir
        modes = transport.run(["stat", "-c", "%a", workdir, client.credentials_file]).stdout.split()
        assert modes == ["700", "600"]
        assert "MariaDB" in client.server_version()

        client.create_database(scratch)
        assert copy(transport, client, scratch) > 100_000
        source, restored = client.table_stats(), client.table_stats(scratch)

        assert source == restored
        assert set(source) == {"posts", "media", "post_log", ODD_TABLE}  # base tables only: no view
        assert source["posts"]["rows"] == source["media"]["rows"] == source["post_log"]["rows"] == 500
        assert source[ODD_TABLE]["rows"] == 3
        client.drop_database(scratch)
        client.create_database(scratch)  # dropped for real: it can be made again
        assert client.table_stats(scratch) == {}
    assert not exists(transport, workdir)


def test_the_restore_carries_every_schema_object_and_the_exact_bytes(mariadb_db: MariaDBDatabase) -> None:
    mariadb_db.seed(rows=50)
    transport = LocalTransport()
    scratch = mariadb_db.scratch_name("objects")
    with db_client(transport, DatabaseSettings(**mariadb_db.settings())) as client:
        client.create_database(scratch)
        copy(transport, client, scratch)
        client.drop_database(mariadb_db.scratch_name("never_there"))  # IF EXISTS

    def objects(db: str) -> str:
        return mariadb_db.server.sql(
            f"SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {sql_string(db)};"
            f"SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {sql_string(db)};"
            f"SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {sql_string(db)};"
            f"SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {sql_string(db)};"
            f"SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {sql_string(db)};"
        )

    assert (
        objects(scratch)
        == objects(mariadb_db.name)
        == ("utf8mb4_unicode_ci\npublished\nposts_log\npost_count\npurge_log\n")
    )
    query = "SELECT MD5(GROUP_CONCAT(title, body, HEX(data) ORDER BY posts.id)) FROM {0}.posts JOIN {0}.media USING (id)"
    source = mariadb_db.server.sql(query.format(sql_ident(mariadb_db.name)))
    assert mariadb_db.server.sql(query.format(sql_ident(scratch))) == source
    assert (
        mariadb_db.server.sql(f"SELECT {sql_ident(scratch)}.post_count('publish')") == "34\n"
    )  # 50 - 50 // 3


def test_table_stats_of_an_empty_database_and_of_tables_with_odd_names(mariadb_db: MariaDBDatabase) -> None:
    transport = LocalTransport()
    with db_client(transport, DatabaseSettings(**mariadb_db.settings())) as client:
        assert client.table_stats() == {}
        odd = ["tab\there", "new\nline", "back\\slash", "dot.ted", "quote'\"", "日本", "select"]
        mariadb_db.sql(
            "".join(f"CREATE TABLE {sql_ident(name)} (v INT) ENGINE=InnoDB;" for name in odd)
            + f"INSERT INTO {sql_ident('dot.ted')} VALUES (1), (2);"
            + f"CREATE VIEW v AS SELECT * FROM {sql_ident('select')};"
        )
        stats = client.table_stats()
    assert set(stats) == set(odd)
    assert stats["dot.ted"]["rows"] == 2
    assert stats["select"] == {"rows": 0, "checksum": "0"}


def test_a_dump_killed_half_way_fails_clearly_and_the_password_is_never_on_a_command_line(
    transport: Transport, mariadb_db: MariaDBDatabase
) -> None:
    # ~24 MB, far more than the pipes, socket and SSH window buffers hold: the dump is still
    # running (blocked on its stdout) while we look at ps and kill its connection
    mariadb_db.sql(
        "CREATE TABLE bulk (id INT PRIMARY KEY, pad LONGTEXT) ENGINE=InnoDB;"
        "INSERT INTO bulk SELECT seq, REPEAT(CHAR(65 + seq % 26), 100000) FROM seq_1_to_240;"
    )
    server = mariadb_db.server
    with db_client(transport, DatabaseSettings(**mariadb_db.settings())) as client:
        with transport.stream_out(client.dump_command()) as dump:
            first = dump.read(64 * 1024)
            assert b"CREATE TABLE `bulk`" in first
            ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
            ids = server.connection_ids(mariadb_db.user)
            assert ids, "the dump ended before it could be killed"
            server.sql("".join(f"KILL CONNECTION {i};" for i in ids))
            rest = dump.read()
        assert 64 * 1024 < len(first) + len(rest) < 24_000_000
        assert dump.result is not None and dump.result.rc != 0
        with pytest.raises(StepFailed) as failed:
            client.check(dump.result, "dump")

    dumps = [line for line in ps.splitlines() if "-dump " in line or "mysqldump " in line]
    assert any(f"--defaults-extra-file={client.credentials_file}" in line for line in dumps), ps
    assert mariadb_db.password not in ps
    message = str(failed.value)
    assert f"'{mariadb_db.name}'" in message and "exit code" in message
    assert "Lost connection" in message or "server has gone away" in message, message
    assert mariadb_db.password not in message
    assert "\n" not in message


def test_a_dump_without_a_privilege_fails_part_way_even_behind_a_pipe(mariadb_db: MariaDBDatabase) -> None:
    mariadb_db.seed(rows=20)
    reader, password = f"{mariadb_db.user}_ro", "ro-secret-4711-'\"#"
    mariadb_db.server.sql(
        f"CREATE USER {sql_string(reader)}@'%' IDENTIFIED BY {sql_string(password)};"
        f"GRANT SELECT ON {sql_ident(mariadb_db.name)}.* TO {sql_string(reader)}@'%';"  # no SHOW VIEW
    )
    transport = LocalTransport()
    try:
        settings = DatabaseSettings(**mariadb_db.settings(user=reader, password=password))
        with db_client(transport, settings) as client:
            # a caller that compresses on the host needs pipefail, or gzip's 0 hides the failure
            with transport.stream_out(f"set -o pipefail; {client.dump_command()} | gzip -1") as dump:
                data = dump.read()
            assert len(data) > 1000  # the tables' data came first
            with pytest.raises(StepFailed) as failed:
                client.check(dump.result, "dump")
    finally:
        mariadb_db.server.sql(f"DROP USER {sql_string(reader)}@'%'")
    message = str(failed.value)
    assert "SHOW VIEW command denied" in message and f"'{mariadb_db.name}'" in message
    assert "lacks a privilege" in message
    assert password not in message


def test_a_wrong_password_is_a_clear_error_without_the_password_and_the_temp_dir_goes(
    mariadb_db: MariaDBDatabase,
) -> None:
    transport = LocalTransport()
    wrong = "wrong-Pa55word-that-must-not-leak"
    with (
        pytest.raises(StepFailed) as failed,
        db_client(transport, DatabaseSettings(**mariadb_db.settings(password=wrong))) as client,
    ):
        workdir = client.workdir
        client.table_stats()
    message = str(failed.value)
    assert "Access denied" in message and f"'{mariadb_db.name}'" in message
    assert "db.password" in message  # the hint
    assert wrong not in message and wrong not in repr(failed.value.outputs)
    assert not posixpath.exists(workdir)


def test_a_socket_connection_and_a_database_that_does_not_exist(mariadb_db: MariaDBDatabase) -> None:
    transport = LocalTransport()
    settings = DatabaseSettings(**mariadb_db.settings(host="localhost", port=None, socket=mariadb_db.socket))
    with db_client(transport, settings) as client:
        assert client.server_version()
        with pytest.raises(StepFailed, match="Unknown database"):
            client.table_stats(mariadb_db.scratch_name("missing"))
        with pytest.raises(StepFailed, match="site's own database"):
            client.drop_database(mariadb_db.name)
    assert mariadb_db.sql("SELECT DATABASE()") == f"{mariadb_db.name}\n"


# -- table stats during writes ---------------------------------------------------------


@contextmanager
def busy_writer(db: MariaDBDatabase, rows: int) -> Iterator[None]:
    """Two tables of ``rows`` rows, then a root session that keeps adding a row to both in one
    transaction (in id order) until the block ends."""
    db.sql(
        "CREATE TABLE busy (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB;"
        "CREATE TABLE busy_twin (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB;"
        "CREATE TABLE stop (x INT) ENGINE=InnoDB;"
        f"INSERT INTO busy (v) SELECT CONCAT('row ', seq) FROM seq_1_to_{rows};"
        f"INSERT INTO busy_twin (v) SELECT CONCAT('row ', seq) FROM seq_1_to_{rows};"
    )
    loop = (
        "BEGIN NOT ATOMIC WHILE NOT EXISTS (SELECT 1 FROM stop) DO START TRANSACTION;"
        " INSERT INTO busy (v) VALUES (CONCAT('row ', (SELECT MAX(id) + 1 FROM busy)));"
        " INSERT INTO busy_twin (v) SELECT v FROM busy ORDER BY id DESC LIMIT 1; COMMIT; END WHILE; END"
    )
    writer = subprocess.Popen(
        db.server.client_argv(db.name),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert writer.stdin is not None
    writer.stdin.write(f"DELIMITER //\n{loop} //\n".encode())
    writer.stdin.close()
    try:
        deadline = time.monotonic() + 10
        while int(db.sql("SELECT COUNT(*) FROM busy")) < rows + 50:  # it is writing
            assert writer.poll() is None, writer.stderr.read() if writer.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield
    finally:
        db.sql("INSERT INTO stop VALUES (1)")
        writer.wait(timeout=30)


def checksum_of_first(db: MariaDBDatabase, rows: int) -> str:
    """CHECKSUM TABLE of a copy of busy's first ``rows`` rows: what a snapshot with that many saw."""
    db.sql(
        "DROP TABLE IF EXISTS busy_copy; CREATE TABLE busy_copy LIKE busy;"
        f"INSERT INTO busy_copy SELECT * FROM busy ORDER BY id LIMIT {rows};"  # ids have gaps
    )
    return db.sql("CHECKSUM TABLE busy_copy").split("\t")[1].strip()


def test_table_stats_come_from_one_snapshot_while_the_site_writes(mariadb_db: MariaDBDatabase) -> None:
    settings = DatabaseSettings(**mariadb_db.settings())
    seen: list[dict[str, TableStat]] = []
    with db_client(LocalTransport(), settings) as client, busy_writer(mariadb_db, rows=100_000):
        for _ in range(3):
            seen.append(client.table_stats())
    assert int(mariadb_db.sql("SELECT COUNT(*) FROM busy")) > seen[-1]["busy"]["rows"]  # it kept writing
    for stats in seen:
        # both tables grow in one transaction: one snapshot sees the same number of rows in each
        assert stats["busy"]["rows"] == stats["busy_twin"]["rows"] > 100_000
        # and the checksum is the one of exactly the rows counted
        assert stats["busy"]["checksum"] == checksum_of_first(mariadb_db, stats["busy"]["rows"])
    assert unstable_tables(seen[0], seen[-1]) == ["busy", "busy_twin"]
    assert unstable_tables(seen[0], seen[0]) == []


def test_tables_left_alone_during_a_dump_are_stable_and_restore_to_the_same_figures(
    mariadb_db: MariaDBDatabase,
) -> None:
    mariadb_db.seed(rows=100)
    settings = DatabaseSettings(**mariadb_db.settings())
    scratch = mariadb_db.scratch_name("stable")
    transport = LocalTransport()
    with db_client(transport, settings) as client:
        before = client.table_stats()
        client.create_database(scratch)
        copy(transport, client, scratch)
        mariadb_db.sql("INSERT INTO post_log (post_id, note) VALUES (1, 'written during the dump')")
        after = client.table_stats()
        restored = client.table_stats(scratch)
    assert unstable_tables(before, after) == ["post_log"]
    assert {name: stat for name, stat in restored.items() if name != "post_log"} == {
        name: stat for name, stat in before.items() if name != "post_log"
    }
    assert restored["post_log"] == before["post_log"] != after["post_log"]


# -- definers ----------------------------------------------------------------------------


def test_a_dump_with_foreign_definers_restores_as_the_site_user_through_the_filter(
    mariadb_db: MariaDBDatabase,
) -> None:
    mariadb_db.seed(rows=30)
    # objects of another account, as on a site migrated from elsewhere: root made them
    mariadb_db.sql(
        "CREATE DEFINER=root@localhost SQL SECURITY DEFINER VIEW drafts AS SELECT id, title FROM posts"
        " WHERE status = 'draft';"
        "CREATE DEFINER=root@localhost TRIGGER media_log AFTER INSERT ON media FOR EACH ROW"
        " INSERT INTO post_log (post_id, note) VALUES (NEW.post_id, 'DEFINER=`x`@`y` in a body');"
        "CREATE DEFINER=root@localhost EVENT tidy ON SCHEDULE EVERY 1 HOUR DISABLE DO DELETE FROM post_log WHERE id < 0;"
        "INSERT INTO posts (id, title, body, created) VALUES (9999, 'DEFINER=`root`@`localhost` as data', '', NOW());"
    )
    transport = LocalTransport()
    settings = DatabaseSettings(**mariadb_db.settings())
    plain, filtered = mariadb_db.scratch_name("plain"), mariadb_db.scratch_name("filtered")
    with db_client(transport, settings) as client:
        with transport.stream_out(client.dump_command()) as dump:
            data = dump.read()
        client.check(dump.result, "dump")
        assert b"DEFINER=`root`@`localhost`" in data
        assert client.database_exists(mariadb_db.name) and not client.database_exists(plain)

        client.create_database(plain)  # what happened before: the import stops half-way
        assert client.database_exists(plain)
        with transport.stream_in(client.restore_command(plain)) as sink:
            sink.write(data)
        with pytest.raises(StepFailed, match="ERROR 1227"):
            client.check(sink.result, "restore")

        client.create_database(filtered)
        with transport.stream_in(client.restore_command(filtered)) as sink:
            stripper = client.restore_filter(sink.write)
            assert isinstance(stripper, DefinerFilter)
            for start in range(0, len(data), 4093):  # chunks that cut lines anywhere
                stripper.write(memoryview(data)[start : start + 4093])
            stripper.close()
        client.check(sink.result, "restore")
        assert stripper.removed == 7  # 2 views, 2 triggers, 2 events, 1 function
        assert client.table_stats(filtered) == client.table_stats()

    definers = mariadb_db.server.sql(
        f"SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {sql_string(filtered)};"
        f"SELECT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {sql_string(filtered)};"
        f"SELECT DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {sql_string(filtered)};"
        f"SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {sql_string(filtered)};"
    ).split()
    assert definers == [f"{mariadb_db.user}@%"] * 7
    drafts = mariadb_db.server.sql(f"SELECT COUNT(*) FROM {sql_ident(filtered)}.drafts")
    assert drafts == "11\n"  # 30 // 3 seeded + 1, through a view that now belongs to the site user
    title = "SELECT title FROM {}.posts WHERE id = 9999"
    assert mariadb_db.server.sql(title.format(sql_ident(filtered))) == "DEFINER=`root`@`localhost` as data\n"


def test_database_exists_is_exact(mariadb_db: MariaDBDatabase) -> None:
    upper = mariadb_db.scratch_name("Exact")
    with db_client(LocalTransport(), DatabaseSettings(**mariadb_db.settings())) as client:
        client.create_database(upper)
        assert client.database_exists(upper)
        assert not client.database_exists(upper.lower())  # lower_case_table_names=0: another name
        assert not client.database_exists(mariadb_db.scratch_name("Exäct"))  # the collation would match it
        assert not client.database_exists(mariadb_db.name + "_%")


# -- stale credential dirs ----------------------------------------------------------------


def test_stale_credential_dirs_of_this_user_are_removed_at_start(
    mariadb_db: MariaDBDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    old = time.time() - 7 * 3600

    def make(name: str, age: float = old, *, owner: int | None = None) -> Path:
        path = tmp_path / name
        path.mkdir(mode=0o700)
        (path / "client.cnf").write_text("[client]\npassword=left-behind\n")
        if owner is not None:
            os.chown(path, owner, owner)
        os.utime(path, (age, age))
        return path

    stale = make("maintainer-db.AbCdEfGh12")
    fresh = make("maintainer-db.ZyXwVuTs98", time.time() - 5 * 3600)
    other_name = [
        make("maintainer-db.short"),
        make("maintainer-backup.AbCdEfGh12"),
        make("maintainer-db.AbCdEfGh123"),
    ]
    target = make("elsewhere")
    link = tmp_path / "maintainer-db.LiNkLiNk00"
    link.symlink_to(target)
    os.utime(link, (old, old), follow_symlinks=False)
    foreign = make("maintainer-db.NoBoDy0000", owner=65534) if os.geteuid() == 0 else None

    with (
        caplog.at_level(logging.WARNING),
        db_client(LocalTransport(), DatabaseSettings(**mariadb_db.settings())) as client,
    ):
        assert client.workdir.startswith(f"{tmp_path}/maintainer-db.")
        assert not stale.exists()
    assert fresh.exists() and target.exists() and link.is_symlink() and all(p.exists() for p in other_name)
    assert foreign is None or foreign.exists()
    assert f"removed 1 credentials dir(s) left by killed runs: {stale}" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("maintainer-db.")) == sorted(
        [
            "maintainer-db.ZyXwVuTs98",
            "maintainer-db.short",
            "maintainer-db.AbCdEfGh123",
            "maintainer-db.LiNkLiNk00",
        ]
        + (["maintainer-db.NoBoDy0000"] if foreign else [])
    )
