"""The backup store layer against real backends: a directory and moto_server (tests/servers/s3.py).

Both stores go through the same tests; the S3 side checks in the bucket with a
plain boto3 client what the store left there (parts, pending uploads,
encryption, storage class). Faults are real too: a closed port, a missing
bucket, moto's IAM authentication switched on, a full and a read-only tmpfs.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import ValidationError

from maintainer.backup.store import (
    TEMP_PREFIX,
    LocalStore,
    S3Settings,
    S3Store,
    Store,
    open_store,
)
from maintainer.errors import BadInput, ExitCode, ObjectExists, ObjectMissing, StoreError
from tests.servers.s3 import S3Server
from tests.servers.sshd import free_port

MiB = 1024 * 1024
PART = 5 * MiB  # the smallest part S3 takes


@dataclass
class Backend:
    """A store under test and a look at the backend it writes to."""

    kind: str
    store: Store
    server: S3Server | None = None
    bucket: str = ""
    root: Path | None = None

    def raw_keys(self) -> list[str]:
        """Everything in the backend, temp files and other prefixes included."""
        if self.root is not None:
            return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())
        assert self.server is not None
        listing = self.server.client().list_objects_v2(Bucket=self.bucket)
        return [o["Key"] for o in listing.get("Contents", [])]

    def pending_uploads(self) -> list[Any]:
        if self.server is None:
            return []
        return list(self.server.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", []))

    def head_object(self, key: str) -> dict[str, Any]:
        assert self.server is not None and isinstance(self.store, S3Store)
        result: dict[str, Any] = self.server.client().head_object(
            Bucket=self.bucket, Key=self.store.object_name(key)
        )
        return result


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    settings = {"part_size": PART, "max_concurrency": 2}
    if request.param == "local":
        store = open_store(f"file://{tmp_path}/backups", "site1", None)
        assert isinstance(store, LocalStore)
        return Backend("local", store, root=store.root)
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    store = open_store(f"s3://{bucket}/fleet", "site1", server.settings(**settings))
    return Backend("s3", store, server=server, bucket=bucket)


def stream(writer: Any, data: bytes, chunk: int) -> None:
    """Write ``data`` in ``chunk``-sized pieces as bytes, bytearray and memoryview in turn."""
    for n, start in enumerate(range(0, len(data), chunk)):
        piece = data[start : start + chunk]
        kind = n % 3
        assert writer.write(
            piece if kind == 0 else bytearray(piece) if kind == 1 else memoryview(piece)
        ) == len(piece)


# -- round trips ----------------------------------------------------------


def test_multipart_round_trip(backend: Backend) -> None:
    data = os.urandom(12 * MiB + 12345)
    with backend.store.open_write("packs/ab/one.tar.zst") as writer:
        stream(writer, data, 700_001)  # chunks that straddle part boundaries
        assert writer.size == len(data)
    assert backend.store.get_bytes("packs/ab/one.tar.zst") == data
    info = backend.store.head("packs/ab/one.tar.zst")
    assert info is not None and info.size == len(data) and info.modified.tzinfo is not None
    with backend.store.open_read("packs/ab/one.tar.zst") as fh:  # streamed in pieces too
        digest = hashlib.sha256()
        while piece := fh.read(1 * MiB):
            digest.update(piece)
    assert digest.digest() == hashlib.sha256(data).digest()
    if backend.kind == "s3":
        assert backend.head_object("packs/ab/one.tar.zst")["ETag"].endswith('-3"')  # three parts
        assert backend.raw_keys() == ["fleet/site1/packs/ab/one.tar.zst"]
        assert backend.store.location == f"s3://{backend.bucket}/fleet/site1"
    else:
        assert backend.raw_keys() == ["packs/ab/one.tar.zst"]
        assert backend.store.location.startswith("file:///") and backend.store.location.endswith("/site1")


def test_small_and_empty_objects(backend: Backend) -> None:
    with backend.store.open_write("manifests/small") as writer:
        writer.write(b"hello ")
        writer.write(memoryview(b"world"))
    with backend.store.open_write("manifests/empty"):
        pass
    assert backend.store.get_bytes("manifests/small") == b"hello world"
    assert backend.store.get_bytes("manifests/empty") == b""
    assert [(i.key, i.size) for i in backend.store.list()] == [
        ("manifests/empty", 0),
        ("manifests/small", 11),
    ]
    if backend.kind == "s3":
        assert "-" not in backend.head_object("manifests/small")["ETag"]  # one put_object, no multipart
    assert backend.pending_uploads() == []


def test_put_bytes_if_absent(backend: Backend) -> None:
    backend.store.put_bytes("manifests/2026-01-01.json", b"first", if_absent=True)
    with pytest.raises(ObjectExists) as caught:
        backend.store.put_bytes("manifests/2026-01-01.json", b"second", if_absent=True)
    assert caught.value.key == "manifests/2026-01-01.json"
    assert "already exists" in str(caught.value)
    assert backend.store.get_bytes("manifests/2026-01-01.json") == b"first"
    backend.store.put_bytes("manifests/2026-01-01.json", b"third")  # a plain put overwrites
    assert backend.store.get_bytes("manifests/2026-01-01.json") == b"third"
    assert [i.key for i in backend.store.list()] == ["manifests/2026-01-01.json"]  # no temp file left


def test_list_in_key_order_with_prefix(backend: Backend) -> None:
    # '-' < '.' < '/' < '0' in UTF-8: a directory's keys sort as "name/" among its siblings
    keys = ["b/c/d", "a0", "a/b", "a.b", "a-c", "packs/ab/2", "packs/ab/1", "packs/b", "packs/a0", "zz"]
    for key in keys:
        backend.store.put_bytes(key, key.encode())
    expected = sorted(keys, key=lambda k: k.encode())
    assert [i.key for i in backend.store.list()] == expected
    assert [i.key for i in backend.store.list("packs/")] == [
        "packs/a0",
        "packs/ab/1",
        "packs/ab/2",
        "packs/b",
    ]
    assert [i.key for i in backend.store.list("packs/a")] == ["packs/a0", "packs/ab/1", "packs/ab/2"]
    assert [i.key for i in backend.store.list("packs/ab/")] == ["packs/ab/1", "packs/ab/2"]
    assert [i.key for i in backend.store.list("a")] == ["a-c", "a.b", "a/b", "a0"]
    assert list(backend.store.list("nothing/")) == []
    assert [i.size for i in backend.store.list("b/")] == [5]


def test_delete(backend: Backend) -> None:
    for key in ("packs/1", "packs/2", "packs/3", "manifests/1"):
        backend.store.put_bytes(key, b"x")
    backend.store.delete(iter(["packs/1", "packs/3", "packs/never-written"]))
    assert [i.key for i in backend.store.list()] == ["manifests/1", "packs/2"]
    assert backend.store.head("packs/1") is None
    with pytest.raises(ObjectMissing) as caught:
        backend.store.get_bytes("packs/1")
    assert caught.value.key == "packs/1" and caught.value.exit_code == ExitCode.SITE_FAILED
    backend.store.delete([])


@pytest.mark.parametrize("size", [1000, 11 * MiB], ids=["small", "multipart"])
def test_exception_in_open_write_leaves_nothing(backend: Backend, size: int) -> None:
    with pytest.raises(RuntimeError, match="the dump failed"), backend.store.open_write("packs/x") as writer:
        stream(writer, os.urandom(size), 1 * MiB)
        raise RuntimeError("the dump failed")
    assert backend.store.head("packs/x") is None
    assert list(backend.store.list()) == []
    assert backend.raw_keys() == []  # local: no .tmp- file either
    assert backend.pending_uploads() == []  # s3: the multipart upload was aborted


def test_memory_stays_bounded_while_streaming(backend: Backend) -> None:
    """~40 MB through 5 MiB parts, 2 in flight: at most one part filling plus two uploading."""
    total = 40 * MiB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with backend.store.open_write("packs/big") as writer:
            for _ in range(total // (256 * 1024)):
                writer.write(os.urandom(256 * 1024))  # fresh objects, as a compressor hands them over
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    info = backend.store.head("packs/big")
    assert info is not None and info.size == total
    assert peak < PART * 4, f"peak {peak / MiB:.1f} MiB"
    if backend.kind == "local":
        assert peak < 2 * MiB


def test_invalid_keys_are_bugs(backend: Backend) -> None:
    with pytest.raises(ValueError, match="invalid store key"):
        backend.store.put_bytes("../escape", b"x")
    with pytest.raises(ValueError, match="invalid store key"):
        backend.store.put_bytes(f"packs/{TEMP_PREFIX}x", b"x")


# -- local only -------------------------------------------------------------


def test_local_files_are_private(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/backups", "site1", None)
    assert isinstance(store, LocalStore)
    store.check()
    with store.open_write("packs/ab/one") as writer:
        writer.write(b"secret dump")
    store.put_bytes("manifests/m1", b"{}", if_absent=True)
    store.put_bytes("manifests/m2", b"{}")
    for path in (store.root / "packs/ab/one", store.root / "manifests/m1", store.root / "manifests/m2"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (tmp_path / "backups", store.root, store.root / "packs", store.root / "packs/ab"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_local_list_skips_temp_files(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}", "site1", None)
    assert isinstance(store, LocalStore)
    store.put_bytes("packs/a", b"1")
    (store.root / "packs" / f"{TEMP_PREFIX}0123").write_bytes(b"half written")
    (store.root / f"{TEMP_PREFIX}4567").write_bytes(b"half written")
    assert [i.key for i in store.list()] == ["packs/a"]
    assert [i.key for i in store.list("packs/")] == ["packs/a"]


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only): the real ENOSPC of a full disk."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mountpoint)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {done.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_local_full_disk(small_tmpfs: Path) -> None:
    store = open_store(f"file://{small_tmpfs}", "site1", None)
    with pytest.raises(StoreError) as caught, store.open_write("packs/ab/big") as writer:
        for _ in range(8):
            writer.write(os.urandom(256 * 1024))
    message = str(caught.value)
    assert f"no space left on {small_tmpfs}/site1 (needed for packs/ab/big)" in message
    assert "free space or move backup.target" in message
    assert caught.value.exit_code == ExitCode.SITE_FAILED
    assert [p.name for p in (small_tmpfs / "site1" / "packs" / "ab").iterdir()] == []  # temp file removed

    with pytest.raises(StoreError, match="no space left"):
        store.put_bytes("manifests/m", os.urandom(2 * MiB), if_absent=True)
    assert list(store.list()) == []
    store.put_bytes("manifests/m", b"small enough")  # the store still works once there is room
    assert store.get_bytes("manifests/m") == b"small enough"


def test_local_read_only_file_system(small_tmpfs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    store = open_store(f"file://{small_tmpfs}", "site1", None)
    with pytest.raises(StoreError, match="read-only file system"):
        store.check()
    with pytest.raises(StoreError, match=r"read-only file system \(needed for packs/a\)"):
        store.put_bytes("packs/a", b"x")


# -- S3 only -----------------------------------------------------------------


def test_s3_encryption_and_storage_class_reach_the_objects(s3_server: S3Server, s3_bucket: str) -> None:
    aes = open_store(
        f"s3://{s3_bucket}",
        "site1",
        s3_server.settings(part_size=PART, sse="AES256", storage_class="standard_ia"),
    )
    with aes.open_write("packs/multi") as writer:
        writer.write(os.urandom(PART + 100))
    aes.put_bytes("manifests/small", b"{}", if_absent=True)
    kms = open_store(
        f"s3://{s3_bucket}",
        "site2",
        s3_server.settings(sse="aws:kms", kms_key_id="alias/backups", storage_class="GLACIER_IR"),
    )
    with kms.open_write("packs/kms") as writer:
        writer.write(b"x" * 100)
    client = s3_server.client()
    for key in ("site1/packs/multi", "site1/manifests/small"):
        head = client.head_object(Bucket=s3_bucket, Key=key)
        assert (head["ServerSideEncryption"], head["StorageClass"]) == ("AES256", "STANDARD_IA"), key
    head = client.head_object(Bucket=s3_bucket, Key="site2/packs/kms")
    assert (head["ServerSideEncryption"], head["StorageClass"]) == ("aws:kms", "GLACIER_IR")
    assert head["SSEKMSKeyId"].endswith("alias/backups")


def test_s3_sites_share_a_bucket(s3_server: S3Server, s3_bucket: str) -> None:
    one = open_store(f"s3://{s3_bucket}/fleet/", "site1", s3_server.settings())
    two = open_store(f"s3://{s3_bucket}/fleet", "site10", s3_server.settings())
    one.put_bytes("m", b"1")
    two.put_bytes("m", b"10")
    assert [(i.key, i.size) for i in one.list()] == [("m", 1)]
    assert [(i.key, i.size) for i in two.list()] == [("m", 2)]
    assert one.location == f"s3://{s3_bucket}/fleet/site1"


def test_s3_unreachable_endpoint() -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = S3Settings.model_validate(
        {
            "endpoint_url": dead,
            "region": "us-east-1",
            "access_key_id": "testing",
            "secret_access_key": "testing",
            "max_attempts": 1,
        }
    )
    store = open_store("s3://backups/fleet", "site1", settings)
    with pytest.raises(StoreError) as caught:
        store.check()
    assert f"cannot reach {dead} while checking bucket 'backups'" in str(caught.value)
    assert str(caught.value).startswith("backup store s3://backups/fleet/site1: ")
    with pytest.raises(StoreError, match="cannot reach"), store.open_write("packs/a") as writer:
        writer.write(os.urandom(PART))  # fills the first part: the multipart upload cannot start
    with pytest.raises(StoreError, match="cannot reach"):
        list(store.list())


def test_s3_missing_bucket(s3_server: S3Server) -> None:
    store = open_store("s3://no-such-bucket-here/fleet", "site1", s3_server.settings(part_size=PART))
    fix = "bucket 'no-such-bucket-here' does not exist: create it (e.g. aws s3 mb s3://no-such-bucket-here)"
    with pytest.raises(StoreError) as caught:
        store.check()
    assert fix in str(caught.value) and "or fix backup.target" in str(caught.value)
    with pytest.raises(StoreError, match="does not exist"):
        store.put_bytes("m", b"x")
    with pytest.raises(StoreError, match="does not exist"):
        store.get_bytes("m")  # the bucket, not the object, is missing
    with pytest.raises(StoreError, match="does not exist"), store.open_write("packs/a") as writer:
        writer.write(os.urandom(PART + 1))


def test_s3_wrong_credentials(s3_server: S3Server, s3_bucket: str) -> None:
    """moto checks access keys and SigV4 signatures against its IAM once authentication is on."""
    client = s3_server.client()
    iam_client = boto3.client(
        "iam",
        endpoint_url=s3_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.put_object(Bucket=s3_bucket, Key="site1/m", Body=b"x")
    wrong_secret = "wRoNgSeCrEt0123456789abcdefghijklmnopqrs"
    with s3_server.require_auth(after=2):  # two free requests: the IAM user and its key
        iam_client.create_user(UserName="backup-bot")
        key = iam_client.create_access_key(UserName="backup-bot")["AccessKey"]
        unknown = open_store(
            f"s3://{s3_bucket}", "site1", s3_server.settings(access_key_id="AKIANOTKNOWN000000")
        )
        with pytest.raises(StoreError) as caught:
            unknown.check()  # HEAD: a bare 403
        assert "access denied while checking bucket" in str(caught.value)
        assert "check the credentials" in str(caught.value)
        with pytest.raises(StoreError, match=r"access denied while listing .*\(InvalidAccessKeyId\)"):
            list(unknown.list())

        bad = open_store(
            f"s3://{s3_bucket}",
            "site1",
            s3_server.settings(access_key_id=key["AccessKeyId"], secret_access_key=wrong_secret),
        )
        for call in (bad.check, lambda: bad.get_bytes("m"), lambda: bad.put_bytes("n", b"x")):
            with pytest.raises(StoreError) as caught:
                call()
            assert "access denied" in str(caught.value)
            assert wrong_secret not in str(caught.value) and wrong_secret not in repr(caught.value)
        with pytest.raises(StoreError, match=r"\(SignatureDoesNotMatch\)"):
            bad.get_bytes("m")
        assert isinstance(bad, S3Store) and wrong_secret not in repr(bad.settings)


def test_no_credentials_is_bad_input(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(BadInput) as caught:
        open_store("s3://backups", "site1", S3Settings(region="eu-west-1"))
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert caught.value.fix is not None and "AWS_PROFILE" in caught.value.fix
    assert "backup.s3.access_key_id" in caught.value.fix

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # the chain's environment step
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert open_store("s3://backups", "site1", None).location == "s3://backups/site1"

    with pytest.raises(BadInput) as caught:
        open_store("s3://backups", "site1", S3Settings(profile="nope"))
    assert caught.value.key == "backup.s3.profile"


def test_s3_settings_validation() -> None:
    with pytest.raises(BadInput) as caught:
        S3Settings(access_key_id="AKIA1")
    assert caught.value.key == "backup.s3.secret_access_key"
    with pytest.raises(BadInput) as caught:
        S3Settings.model_validate({"secret_access_key": "s3cr3t-value"})
    assert caught.value.key == "backup.s3.access_key_id" and "s3cr3t-value" not in str(caught.value)
    with pytest.raises(BadInput, match="sse"):
        S3Settings(kms_key_id="alias/x")

    for bad in (
        {"part_size": 1024},
        {"max_concurrency": 0},
        {"storage_class": "DEEP_ARCHIVE"},
        {"storage_class": "CHEAP"},
        {"sse": "aws:kms:dsse"},
        {"endpoint_url": "minio:9000"},
        {"bucket": "x"},
    ):
        with pytest.raises(ValidationError):
            S3Settings(**bad)
    settings = S3Settings.model_validate({"access_key_id": "AKIA1", "secret_access_key": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(settings) and "s3cr3t-value" not in str(settings.model_dump())
    assert S3Settings().part_size == 8 * MiB and S3Settings().max_attempts == 5


@pytest.mark.parametrize(
    "target",
    [
        "backups",
        "/var/backups",
        "file://var/backups",
        "file:relative/dir",
        "sftp://host/backups",
        "s3://",
        "s3://UPPER/x",
        "s3://b/../x",
        "s3://bucket/p?x=1",
    ],
)
def test_bad_targets_are_bad_input(target: str) -> None:
    with pytest.raises(BadInput) as caught:
        open_store(target, "site1", None)
    assert caught.value.key == "backup.target" and caught.value.fix
    assert caught.value.exit_code == ExitCode.BAD_INPUT


def test_targets_root_each_site(tmp_path: Path) -> None:
    local = open_store(f"file://{tmp_path}/b/", "web1", None)
    assert isinstance(local, LocalStore) and local.root == tmp_path / "b" / "web1"
    assert local.location == f"file://{tmp_path}/b/web1"
    assert open_store(f"file://localhost{tmp_path}", "web1", None).location == f"file://{tmp_path}/web1"
    with pytest.raises(BadInput, match="site name"):
        open_store(f"file://{tmp_path}", "../etc", None)


# -- leftovers of killed writers ------------------------------------------------------


def test_local_cleanup_incomplete_removes_old_temp_files_and_empty_dirs(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}", "site1", None)
    assert isinstance(store, LocalStore)
    assert store.cleanup_incomplete(datetime.now(UTC)) == 0  # nothing there yet
    store.put_bytes("packs/ab/kept", b"pack")
    store.put_bytes("manifests/m1", b"{}")
    old = time.time() - 7200

    def temp(rel: str, mtime: float = old) -> Path:
        path = store.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half written")
        os.utime(path, (mtime, mtime))
        return path

    gone = [temp(f"{TEMP_PREFIX}1"), temp(f"manifests/{TEMP_PREFIX}2"), temp(f"packs/ef/{TEMP_PREFIX}3")]
    young = temp(f"packs/ab/{TEMP_PREFIX}4", time.time())  # a writer at work
    (store.root / "packs" / "cd").mkdir()  # emptied by prune
    (store.root / "db" / "20260101T000000Z" / "deeper").mkdir(parents=True)
    (store.root / "locks").mkdir()  # empty, but not under packs/ or db/
    (store.root / f"{TEMP_PREFIX}dir").mkdir()  # not a temp file
    (store.root / f"packs/ab/{TEMP_PREFIX}link").symlink_to(tmp_path / "elsewhere")

    removed = store.cleanup_incomplete(datetime.now(UTC) - timedelta(hours=1))

    # 3 temp files; packs/ef (empty once its temp file went), packs/cd, db/<id>/deeper, db/<id>
    assert removed == 7
    assert not any(p.exists() for p in gone) and young.exists()
    left = sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*"))
    assert left == sorted(
        [
            f"{TEMP_PREFIX}dir", "db", "locks", "manifests", "manifests/m1",
            "packs", "packs/ab", "packs/ab/kept", f"packs/ab/{TEMP_PREFIX}4", f"packs/ab/{TEMP_PREFIX}link",
        ]
    )  # fmt: skip
    assert [i.key for i in store.list()] == ["manifests/m1", "packs/ab/kept"]
    store.put_bytes("packs/cd/new", b"x")  # the removed directories come back when needed
    with store.open_write("db/20260101T000000Z/dump.sql.zst") as writer:
        writer.write(b"dump")
    assert store.get_bytes("db/20260101T000000Z/dump.sql.zst") == b"dump"
    with pytest.raises(ValueError, match="timezone-aware"):
        store.cleanup_incomplete(datetime.now())


def test_a_local_write_survives_its_empty_directory_being_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(f"file://{tmp_path}", "site1", None)
    assert isinstance(store, LocalStore)
    (store.root / "packs" / "ab").mkdir(parents=True)
    real_open = os.open
    raced: list[str] = []

    def open_after_cleanup(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if TEMP_PREFIX in str(path) and not raced:  # prune empties packs/ right between mkdirs and open
            raced.append(str(path))
            assert store.cleanup_incomplete(datetime.now(UTC)) == 1
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", open_after_cleanup)
    store.put_bytes("packs/ab/x", b"content")
    assert raced and store.get_bytes("packs/ab/x") == b"content"


def test_s3_cleanup_incomplete_aborts_old_uploads_under_its_prefix(
    s3_server: S3Server, s3_bucket: str
) -> None:
    store = open_store(f"s3://{s3_bucket}/fleet", "site1", s3_server.settings(part_size=PART))
    assert isinstance(store, S3Store)
    client = s3_server.client()

    def start(key: str) -> str:
        upload_id: str = client.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
        client.upload_part(Bucket=s3_bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1000)
        return upload_id

    # what writers killed part-way left, and what belongs to other sites or other tools
    for key in ("fleet/site1/packs/ab/one", "fleet/site1/db/20260101T000000Z/d.sql.zst"):
        start(key)
    for key in ("fleet/site10/packs/ab/two", "other/packs/three"):
        start(key)
    with store.open_write("packs/cd/complete") as writer:  # a finished multipart object stays
        writer.write(os.urandom(PART + 1))

    # moto reports one fixed time (2010-11-10) for every upload: the cut is made relative to it
    initiated = min(u["Initiated"] for u in client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"])
    assert store.cleanup_incomplete(initiated) == 0  # none was initiated before that
    assert store.cleanup_incomplete(initiated + timedelta(seconds=1)) == 2
    left = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert sorted(u["Key"] for u in left) == ["fleet/site10/packs/ab/two", "other/packs/three"]
    assert [i.key for i in store.list()] == ["packs/cd/complete"]
    assert store.cleanup_incomplete(datetime.now(UTC) + timedelta(minutes=1)) == 0
