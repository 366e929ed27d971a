"""docs/RESTORE.md's recipe, run exactly as written, against a real backup in moto's S3 and a local store.

Only the AWS CLI, zstd, tar, jq and sha256sum: no maintainer code restores anything here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.backup_helpers import fingerprint, make_site, table_checksums
from tests.helpers import REPO, cli, local_site
from tests.integration.test_backup import EXCLUDE, project_with


def recipe() -> str:
    text = (REPO / "docs" / "RESTORE.md").read_text()
    block = text.split("<!-- recipe:start -->", 1)[1].split("<!-- recipe:end -->", 1)[0]
    return block.strip().removeprefix("```bash").removesuffix("```")


def run_recipe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # the venv's aws first
    return subprocess.run(
        ["bash", "-c", recipe()],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path, **env},
        timeout=120,
    )


def test_the_documented_recipe_restores_an_s3_backup(tmp_path, s3_server, s3_bucket, mariadb_db):
    mariadb_db.seed(100)
    docroot = make_site(tmp_path / "site")
    s3 = {"endpoint_url": s3_server.endpoint_url, "region": "us-east-1", "access_key_id": "testing",
          "secret_access_key": "testing"}  # fmt: skip
    vars_ = local_site(
        tmp_path, docroot=str(docroot), db=mariadb_db.settings(),
        backup={"target": f"s3://{s3_bucket}/sites", "exclude": EXCLUDE, "s3": s3},
    )  # fmt: skip
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    (docroot / "index.php").write_text("<?php // changed after the first backup\n")
    assert cli(project, "run", "backup").returncode == 0  # incremental: files spread over two packs

    dest, work = tmp_path / "restored", tmp_path / "work"
    work.mkdir()
    proc = run_recipe({
        "SRC": f"s3://{s3_bucket}/sites/shop", "DEST": str(dest), "WORK": str(work),
        "AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    })  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "verified" in proc.stdout
    assert fingerprint(dest) == fingerprint(docroot)

    # the dump, imported as the page shows, gives the same tables
    dump = work / f"{mariadb_db.name}.sql"
    assert dump.exists(), proc.stdout
    scratch = mariadb_db.scratch_name("byhand")
    mariadb_db.server.sql(f"CREATE DATABASE `{scratch}`")
    with dump.open("rb") as fh:
        subprocess.run(
            mariadb_db.server.client_argv("--default-character-set=utf8mb4", scratch), stdin=fh, check=True
        )
    assert table_checksums(mariadb_db, scratch) == table_checksums(mariadb_db)
    mariadb_db.server.sql(f"DROP DATABASE `{scratch}`")


def test_the_documented_recipe_restores_an_older_backup_from_a_local_store(tmp_path):
    docroot = make_site(tmp_path / "site")
    store = tmp_path / "store"
    vars_ = local_site(
        tmp_path, docroot=str(docroot), backup={"target": f"file://{store}", "exclude": EXCLUDE}
    )
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    before = fingerprint(docroot)
    first = sorted((store / "shop" / "manifests").iterdir())[0].name.removesuffix(".json.zst")
    (docroot / "wp-content" / "file005.php").write_text("changed\n")
    (docroot / "wp-content" / "file006.php").unlink()
    assert cli(project, "run", "backup").returncode == 0

    dest = tmp_path / "restored"
    proc = run_recipe({"SRC": str(store / "shop"), "DEST": str(dest), "ID": first})
    assert proc.returncode == 0, proc.stderr
    assert fingerprint(dest) == before


def test_the_recipe_restores_copies_whose_bytes_are_stored_under_another_name(tmp_path):
    docroot = tmp_path / "site"
    docroot.mkdir()
    first = os.urandom(200_000)
    (docroot / "a.bin").write_bytes(first)
    (docroot / "keep.bin").write_bytes(first)  # a copy: stored once, as a.bin
    store = tmp_path / "store"
    vars_ = local_site(tmp_path, docroot=str(docroot), backup={"target": f"file://{store}"})
    project = project_with(tmp_path, {"shop": vars_})
    assert cli(project, "run", "backup").returncode == 0
    second = os.urandom(200_000)
    (docroot / "a.bin").write_bytes(second)
    (docroot / "c.bin").write_bytes(second)  # another copy, also stored as a.bin, in another pack
    assert cli(project, "run", "backup").returncode == 0
    dest = tmp_path / "restored"
    (tmp_path / "work").mkdir()
    proc = run_recipe({"SRC": str(store / "shop"), "DEST": str(dest), "WORK": str(tmp_path / "work")})
    assert proc.returncode == 0, proc.stderr
    assert (dest / "keep.bin").read_bytes() == first and (dest / "c.bin").read_bytes() == second
    assert (dest / "a.bin").read_bytes() == second
