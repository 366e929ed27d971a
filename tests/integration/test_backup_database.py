"""Database dumps, restores and table checksums against a real MariaDB, locally and over the real sshd."""

from __future__ import annotations

import posixpath
import subprocess
from collections.abc import Iterator

import pytest

from maintainer.backup.database import DatabaseClient, DatabaseSettings, db_client
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
            ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
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
