"""maintainer.backup.database without a server: settings, command construction, parsing, cleanup.

PostgreSQL's commands and output parsing are checked here against a fake transport
(labelled ``postgres_no_server``), and for real in tests/integration/test_backup_postgres.py;
MySQL/MariaDB run for real in tests/integration/test_backup_database.py.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from maintainer.backup.database import (
    DEFINER_HEAD,
    STALE_WORKDIR_MINUTES,
    DatabaseClient,
    DatabaseSettings,
    DefinerFilter,
    MySQLClient,
    PostgresClient,
    TableStat,
    db_client,
    option_value,
    strip_definers,
    unescape_batch,
    unstable_tables,
)
from maintainer.errors import StepCancelled, StepFailed, StepTimeout
from maintainer.transport import CommandResult, CommandStream, Transport

WORKDIR = "/tmp/maintainer-db.AbCdEfGhIj"
SECRET = "s3cr:et'\"#\\pw"

Responder = Callable[[str], CommandResult]


def ok(stdout: str = "") -> CommandResult:
    return CommandResult(rc=0, stdout=stdout, stderr="", duration=0.01)


class FakeTransport(Transport):
    """Records commands and written files; answers commands through ``respond``."""

    label = "fake@host"

    def __init__(self, tools: Sequence[str] = (), respond: Responder | None = None) -> None:
        self.tools = tools
        self.respond = respond or (lambda command: ok())
        self.commands: list[str] = []
        self.files: dict[str, tuple[bytes, int | None]] = {}

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
        line = command if isinstance(command, str) else shlex.join(command)
        self.commands.append(line)
        if "mktemp -d" in line:
            return ok(WORKDIR + "\n" + "".join(f"/usr/bin/{tool}\n" for tool in self.tools))
        return self.respond(line)

    def read_file(self, path: str) -> bytes | None:
        return self.files.get(path, (None, None))[0]

    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        self.files[path] = (data, mode)

    def _open_stream(self, command: Any, **kwargs: Any) -> CommandStream:
        raise NotImplementedError


def mysql(**overrides: Any) -> DatabaseSettings:
    values: dict[str, Any] = {"engine": "mariadb", "name": "site db", "user": "wp", "password": SECRET}
    return DatabaseSettings(**{**values, **overrides})


def postgres(**overrides: Any) -> DatabaseSettings:
    values: dict[str, Any] = {"engine": "postgresql", "name": "shop", "user": "app", "password": SECRET}
    return DatabaseSettings(**{**values, **overrides})


PG_TOOLS = ("pg_dump", "pg_restore", "psql")
MARIADB_TOOLS = ("mariadb-dump", "mysqldump", "mariadb", "mysql")

# -- settings ---------------------------------------------------------------------


def test_settings_take_the_inventory_var_and_keep_the_password_out_of_repr() -> None:
    settings = DatabaseSettings(engine="mysql", name="wp", user="wp", password=SECRET, port="3307")  # type: ignore[arg-type]
    assert settings.port == 3307 and settings.host == "localhost" and settings.dump_options == []
    assert SECRET not in repr(settings) and SECRET not in str(settings)


@pytest.mark.parametrize(
    "values",
    [
        {"engine": "oracle"},
        {"unknown": 1},
        {"name": ""},
        {"port": 70000},
        {"dump_options": ["--password=x"]},
        {"dump_options": ["-px"]},
        {"dump_options": ["--defaults-file=/etc/x"]},
        {"dump_options": ["otherdb"]},
        {"user": "a\nb"},
    ],
)
def test_bad_settings_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        mysql(**values)


def test_a_refused_setting_never_quotes_the_password_and_numbers_are_text() -> None:
    with pytest.raises(ValidationError) as refused:
        mysql(password=SECRET + "\n", port="x")
    assert SECRET not in str(refused.value)
    assert mysql(password=123456, name=2024).password == "123456"


def test_postgres_may_use_dash_p_for_its_port_but_not_password_prompts() -> None:
    assert postgres(dump_options=["-p", "5433"]).dump_options == ["-p", "5433"]
    with pytest.raises(ValidationError):
        postgres(dump_options=["--password"])


# -- db_client: temp dir, credentials, cleanup ------------------------------------------


def test_mysql_credentials_go_to_a_0600_option_file_read_first_and_the_dir_is_removed() -> None:
    transport = FakeTransport(MARIADB_TOOLS)
    with db_client(transport, mysql(port=3307, socket="/run/my sql.sock")) as client:
        dump = client.dump_command()
        restore = client.restore_command("scratch")
    data, mode = transport.files[f"{WORKDIR}/client.cnf"]
    assert mode == 0o600
    assert data.decode() == (
        "[client]\n"
        'user="wp"\n'
        'password="s3cr:et\'\\"#\\\\pw"\n'
        'host="localhost"\n'
        "port=3307\n"
        'socket="/run/my sql.sock"\n'
    )
    argv = shlex.split(dump)
    assert argv[:2] == ["mariadb-dump", f"--defaults-extra-file={WORKDIR}/client.cnf"]
    assert argv[-2:] == ["--", "site db"]
    for flag in ("--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob"):
        assert flag in argv
    assert "--default-character-set=utf8mb4" in argv
    assert shlex.split(restore) == [
        "mariadb",
        f"--defaults-extra-file={WORKDIR}/client.cnf",
        "--default-character-set=utf8mb4",
        "--batch",
        "--",
        "scratch",
    ]
    assert SECRET not in dump + restore + "".join(transport.commands)
    assert transport.commands[-1] == shlex.join(["rm", "-rf", "--", WORKDIR])


def test_the_engine_picks_its_own_client_names_first_and_falls_back_to_the_other() -> None:
    with db_client(FakeTransport(MARIADB_TOOLS), mysql(engine="mysql")) as client:
        assert shlex.split(client.dump_command())[0] == "mysqldump"
    with db_client(FakeTransport(("mariadb-dump", "mariadb")), mysql(engine="mysql")) as client:
        assert shlex.split(client.restore_command("x"))[0] == "mariadb"


def test_dump_options_come_after_ours_so_they_can_override_them() -> None:
    with db_client(
        FakeTransport(MARIADB_TOOLS), mysql(dump_options=["--skip-events", "--ignore-table=a.b"])
    ) as c:
        argv = shlex.split(c.dump_command())
    assert argv.index("--skip-events") > argv.index("--events")
    assert argv[-4:] == ["--skip-events", "--ignore-table=a.b", "--", "site db"]


def test_a_missing_client_tool_is_a_clear_error() -> None:
    with db_client(FakeTransport(("mariadb",)), mysql()) as client, pytest.raises(StepFailed) as failed:
        client.dump_command()
    assert "mariadb-dump or mysqldump is not installed on fake@host" in str(failed.value)


def test_the_temp_dir_is_removed_when_the_block_fails() -> None:
    transport = FakeTransport(MARIADB_TOOLS)
    with pytest.raises(RuntimeError), db_client(transport, mysql()):
        raise RuntimeError("boom")
    assert transport.commands[-1] == shlex.join(["rm", "-rf", "--", WORKDIR])


def test_a_temp_dir_that_cannot_be_removed_is_reported() -> None:
    def respond(command: str) -> CommandResult:
        return (
            CommandResult(rc=1, stdout="", stderr="rm: busy", duration=0)
            if command.startswith("rm")
            else ok()
        )

    with (
        pytest.raises(StepFailed, match="holds the credentials"),
        db_client(FakeTransport(MARIADB_TOOLS, respond), mysql()),
    ):
        pass


def test_mktemp_failing_or_a_stop_request_during_setup() -> None:
    class NoTemp(FakeTransport):
        def run(self, command: Any, **kwargs: Any) -> CommandResult:
            return CommandResult(rc=1, stdout="", stderr="mktemp: No space left on device", duration=0)

    with pytest.raises(StepFailed, match="No space left on device"), db_client(NoTemp(), mysql()):
        pass

    class Stopped(FakeTransport):
        def run(self, command: Any, **kwargs: Any) -> CommandResult:
            assert kwargs["cancel"] is not None
            return CommandResult(rc=-15, stdout="", stderr="", duration=0, cancelled=True)

    with pytest.raises(StepCancelled), db_client(Stopped(), mysql(), threading.Event()):
        pass


# -- errors ------------------------------------------------------------------------


def client_for(
    settings: DatabaseSettings, respond: Responder, tools: Sequence[str] = MARIADB_TOOLS
) -> DatabaseClient:
    if settings.is_postgres:
        pg_tools = {"dump": "pg_dump", "restore": "pg_restore", "client": "psql"}
        return PostgresClient(FakeTransport(tools, respond), settings, WORKDIR, pg_tools)
    return MySQLClient(
        FakeTransport(tools, respond), settings, WORKDIR, {"dump": "mariadb-dump", "client": "mariadb"}
    )


def test_a_failed_query_names_the_database_quotes_stderr_and_masks_the_password() -> None:
    stderr = (
        "--------------\nSELECT 'a huge statement'\n--------------\n\n"
        f"ERROR 1045 (28000): Access denied for user 'wp'@'localhost' (using password: YES) {SECRET}\n"
    )
    client = client_for(mysql(), lambda c: CommandResult(rc=1, stdout="", stderr=stderr, duration=0))
    with pytest.raises(StepFailed) as failed:
        client.server_version()
    message = str(failed.value)
    assert message.startswith(
        "mariadb database 'site db' (localhost) on fake@host: server version query failed"
    )
    assert "Access denied for user 'wp'@'localhost'" in message and "db.password" in message
    assert "huge statement" not in message and "\n" not in message
    assert SECRET not in message and SECRET not in repr(failed.value.outputs)


def test_timeouts_and_stops_have_their_own_errors() -> None:
    client = client_for(mysql(), lambda c: ok())
    with pytest.raises(StepTimeout):
        client.check(CommandResult(rc=-9, stdout="", stderr="", duration=5, timed_out=True), "dump")
    with pytest.raises(StepCancelled):
        client.check(CommandResult(rc=-15, stdout="", stderr="", duration=5, cancelled=True), "dump")
    client.check(ok(), "dump")


def test_the_sites_own_database_is_never_dropped() -> None:
    for settings in (mysql(), postgres()):
        with pytest.raises(StepFailed, match="site's own database"):
            client_for(settings, lambda c: ok()).drop_database(settings.name)


# -- MySQL output parsing -------------------------------------------------------------


def test_mysql_table_stats_parses_batch_output_with_escaped_names() -> None:
    name = "tab\tand\\back"
    out = (
        f"R\t{b'posts'.hex().upper()}\t12\n"
        f"R\t{name.encode().hex().upper()}\t0\n"
        "site db.posts\t123456\n"
        "site db.tab\\tand\\\\back\t0\n"
    )
    commands: list[str] = []

    def respond(command: str) -> CommandResult:
        commands.append(command)
        return ok(out)

    stats = client_for(mysql(), respond).table_stats()
    assert stats == {"posts": {"rows": 12, "checksum": "123456"}, name: {"rows": 0, "checksum": "0"}}
    assert shlex.split(commands[0])[-2:] == ["--", "site db"]  # connects to it: a missing db is an error
    assert "BASE TABLE" in commands[0] and "CHECKSUM TABLE" in commands[0]


def test_option_file_values_and_batch_unescaping() -> None:
    assert option_value('a"b\\c#d e') == '"a\\"b\\\\c#d e"'
    assert unescape_batch("a\\tb\\nc\\\\d\\0") == "a\tb\nc\\d\0"


# -- PostgreSQL (no server here: command construction and parsing only) ---------------


def test_postgres_no_server_credentials_go_to_a_pgpass_file_named_by_pgpassfile() -> None:
    transport = FakeTransport(PG_TOOLS)
    with db_client(transport, postgres(host="db.internal", port=5433)) as client:
        dump = client.dump_command()
    data, mode = transport.files[f"{WORKDIR}/pgpass"]
    assert mode == 0o600
    assert data == b"*:*:*:app:s3cr\\:et'\"#\\\\pw\n"
    argv = shlex.split(dump)
    assert argv[0] == f"PGPASSFILE={WORKDIR}/pgpass"
    assert argv[1:5] == ["pg_dump", "--no-password", "--format=custom", "--compress=0"]
    assert argv[5] == "--dbname=host='db.internal' port=5433 user='app' dbname='shop'"
    assert SECRET not in dump


def test_postgres_no_server_odd_names_stay_values_in_the_connection_string() -> None:
    client = client_for(postgres(name="we'ird db=x"), lambda c: ok(), PG_TOOLS)
    assert isinstance(client, PostgresClient)
    assert "dbname='we\\'ird db=x'" in client.conninfo("we'ird db=x")
    restore = shlex.split(client.restore_command("scratch copy"))
    assert restore[1:5] == ["pg_restore", "--no-password", "--no-owner", "--exit-on-error"]
    assert restore[5] == "--dbname=host='localhost' user='app' dbname='scratch copy'"
    # in place: the dump's objects dropped first, all in one transaction
    in_place = shlex.split(client.restore_command("we'ird db=x"))
    assert in_place[5:8] == ["--clean", "--if-exists", "--single-transaction"]


def test_postgres_no_server_a_socket_file_gives_its_directory_and_port() -> None:
    client = client_for(postgres(socket="/var/run/postgresql/.s.PGSQL.5434"), lambda c: ok(), PG_TOOLS)
    assert isinstance(client, PostgresClient)
    assert client.conninfo("shop").startswith("host='/var/run/postgresql' port=5434 ")
    client = client_for(postgres(socket="/tmp"), lambda c: ok(), PG_TOOLS)
    assert isinstance(client, PostgresClient)
    assert client.conninfo("shop").startswith("host='/tmp' user=")


def test_postgres_no_server_create_and_drop_go_through_the_maintenance_db() -> None:
    commands: list[str] = []

    def respond(command: str) -> CommandResult:
        commands.append(command)
        return ok("LATIN1\tde_DE\tde_DE\n" if "pg_encoding_to_char" in command else "")

    client = client_for(postgres(), respond, PG_TOOLS)
    client.create_database('dri"ll')
    client.drop_database("drill")
    lookup, create, drop = (shlex.split(command) for command in commands)
    assert lookup[-1].endswith("FROM pg_database WHERE datname = 'shop'")
    assert create[1] == "psql" and "--set=ON_ERROR_STOP=1" in create
    maintenance = "--dbname=host='localhost' user='app' dbname='postgres'"
    assert maintenance in lookup and maintenance in create
    # the site database's encoding and locale, not the server's defaults
    assert create[-1] == (
        '--command=CREATE DATABASE "dri""ll" TEMPLATE template0'
        " ENCODING 'LATIN1' LC_COLLATE 'de_DE' LC_CTYPE 'de_DE'"
    )
    assert drop[-1] == '--command=DROP DATABASE IF EXISTS "drill"'


def test_postgres_no_server_table_stats_parses_hex_names_counts_and_digests() -> None:
    commands: list[str] = []
    odd = b"log\tbook".hex()
    out = (
        f"{b'public'.hex()}\t{b'orders'.hex()}\t42\t0123456789abcdef0123456789abcdef\n"
        f"{b'audit'.hex()}\t{odd}\t0\td41d8cd98f00b204e9800998ecf8427e\n"
    )

    def respond(command: str) -> CommandResult:
        commands.append(command)
        return ok(out)

    stats = client_for(postgres(), respond, PG_TOOLS).table_stats("shop_copy")
    assert stats == {
        "orders": {"rows": 42, "checksum": "0123456789abcdef0123456789abcdef"},
        "audit.log\tbook": {"rows": 0, "checksum": "d41d8cd98f00b204e9800998ecf8427e"},
    }
    argv = shlex.split(commands[0])
    assert "--dbname=host='localhost' user='app' dbname='shop_copy'" in argv
    assert "--tuples-only" in argv and "--field-separator=\t" in argv
    assert "query_to_xml" in argv[-1] and "'BASE TABLE'" in argv[-1]


def test_mysql_table_stats_read_counts_and_checksums_in_one_snapshot() -> None:
    commands: list[str] = []

    def respond(command: str) -> CommandResult:
        commands.append(command)
        return ok()

    assert client_for(mysql(), respond).table_stats() == {}
    sql = shlex.split(commands[0])[-3]
    listing, snapshot = sql.index("information_schema.TABLES"), sql.index("WITH CONSISTENT SNAPSHOT")
    assert "ISOLATION LEVEL REPEATABLE READ" in sql[listing:snapshot]  # the list first, then the snapshot
    assert snapshot < sql.index("EXECUTE s") < sql.index("COMMIT")


def test_mysql_table_stats_retry_once_when_a_table_goes_or_changes_meanwhile() -> None:
    answers = [
        CommandResult(
            rc=1, stdout="", stderr="ERROR 1412 (HY000) at line 1: Table definition has changed", duration=0
        ),
        ok(f"R\t{b'posts'.hex()}\t1\nsite db.posts\t99\n"),
    ]
    client = client_for(mysql(), lambda c: answers.pop(0))
    assert client.table_stats() == {"posts": {"rows": 1, "checksum": "99"}}
    gone = CommandResult(
        rc=1, stdout="", stderr="ERROR 1146 (42S02) at line 1: Table 'x' doesn't exist", duration=0
    )
    with pytest.raises(StepFailed, match="ERROR 1146"):
        client_for(mysql(), lambda c: gone).table_stats()  # twice in a row: an error
    other = CommandResult(rc=1, stdout="", stderr="ERROR 1049 (42000): Unknown database 'x'", duration=0)
    calls: list[str] = []
    with pytest.raises(StepFailed, match="Unknown database"):
        client_for(mysql(), lambda c: calls.append(c) or other).table_stats()  # type: ignore[func-returns-value]
    assert len(calls) == 1


def test_unstable_tables_are_the_ones_whose_figures_moved() -> None:
    before: dict[str, TableStat] = {
        "a": {"rows": 1, "checksum": "1"},
        "b": {"rows": 2, "checksum": "2"},
        "gone": {"rows": 0, "checksum": "0"},
    }
    after: dict[str, TableStat] = {
        "a": {"rows": 1, "checksum": "1"},
        "b": {"rows": 2, "checksum": "3"},
        "new": {"rows": 0, "checksum": "0"},
    }
    assert unstable_tables(before, after) == ["b", "gone", "new"]
    assert unstable_tables(before, dict(before)) == []


def test_database_exists_matches_the_name_exactly_unless_the_server_folds_case() -> None:
    def answer(*names: str, lower: str = "0") -> Responder:
        return lambda command: ok("".join(f"{n.encode().hex().upper()}\t{lower}\n" for n in names))

    assert client_for(mysql(), answer("Shop_copy")).database_exists("Shop_copy")
    assert not client_for(mysql(), answer("shop_copy")).database_exists(
        "Shop_copy"
    )  # the ci collation's match
    assert not client_for(mysql(), answer("shop_côpy")).database_exists("shop_copy")
    assert client_for(mysql(), answer("shop_copy", lower="1")).database_exists("Shop_copy")
    assert not client_for(mysql(), answer()).database_exists("x")
    commands: list[str] = []
    client_for(mysql(), lambda c: commands.append(c) or ok()).database_exists("we'ird")  # type: ignore[func-returns-value]
    assert "information_schema.SCHEMATA" in commands[0] and b"we'ird".hex() in commands[0].lower()


def test_postgres_no_server_schema_digest_leaves_out_restrict_keys_and_sees_sequences() -> None:
    state = {"key": "k1", "sequence": "7", "blobs": "0"}
    commands: list[str] = []

    def respond(command: str) -> CommandResult:
        commands.append(command)
        if "pg_largeobject_metadata" in command:
            return ok(state["blobs"] + "\n")
        if "--schema-only" in command:  # what pg_dump 15.14 and later write: a new key every run
            key = state["key"]
            return ok(f"--\n\\restrict {key}\n\nCREATE TABLE public.t ();\n\n\\unrestrict {key}\n\n")
        if "pg_sequences" in command:
            return ok(f"{b'public.s'.hex()}\t{state['sequence']}\n")
        raise AssertionError(command)

    client = client_for(postgres(dump_options=["--format=directory", "-n", "public"]), respond, PG_TOOLS)
    first = client.schema_digest()
    state["key"] = "k2"
    assert first is not None and client.schema_digest() == first
    state["sequence"] = "8"
    assert client.schema_digest() not in (None, first)
    state["blobs"] = "1"
    assert client.schema_digest() is None
    dump = shlex.split(next(c for c in commands if "--schema-only" in c))
    # the site's options, then plain text whatever they said
    assert dump[-6:] == ["--format=directory", "-n", "public", "--format=plain", "--compress=0", "--encoding=UTF8"]


def test_postgres_no_server_database_exists_asks_pg_database() -> None:
    commands: list[str] = []

    def respond(command: str) -> CommandResult:
        commands.append(command)
        return ok("1\n" if "'shop_copy'" in command else "")

    client = client_for(postgres(), respond, PG_TOOLS)
    assert client.database_exists("shop_copy") and not client.database_exists("other")
    argv = shlex.split(commands[0])
    assert "--dbname=host='localhost' user='app' dbname='postgres'" in argv
    assert argv[-1] == "--command=SELECT 1 FROM pg_database WHERE datname = 'shop_copy'"


# -- stale credential dirs -----------------------------------------------------------------


def test_the_setup_removes_only_this_users_old_maintainer_db_dirs_in_the_temp_dir() -> None:
    transport = FakeTransport(MARIADB_TOOLS)
    with db_client(transport, mysql()):
        pass
    setup = transport.commands[0]
    clean, make = setup.index("find "), setup.index("mktemp -d")
    assert clean < make  # in the same command, before the new dir is made
    assert 't="${TMPDIR:-/tmp}"' in setup and '"$t/maintainer-db.XXXXXXXXXX"' in setup  # the same dir
    find = setup[clean : setup.index("; }", clean) + 3]
    for part in (
        'find "$t" -mindepth 1 -maxdepth 1 -type d',
        "-name 'maintainer-db.??????????'",
        '-user "$(id -u)"',
        f"-mmin +{STALE_WORKDIR_MINUTES}",
        "-exec rm -rf -- {} +",
        "|| true",  # a failing cleanup never stops the setup
    ):
        assert part in find, part
    assert STALE_WORKDIR_MINUTES == 360


# -- DEFINER clauses -------------------------------------------------------------------------

VIEW_LINE = b"/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */\n"
DUMP = b"".join(
    [
        b"-- MariaDB dump 10.19\n",
        b"INSERT INTO `t` VALUES\n",
        b"(1,'CREATE DEFINER=`root`@`localhost` FUNCTION in data'),\n",
        b"(2,'/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */');\n",
        b"INSERT INTO `u` VALUES (1,'DEFINER=`a`@`b`'),(2,'x');\n",
        b"/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER tr AFTER INSERT ON t FOR EACH ROW\n",
        b"INSERT INTO log VALUES ('DEFINER=`x`@`y`') */;;\n",
        b"/*!50106 CREATE*/ /*!50117 DEFINER=`web``admin`@`%`*/ /*!50106 EVENT `ev` ON SCHEDULE EVERY 1 DAY DO DO 1 */ ;;\n",
        b"CREATE DEFINER=`root`@`localhost` FUNCTION `f`() RETURNS int(11)\n",
        b"/*!50003 CREATE*/ /*!50020 DEFINER='old'@'10.0.0.%'*/ /*!50003 PROCEDURE `p`() SELECT 1 */;;\n",
        b"CREATE DEFINER=CURRENT_USER PROCEDURE `q`() SELECT 1;;\n",
        b"CREATE DEFINER=`site_role` PROCEDURE `r`() SELECT 1;;\n",
        b"/*!50001 CREATE ALGORITHM=UNDEFINED */\n",
        VIEW_LINE,
        b"/*!50001 VIEW `v` AS select 1 AS `DEFINER` */;\n",
        b"CREATE OR REPLACE ALGORITHM=MERGE DEFINER=`u`@`h` SQL SECURITY INVOKER VIEW `w` AS SELECT 1;\n",
        b"/*M!100401 DEFINER=`u`@`h`*/ SELECT 1;\n",
        b"-- Dump completed on 2026-01-01",
    ]
)
STRIPPED = b"".join(
    [
        b"-- MariaDB dump 10.19\n",
        b"INSERT INTO `t` VALUES\n",
        b"(1,'CREATE DEFINER=`root`@`localhost` FUNCTION in data'),\n",
        b"(2,'/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */');\n",
        b"INSERT INTO `u` VALUES (1,'DEFINER=`a`@`b`'),(2,'x');\n",
        b"/*!50003 CREATE*/ /*!50003 TRIGGER tr AFTER INSERT ON t FOR EACH ROW\n",
        b"INSERT INTO log VALUES ('DEFINER=`x`@`y`') */;;\n",
        b"/*!50106 CREATE*/ /*!50106 EVENT `ev` ON SCHEDULE EVERY 1 DAY DO DO 1 */ ;;\n",
        b"CREATE FUNCTION `f`() RETURNS int(11)\n",
        b"/*!50003 CREATE*/ /*!50003 PROCEDURE `p`() SELECT 1 */;;\n",
        b"CREATE PROCEDURE `q`() SELECT 1;;\n",
        b"CREATE PROCEDURE `r`() SELECT 1;;\n",
        b"/*!50001 CREATE ALGORITHM=UNDEFINED */\n",
        b"/*!50013 SQL SECURITY DEFINER */\n",
        b"/*!50001 VIEW `v` AS select 1 AS `DEFINER` */;\n",
        b"CREATE OR REPLACE ALGORITHM=MERGE SQL SECURITY INVOKER VIEW `w` AS SELECT 1;\n",
        b"SELECT 1;\n",
        b"-- Dump completed on 2026-01-01",
    ]
)


def filtered(data: bytes, size: int) -> tuple[bytes, int]:
    """``data`` through a DefinerFilter in chunks of ``size`` bytes, one reused buffer."""
    out: list[bytes] = []
    stripper = DefinerFilter(lambda view: out.append(bytes(view)))
    buffer = bytearray(size)
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        buffer[: len(piece)] = piece
        assert stripper.write(memoryview(buffer)[: len(piece)]) == len(piece)
    stripper.close()
    return b"".join(out), stripper.removed


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11, 64, 100, 1000, 1 << 20])
def test_definer_clauses_go_wherever_the_chunks_are_cut(size: int) -> None:
    assert filtered(DUMP, size) == (STRIPPED, 9)


def test_strip_definers_as_a_generator_and_without_a_final_newline() -> None:
    assert b"".join(strip_definers(iter([DUMP[:100], DUMP[100:]]))) == STRIPPED
    assert b"".join(strip_definers([VIEW_LINE.rstrip(b"\n")])) == b"/*!50013 SQL SECURITY DEFINER */"
    assert b"".join(strip_definers([b"/*!500", b"13 DEFINER=`a`@`b` SQL SECURITY DEFINER */"])) == (
        b"/*!50013 SQL SECURITY DEFINER */"
    )
    assert list(strip_definers([])) == []


def test_long_lines_pass_through_untouched_with_bounded_carry() -> None:
    row = b"INSERT INTO `t` VALUES " + b"(1,'DEFINER=`x`@`y`')," * 100_000 + b"(2,'z');\n"
    long_view = (
        VIEW_LINE.rstrip(b"\n") + b" " * DEFINER_HEAD + b"/*!50013 DEFINER=`a`@`b` SQL SECURITY DEFINER */\n"
    )
    data = row + long_view + row
    out, removed = filtered(data, 65536)
    # only the clause at the start of a line goes; text past DEFINER_HEAD is never looked at
    assert out == row + long_view.replace(b"DEFINER=`root`@`localhost` ", b"", 1) + row
    assert removed == 1

    held: list[int] = []
    stripper = DefinerFilter(lambda view: held.append(len(view)))
    stripper.write(b"/*!50013 DEFINER=`r`@`h` SQL")  # too short to tell: held back
    assert held == []
    stripper.write(b"x" * DEFINER_HEAD)  # the line's start is known now: passed on, not held
    assert sum(held) == DEFINER_HEAD + len(b"/*!50013 SQL")
    stripper.write(b"/*!50013 DEFINER=`r`@`h` SQL SECURITY DEFINER */")  # still the same line: untouched
    stripper.close()
    assert stripper.removed == 1


def test_only_mysql_restores_get_a_filter() -> None:
    def sink(view: memoryview) -> None:
        pass

    assert isinstance(client_for(mysql(), lambda c: ok()).restore_filter(sink), DefinerFilter)
    assert client_for(postgres(), lambda c: ok(), PG_TOOLS).restore_filter(sink) is None
