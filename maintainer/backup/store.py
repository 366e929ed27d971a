"""Where backups live: an S3 bucket (boto3) or a local directory, with one layout.

A ``Store`` is rooted at one site's prefix (``s3://bucket/prefix/<site>/`` or
``file:///path/<site>/``); keys are relative to it (``packs/ab/<id>.tar.zst``).
Objects are written whole or not at all: ``open_write`` commits only when its
block ends normally (local: temp file + fsync + rename; S3: multipart upload
completed, or aborted on error). Data streams through in bounded memory.

Errors are ``StoreError`` subclasses with a message that names the location
and the fix; credentials never appear in them.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol, cast
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from maintainer.errors import BadInput, MaintainerError, ObjectExists, ObjectMissing, StoreError

if TYPE_CHECKING:
    from botocore.client import BaseClient


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the store's root
    size: int
    modified: datetime  # timezone-aware (UTC)


class ObjectWriter(Protocol):
    """What ``open_write`` yields: a sink for the object's bytes."""

    def write(self, data: bytes | memoryview) -> int: ...

    #: bytes written so far (what the store will hold)
    @property
    def size(self) -> int: ...


class Store(ABC):
    #: where the store is, for messages and the change log (no credentials), e.g. ``s3://b/p/site``
    location: str

    @abstractmethod
    def check(self) -> None:
        """Prove the store is usable now (reachable, credentials accepted, bucket there); raise StoreError."""

    @abstractmethod
    def open_write(self, key: str) -> AbstractContextManager[ObjectWriter]:
        """Stream a new object; it exists only if the block ends without an exception."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        """Write a small object at once; ``if_absent`` raises ObjectExists instead of overwriting."""

    @abstractmethod
    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Stream an object's bytes; ObjectMissing if there is none."""

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as fh:
            return fh.read()

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """The object's size and time, or None if it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Remove objects (missing ones are not an error)."""

    def cleanup_incomplete(self, older_than: datetime) -> int:
        """Remove what writers killed part-way left behind, if it was begun before ``older_than``
        (timezone-aware); how many things were removed.

        A writer still at work can lose its object this way (its commit then fails), so pass a
        time before the start of every backup that may be running (prune: its ``hold_after``).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement cleanup_incomplete")


# --------------------------------------------------------------------------- keys and limits

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's smallest part (the last part may be smaller)
MAX_PART_SIZE = 5 * 1024 * MiB  # S3's largest part
MAX_PARTS = 10_000  # S3's limit per multipart upload
DELETE_BATCH = 1000  # delete_objects takes at most 1000 keys
TEMP_PREFIX = ".tmp-"  # LocalStore's files in progress; never part of a key
READ_BUFFER = 256 * 1024

TARGET_KEY = "backup.target"
TARGET_FIX = "set backup.target to s3://BUCKET/PREFIX or file:///ABSOLUTE/PATH"
NO_CREDENTIALS_FIX = (
    "set AWS_PROFILE (a profile in ~/.aws/config) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "for the maintainer process, run it with an instance role, or set backup.s3.access_key_id and "
    "backup.s3.secret_access_key in the inventory (the secret as a vault value)"
)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

#: instantly readable storage classes; GLACIER and DEEP_ARCHIVE need a restore request before a read
STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "REDUCED_REDUNDANCY",
)
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")


def check_key(key: str) -> str:
    """A key is relative and '/'-separated, without empty, '.', '..' or temp-file parts (else a bug)."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or p.startswith(TEMP_PREFIX) or "\\" in p for p in parts):
        raise ValueError(f"invalid store key {key!r}")
    return key


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"a timezone-aware time is needed, not {when!r}")
    return when


def _check_prefix(prefix: str) -> str:
    """A list prefix: '' or the start of a key (it may end with '/')."""
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix


# --------------------------------------------------------------------------- S3 settings


