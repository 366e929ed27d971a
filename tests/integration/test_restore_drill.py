"""Restore drills end to end through the real CLI (issue 4): real sshd, real MariaDB, Debian's WordPress
served by PHP's built-in server, S3 through moto's server, local stores.

Every test also checks that the drill left nothing behind: no scratch dir, no scratch database,
no PHP server (by its command line and by its port).
"""

from __future__ import annotations

import json
import os
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


def local_drill_site(tmp_path: Path, **extra: Any) -> tuple[Path, Path, dict[str, Any]]:
    """A small site on this machine (the backup tests' tree, whose index.php prints 'Example Site')."""
    parent = tmp_path / "www"
    docroot = make_site(parent / "site")
    store = tmp_path / "store"
    vars_ = local_site(
        tmp_path,
        docroot=str(docroot),
        cms="static",
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
