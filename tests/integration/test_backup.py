"""Backups end to end through the real CLI: real sshd, real MariaDB, S3 through moto's server, local stores.

Round trip: back up, wreck files and database, restore, compare every file hash and every table
checksum. Also: incremental backups upload almost nothing, corruption is found and named, an
interrupted backup leaves no complete backup, prune keeps what is referenced, faults are clear.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zstandard

from maintainer.backup.manifest import backup_ids, load_manifest
from maintainer.backup.prune import prune_backups
from maintainer.backup.retention import RetentionPolicy
from maintainer.backup.store import LocalStore
from maintainer.backup.streams import Deadline
from tests.backup_helpers import chown_tree, fingerprint, make_site, table_checksums
from tests.helpers import MAINTAINER, REPO, cli, local_site, make_project, read_log

SHIPPED = {
    f"{name}@{version}": (REPO / "runbooks" / name / f"{version}.yml").read_text()
    for name, version in (("backup", "1.0.0"), ("restore", "1.0.0"), ("backup-prune", "1.0.0"))
}
EXCLUDE = ["wp-content/cache", "*.log"]


def unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def project_with(root: Path, sites: dict[str, dict[str, Any]]) -> Path:
    return make_project(root / "project", dict(SHIPPED), sites)


def run_json(project: Path, *args: str, **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], Any]:
    proc = cli(project, *args, "--output", "json", **kwargs)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        doc = None
    return proc, doc


def site_change(doc: dict[str, Any], site: str, what: str) -> dict[str, Any]:
    changes = [c for c in doc["sites"][site]["changes"] if c.get("what") == what]
    assert changes, doc["sites"][site]
    return changes[0]


def local_backup_site(tmp_path: Path, **backup: Any) -> tuple[Path, Path, dict[str, Any]]:
    docroot = make_site(tmp_path / "site")
    store = tmp_path / "store"
    vars_ = local_site(
        tmp_path,
        docroot=str(docroot),
        backup={"target": f"file://{store}", "exclude": EXCLUDE, **backup},
    )
    return docroot, store, vars_


# ------------------------------------------------------------------ the round trip


def test_round_trip_over_ssh_to_s3_with_mariadb(tmp_path, sshd_server, mariadb_db, s3_server, s3_bucket):
    """The issue's round trip: SSH site + MariaDB -> moto S3; wreck both; restore; every hash and checksum equal."""
    mariadb_db.seed(300)
    docroot = make_site(sshd_server.workspace(f"rt-{os.getpid()}-{time.monotonic_ns()}"))
    chown_tree(docroot, sshd_server.user)
    secret = "s3-secret-" + os.urandom(6).hex()
    site_vars = sshd_server.site_vars(
        docroot=str(docroot),
        db=mariadb_db.settings(),
        backup={
            "target": f"s3://{s3_bucket}/nightly",
            "exclude": EXCLUDE,
            "s3": {
                "endpoint_url": s3_server.endpoint_url,
                "region": "us-east-1",
                "access_key_id": "testing",
                "secret_access_key": secret,
                "part_size": 5 * 1024 * 1024,
            },
        },
    )
    project = project_with(tmp_path, {"shop": site_vars})
    files_before = fingerprint(docroot)
    tables_before = table_checksums(mariadb_db)

    proc, doc = run_json(project, "run", "backup", "--ticket", "OPS-1")
    assert proc.returncode == 0, proc.stderr
    change = site_change(doc, "shop", "backup")
    assert change["location"] == f"s3://{s3_bucket}/nightly/shop"
    assert change["files"] == sum(1 for v in files_before.values() if v[0] == "file")
    assert change["bytes_read"] > 600_000 and change["bytes_uploaded"] > 0 and change["duration"] > 0
    assert change["databases"][0]["name"] == mariadb_db.name and change["databases"][0]["tables"] == 4
    objects = s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="nightly/shop/")["Contents"]
    keys = [o["Key"] for o in objects]
    assert any(k.startswith("nightly/shop/manifests/") for k in keys)
    assert any(k.startswith("nightly/shop/db/") for k in keys)
    assert not any("/locks/" in k for k in keys), "the in-progress lock is removed when the backup ends"

    # wreck the site: delete, change, add files; drop a table, change rows
    (docroot / "index.php").write_text("<?php echo 'hacked';\n")
    (docroot / "wp-content" / "file001.php").unlink()
    (docroot / "wp-content" / "uploads" / "2026" / "photo.jpg").unlink()
    (docroot / "malware.php").write_text("<?php eval($_GET['x']);\n")
    (docroot / "wp-content" / "cache" / "page.html").write_text("cache is excluded: left alone\n")
    mariadb_db.sql(
        "DROP TABLE post_log; UPDATE posts SET title = 'x' WHERE id < 50; DELETE FROM media WHERE id > 250"
    )
    assert table_checksums(mariadb_db) != tables_before

    proc, doc = run_json(project, "restore", "shop", "--yes", "--ticket", "OPS-2")
    assert proc.returncode == 0, proc.stderr
    restored = site_change(doc, "shop", "restore")
    assert restored["removed"] == 1 and restored["damaged"] == [] and restored["table_mismatches"] == []
    assert fingerprint(docroot) == files_before
    assert (docroot / "wp-content" / "cache" / "page.html").read_text() == "cache is excluded: left alone\n"
    assert table_checksums(mariadb_db) == tables_before
    owner = (docroot / "index.php").stat()
    assert (owner.st_uid, owner.st_gid) == (docroot.stat().st_uid, docroot.stat().st_gid)

    # the change log has both runs; no secret anywhere
    entries = read_log(project)
    assert [e["runbook"]["name"] for e in entries] == ["backup", "restore"]
    assert entries[0]["sites"]["shop"]["changes"][0]["backup_id"] == change["backup_id"]
    everything = proc.stdout + proc.stderr + (project / "changelog.jsonl").read_text()
    assert secret not in everything and mariadb_db.password not in everything