class S3Settings(BaseModel):
    """The inventory's ``backup.s3`` keys. Credentials come from the standard AWS chain
    (environment, profile, instance role) unless ``access_key_id``/``secret_access_key`` are given."""

    model_config = ConfigDict(extra="forbid")

    region: str | None = None
    profile: str | None = None
    #: an S3-compatible server (MinIO, Ceph, moto...); path-style addressing is used for it
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    sse: Literal["AES256", "aws:kms"] | None = None
    kms_key_id: str | None = None
    storage_class: str | None = None
    #: bytes per multipart part; memory per upload is at most part_size * (max_concurrency + 1)
    #: 8 MiB keeps a backup under 200 MB of memory and allows objects up to 80 GB (10,000 parts)
    part_size: int = Field(default=8 * MiB, ge=MIN_PART_SIZE, le=MAX_PART_SIZE)
    #: part uploads in flight per object
    max_concurrency: int = Field(default=4, ge=1, le=64)
    #: attempts per request (botocore's standard retry mode), first one included
    max_attempts: int = Field(default=5, ge=1, le=20)
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"'{value}' is not an http(s) URL, e.g. https://s3.example.com")
        return value

    @field_validator("storage_class")
    @classmethod
    def _storage_class(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.upper()
        if value in ARCHIVE_CLASSES:
            raise ValueError(
                f"{value} objects cannot be read without a restore request (hours), so backups could not "
                "be verified or restored directly; use GLACIER_IR, or a bucket lifecycle rule to archive"
            )
        if value not in STORAGE_CLASSES:
            raise ValueError(f"unknown storage class '{value}'; use one of {', '.join(STORAGE_CLASSES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> S3Settings:
        if self.access_key_id and not self.secret_access_key:
            raise BadInput(
                "access_key_id is set but secret_access_key is not",
                key="backup.s3.secret_access_key",
                fix="set both (the secret as a vault value), or neither to use the AWS credential chain",
            )
        if self.secret_access_key and not self.access_key_id:
            raise BadInput(
                "secret_access_key is set but access_key_id is not",
                key="backup.s3.access_key_id",
                fix="set both, or neither to use the AWS credential chain",
            )
        if self.session_token and not self.access_key_id:
            raise BadInput(
                "session_token needs access_key_id and secret_access_key",
                key="backup.s3.session_token",
                fix="set all three, or remove session_token",
            )
        if self.profile and self.access_key_id:
            raise BadInput(
                "both profile and access_key_id are set",
                key="backup.s3.profile",
                fix="use either an AWS profile or explicit keys, not both",
            )
        if self.kms_key_id and self.sse != "aws:kms":
            raise BadInput(
                "kms_key_id is set but sse is not 'aws:kms'",
                key="backup.s3.sse",
                fix="set backup.s3.sse: aws:kms, or remove kms_key_id",
            )
        return self

    def secrets(self) -> list[str]:
        """The values that must never appear in a message."""
        return [s.get_secret_value() for s in (self.secret_access_key, self.session_token) if s is not None]

    def write_args(self) -> dict[str, str]:
        """Encryption and storage class for every put_object / create_multipart_upload."""
        args: dict[str, str] = {}
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        return args


# --------------------------------------------------------------------------- botocore errors

_AUTH_CODES = {
    "403",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
}
_BUCKET_MISSING_CODES = {"NoSuchBucket", "404", "NotFound"}
_REDIRECT_CODES = {"301", "PermanentRedirect", "IllegalLocationConstraintException"}


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """Mask each secret: anywhere when it is long, as a whole word when it is short (not inside words)."""
    for secret in secrets:
        if len(secret) >= 8:
            text = text.replace(secret, "***")
        elif secret:
            text = re.sub(rf"(?<![\w/+=]){re.escape(secret)}(?![\w/+=])", "***", text)
    return text


def is_store_failure(exc: BaseException) -> bool:
    """A failure of the store's backend (botocore or the OS), as opposed to a bug or an interrupt."""
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, ClientError | BotoCoreError | OSError)


def s3_error(
    exc: BaseException,
    *,
    location: str,
    bucket: str,
    action: str,
    endpoint: str,
    settings: S3Settings | None = None,
) -> StoreError:
    """One message for each way S3 fails, naming the fix; secrets are scrubbed from it."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProxyConnectionError,
        ReadTimeoutError,
    )

    settings = settings or S3Settings()
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or meta.get("HTTPStatusCode") or "unknown")
        status = meta.get("HTTPStatusCode")
        detail = str(error.get("Message") or "").strip()
        if code.startswith("KMS.") or code == "KMSKeyNotFound":
            message = (
                f"the KMS key was refused while {action} ({code}): check backup.s3.kms_key_id "
                "and that the credentials may use that key"
            )
        elif code in _AUTH_CODES or status == 403:
            message = (
                f"access denied while {action} ({code}): check the credentials "
                "(backup.s3.access_key_id/secret_access_key, AWS_PROFILE, AWS_ACCESS_KEY_ID or the "
                f"instance role) and that they may use bucket '{bucket}'"
            )
        elif code in _BUCKET_MISSING_CODES:
            message = (
                f"bucket '{bucket}' does not exist: create it (e.g. aws s3 mb s3://{bucket}) "
                "or fix backup.target"
            )
        elif code in _REDIRECT_CODES or status == 301:
            headers = meta.get("HTTPHeaders", {})
            region = headers.get("x-amz-bucket-region") or error.get("Region")
            where = f"region '{region}'" if region else "another region"
            message = f"bucket '{bucket}' is in {where}: set backup.s3.region"
            if region:
                message += f" to {region}"
        elif code == "InvalidStorageClass":
            message = f"the storage class was refused while {action}: fix backup.s3.storage_class"
        elif code == "EntityTooLarge":
            message = f"the object is too large while {action}: raise backup.s3.part_size"
        elif (status is not None and status >= 500) or code in ("SlowDown", "RequestTimeout", "Throttling"):
            message = (
                f"the S3 service failed while {action} ({code}, HTTP {status}) after "
                f"{settings.max_attempts} attempt(s): retry later or raise backup.s3.max_attempts"
            )
        else:
            message = f"{action} failed: {code}" + (f": {detail}" if detail else "")
    elif isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ProxyConnectionError):
        message = (
            f"cannot reach {endpoint} while {action}: check the network, backup.s3.endpoint_url "
            "and backup.s3.region"
        )
    elif isinstance(exc, ReadTimeoutError):
        message = (
            f"{endpoint} did not answer within {settings.read_timeout:g}s while {action}: retry later "
            "or raise backup.s3.read_timeout"
        )
    elif isinstance(exc, ConnectionClosedError):
        message = f"{endpoint} closed the connection while {action}: retry later"
    elif isinstance(exc, NoCredentialsError | PartialCredentialsError):
        message = f"no usable AWS credentials while {action}: {NO_CREDENTIALS_FIX}"
    else:
        message = f"{action} failed: {type(exc).__name__}: {exc}"
    return StoreError(location, _scrub(message, settings.secrets()))


# --------------------------------------------------------------------------- S3


class _GuardedStream(io.RawIOBase):
    """A botocore body whose read errors become StoreError."""

    def __init__(self, body: Any, wrap: Callable[[BaseException], StoreError]) -> None:
        self._body = body
        self._wrap = wrap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except Exception as exc:
            if is_store_failure(exc):
                raise self._wrap(exc) from exc
            raise
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with suppress(Exception):
            self._body.close()
        super().close()


class _S3Writer:
    """Buffers one part and uploads full parts in the background, at most ``max_concurrency`` at once.

    Memory: the part being filled plus the parts in flight, at most part_size * (max_concurrency + 1).
    """

    def __init__(self, store: S3Store, key: str) -> None:
        self._store = store
        self._key = key
        self._name = store.object_name(key)
        self._part_size = store.settings.part_size
        self._concurrency = store.settings.max_concurrency
        self._chunks: list[bytes] = []
        self._pending = 0
        self._size = 0
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._slots = threading.Semaphore(self._concurrency)
        self._failure: BaseException | None = None
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a finished object")
        if self._failure is not None:
            raise self._wrap(self._failure)
        view = memoryview(data).cast("B")
        total = len(view)
        pos = 0
        while pos < total:
            take = min(total - pos, self._part_size - self._pending)
            # bytes are immutable: keep them; copy what the caller may reuse (bytearray, memoryview)
            whole = pos == 0 and take == total and type(data) is bytes
            self._chunks.append(cast(bytes, data) if whole else bytes(view[pos : pos + take]))
            self._pending += take
            pos += take
            self._size += take
            if self._pending >= self._part_size:
                self._send_part()
        return total

    # the part upload machinery

    def _wrap(self, exc: BaseException) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        return self._store.error(exc, f"writing '{self._key}'")

    def _send_part(self) -> None:
        if len(self._parts) >= MAX_PARTS:
            raise StoreError(
                self._store.location,
                f"'{self._key}' needs more than {MAX_PARTS} parts of {self._part_size} bytes: "
                "raise backup.s3.part_size",
            )
        self._slots.acquire()  # blocks while max_concurrency parts are in flight
        try:
            if self._failure is not None:
                raise self._wrap(self._failure)
            if self._upload_id is None:
                self._start()
            assert self._pool is not None
            body = b"".join(self._chunks)
            self._chunks = []
            self._pending = 0
            future = self._pool.submit(self._upload_part, len(self._parts) + 1, body)
            del body  # only the pool holds the part now
        except BaseException:
            self._slots.release()
            raise
        self._parts.append(future)
        future.add_done_callback(self._part_done)

    def _start(self) -> None:
        store = self._store
        args = store.settings.write_args()
        if store.checksums:
            args["ChecksumAlgorithm"] = "CRC32"
        try:
            response = store.client.create_multipart_upload(Bucket=store.bucket, Key=self._name, **args)
        except Exception as exc:
            if is_store_failure(exc):
                raise self._wrap(exc) from exc
            raise
        self._upload_id = str(response["UploadId"])
        self._pool = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="s3-part")

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        store = self._store
        args: dict[str, Any] = {}
        if store.checksums:
            args["ChecksumAlgorithm"] = "CRC32"
        response = store.client.upload_part(
            Bucket=store.bucket,
            Key=self._name,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
            **args,
        )
        part: dict[str, Any] = {"PartNumber": number, "ETag": response["ETag"]}
        if "ChecksumCRC32" in response:
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        return part

    def _part_done(self, future: Future[dict[str, Any]]) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()

    # the end of the block

    def finish(self) -> None:
        """Commit the object: one put_object if it fits one part, else the last part and complete."""
        self._closed = True
        store = self._store
        try:
            if self._upload_id is None:
                body = b"".join(self._chunks)
                self._chunks = []
                store.client.put_object(
                    Bucket=store.bucket, Key=self._name, Body=body, **store.settings.write_args()
                )
                return
            if self._pending:
                self._send_part()
            parts = [future.result() for future in self._parts]
            store.client.complete_multipart_upload(
                Bucket=store.bucket,
                Key=self._name,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
            self._upload_id = None
        except BaseException as exc:
            self.abort(exc)
            if is_store_failure(exc):
                raise self._wrap(exc) from exc
            raise
        finally:
            self._shutdown()

    def abort(self, exc: BaseException) -> None:
        """Leave no object and no pending upload (parts in flight are waited for first)."""
        self._closed = True
        self._chunks = []
        self._shutdown()
        if self._upload_id is None:
            return
        store = self._store
        try:
            store.client.abort_multipart_upload(Bucket=store.bucket, Key=self._name, UploadId=self._upload_id)
        except Exception as abort_exc:
            exc.add_note(
                f"the unfinished upload of '{self._key}' (id {self._upload_id}) could not be aborted "
                f"({type(abort_exc).__name__}); an AbortIncompleteMultipartUpload lifecycle rule on the "
                "bucket removes such leftovers"
            )
        self._upload_id = None

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class S3Store(Store):
    """Objects under ``s3://bucket/prefix/``; one boto3 client, shared by threads (it is thread-safe)."""

    def __init__(self, bucket: str, prefix: str, settings: S3Settings | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root = f"{self.prefix}/" if self.prefix else ""
        self.settings = settings or S3Settings()
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client: BaseClient = self._make_client()
        self.endpoint = self.settings.endpoint_url or str(self.client.meta.endpoint_url)
        # like boto3's transfer manager: CRC32 per part when botocore adds checksums by default
        self.checksums = getattr(self.client.meta.config, "request_checksum_calculation", None) == (
            "when_supported"
        )

    def _make_client(self) -> BaseClient:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ProfileNotFound

        s = self.settings
        secret = s.secret_access_key.get_secret_value() if s.secret_access_key else None
        token = s.session_token.get_secret_value() if s.session_token else None
        try:
            session = boto3.session.Session(
                profile_name=s.profile,
                region_name=s.region,
                aws_access_key_id=s.access_key_id,
                aws_secret_access_key=secret,
                aws_session_token=token,
            )
            credentials = session.get_credentials()
        except ProfileNotFound as exc:
            raise BadInput(
                f"AWS profile '{s.profile or os.environ.get('AWS_PROFILE')}' is not configured",
                key="backup.s3.profile",
                fix="add it to ~/.aws/config (aws configure --profile NAME), or remove backup.s3.profile "
                "/ AWS_PROFILE",
            ) from exc
        except BotoCoreError as exc:  # a broken config file, a failing credential_process...
            raise BadInput(
                f"the AWS credentials cannot be loaded: {_scrub(str(exc), s.secrets())}",
                key="backup.s3",
                fix=NO_CREDENTIALS_FIX,
            ) from exc
        if credentials is None:
            raise BadInput(
                f"no AWS credentials found for the backup store {self.location} "
                "(environment, AWS profile, instance role)",
                key="backup.s3.access_key_id",
                fix=NO_CREDENTIALS_FIX,
            )
        config = Config(
            retries={"mode": "standard", "max_attempts": s.max_attempts},
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            max_pool_connections=max(10, 2 * s.max_concurrency),
            # S3-compatible servers rarely resolve bucket.host names
            s3={"addressing_style": "path"} if s.endpoint_url else None,
        )
        try:
            return session.client("s3", endpoint_url=s.endpoint_url, config=config)
        except (BotoCoreError, ValueError) as exc:
            raise BadInput(
                f"cannot set up the S3 client: {_scrub(str(exc), s.secrets())}",
                key="backup.s3",
                fix="check backup.s3.region and backup.s3.endpoint_url",
            ) from exc

    def object_name(self, key: str) -> str:
        """The full S3 key of a store key."""
        return self.root + check_key(key)

    def error(self, exc: BaseException, action: str) -> StoreError:
        return s3_error(
            exc,
            location=self.location,
            bucket=self.bucket,
            action=action,
            endpoint=self.endpoint,
            settings=self.settings,
        )

    @contextmanager
    def _mapped(self, action: str) -> Iterator[None]:
        try:
            yield
        except MaintainerError:
            raise
        except Exception as exc:
            if is_store_failure(exc):
                raise self.error(exc, action) from exc
            raise

    def check(self) -> None:
        with self._mapped(f"checking bucket '{self.bucket}'"):
            self.client.head_bucket(Bucket=self.bucket)

    @contextmanager
    def open_write(self, key: str) -> Iterator[ObjectWriter]:
        writer = _S3Writer(self, check_key(key))
        try:
            yield writer
        except BaseException as exc:
            writer.abort(exc)
            raise
        writer.finish()

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        from botocore.exceptions import ClientError

        args = self.settings.write_args()
        if if_absent:
            args["IfNoneMatch"] = "*"
        try:
            with self._mapped(f"writing '{key}'"):
                self.client.put_object(Bucket=self.bucket, Key=self.object_name(key), Body=data, **args)
        except StoreError as exc:
            cause = exc.__cause__
            if if_absent and isinstance(cause, ClientError):
                code = cause.response.get("Error", {}).get("Code")
                # 409 ConditionalRequestConflict: another writer is creating the same object right now
                if code in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                    raise ObjectExists(self.location, key) from cause
            raise

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        from botocore.exceptions import ClientError

        action = f"reading '{key}'"
        name = self.object_name(key)
        try:
            with self._mapped(action):
                response = self.client.get_object(Bucket=self.bucket, Key=name)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in (
                "NoSuchKey",
                "404",
            ):
                raise ObjectMissing(self.location, key) from cause
            raise
        raw = _GuardedStream(response["Body"], lambda exc: self.error(exc, action))
        with io.BufferedReader(raw, buffer_size=READ_BUFFER) as reader:
            yield cast(BinaryIO, reader)

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        name = self.object_name(key)
        try:
            with self._mapped(f"looking up '{key}'"):
                response = self.client.head_object(Bucket=self.bucket, Key=name)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in (
                "404",
                "NoSuchKey",
                "NotFound",
            ):
                return None
            raise
        return ObjectInfo(key, int(response["ContentLength"]), response["LastModified"].astimezone(UTC))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        _check_prefix(prefix)
        skip = len(self.root)
        with self._mapped(f"listing '{prefix or '/'}'"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.root + prefix):
                for item in page.get("Contents", ()):
                    yield ObjectInfo(
                        str(item["Key"])[skip:], int(item["Size"]), item["LastModified"].astimezone(UTC)
                    )

    def delete(self, keys: Iterable[str]) -> None:
        batch: list[str] = []
        for key in keys:
            batch.append(self.object_name(key))
            if len(batch) == DELETE_BATCH:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, names: Sequence[str]) -> None:
        with self._mapped(f"deleting {len(names)} object(s)"):
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": n} for n in names], "Quiet": True}
            )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            key = str(first.get("Key", ""))[len(self.root) :]
            raise StoreError(
                self.location,
                f"{len(errors)} object(s) could not be deleted, e.g. '{key}': "
                f"{first.get('Code', '?')}: {first.get('Message', '')}".rstrip(": "),
            )

    def cleanup_incomplete(self, older_than: datetime) -> int:
        """Abort the multipart uploads under this store's prefix that were initiated before
        ``older_than`` (a killed writer could not abort its own); how many were aborted."""
        from botocore.exceptions import ClientError

        cutoff = _aware(older_than)
        stale: list[tuple[str, str]] = []
        with self._mapped("listing unfinished uploads"):
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.root):
                for upload in page.get("Uploads", ()):
                    if upload["Initiated"] < cutoff and str(upload["Key"]).startswith(self.root):
                        stale.append((str(upload["Key"]), str(upload["UploadId"])))
        aborted = 0
        for name, upload_id in stale:
            try:
                with self._mapped(f"aborting the unfinished upload of '{name[len(self.root) :]}'"):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            except StoreError as exc:
                cause = exc.__cause__
                if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in (
                    "NoSuchUpload",
                    "404",
                ):
                    continue  # completed or aborted meanwhile
                raise
            aborted += 1
        return aborted


