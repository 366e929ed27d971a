"""Restore drills end to end through the real CLI (issue 4): real sshd, real MariaDB, Debian's WordPress
served by PHP's built-in server, S3 through moto's server, local stores.

Every test also checks that the drill left nothing behind: no scratch dir, no scratch database,
no PHP server (by its command line and by its port).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.backup_helpers import chown_tree, make_site, table_checksums
from tests.helpers import MAINTAINER, REPO, cli, local_site, make_project, read_log
from tests.servers.mariadb import sql_string
from tests.servers.web import BLOG_TITLE, WORDPRESS, install_wordpress

RUNBOOKS = {
    f"{name}@{version}": (REPO / "runbooks" / name / f"{version}.yml").read_text()
    for name, version in (("backup", "1.0.0"), ("restore-drill", "1.0.0"))
}
EXCLUDE = ["wp-content/cache", "*.log"]


def run_json(project: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    proc = cli(project, *args, "--output", "json", timeout=300)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        doc = None
    return proc, doc


def drill_record(project: Path, site: str) -> dict[str, Any]:
    """The drill's record as the change log keeps it (the last entry)."""
    entry = read_log(project)[-1]
    assert entry["runbook"]["name"] == "restore-drill"
    changes = [c for c in entry["sites"][site]["changes"] if c.get("what") == "restore_drill"]
    assert len(changes) == 1, entry["sites"][site]
    return changes[0]