def test_restore_elsewhere_partial_and_into_another_database(tmp_path, mariadb_db):
    mariadb_db.seed(50)
    docroot, _, vars_ = local_backup_site(tmp_path)
    vars_["db"] = mariadb_db.settings()
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0

    other = tmp_path / "elsewhere"
    proc, doc = run_json(
        project, "restore", "shop", "--to", str(other), "--path", "wp-content/uploads", "--files-only"
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(str(p.relative_to(other)) for p in other.rglob("*") if p.is_file()) == [
        "wp-content/uploads/2026/photo.jpg"
    ]
    assert (other / "wp-content/uploads/2026/photo.jpg").read_bytes() == (
        docroot / "wp-content/uploads/2026/photo.jpg"
    ).read_bytes()

    scratch = mariadb_db.scratch_name("copy")
    proc, doc = run_json(project, "restore", "shop", "--db-only", "--db", scratch)
    assert proc.returncode == 0, proc.stderr
    assert site_change(doc, "shop", "restore")["database"] == scratch
    assert table_checksums(mariadb_db, scratch) == table_checksums(mariadb_db)
    mariadb_db.server.sql(f"DROP DATABASE `{scratch}`")


def test_restore_over_the_live_site_needs_yes_without_a_terminal(tmp_path):
    _, _, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    proc = cli(project, "restore", "shop")
    assert proc.returncode == 2
    assert "--yes" in proc.stderr and "--to DIR" in proc.stderr


# ------------------------------------------------------------------ incremental


def test_unchanged_site_uploads_almost_nothing_and_touched_files_are_not_sent_again(tmp_path):
    docroot, _store, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    first = site_change(run_json(project, "run", "backup")[1], "shop", "backup")
    second = site_change(run_json(project, "run", "backup")[1], "shop", "backup")
    assert second["new_files"] == 0 and second["parent"] == first["backup_id"]
    assert second["bytes_uploaded"] < 0.01 * first["total_bytes"], second

    # every file touched (a redeploy that rewrites identical files): hashed on the site, not sent again
    later = time.time() + 100
    for path in docroot.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path, (later, later))
    touched = site_change(run_json(project, "run", "backup")[1], "shop", "backup")
    assert touched["new_files"] == 0 and touched["bytes_uploaded"] < 0.02 * first["total_bytes"], touched

    # one file changed: exactly that one is sent
    (docroot / "wp-content" / "file010.php").write_text("<?php // changed\n")
    changed = site_change(run_json(project, "run", "backup")[1], "shop", "backup")
    assert changed["new_files"] == 1 and changed["new_bytes"] == len("<?php // changed\n")

    # the newest backup restores to exactly the current files
    out = tmp_path / "out"
    assert cli(project, "restore", "shop", "--to", str(out)).returncode == 0
    assert fingerprint(out) == fingerprint(docroot)


def test_backups_list_shows_each_backup(tmp_path):
    _, _, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    for _ in range(2):
        assert cli(project, "run", "backup").returncode == 0
    proc, doc = run_json(project, "backups", "list", "shop")
    assert proc.returncode == 0, proc.stderr
    rows = doc["backups"]
    assert [r["status"] for r in rows] == ["complete", "complete"]
    assert (
        rows[0]["files"] == rows[1]["files"] > 60 and rows[1]["new_bytes"] == 0 and rows[0]["size"] > 600_000
    )
    text = cli(project, "backups", "list", "shop")
    assert rows[0]["id"] in text.stdout and "complete" in text.stdout


# ------------------------------------------------------------------ damage


