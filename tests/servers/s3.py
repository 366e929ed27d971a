"""A throwaway S3-compatible server (moto_server) on 127.0.0.1 for integration tests (see ENV.md).

``s3_server`` (session scope) starts ``moto_server`` on a free port and waits
until it answers; ``s3_bucket`` (per test) creates a fresh, uniquely named
bucket and empties and removes it afterwards (moto keeps everything in
memory). ``running_moto()`` is the same server as a context manager, for
bench/. Credentials are the dummy ``testing`` pair; ``S3Server.require_auth()``
switches moto's IAM authentication on for a block (wrong-credential tests).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.sshd import free_port

START_TIMEOUT = 15.0
REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def moto_binary() -> str | None:
    """``moto_server`` of this venv first (it is not on PATH when the venv is not activated)."""
    beside = Path(sys.executable).with_name("moto_server")
    if beside.exists():
        return str(beside)
    return shutil.which("moto_server")


@dataclass(frozen=True)
class S3Server:
    host: str
    port: int
    workdir: Path

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, **kwargs: Any) -> Any:
        """A boto3 S3 client for this server (the dummy credentials unless given)."""
        import boto3

        args: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
        }
        args.update(kwargs)
        return boto3.client("s3", **args)

    def settings(self, **extra: Any) -> Any:
        """``S3Settings`` pointing at this server with the dummy credentials."""
        from maintainer.backup.store import S3Settings

        fields: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }
        fields.update(extra)
        return S3Settings(**fields)

    def create_bucket(self, prefix: str = "mt") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def remove_bucket(self, name: str) -> None:
        """Empty and delete a bucket (objects, versions, unfinished uploads); missing is fine."""
        client = self.client()
        try:
            for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
                items = page.get("Versions", []) + page.get("DeleteMarkers", [])
                if items:
                    client.delete_objects(
                        Bucket=name,
                        Delete={"Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in items]},
                    )
            for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
            client.delete_bucket(Bucket=name)
        except client.exceptions.NoSuchBucket:
            pass

    def _post(self, path: str, data: bytes) -> dict[str, Any]:
        # not urllib's default form type: moto reads the raw body, which werkzeug consumes for forms
        request = urllib.request.Request(
            self.endpoint_url + path, data=data, method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read() or b"{}")
            return result

    @contextmanager
    def require_auth(self, after: int = 0) -> Iterator[None]:
        """Moto checks signatures and IAM access keys inside the block, after ``after`` free requests.

        Moto's switch is global to the server, so the previous setting comes back at the end.
        """
        previous = self._post("/moto-api/reset-auth", str(after).encode()).get(
            "PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT", "inf"
        )
        try:
            yield
        finally:
            self._post("/moto-api/reset-auth", str(previous).encode())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/moto-api/", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def running_moto() -> Iterator[S3Server]:
    """Start moto_server on a free port (the fixture and bench/ use this); stopped on exit."""
    binary = moto_binary()
    if binary is None:
        raise RuntimeError("moto_server not found: pip install 'moto[server]' into the venv")
    workdir = Path(tempfile.mkdtemp(prefix="maintainer-moto-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        log_file = (workdir / "moto.log").open("wb")  # a file, not a pipe: a full pipe would block it
        proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log_file.close()
        server = S3Server("127.0.0.1", port, workdir)
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(server.endpoint_url):
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}:\n{_log(workdir)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not answer:\n{_log(workdir)}")
            time.sleep(0.05)
        yield server
    finally:
        if proc is not None:
            proc.terminate()  # by its own PID only
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _log(workdir: Path) -> str:
    return (workdir / "moto.log").read_text(errors="replace")[-4000:]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    if moto_binary() is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    with running_moto() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh bucket for one test, removed afterwards."""
    name = s3_server.create_bucket()
    try:
        yield name
    finally:
        s3_server.remove_bucket(name)