def php_servers(scratch: str) -> list[int]:
    """PIDs of processes whose command line names the scratch dir (the drill's php -S)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if scratch in cmdline and "php" in cmdline:
            found.append(int(proc.name))
    return found


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def assert_clean(record: dict[str, Any], parent: Path, db: Any = None) -> None:
    """Nothing of the scratch target is left: dir, database, PHP server."""
    assert record["cleanup"] == "ok", record
    assert not list(parent.glob(".maintainer-drill-*")), list(parent.iterdir())
    if record["scratch"]["dir"]:
        assert Path(record["scratch"]["dir"]).parent == parent
        assert not Path(record["scratch"]["dir"]).exists()
        assert php_servers(record["scratch"]["dir"]) == []
    if record["smoke"]:
        port = int(record["smoke"]["url"].split(":")[2].split("/")[0])
        assert not listening(port)
    if db is not None:
        assert live_hits(db) == "", "the drill's smoke test wrote into the live database"
        left = db.server.sql(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
            f"WHERE SCHEMA_NAME LIKE {sql_string(db.name + '_drill_%')}"
        )
        assert left.strip() == "", left
        if record["scratch"]["db"]:
            assert record["scratch"]["db"].startswith(f"{db.name}_drill_")


def check_record_shape(record: dict[str, Any]) -> None:
    keys = {
        "what", "outcome", "backup", "backup_taken", "backup_finished", "started", "rto_seconds",
        "rpo_seconds", "max_gap_seconds", "window_days", "sla", "sla_missed", "failure", "files_verified",
        "bytes_restored", "tables_verified", "tables_skipped", "smoke", "drill_host", "scratch", "cleanup",
        "timings",
    }  # fmt: skip
    assert keys <= set(record), keys - set(record)
    assert record["outcome"] in ("passed", "sla_missed", "failed")


def php(value: Any) -> str:
    """A PHP literal (strings single-quoted: the test password holds every awkward character)."""
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


#: how each kind of site names its database, and how its index.php reads that
CONFIGS = {
    "custom": (
        "config.php",
        lambda d: (
            f"<?php\n$db_name = {php(d['name'])};\n$db_user = {php(d['user'])};\n"
            f"$db_password = {php(d['password'])};\n$db_host = {php(d['host'])};\n$db_port = {d['port']};\n"
        ),
        "$c = new mysqli($db_host, $db_user, $db_password, $db_name, $db_port);",
    ),
    "drupal": (
        "sites/default/settings.php",
        lambda d: (
            f"<?php\n$databases['default']['default'] = array (\n  'database' => {php(d['name'])},\n"
            f"  'username' => {php(d['user'])},\n  'password' => {php(d['password'])},\n"
            f"  'host' => {php(d['host'])},\n  'port' => {d['port']},\n  'driver' => 'mysql',\n);\n"
        ),
        "$d = $databases['default']['default'];"
        " $c = new mysqli($d['host'], $d['username'], $d['password'], $d['database'], (int) $d['port']);",
    ),
    "joomla": (
        "configuration.php",
        lambda d: (
            f"<?php\nclass JConfig {{\n\tpublic $dbtype = 'mysqli';\n\tpublic $host = "
            f"{php(d['host'] + ':' + str(d['port']))};\n\tpublic $user = {php(d['user'])};\n"
            f"\tpublic $password = {php(d['password'])};\n\tpublic $db = {php(d['name'])};\n"
            "\tpublic $live_site = 'https://live.example';\n}\n"
        ),
        "$j = new JConfig(); [$h, $p] = explode(':', $j->host);"
        " $c = new mysqli($h, $j->user, $j->password, $j->db, (int) $p);",
    ),
}


def db_site(docroot: Path, cms: str, db: dict[str, Any]) -> None:
    """A site whose home page reads AND writes its database (a hit counter): served against the live
    database, a drill would show up there as a drill_hits table."""
    config, text, connect = CONFIGS[cms]
    (docroot / config).parent.mkdir(parents=True, exist_ok=True)
    (docroot / config).write_text(text(db))
    (docroot / "index.php").write_text(
        f"<?php\nrequire __DIR__ . '/{config}';\n{connect}\n"
        "$c->query('CREATE TABLE IF NOT EXISTS drill_hits (id INT AUTO_INCREMENT PRIMARY KEY)');\n"
        "$c->query('INSERT INTO drill_hits VALUES ()');\n"
        "echo 'Example Site on ', $c->query('SELECT DATABASE()')->fetch_row()[0];\n"
    )


def live_hits(db: Any) -> str:
    """Whether anything wrote a drill_hits table into the live database (it must not)."""
    return db.server.sql(
        "SELECT TABLE_NAME FROM information_schema.TABLES"
        f" WHERE TABLE_SCHEMA = {sql_string(db.name)} AND TABLE_NAME = 'drill_hits'"
    ).strip()


def local_drill_site(tmp_path: Path, cms: str = "static", **extra: Any) -> tuple[Path, Path, dict[str, Any]]:
    """A small site on this machine (the backup tests' tree, whose index.php prints 'Example Site').

    With a db, it is a custom PHP site whose config.php names the database, and the site declares
    the drill.config_rewrite that points its scratch copy at the scratch database.
    """
    parent = tmp_path / "www"
    docroot = make_site(parent / "site")
    store = tmp_path / "store"
    if "db" in extra and cms == "static":
        cms = "custom"
        db_site(docroot, "custom", extra["db"])
        rewrite = {"file": "config.php", "search": f"$db_name = {php(extra['db']['name'])};",
                   "replace": "$db_name = '{db}';"}  # fmt: skip
        extra["drill"] = {"config_rewrite": [rewrite], **extra.get("drill", {})}
    vars_ = local_site(
        tmp_path,
        docroot=str(docroot),
        cms=cms,
        health_marker="Example Site",
        backup={"target": f"file://{store}", "exclude": EXCLUDE, "pack_size": 1024 * 1024},
        **extra,
    )
    return parent, store, vars_


# ------------------------------------------------------------------ passes


def test_a_wordpress_site_over_ssh_backed_up_to_s3_passes_its_drill(
    tmp_path, sshd_server, mariadb_db, s3_server, s3_bucket
):
    if not WORDPRESS.is_dir():
        pytest.skip("wordpress is installed by .ci/run")
    workspace = sshd_server.workspace(f"drill-{os.getpid()}-{time.monotonic_ns()}")
    site = install_wordpress(workspace / "site", mariadb_db)
    chown_tree(workspace, sshd_server.user)
    live_files = {p: p.stat().st_mtime_ns for p in site.docroot.rglob("*.php")}
    live_tables = table_checksums(mariadb_db)
    site_vars = sshd_server.site_vars(
        docroot=str(site.docroot),
        cms="wordpress",
        health_marker=BLOG_TITLE,
        db=mariadb_db.settings(),
        sla={"rto": "10m", "rpo": "1d"},
        backup={
            "target": f"s3://{s3_bucket}/nightly",
            "s3": {
                "endpoint_url": s3_server.endpoint_url,
                "region": "us-east-1",
                "access_key_id": "testing",
                "secret_access_key": "s3-secret-drill",
            },
        },
    )
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": site_vars})
    assert cli(project, "run", "backup", timeout=300).returncode == 0

    proc, doc = run_json(project, "run", "restore-drill", "--ticket", "OPS-9")
    assert proc.returncode == 0, proc.stderr
    record = drill_record(project, "shop")
    check_record_shape(record)
    assert record["outcome"] == "passed" and record["failure"] is None, record
    assert record["drill_host"] == "shop" and record["sla_missed"] == []
    assert record["sla"] == {"rto_seconds": 600.0, "rpo_seconds": 86400.0}
    assert record["files_verified"] > 1000 and record["bytes_restored"] > 10_000_000
    assert record["tables_verified"] >= 10 and record["tables_skipped"] == 0
    assert record["smoke"]["status"] == 200 and record["smoke"]["url"].startswith("http://127.0.0.1:")
    assert 0 < record["rto_seconds"] < 600
    assert 0 <= record["rpo_seconds"] < 600 and record["max_gap_seconds"] >= record["rpo_seconds"]
    assert record["window_days"] == 7
    assert set(record["timings"]) >= {"fetch", "restore", "smoke", "cleanup"}
    assert record["scratch"]["dir"].startswith(str(workspace) + "/.maintainer-drill-")
    assert_clean(record, workspace, mariadb_db)
    # the live site is untouched, and the step says so (changed: false)
    assert "changed" not in doc["sites"]["shop"]["steps"][0]
    assert {p: p.stat().st_mtime_ns for p in site.docroot.rglob("*.php")} == live_files
    assert table_checksums(mariadb_db) == live_tables
    assert "s3-secret-drill" not in (project / "changelog.jsonl").read_text()
    assert mariadb_db.password not in (project / "changelog.jsonl").read_text() + proc.stdout + proc.stderr


# ------------------------------------------------------------------ SLA


def test_a_drill_that_misses_its_rto_is_sla_missed_not_failed(tmp_path, mariadb_db):
    mariadb_db.seed(50)
    parent, _store, vars_ = local_drill_site(
        tmp_path, db=mariadb_db.settings(), sla={"rto": "1ms", "rpo": "1d"}
    )
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0

    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 1, proc.stderr  # cron must notice
    record = drill_record(project, "shop")
    check_record_shape(record)
    assert record["outcome"] == "sla_missed" and record["failure"] is None
    assert record["sla_missed"] == ["rto"] and record["rto_seconds"] > 0.001
    assert record["tables_verified"] == 4 and record["smoke"]["status"] == 200
    assert "RTO" in proc.stderr and "over the 0.0s target" in proc.stderr
    assert_clean(record, parent, mariadb_db)

    proc, _doc = run_json(project, "run", "restore-drill", "-p", "sla_miss=report")
    assert proc.returncode == 0, proc.stderr
    record = drill_record(project, "shop")
    assert record["outcome"] == "sla_missed" and record["sla_missed"] == ["rto"]
    assert_clean(record, parent, mariadb_db)


# ------------------------------------------------------------------ failures


def test_a_corrupted_pack_fails_the_drill_at_files_naming_the_pack_and_its_files(tmp_path):
    parent, store, vars_ = local_drill_site(tmp_path)
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    packs = sorted((store / "shop" / "packs").rglob("*.tar.zst"))
    pack = max(packs, key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    pack.write_bytes(bytes(data))

    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 1
    record = drill_record(project, "shop")
    check_record_shape(record)
    assert record["outcome"] == "failed" and record["failure"]["stage"] == "files", record
    assert pack.name.removesuffix(".tar.zst") in record["failure"]["message"]
    assert record["rto_seconds"] is None
    assert "files" in proc.stderr and pack.name.removesuffix(".tar.zst") in proc.stderr
    assert_clean(record, parent)


def test_a_missing_pack_fails_the_drill_at_fetch_naming_the_object(tmp_path):
    parent, store, vars_ = local_drill_site(tmp_path)
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    pack = sorted((store / "shop" / "packs").rglob("*.tar.zst"))[0]
    pack.unlink()

    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 1
    record = drill_record(project, "shop")
    assert record["failure"]["stage"] == "fetch", record
    assert f"packs/{pack.parent.name}/{pack.name}" in record["failure"]["message"]
    assert_clean(record, parent)


def test_a_table_missing_from_the_dump_fails_the_drill_at_database_naming_the_table(tmp_path, mariadb_db):
    """The dump left a table out (a careless --ignore-table): only a restore finds it."""
    mariadb_db.seed(50)
    db = mariadb_db.settings(dump_options=[f"--ignore-table={mariadb_db.name}.post_log"])
    parent, _store, vars_ = local_drill_site(tmp_path, db=db)
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0

    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 1
    record = drill_record(project, "shop")
    assert record["outcome"] == "failed" and record["failure"]["stage"] == "database", record
    assert "post_log: expected 50 rows" in record["failure"]["message"]
    assert "restored nothing" in record["failure"]["message"]
    assert record["tables_verified"] == 3
    assert_clean(record, parent, mariadb_db)


def test_a_site_whose_restored_home_page_answers_500_fails_at_smoke(tmp_path, mariadb_db):
    parent, _store, vars_ = local_drill_site(tmp_path, db=mariadb_db.settings())
    docroot = Path(vars_["docroot"])
    # a plugin update broke the site before the backup: the backup restores a broken site
    (docroot / "index.php").write_text("<?php\necho 'Example Site';\nbroken_call();\n")
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0

    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 1
    record = drill_record(project, "shop")
    assert record["outcome"] == "failed" and record["failure"]["stage"] == "smoke", record
    message = record["failure"]["message"]
    assert "HTTP 500" in message and "broken_call()" in message and "Fatal error" in message, message
    assert record["smoke"]["status"] == 500 and record["rto_seconds"] is None
    assert_clean(record, parent, mariadb_db)


def test_a_stopped_drill_still_cleans_up(tmp_path, mariadb_db):
    """SIGTERM during the smoke test: the run stops, the scratch target goes all the same."""
    parent, _store, vars_ = local_drill_site(tmp_path, db=mariadb_db.settings(), drill={"smoke_timeout": 120})
    docroot = Path(vars_["docroot"])
    (docroot / "index.php").write_text("<?php sleep(60); echo 'late';\n")
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    proc = subprocess.Popen(
        [MAINTAINER, "--project", str(project), "run", "restore-drill", "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "MAINTAINER_OPERATOR": "tester"},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(parent.glob(".maintainer-drill-*/server.pid")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.terminate()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    record = drill_record(project, "shop")
    assert record["outcome"] == "failed" and record["failure"]["message"].startswith("stopped"), record
    assert "stopped: stopped" not in record["failure"]["message"]
    # nothing was rolled back (the drill has no rollback): the site's message must not claim it
    assert "rolled back" not in read_log(project)[-1]["sites"]["shop"]["error"]
    assert_clean(record, parent, mariadb_db)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"sla": {"rto": "soon"}}, "sla.rto"),
        ({"sla": {"rto": "30m", "rpx": "1d"}}, "sla.rpx"),
        ({"sla": "30m"}, "'sla' must be a mapping"),
        ({"drill": {"scratch": "/tmp"}}, "drill.scratch"),
        ({"drill": {"scratch_dir": "relative"}}, "drill.scratch_dir"),
        ({"drill_host": 5}, "drill_host"),
    ],
)
def test_bad_drill_vars_are_bad_input_and_nothing_runs(tmp_path, extra, expected):
    parent, _store, vars_ = local_drill_site(tmp_path, **extra)
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    proc = cli(project, "run", "restore-drill")
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert read_log(project) == []
    assert not list(parent.glob(".maintainer-drill-*"))


def test_a_dry_run_says_which_backup_and_where(tmp_path):
    parent, _store, vars_ = local_drill_site(tmp_path)
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    proc, doc = run_json(project, "run", "restore-drill", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    text = json.dumps(doc)
    assert "would drill backup" in text and str(parent / ".maintainer-drill-") in text
    # human units, not a raw timedelta ("RPO now 0:00:05.383724")
    assert re.search(r"RPO now \d+\.\ds, largest gap \d+\.\ds", text), text
    assert not list(parent.glob(".maintainer-drill-*"))


def test_a_drill_on_a_drill_host_puts_the_scratch_copy_there(tmp_path, sshd_server, mariadb_db):
    """drill_host: the scratch dir is made over SSH on that host (as its user), the database from there."""
    mariadb_db.seed(20)
    scratch = sshd_server.workspace(f"scratch-{os.getpid()}-{time.monotonic_ns()}")
    parent, _store, vars_ = local_drill_site(tmp_path, db=mariadb_db.settings(), drill_host="drills")
    drills = sshd_server.site_vars(drill={"scratch_dir": str(scratch)})
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_, "drills": drills})
    assert cli(project, "run", "backup", "--limit", "shop").returncode == 0

    proc, _doc = run_json(project, "run", "restore-drill", "--limit", "shop")
    assert proc.returncode == 0, proc.stderr
    record = drill_record(project, "shop")
    assert record["outcome"] == "passed" and record["drill_host"] == "drills", record
    assert record["scratch"]["dir"].startswith(str(scratch) + "/.maintainer-drill-")
    assert record["tables_verified"] == 4 and record["smoke"]["status"] == 200
    assert_clean(record, scratch, mariadb_db)
    assert not list(parent.glob(".maintainer-drill-*"))


# ------------------------------------------------------------------ issue 4 review (new-user findings)


def cms_site(tmp_path: Path, cms: str, db: Any, **extra: Any) -> tuple[Path, dict[str, Any]]:
    """A PHP site of ``cms`` whose home page reads and writes its database (see db_site)."""
    parent = tmp_path / "www"
    docroot = parent / "site"
    docroot.mkdir(parents=True)
    db_site(docroot, cms, db.settings())
    vars_ = local_site(
        tmp_path, docroot=str(docroot), cms=cms, health_marker="Example Site", db=db.settings(),
        backup={"target": f"file://{tmp_path / 'store'}"}, **extra,
    )  # fmt: skip
    return parent, vars_


@pytest.mark.parametrize("cms", ["drupal", "joomla"])
def test_a_drupal_or_joomla_copy_is_served_against_the_scratch_database_never_the_live_one(
    tmp_path, mariadb_db, cms
):
    mariadb_db.seed(10)
    parent, vars_ = cms_site(tmp_path, cms, mariadb_db)
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0

    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 0, proc.stderr
    record = drill_record(project, "shop")
    assert record["outcome"] == "passed" and record["smoke"]["status"] == 200, record
    assert record["smoke_skipped"] is None
    assert live_hits(mariadb_db) == ""  # the page's INSERT went to the scratch copy
    assert_clean(record, parent, mariadb_db)


def test_a_custom_site_with_a_database_and_no_rewrite_is_not_served_against_live_data(tmp_path, mariadb_db):
    parent, vars_ = cms_site(tmp_path, "custom", mariadb_db)
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0

    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 0, proc.stderr
    record = drill_record(project, "shop")
    assert record["outcome"] == "passed" and record["smoke"] is None, record
    assert "would use the live database" in record["smoke_skipped"]
    assert "drill.config_rewrite" in record["smoke_skipped"]
    assert "smoke: skipped: the copy's config would use the live database" in proc.stderr
    assert live_hits(mariadb_db) == ""
    assert_clean(record, parent, mariadb_db)


def test_a_custom_site_served_with_smoke_env_reads_the_scratch_database(tmp_path, mariadb_db):
    parent, vars_ = cms_site(tmp_path, "custom", mariadb_db, drill={"smoke_env": {"APP_DB": "{db}"}})
    docroot = Path(vars_["docroot"])
    config = docroot / "config.php"
    config.write_text(config.read_text().replace("$db_name = ", "$db_name = getenv('APP_DB') ?: "))
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0

    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 0, proc.stderr
    record = drill_record(project, "shop")
    assert record["smoke"]["status"] == 200 and live_hits(mariadb_db) == "", record
    assert_clean(record, parent, mariadb_db)


def test_a_static_site_without_a_database_is_still_served(tmp_path):
    parent, _store, vars_ = local_drill_site(tmp_path)
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 0, proc.stderr
    record = drill_record(project, "shop")
    assert record["smoke"]["status"] == 200 and record["smoke_skipped"] is None
    assert record["timings"]["cleanup"] < 0.8, record["timings"]  # no zombie kept the kill loop waiting
    assert_clean(record, parent)


def test_wordpress_defining_wp_home_and_siteurl_passes(tmp_path, mariadb_db):
    if not WORDPRESS.is_dir():
        pytest.skip("wordpress is installed by .ci/run")
    parent = tmp_path / "www"
    parent.mkdir()
    site = install_wordpress(parent / "site", mariadb_db)
    config = site.docroot / "wp-config.php"
    config.write_text(config.read_text().replace(
        "<?php", "<?php\ndefine( \"WP_HOME\", \"https://shop.example\" );\ndefine('WP_SITEURL', 'https://shop.example');", 1
    ))  # fmt: skip
    vars_ = local_site(
        tmp_path, docroot=str(site.docroot), cms="wordpress", health_marker=BLOG_TITLE, db=mariadb_db.settings(),
        backup={"target": f"file://{tmp_path / 'store'}", "exclude": EXCLUDE},
    )  # fmt: skip
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup", timeout=300).returncode == 0
    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 0, proc.stderr
    record = drill_record(project, "shop")
    assert record["smoke"]["status"] == 200, record
    assert "shop.example" in config.read_text()  # the live wp-config is untouched
    assert_clean(record, parent, mariadb_db)


def test_a_host_that_only_serves_as_drill_host_is_skipped_and_an_unknown_one_is_bad_input(
    tmp_path, sshd_server, mariadb_db
):
    scratch = sshd_server.workspace(f"scratch-{os.getpid()}-{time.monotonic_ns()}")
    parent, _store, vars_ = local_drill_site(tmp_path, drill_host="drills01")
    drills = sshd_server.site_vars(drill={"scratch_dir": str(scratch)})
    lonely = local_site(tmp_path, docroot=str(tmp_path))  # a genuine site without a backup target
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_, "drills01": drills})
    assert cli(project, "run", "backup", "--limit", "shop").returncode == 0

    # the documented cron line: no --limit
    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 0, proc.stderr
    assert drill_record(project, "shop")["outcome"] == "passed"
    skipped = read_log(project)[-1]["sites"]["drills01"]
    assert skipped["status"] == "ok" and skipped["changes"][0]["what"] == "restore_drill_skipped", skipped
    assert "only serves as the drill_host of shop" in skipped["changes"][0]["reason"]
    assert "skipped: drills01 only serves as the drill_host of shop" in proc.stderr

    # a genuine site without a backup target still stops the run
    project2 = make_project(tmp_path / "p2", dict(RUNBOOKS), {"shop": vars_, "drills01": drills, "x": lonely})
    proc = cli(project2, "run", "restore-drill")
    assert proc.returncode == 2 and "site 'x' has no backup target" in proc.stderr, proc.stderr

    # an unknown drill_host: bad input at plan time, nothing runs
    vars_["drill_host"] = "nosuchhost"
    project3 = make_project(tmp_path / "p3", dict(RUNBOOKS), {"shop": vars_})
    proc = cli(project3, "run", "restore-drill")
    assert proc.returncode == 2 and "drill_host 'nosuchhost' is not a host of the inventory" in proc.stderr
    assert read_log(project3) == []
    assert not list(parent.glob(".maintainer-drill-*"))


def test_the_next_drill_removes_what_a_killed_drill_left_behind(tmp_path, mariadb_db):
    parent, _store, vars_ = local_drill_site(tmp_path, db=mariadb_db.settings())
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    # what a SIGKILLed drill leaves: its scratch dir (with a copy of the config), its PHP server, its db
    left = parent / ".maintainer-drill-shop-abc123"
    (left / "site").mkdir(parents=True)
    (left / "site" / "config.php").write_text("<?php $db_password = 'secret';\n")
    server = subprocess.Popen(
        ["setsid", "php", "-S", "127.0.0.1:0", "-t", str(left / "site")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    leftover_db = f"{mariadb_db.name}_drill_abc123"
    mariadb_db.server.sql(f"CREATE DATABASE `{leftover_db}`")
    other_site_dir = parent / ".maintainer-drill-blog-abc123"  # another site's: not ours to touch
    other_site_dir.mkdir()
    try:
        time.sleep(0.3)
        assert php_servers(str(left)) != []
        proc, _doc = run_json(project, "run", "restore-drill")
        assert proc.returncode == 0, proc.stderr
        record = drill_record(project, "shop")
        removed = record["leftovers_removed"]
        assert any(str(left) in r for r in removed) and any(leftover_db in r for r in removed), removed
        assert any("PHP server" in r for r in removed), removed
        assert "removed leftovers of an earlier interrupted drill" in proc.stderr
        assert not left.exists() and php_servers(str(left)) == []
        server.wait(timeout=5)
        assert other_site_dir.exists()
        other_site_dir.rmdir()
        assert_clean(record, parent, mariadb_db)
    finally:
        if server.poll() is None:
            server.kill()


def test_without_the_create_grant_the_drill_fails_at_database_and_cleanup_is_ok(tmp_path, mariadb_db):
    parent, _store, vars_ = local_drill_site(tmp_path, db=mariadb_db.settings())
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    scratch = "`" + mariadb_db.name.replace("_", "\\_") + "\\_%`"
    mariadb_db.server.sql(f"REVOKE ALL PRIVILEGES ON {scratch}.* FROM {sql_string(mariadb_db.user)}@'%'")

    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 1
    record = drill_record(project, "shop")
    assert record["failure"]["stage"] == "database", record
    assert "GRANT ALL ON" in record["failure"]["message"] and "docs/DRILLS.md" in record["failure"]["message"]
    assert "SCRATCH LEFT BEHIND" not in record["failure"]["message"]
    assert_clean(record, parent, mariadb_db)


def test_a_scratch_dir_in_the_docroot_is_bad_input(tmp_path):
    for inside in ("", "/cache"):
        _parent, _store, vars_ = local_drill_site(tmp_path / f"t{len(inside)}")
        vars_["drill"] = {"scratch_dir": vars_["docroot"] + inside}
        project = make_project(tmp_path / f"p{len(inside)}", dict(RUNBOOKS), {"shop": vars_})
        proc = cli(project, "run", "restore-drill")
        assert proc.returncode == 2 and "drill.scratch_dir" in proc.stderr, proc.stderr
        assert "write its scratch copy into the live site" in proc.stderr


def test_an_unknown_or_empty_backup_param_is_bad_input_naming_the_param(tmp_path):
    _parent, _store, vars_ = local_drill_site(tmp_path)
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    for _ in range(2):
        assert cli(project, "run", "backup").returncode == 0
        time.sleep(0.01)
    ids = sorted(
        p.name.removesuffix(".json.zst")
        for p in (tmp_path / "store" / "shop" / "manifests").glob("*.json.zst")
    )
    proc = cli(project, "run", "restore-drill", "-p", "backup=nosuchid")
    assert proc.returncode == 2
    assert "-p backup=nosuchid matches no backup" in proc.stderr and "key 'backup'" not in proc.stderr
    assert f"newest first: {ids[-1]}, {ids[0]}" in proc.stderr, proc.stderr
    proc = cli(project, "run", "restore-drill", "-p", "backup=")
    assert proc.returncode == 2 and "-p backup=latest" in proc.stderr, proc.stderr


def test_with_backup_root_the_project_is_restored_and_its_web_dir_served(tmp_path):
    # a Composer project (Drupal's layout): composer.lock and vendor/ beside the web/ docroot
    parent = tmp_path / "www"
    project_dir = parent / "project"
    web = make_site(project_dir / "web")
    (project_dir / "composer.lock").write_text("{}\n")
    (project_dir / "vendor").mkdir()
    (project_dir / "vendor" / "autoload.php").write_text("<?php\n")
    vars_ = local_site(
        tmp_path, docroot=str(web), cms="static", health_marker="Example Site",
        backup={"target": f"file://{tmp_path / 'store'}", "exclude": EXCLUDE, "root": str(project_dir)},
    )  # fmt: skip
    project = make_project(tmp_path / "project", dict(RUNBOOKS), {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    proc, _doc = run_json(project, "run", "restore-drill")
    assert proc.returncode == 0, proc.stderr
    record = drill_record(project, "shop")
    assert record["smoke"]["status"] == 200, record  # web/ served, not the project root
    assert record["files_verified"] >= 3  # composer.lock and vendor/ were in the backup too
    assert Path(record["scratch"]["dir"]).parent == parent  # beside the project, not inside it
    assert_clean(record, parent)