def test_corrupted_and_missing_packs_are_found_and_named(tmp_path):
    _docroot, store, vars_ = local_backup_site(tmp_path, pack_size=1024 * 1024)
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    assert cli(project, "backups", "verify", "shop", "--read-data").returncode == 0

    packs = sorted((store / "shop" / "packs").rglob("*.tar.zst"))
    assert packs
    # flip bytes in the middle of the pack: the size is unchanged, only --read-data sees it
    pack = packs[0]
    data = bytearray(pack.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    pack.write_bytes(bytes(data))
    assert cli(project, "backups", "verify", "shop").returncode == 0
    proc, doc = run_json(project, "backups", "verify", "shop", "--read-data")
    assert proc.returncode == 1, proc.stderr
    problems = " ".join(doc["backups"][0]["problems"])
    assert doc["ok"] is False and pack.name in problems

    pack.unlink()
    proc, doc = run_json(project, "backups", "verify", "shop")
    assert proc.returncode == 1
    problems = " ".join(doc["backups"][0]["problems"])
    assert "missing" in problems and "damaged files" in problems and "index.php" in problems

    # a restore names what it could not restore and still restores nothing wrong silently
    out = tmp_path / "out"
    proc = cli(project, "restore", "shop", "--to", str(out))
    assert proc.returncode == 1
    assert "damaged" in proc.stderr and "index.php" in proc.stderr


def test_a_torn_manifest_is_reported_not_trusted(tmp_path):
    _, store, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    manifest = next((store / "shop" / "manifests").iterdir())
    manifest.write_bytes(manifest.read_bytes()[:40])
    proc, doc = run_json(project, "backups", "verify", "shop")
    assert proc.returncode == 1 and "unreadable" in json.dumps(doc)
    # the next backup cannot build on it: it says so and makes a full backup
    proc, doc = run_json(project, "run", "backup", "-p", "prune=false")
    assert proc.returncode == 0, proc.stderr
    change = site_change(doc, "shop", "backup")
    assert change["parent"] is None and "unreadable" in " ".join(change["warnings"])


# ------------------------------------------------------------------ interruption


def _start_backup(project: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MAINTAINER, "--project", str(project), "run", "backup", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MAINTAINER_OPERATOR": "tester"},
    )


def _wait_for(predicate: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_an_interrupted_backup_leaves_no_complete_backup_and_the_next_one_succeeds(tmp_path, how):
    docroot, store, vars_ = local_backup_site(tmp_path)
    # a big sparse file keeps tar busy long enough to be interrupted on any machine
    with open(docroot / "huge.bin", "wb") as fh:
        fh.truncate(3 * 1024**3)
    project = project_with(tmp_path, {"shop": vars_})
    proc = _start_backup(project)
    _wait_for(
        lambda: any((store / "shop" / "packs").rglob("*")) if (store / "shop" / "packs").exists() else False
    )
    proc.send_signal(how)
    _out, err = proc.communicate(timeout=60)
    site_store = LocalStore(store / "shop")
    assert backup_ids(site_store) == [], "no manifest: the interrupted backup does not exist"
    if how == signal.SIGTERM:
        assert proc.returncode == 130, err
        entry = read_log(project)[-1]
        assert entry["status"] == "interrupted" and entry["sites"]["shop"]["status"] != "ok"
        assert not (store / "shop" / "locks").exists() or not any((store / "shop" / "locks").iterdir())
    else:
        listed = run_json(project, "backups", "list", "shop")[1]["backups"]
        assert [r["status"] for r in listed] == ["interrupted"]

    (docroot / "huge.bin").unlink()
    proc, _doc = run_json(project, "run", "backup", "-p", "prune=false")
    assert proc.returncode == 0, proc.stderr
    assert len(backup_ids(site_store)) == 1
    out_dir = tmp_path / "out"
    assert cli(project, "restore", "shop", "--to", str(out_dir)).returncode == 0
    assert fingerprint(out_dir) == fingerprint(docroot)


def test_a_dump_that_fails_half_way_fails_the_site_and_keeps_no_dump(tmp_path, mariadb_db):
    mariadb_db.seed(100)
    # a view over a table that is gone: mysqldump writes the tables, then fails on the view
    mariadb_db.sql(
        "CREATE TABLE doomed (id INT); CREATE VIEW zz_broken AS SELECT id FROM doomed; DROP TABLE doomed"
    )
    _, store, vars_ = local_backup_site(tmp_path)
    vars_["db"] = mariadb_db.settings()
    project = project_with(tmp_path, {"shop": vars_})
    proc, doc = run_json(project, "run", "backup")
    assert proc.returncode == 1
    error = doc["sites"]["shop"]["error"]
    assert "dump of database" in error and mariadb_db.name in error
    site_store = LocalStore(store / "shop")
    assert backup_ids(site_store) == []
    assert list(site_store.list("db/")) == [], "no partial dump is kept"


# ------------------------------------------------------------------ retention


def test_prune_removes_expired_backups_and_keeps_what_remaining_ones_reference(tmp_path):
    docroot, store, vars_ = local_backup_site(tmp_path, retention={"keep_last": 2})
    project = project_with(tmp_path, {"shop": vars_})
    for i in range(4):
        (docroot / f"new{i}.txt").write_text(f"backup {i}\n")
        proc = cli(project, "run", "backup", "-p", "prune=false")
        assert proc.returncode == 0, proc.stderr
    site_store = LocalStore(store / "shop")
    ids = backup_ids(site_store)
    first_pack = load_manifest(site_store, ids[0]).entries[0].pack
    assert len(ids) == 4

    proc, doc = run_json(project, "backups", "prune", "shop", "--dry-run")
    assert proc.returncode == 0 and backup_ids(site_store) == ids
    proc, doc = run_json(project, "backups", "prune", "shop")
    assert proc.returncode == 0, proc.stderr
    pruned = site_change(doc, "shop", "backups_pruned")
    assert pruned["removed"] == ids[:2] and backup_ids(site_store) == ids[2:]
    # the first pack holds files every later backup still points at: it stays, and is still used
    kept = {p.pack for p in load_manifest(site_store, ids[-1]).entries}
    assert first_pack in kept
    assert cli(project, "backups", "verify", "shop", "--read-data").returncode == 0
    out = tmp_path / "out"
    assert cli(project, "restore", "shop", "--to", str(out)).returncode == 0
    assert fingerprint(out) == fingerprint(docroot)


def test_prune_never_removes_what_a_running_backup_may_use(tmp_path):
    _, store, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    site_store = LocalStore(store / "shop")
    # a backup in progress: its lock and a pack it has written, referenced by no manifest yet
    started = datetime.now(UTC) - timedelta(hours=3)
    site_store.put_bytes("locks/running.json", json.dumps({"started": started.isoformat()}).encode())
    site_store.put_bytes("packs/ab/abcdef.tar.zst", b"data of a backup that is still running")
    old = time.time() - 2 * 3600
    os.utime(site_store.path("packs/ab/abcdef.tar.zst"), (old, old))
    policy = RetentionPolicy(keep_last=1)
    report = prune_backups(site_store, policy, Deadline(threading.Event()))
    assert report.objects_removed == 0 and report.objects_held == 1
    assert site_store.head("packs/ab/abcdef.tar.zst") is not None
    # once the backup is gone (its lock removed), the orphan goes too
    site_store.delete(["locks/running.json"])
    report = prune_backups(site_store, policy, Deadline(threading.Event()))
    assert report.objects_removed == 1 and site_store.head("packs/ab/abcdef.tar.zst") is None
    assert cli(project, "backups", "verify", "shop", "--read-data").returncode == 0


# ------------------------------------------------------------------ faults and bad input


def test_store_faults_fail_the_site_with_a_clear_error(tmp_path, s3_server, s3_bucket):
    docroot = make_site(tmp_path / "site")
    base = local_site(tmp_path, docroot=str(docroot))
    s3 = {"endpoint_url": s3_server.endpoint_url, "access_key_id": "testing", "secret_access_key": "testing"}
    closed = {**s3, "endpoint_url": "http://127.0.0.1:9", "max_attempts": 1, "connect_timeout": 1}
    sites = {
        "unreachable": {**base, "backup": {"target": f"s3://{s3_bucket}/x", "s3": closed}},
        "nobucket": {**base, "backup": {"target": "s3://no-such-bucket-here/x", "s3": s3}},
    }
    project = project_with(tmp_path, sites)
    proc, doc = run_json(project, "run", "backup")
    assert proc.returncode == 1
    assert "127.0.0.1:9" in doc["sites"]["unreachable"]["error"]
    assert "no-such-bucket-here" in doc["sites"]["nobucket"]["error"]
    assert "does not exist" in doc["sites"]["nobucket"]["error"]
    assert read_log(project)[-1]["sites"]["nobucket"]["status"] == "failed"


def test_wrong_credentials_fail_the_site(tmp_path, s3_server, s3_bucket):
    docroot = make_site(tmp_path / "site")
    s3 = {
        "endpoint_url": s3_server.endpoint_url,
        "access_key_id": "AKIAWRONGWRONGWRONG",
        "secret_access_key": "nope-secret",
    }
    vars_ = local_site(tmp_path, docroot=str(docroot), backup={"target": f"s3://{s3_bucket}/x", "s3": s3})
    project = project_with(tmp_path, {"shop": vars_})
    with s3_server.require_auth():
        proc, doc = run_json(project, "run", "backup")
    assert proc.returncode == 1
    assert "access denied" in doc["sites"]["shop"]["error"]
    assert "nope-secret" not in proc.stdout + proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_local_store_fails_the_site_and_keeps_no_backup(tmp_path):
    docroot = make_site(tmp_path / "site", big_bytes=3 * 1024 * 1024)
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        vars_ = local_site(tmp_path, docroot=str(docroot), backup={"target": f"file://{mount}"})
        project = project_with(tmp_path, {"shop": vars_})
        proc, doc = run_json(project, "run", "backup")
        assert proc.returncode == 1
        assert "no space left" in doc["sites"]["shop"]["error"]
        assert backup_ids(LocalStore(mount / "shop")) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize(
    ("backup", "expected"),
    [
        ({"target": "ftp://host/x"}, "neither s3:// nor file://"),
        ({"target": "file://relative/path"}, "not an absolute path"),
        ({"target": "file:///tmp/x", "excludes": ["a"]}, "unknown key 'backup.excludes'"),
        ({"target": "file:///tmp/x", "retention": {"keep_daily": -1}}, "backup.retention.keep_daily"),
        ({"target": "s3://bucket-name/x", "s3": {"access_key_id": "AKIA"}}, "secret_access_key"),
        ({"exclude": []}, "backup.target"),
    ],
)
def test_bad_backup_settings_are_bad_input_and_nothing_runs(tmp_path, backup, expected):
    docroot = make_site(tmp_path / "site")
    vars_ = local_site(tmp_path, docroot=str(docroot), backup=backup)
    project = project_with(tmp_path, {"shop": vars_})
    proc, doc = run_json(project, "run", "backup")
    assert proc.returncode == 2, proc.stderr
    assert expected in doc["error"] and "test.yml" in doc["error"]
    assert not (project / "changelog.jsonl").exists()


def test_missing_s3_credentials_are_bad_input(tmp_path):
    docroot = make_site(tmp_path / "site")
    vars_ = local_site(tmp_path, docroot=str(docroot), backup={"target": "s3://bucket-name/x"})
    project = project_with(tmp_path, {"shop": vars_})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true", "MAINTAINER_OPERATOR": "tester"}  # fmt: skip
    proc = subprocess.run(
        [MAINTAINER, "--project", str(project), "run", "backup", "-o", "json"],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    assert proc.returncode == 2, proc.stderr
    assert "no AWS credentials" in doc["error"] and "shop" in doc["error"]


def test_a_site_that_is_not_in_the_inventory_is_bad_input(tmp_path):
    _, _, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    proc = cli(project, "backups", "list", "shpo")
    assert proc.returncode == 2 and "did you mean 'shop'" in proc.stderr


def test_an_emergency_restore_outside_the_window_needs_ignore_window(tmp_path):
    from tests.integration.test_maintenance_window import window

    _, _, vars_ = local_backup_site(tmp_path)
    assert cli(project_with(tmp_path, {"shop": vars_}), "run", "backup").returncode == 0
    vars_["maintenance_window"] = window(is_open=False)
    project = project_with(tmp_path, {"shop": vars_})
    out = tmp_path / "out"
    refused = cli(project, "restore", "shop", "--to", str(out))
    assert refused.returncode == 3 and "maintenance window" in refused.stderr and not out.exists()
    proc, doc = run_json(project, "restore", "shop", "--to", str(out), "--ignore-window")
    assert proc.returncode == 0, proc.stderr
    assert doc["ignore_window"] is True and doc["sites"]["shop"]["window"]["ignored"] is True
    assert (out / "index.php").exists()


def test_verify_without_any_backup_fails_a_nightly_check(tmp_path):
    _, _, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    proc = cli(project, "backups", "verify", "shop")
    assert proc.returncode == 1 and "no backups yet" in proc.stdout


# ------------------------------------------------------------------ review findings


def test_copies_and_renames_are_stored_once(tmp_path):
    docroot, _store, vars_ = local_backup_site(tmp_path)
    big = os.urandom(2 * 1024 * 1024)
    (docroot / "video.mp4").write_bytes(big)
    project = project_with(tmp_path, {"shop": vars_})
    first = site_change(run_json(project, "run", "backup")[1], "shop", "backup")
    (docroot / "video-copy.mp4").write_bytes(big)  # a copy
    (docroot / "wp-content" / "uploads" / "2026").rename(docroot / "wp-content" / "uploads" / "moved")  # a rename
    (docroot / "twins").mkdir()
    twin = os.urandom(300_000)
    (docroot / "twins" / "a.bin").write_bytes(twin)
    (docroot / "twins" / "b.bin").write_bytes(twin)  # two new identical files: sent once
    second = site_change(run_json(project, "run", "backup")[1], "shop", "backup")
    assert second["bytes_uploaded"] < 350_000 + 0.01 * first["total_bytes"], second
    out = tmp_path / "out"
    assert cli(project, "restore", "shop", "--to", str(out)).returncode == 0
    assert fingerprint(out) == fingerprint(docroot)
    assert cli(project, "backups", "verify", "shop", "--read-data").returncode == 0


def test_a_lost_pack_is_not_carried_into_the_next_backup(tmp_path):
    _docroot, store, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    next((store / "shop" / "packs").rglob("*.tar.zst")).unlink()
    proc, doc = run_json(project, "run", "backup", "-p", "prune=false")
    assert proc.returncode == 0, proc.stderr
    change = site_change(doc, "shop", "backup")
    assert change["new_files"] == change["files"] and "sent again" in " ".join(change["warnings"])
    proc, doc = run_json(project, "backups", "verify", "shop")
    assert [b["ok"] for b in doc["backups"]] == [False, True], doc


def test_a_pack_found_corrupt_by_verify_is_not_reused(tmp_path):
    _docroot, store, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    pack = next((store / "shop" / "packs").rglob("*.tar.zst"))
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    assert cli(project, "backups", "verify", "shop", "--read-data").returncode == 1
    change = site_change(run_json(project, "run", "backup", "-p", "prune=false")[1], "shop", "backup")
    assert change["new_files"] == change["files"]
    newest = run_json(project, "backups", "list", "shop")[1]["backups"][-1]["id"]
    assert cli(project, "backups", "verify", "shop", newest, "--read-data").returncode == 0


def test_verify_names_a_damaged_file_whatever_its_name(tmp_path):
    docroot = tmp_path / "site"
    docroot.mkdir()
    (docroot / "x:y.bin").write_bytes(os.urandom(10_000))
    store = tmp_path / "store"
    vars_ = local_site(tmp_path, docroot=str(docroot), backup={"target": f"file://{store}"})
    project = project_with(tmp_path, {"colon": vars_})
    assert cli(project, "run", "backup").returncode == 0
    pack = next((store / "colon" / "packs").rglob("*.tar.zst"))
    raw = bytearray(unzstd(pack.read_bytes()))
    raw[600] ^= 0xFF  # inside the file's content; recompressed so only the file's hash can tell
    pack.write_bytes(zstandard.ZstdCompressor().compress(bytes(raw)))
    proc, doc = run_json(project, "backups", "verify", "colon", "--read-data")
    assert proc.returncode == 1 and "x:y.bin" in " ".join(doc["backups"][0]["problems"])


def test_an_in_place_restore_never_writes_corrupt_bytes_over_a_live_file(tmp_path):
    docroot, store, vars_ = local_backup_site(tmp_path, pack_size=1024 * 1024)
    big = os.urandom(5 * 1024 * 1024)  # over the in-memory check size: goes through a temporary name
    (docroot / "big.bin").write_bytes(big)
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    for pack in (store / "shop" / "packs").rglob("*.tar.zst"):
        raw = bytearray(unzstd(pack.read_bytes()))
        for name in (b"index.php\0", b"big.bin\0"):
            at = raw.find(name)
            if at >= 0:
                raw[at + 512 + 5] ^= 0xFF  # a byte of the content (the name starts the header)
        pack.write_bytes(zstandard.ZstdCompressor().compress(bytes(raw)))
    (docroot / "index.php").write_text("<?php // live and healthy\n")
    proc, _doc = run_json(project, "restore", "shop", "--yes")
    assert proc.returncode == 1
    assert (docroot / "index.php").read_text() == "<?php // live and healthy\n"
    assert (docroot / "big.bin").read_bytes() == big
    assert not list(docroot.glob(".*maintainer-partial"))
    assert "index.php" in proc.stderr and "big.bin" in proc.stderr


def test_an_in_place_restore_leaves_excluded_and_unreadable_paths_alone(tmp_path, sshd_server):
    docroot = make_site(sshd_server.workspace(f"ex-{os.getpid()}-{time.monotonic_ns()}"))
    (docroot / "uploads").mkdir()
    (docroot / "uploads" / "photo.jpg").write_bytes(b"excluded when the backup was taken")
    (docroot / "rootonly.txt").write_text("the site user cannot read this\n")
    (docroot / "privdir").mkdir()
    (docroot / "privdir" / "secret.txt").write_text("nor this\n")
    chown_tree(docroot, sshd_server.user)
    os.chown(docroot / "rootonly.txt", 0, 0)
    (docroot / "rootonly.txt").chmod(0o600)
    os.chown(docroot / "privdir", 0, 0)
    (docroot / "privdir").chmod(0o700)
    store = sshd_server.workspace(f"store-{os.getpid()}-{time.monotonic_ns()}")
    vars_ = sshd_server.site_vars(docroot=str(docroot), backup={"target": f"file://{store}", "exclude": ["uploads"]})
    project = project_with(tmp_path, {"shop": vars_})
    proc, doc = run_json(project, "run", "backup")
    assert proc.returncode == 0, proc.stderr
    warnings = " ".join(site_change(doc, "shop", "backup")["warnings"])
    assert "rootonly.txt" in warnings and "privdir" in warnings
    vars_["backup"]["exclude"] = []  # the exclude is dropped later: a restore must still not delete
    project = project_with(tmp_path, {"shop": vars_})
    proc, doc = run_json(project, "restore", "shop", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert (docroot / "uploads" / "photo.jpg").exists()
    assert (docroot / "rootonly.txt").exists() and (docroot / "privdir" / "secret.txt").exists()


def test_restore_elsewhere_restores_only_what_is_named(tmp_path, mariadb_db):
    mariadb_db.seed(20)
    docroot, _, vars_ = local_backup_site(tmp_path)
    vars_["db"] = mariadb_db.settings()
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    mariadb_db.sql("INSERT INTO post_log (post_id, note) VALUES (1, 'written after the backup')")
    live_tables = table_checksums(mariadb_db)
    out = tmp_path / "out"
    assert cli(project, "restore", "shop", "--to", str(out)).returncode == 0  # files only: no --yes needed
    assert table_checksums(mariadb_db) == live_tables
    (docroot / "index.php").write_text("live\n")
    scratch = mariadb_db.scratch_name("only")
    assert cli(project, "restore", "shop", "--db", scratch).returncode == 0  # database only
    assert (docroot / "index.php").read_text() == "live\n"
    mariadb_db.server.sql(f"DROP DATABASE `{scratch}`")
    # naming the live targets is in place: it needs --yes
    for args in (["--to", str(docroot) + "/"], ["--db", mariadb_db.name]):
        proc = cli(project, "restore", "shop", *args)
        assert proc.returncode == 2 and "--yes" in proc.stderr, args


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--backup", "19990101"], "matches no backup"),
        (["--path", "no/such/*", "--to", "/tmp/x"], "no path in backup"),
        (["--to", "relative/dir"], "absolute path"),
    ],
)
def test_restore_input_mistakes_are_bad_input(tmp_path, args, expected):
    _, _, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    proc = cli(project, "restore", "shop", "--yes", *args)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert [e["runbook"]["name"] for e in read_log(project)] == ["backup"]


def test_paths_with_commas_and_brackets_and_globs_that_stay_in_one_directory(tmp_path):
    docroot, _, vars_ = local_backup_site(tmp_path)
    (docroot / "a,b.txt").write_text("comma\n")
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    out = tmp_path / "out"
    proc = cli(project, "restore", "shop", "--to", str(out), "--path", "a,b.txt", "--path", "star*[[]x].css", "--path", "*.php")
    assert proc.returncode == 0, proc.stderr
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == ["-starts-with-dash.php", "a,b.txt", "index.php", "star*[x].css"]


def test_an_unchanged_database_shares_the_previous_dump_and_any_change_dumps_again(tmp_path, mariadb_db):
    mariadb_db.seed(50)
    _, store, vars_ = local_backup_site(tmp_path)
    vars_["db"] = mariadb_db.settings()
    project = project_with(tmp_path, {"shop": vars_})
    dumps = lambda: sorted(p.relative_to(store) for p in (store / "shop" / "db").rglob("*.zst"))  # noqa: E731
    first = site_change(run_json(project, "run", "backup")[1], "shop", "backup")
    second = site_change(run_json(project, "run", "backup")[1], "shop", "backup")
    assert first["databases"][0]["dump"] == "new" and second["databases"][0]["dump"].startswith("unchanged")
    assert len(dumps()) == 1 and second["bytes_uploaded"] < first["bytes_uploaded"] / 10
    # a row changed: dumped again; a row added and deleted again: the schema (AUTO_INCREMENT) says so
    mariadb_db.sql("UPDATE posts SET title = 'changed' WHERE id = 3")
    assert site_change(run_json(project, "run", "backup")[1], "shop", "backup")["databases"][0]["dump"] == "new"
    mariadb_db.sql("INSERT INTO post_log (post_id, note) VALUES (1, 'x'); DELETE FROM post_log WHERE note = 'x'")
    assert site_change(run_json(project, "run", "backup")[1], "shop", "backup")["databases"][0]["dump"] == "new"
    assert len(dumps()) == 3
    # a backup whose dump is shared restores like any other
    unchanged = site_change(run_json(project, "run", "backup")[1], "shop", "backup")
    assert unchanged["databases"][0]["dump"].startswith("unchanged")
    expected = table_checksums(mariadb_db)
    scratch = mariadb_db.scratch_name("shared")
    assert cli(project, "restore", "shop", "--db", scratch).returncode == 0
    assert table_checksums(mariadb_db, scratch) == expected
    mariadb_db.server.sql(f"DROP DATABASE `{scratch}`")


# ------------------------------------------------------------------ second review


def test_running_the_restore_runbook_directly_never_overwrites_the_live_site_unasked(tmp_path):
    docroot, _, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    (docroot / "index.php").write_text("live\n")
    proc = cli(project, "run", "restore")
    assert proc.returncode == 2 and "overwrite_live=true" in proc.stderr
    assert (docroot / "index.php").read_text() == "live\n"
    assert cli(project, "run", "restore", "-p", "overwrite_live=true").returncode == 0
    assert (docroot / "index.php").read_text() != "live\n"


def test_other_spellings_of_the_live_docroot_are_the_live_docroot(tmp_path):
    docroot, _, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    (docroot / "index.php").write_text("live\n")
    assert cli(project, "restore", "shop", "--to", "/" + str(docroot)).returncode == 2  # //path
    link = tmp_path / "link-to-site"
    link.symlink_to(docroot)
    proc = cli(project, "restore", "shop", "--to", str(link))
    assert proc.returncode == 1 and "is the live docroot" in proc.stderr
    assert (docroot / "index.php").read_text() == "live\n"


def test_a_restore_in_place_keeps_excluded_files_in_new_directories_and_never_follows_planted_symlinks(tmp_path):
    docroot, _, vars_ = local_backup_site(tmp_path)
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    (docroot / "newdir").mkdir()
    (docroot / "newdir" / "app.log").write_text("excluded by *.log\n")
    (docroot / "newdir" / "stray.php").write_text("not in the backup\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    uploads = docroot / "wp-content" / "uploads"
    __import__("shutil").rmtree(uploads)
    uploads.symlink_to(outside)
    proc = cli(project, "restore", "shop", "--path", "wp-content/uploads", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert list(outside.iterdir()) == [] and not uploads.is_symlink()
    assert (uploads / "2026" / "photo.jpg").is_file()
    assert cli(project, "restore", "shop", "--yes").returncode == 0
    assert (docroot / "newdir" / "app.log").exists() and not (docroot / "newdir" / "stray.php").exists()


def test_a_truncated_pack_names_its_files_and_the_rest_is_restored(tmp_path):
    docroot, store, vars_ = local_backup_site(tmp_path, pack_size=1024 * 1024)
    (docroot / "zz-big.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    holder = next(p for p in (store / "shop" / "packs").rglob("*.tar.zst") if b"zz-big.bin" in unzstd(p.read_bytes()))
    raw = unzstd(holder.read_bytes())
    holder.write_bytes(zstandard.ZstdCompressor().compress(raw[: raw.find(b"zz-big.bin") + 512 + 3 * 1024 * 1024]))
    out = tmp_path / "out"
    proc, doc = run_json(project, "restore", "shop", "--to", str(out))
    assert proc.returncode == 1 and "zz-big.bin" in doc["sites"]["shop"]["error"]
    assert not (out / "zz-big.bin").exists() and not list(out.glob(".*maintainer-partial"))
    assert (out / "index.php").read_bytes() == (docroot / "index.php").read_bytes()
    assert (out / "wp-content" / "uploads" / "2026").is_dir()


def test_copies_of_a_big_file_keep_their_own_mode_and_mtime(tmp_path):
    docroot, _, vars_ = local_backup_site(tmp_path)
    data = os.urandom(5 * 1024 * 1024)
    (docroot / "orig.bin").write_bytes(data)
    (docroot / "sub").mkdir()
    (docroot / "sub" / "copy.bin").write_bytes(data)
    (docroot / "sub" / "copy.bin").chmod(0o600)
    os.utime(docroot / "sub" / "copy.bin", (1_500_000_000.5, 1_500_000_000.5))
    os.utime(docroot / "sub", (1_400_000_000, 1_400_000_000))
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    out = tmp_path / "out"
    assert cli(project, "restore", "shop", "--to", str(out)).returncode == 0
    for rel in ("orig.bin", "sub/copy.bin", "sub"):
        a, b = (docroot / rel).stat(), (out / rel).stat()
        assert (a.st_mode, a.st_mtime_ns) == (b.st_mode, b.st_mtime_ns), rel


def test_a_damaged_dump_is_never_shared_by_the_next_backup(tmp_path, mariadb_db):
    mariadb_db.seed(20)
    _, store, vars_ = local_backup_site(tmp_path)
    vars_["db"] = mariadb_db.settings()
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    dump = next((store / "shop" / "db").rglob("*.zst"))
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    assert cli(project, "backups", "verify", "shop", "--read-data").returncode == 1
    change = site_change(run_json(project, "run", "backup")[1], "shop", "backup")
    assert change["databases"][0]["dump"] == "new"


def test_prune_removes_no_content_while_a_kept_backup_is_unreadable(tmp_path):
    docroot, store, vars_ = local_backup_site(tmp_path, retention={"keep_last": 5})
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    (docroot / "index.php").write_text("changed\n")
    assert cli(project, "run", "backup", "-p", "prune=false").returncode == 0
    manifests = sorted((store / "shop" / "manifests").iterdir())
    manifests[-1].write_bytes(b"written by a newer maintainer, or damaged")
    orphan = LocalStore(store / "shop")
    orphan.put_bytes("packs/ab/abcdef.tar.zst", b"x")
    old = time.time() - 3 * 3600
    os.utime(orphan.path("packs/ab/abcdef.tar.zst"), (old, old))
    packs_before = sorted((store / "shop" / "packs").rglob("*.tar.zst"))
    proc, doc = run_json(project, "backups", "prune", "shop")
    assert proc.returncode == 0, proc.stderr
    assert sorted((store / "shop" / "packs").rglob("*.tar.zst")) == packs_before
    assert "no content was removed" in site_change(doc, "shop", "backups_pruned")["summary"]