# --------------------------------------------------------------------------- local directory


class _FileWriter:
    def __init__(self, fh: BinaryIO, wrap: Callable[[OSError], StoreError]) -> None:
        self._fh = fh
        self._wrap = wrap
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes | memoryview) -> int:
        try:
            written = self._fh.write(data)
        except OSError as exc:
            raise self._wrap(exc) from exc
        self._size += written
        return written


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(Store):
    """Objects as files under ``root`` (same keys as S3). Files are 0600 and new directories 0700."""

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if not root.is_absolute():
            raise ValueError(f"LocalStore needs an absolute path, not {root}")
        self.root = root
        self.location = root.as_uri()

    def path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def error(self, exc: OSError, key: str | None = None) -> StoreError:
        needed = f" (needed for {key})" if key else ""
        where = exc.filename or self.root
        code = exc.errno
        if code in (errno.ENOSPC, errno.EDQUOT):
            message = f"no space left on {self.root}{needed}: free space or move backup.target"
        elif code in (errno.EACCES, errno.EPERM):
            message = (
                f"permission denied on {where}{needed}: let the maintainer user write {self.root} "
                "or move backup.target"
            )
        elif code == errno.EROFS:
            message = f"{self.root} is on a read-only file system{needed}: remount it or move backup.target"
        elif code == errno.EFBIG:
            message = f"file too large for {self.root}{needed}: the file system (or a ulimit) caps file size"
        else:
            action = f"writing {key}" if key else "using the store"
            message = f"{action} failed: {exc.strerror or exc} ({where})"
        return StoreError(self.location, message)

    def _mkdirs(self, directory: Path) -> None:
        for attempt in range(3):
            missing: list[Path] = []
            here = directory
            while not here.is_dir():
                missing.append(here)
                if here.parent == here:
                    break
                here = here.parent
            try:
                for path in reversed(missing):
                    with suppress(FileExistsError):
                        os.mkdir(path, 0o700)
                return
            except FileNotFoundError:
                if attempt == 2:  # a parent was removed meanwhile (an empty one, by cleanup_incomplete)
                    raise

    def _temp(self, directory: Path) -> tuple[Path, int]:
        tmp = directory / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        for attempt in range(3):
            self._mkdirs(directory)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                # cleanup_incomplete removed the (empty) directory between the two calls
                if attempt == 2:
                    raise
                continue
            return tmp, fd
        raise AssertionError("unreachable")

    def check(self) -> None:
        try:
            tmp, fd = self._temp(self.root)
            os.close(fd)
            tmp.unlink()
        except OSError as exc:
            raise self.error(exc) from exc

    @contextmanager
    def open_write(self, key: str) -> Iterator[ObjectWriter]:
        path = self.path(key)
        try:
            tmp, fd = self._temp(path.parent)
        except OSError as exc:
            raise self.error(exc, key) from exc
        fh = open(fd, "wb", buffering=READ_BUFFER)  # noqa: SIM115 (closed below on every path)
        committed = False
        try:
            yield _FileWriter(fh, lambda exc: self.error(exc, key))
            try:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
                os.replace(tmp, path)
                committed = True
                _fsync_dir(path.parent)
            except OSError as exc:
                raise self.error(exc, key) from exc
        finally:
            if not committed:
                with suppress(OSError):
                    fh.close()  # may fail again (the buffer cannot be flushed on a full disk)
                with suppress(OSError):
                    tmp.unlink()

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        path = self.path(key)
        tmp: Path | None = None
        try:
            tmp, fd = self._temp(path.parent)
            with open(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fd)
            if if_absent:
                try:
                    os.link(tmp, path)  # atomic, and refuses an existing name
                except FileExistsError:
                    raise ObjectExists(self.location, key) from None
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                        raise
                    self._create_exclusive(path, key, data)  # no hard links on this file system
            else:
                os.replace(tmp, path)
                tmp = None
            _fsync_dir(path.parent)
        except OSError as exc:
            raise self.error(exc, key) from exc
        finally:
            if tmp is not None:
                with suppress(OSError):
                    tmp.unlink()

    def _create_exclusive(self, path: Path, key: str, data: bytes) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise ObjectExists(self.location, key) from None
        try:
            with open(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fd)
        except BaseException:
            with suppress(OSError):
                path.unlink()
            raise

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        path = self.path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 (closed by the with below)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectMissing(self.location, key) from None
        except OSError as exc:
            raise self.error(exc, key) from exc
        with fh:
            yield fh

    def head(self, key: str) -> ObjectInfo | None:
        try:
            st = os.stat(self.path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self.error(exc, key) from exc
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        _check_prefix(prefix)
        head, _, start = prefix.rpartition("/")
        directory = self.root.joinpath(*head.split("/")) if head else self.root
        yield from self._walk(directory, f"{head}/" if head else "", start)

    def _walk(self, directory: Path, rel: str, start: str) -> Iterator[ObjectInfo]:
        """Keys in S3's order (UTF-8 bytes): a directory sorts as its name plus '/'."""
        try:
            with os.scandir(directory) as it:
                entries = [e for e in it if e.name.startswith(start) and not e.name.startswith(TEMP_PREFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self.error(exc) from exc
        items: list[tuple[bytes, os.DirEntry[str], bool]] = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    items.append(((entry.name + "/").encode("utf-8", "surrogateescape"), entry, True))
                elif entry.is_file(follow_symlinks=False):
                    items.append((entry.name.encode("utf-8", "surrogateescape"), entry, False))
            except OSError:
                continue
        items.sort(key=lambda item: item[0])
        for _, entry, is_dir in items:
            if is_dir:
                yield from self._walk(Path(entry.path), f"{rel}{entry.name}/", "")
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted meanwhile
            yield ObjectInfo(rel + entry.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                os.unlink(self.path(key))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self.error(exc, key) from exc

    #: where empty directories are removed: one per pack prefix or per backup's dumps
    EMPTY_DIRS_UNDER = ("packs", "db")

    def cleanup_incomplete(self, older_than: datetime) -> int:
        """Remove temp files (``.tmp-*``) last written before ``older_than``, which a killed writer
        left, and every empty directory under packs/ and db/ (pruned content leaves them); how
        many files and directories were removed."""
        cutoff = _aware(older_than).timestamp()
        failures: list[OSError] = []
        dirs: list[Path] = []
        stale: list[Path] = []
        for top, subdirs, files in os.walk(self.root, onerror=failures.append):
            here = Path(top)
            dirs.extend(here / name for name in subdirs)
            for name in files:
                if not name.startswith(TEMP_PREFIX):
                    continue
                try:
                    st = os.lstat(here / name)
                except FileNotFoundError:
                    continue  # committed or removed meanwhile
                if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                    stale.append(here / name)
        missing = [e for e in failures if isinstance(e, FileNotFoundError)]
        if len(missing) < len(failures):
            raise self.error(next(e for e in failures if not isinstance(e, FileNotFoundError)))
        removed = 0
        for path in stale:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self.error(exc) from exc
            removed += 1
        tops = [self.root / name for name in self.EMPTY_DIRS_UNDER]
        # deepest first, so a directory emptied by removing its children goes too
        for path in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            if not any(top in path.parents for top in tops) or path.is_symlink():
                continue
            try:
                path.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    continue  # holds something, or is gone already
                raise self.error(exc) from exc
            removed += 1
        return removed


# --------------------------------------------------------------------------- targets


def _check_site(site: str) -> str:
    if not site or "/" in site or "\\" in site or site in (".", "..") or site.startswith(TEMP_PREFIX):
        raise BadInput(
            f"site name '{site}' cannot be a folder of the backup store",
            key="site",
            fix="give the host a name without '/' that is not '.' or '..'",
        )
    return site


def open_store(target: str, site: str, s3: S3Settings | None = None) -> Store:
    """The store for one site: ``s3://bucket/prefix`` or ``file:///abs/path``, rooted at ``.../<site>/``."""
    _check_site(site)
    parts = urlsplit(target.strip())
    if parts.query or parts.fragment:
        raise BadInput(f"backup target '{target}' has a query or fragment", key=TARGET_KEY, fix=TARGET_FIX)
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise BadInput(
                f"'{bucket}' is not an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)",
                key=TARGET_KEY,
                fix=TARGET_FIX,
            )
        segments = [p for p in parts.path.split("/") if p]
        if any(p in (".", "..") for p in segments):
            raise BadInput(
                f"backup target '{target}' has a '.' or '..' folder", key=TARGET_KEY, fix=TARGET_FIX
            )
        return S3Store(bucket, "/".join([*segments, site]), s3)
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise BadInput(
                f"backup target '{target}' is not an absolute path",
                key=TARGET_KEY,
                fix="write a local directory with three slashes: file:///ABSOLUTE/PATH",
            )
        return LocalStore(Path(os.path.normpath(path)) / site)
    hint = f" (did you mean file://{os.path.abspath(target)}?)" if not parts.scheme else ""
    raise BadInput(
        f"backup target '{target}' is neither s3:// nor file://{hint}", key=TARGET_KEY, fix=TARGET_FIX
    )
