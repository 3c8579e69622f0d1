"""S3 storage for any S3-compatible store (AWS S3, MinIO, Ceph RGW) through boto3.

Atomicity comes from S3 itself: an object becomes visible only when a PUT or a multipart upload
completes, and a failed write aborts its multipart upload, so a half-written object is never seen.
Credentials come from boto3's default chain (environment, web identity, instance profile), never
from our settings.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)

from storage.base import (
    ListedObject,
    ObjectNotFound,
    ObjectStat,
    ObjectTooLarge,
    Readable,
    StorageUnavailable,
    StoredObject,
    check_key,
    content_disposition,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("exportd.storage")

#: Size of each part of a multipart upload. S3 wants at least 5 MiB for every part but the last,
#: and allows 10,000 parts, so one object can hold up to 78 GiB.
PART_BYTES = 8 * 1024 * 1024
#: Size of one read from a stream or a file while a part is filled.
READ_BYTES = 1024 * 1024
#: SigV4 refuses presigned URLs that live longer than 7 days.
MAX_PRESIGN_S = 7 * 24 * 3600
#: A presigned link ends this much before the credentials that signed it, for clock skew.
CREDENTIALS_MARGIN_S = 30
#: Object metadata entry (x-amz-meta-sha256) holding the hex SHA-256 of the body.
SHA256_METADATA = "sha256"

_ADDRESSING_STYLES: dict[str, Literal["auto", "path", "virtual"]] = {
    "auto": "auto",
    "path": "path",
    "virtual": "virtual",
}

# Error codes S3 and its look-alikes use, grouped by what they mean to us.
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {
    "403",
    "AccessDenied",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
}
_TRANSIENT = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
    "XMinioServerNotInitialized",
}


def build_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    addressing_style: str = "auto",
    session: boto3.Session | None = None,
    connect_timeout_s: float = 5,
    read_timeout_s: float = 60,
    max_attempts: int = 3,
) -> S3Client:
    """An S3 client with our configuration; credentials from `session` or boto3's default chain.

    Raises ValueError for an unknown addressing style.
    """
    style = _ADDRESSING_STYLES.get(addressing_style)
    if style is None:
        raise ValueError(f"addressing_style must be auto, path or virtual, not {addressing_style!r}")
    config = Config(
        s3={"addressing_style": style},
        signature_version="s3v4",
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        # botocore >= 1.36 adds CRC checksums (aws-chunked trailers) to every upload by default,
        # which older Ceph RGW and other S3 look-alikes refuse; we send Content-MD5 ourselves.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return (session or boto3.Session()).client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config
    )


class S3Storage:
    """Objects live in one bucket under `prefix`; see the module docstring for atomicity."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str = "auto",
        client: S3Client | None = None,
    ) -> None:
        """Raises ValueError for an invalid prefix or addressing style."""
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        # Empty strings (unset settings) mean "not given", as None does.
        self._client = client or build_client(
            endpoint_url=endpoint_url or None, region=region or None, addressing_style=addressing_style
        )
        self._endpoint = self._client.meta.endpoint_url

    # -- keys and errors -------------------------------------------------------------------------

    def _object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @contextmanager
    def _mapped_errors(self, key: str | None = None) -> Iterator[None]:
        """Turn botocore errors into storage errors; others (bugs) pass through."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if key is not None and (code in _NOT_FOUND or (not code and status == 404)):
                raise ObjectNotFound(key) from exc
            if code in _NO_BUCKET or (key is None and status == 404):
                raise StorageUnavailable(
                    f"S3 bucket {self.bucket!r} does not exist at {self._endpoint}"
                ) from exc
            if code in _DENIED or status == 403:
                raise StorageUnavailable(
                    f"S3 access to bucket {self.bucket!r} denied ({code or status}): check the credentials"
                    " and the bucket policy"
                ) from exc
            if code in _TRANSIENT or status >= 500:
                raise StorageUnavailable(
                    f"S3 at {self._endpoint} failed ({code or status}), try again"
                ) from exc
            raise
        except (ConnectionError, HTTPClientError, IncompleteReadError) as exc:
            raise StorageUnavailable(f"S3 at {self._endpoint} is unreachable: {type(exc).__name__}") from exc
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
            raise StorageUnavailable(f"no usable S3 credentials: {type(exc).__name__}") from exc

    # -- writes ----------------------------------------------------------------------------------

    def put_stream(self, key: str, stream: Readable, *, max_bytes: int | None = None) -> StoredObject:
        """Store everything `stream.read()` yields, in parts of PART_BYTES, atomically.

        Raises ObjectTooLarge, StorageUnavailable. A body that needs a multipart upload carries no
        sha256 metadata (the digest is known only after the upload began); put_file's always does.
        """
        return self._upload(key, stream, max_bytes=max_bytes, sha256=None)

    def put_file(self, key: str, path: Path) -> StoredObject:
        """Store a local file atomically, its sha256 in the object's metadata.

        Raises StorageUnavailable; RuntimeError when the file changes while it is uploaded.
        """
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(READ_BYTES):
                digest.update(chunk)
        with path.open("rb") as fh:
            return self._upload(key, fh, max_bytes=None, sha256=digest.hexdigest())

    def _upload(
        self, key: str, stream: Readable, *, max_bytes: int | None, sha256: str | None
    ) -> StoredObject:
        object_key = self._object_key(key)
        reader = _PartReader(stream, max_bytes=max_bytes)
        part = reader.next_part()
        if len(part) < PART_BYTES:  # the whole body fits in one request
            self._check_digest(reader, sha256)
            with self._mapped_errors():
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=object_key,
                    Body=part,
                    ContentMD5=_md5(part),
                    Metadata={SHA256_METADATA: reader.sha256.hexdigest()},
                )
            return StoredObject(key=key, size=reader.size, sha256=reader.sha256.hexdigest())

        with self._mapped_errors():
            upload_id = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=object_key, Metadata={SHA256_METADATA: sha256} if sha256 else {}
            )["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            while part:
                number = len(parts) + 1
                with self._mapped_errors():
                    etag = self._client.upload_part(
                        Bucket=self.bucket,
                        Key=object_key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=part,
                        ContentMD5=_md5(part),
                    )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
                part = reader.next_part()
            self._check_digest(reader, sha256)
            with self._mapped_errors():
                self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            self._abort(object_key, upload_id)
            raise
        return StoredObject(key=key, size=reader.size, sha256=reader.sha256.hexdigest())

    @staticmethod
    def _check_digest(reader: _PartReader, expected: str | None) -> None:
        if expected is not None and reader.sha256.hexdigest() != expected:
            raise RuntimeError("the file changed while it was being uploaded")

    def _abort(self, object_key: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:
            # Nothing is visible either way; the parts cost storage until a lifecycle rule
            # (AbortIncompleteMultipartUpload) removes them.
            log.warning(
                "could not abort an S3 multipart upload in bucket %s: %s", self.bucket, type(exc).__name__
            )

    # -- reads -----------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """A buffered reader of the object; seek() starts a ranged GET. Raises ObjectNotFound, StorageUnavailable."""
        raw = _ObjectReader(self, key)
        return io.BufferedReader(raw, buffer_size=READ_BYTES)

    def _get(self, key: str, *, start: int = 0, if_match: str | None = None) -> Any:
        """get_object's response (its Body still unread). Raises ObjectNotFound, StorageUnavailable."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._object_key(key)}
        if start:
            params["Range"] = f"bytes={start}-"
        if if_match:
            params["IfMatch"] = if_match
        try:
            with self._mapped_errors(key):
                return self._client.get_object(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                raise StorageUnavailable("the S3 object was replaced while it was being read") from exc
            raise

    def stat(self, key: str) -> ObjectStat:
        """Size, ETag (quoted, as S3 returns it) and modification time. Raises ObjectNotFound, StorageUnavailable."""
        with self._mapped_errors(key):
            head = self._client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        return ObjectStat(
            size=head["ContentLength"], etag=head["ETag"], modified=head["LastModified"].timestamp()
        )

    def fetch(self, key: str, dest: Path) -> None:
        """Download the object to `dest`, which appears only complete. Raises ObjectNotFound, StorageUnavailable."""
        fd, tmp_path = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                body = self._get(key)["Body"]
                try:
                    with self._mapped_errors(key):
                        while chunk := body.read(READ_BYTES):
                            out.write(chunk)
                finally:
                    body.close()
            os.replace(tmp_path, dest)
        finally:
            if os.path.exists(tmp_path):
                os.unlink(tmp_path)

    def delete(self, key: str) -> None:
        """Remove the object; no error when it is already gone. Raises StorageUnavailable."""
        with self._mapped_errors():
            self._client.delete_object(Bucket=self.bucket, Key=self._object_key(key))

    def exists(self, key: str) -> bool:
        """Raises StorageUnavailable."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def check(self) -> None:
        """HEAD the bucket (cheap; reads nothing). Raises StorageUnavailable saying what is wrong."""
        with self._mapped_errors():
            self._client.head_bucket(Bucket=self.bucket)

    def list_keys(self, prefix: str = "") -> Iterator[ListedObject]:
        """Objects whose key starts with `prefix`, in key order, page by page. Raises StorageUnavailable, ValueError."""
        if prefix:
            check_key(prefix.removesuffix("/"))
        paginator = self._client.get_paginator("list_objects_v2")
        with self._mapped_errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    yield ListedObject(
                        key=obj["Key"].removeprefix(self.prefix),
                        modified=obj["LastModified"].timestamp(),
                        size=obj["Size"],
                    )

    def remove_stale_temp_files(self, *, older_than_s: float, now: float) -> int:
        """Abort multipart uploads under this prefix that a crashed write left unfinished (their
        parts are billed storage until aborted)."""
        removed = 0
        paginator = self._client.get_paginator("list_multipart_uploads")
        with self._mapped_errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", []):
                    if now - upload["Initiated"].timestamp() > older_than_s:
                        self._abort(upload["Key"], upload["UploadId"])
                        removed += 1
        return removed

    # -- links -----------------------------------------------------------------------------------

    def presigned_url(
        self, key: str, *, expires_at: int, filename: str, content_type: str
    ) -> tuple[str, int]:
        """A presigned GET of the object, served as an attachment named `filename`, and its true expiry.

        The link ends at the earliest of `expires_at`, 7 days from now (SigV4's limit) and
        CREDENTIALS_MARGIN_S before the signing credentials expire: S3 refuses a presigned URL once
        the temporary credentials that signed it have expired, so the expiry we return must not
        promise more. botocore's RefreshableCredentials (web identity/IRSA, container and instance
        roles, assume-role) keep their end in `_expiry_time`, private but the only record of it.
        Static keys have no end; a static key with a session token (AWS_SESSION_TOKEN) has one we
        cannot see. An `expires_at` already past gives a link of one second. The expiry returned
        may be one second early (the signature's clock starts at the signing second), never late.
        Raises ValueError for a bad key, StorageUnavailable when there are no credentials or they
        expire within CREDENTIALS_MARGIN_S.
        """
        object_key = self._object_key(key)
        credentials = _signing_credentials(self._client)
        if credentials is None:
            raise StorageUnavailable("no usable S3 credentials to sign a link with")
        # Refresh now if due, so the expiry read below belongs to the credentials that will sign;
        # a refresh between here and the signature only makes the credentials live longer.
        with self._mapped_errors():
            credentials.get_frozen_credentials()
        now = int(time.time())
        lifetime_s = min(max(1, expires_at - now), MAX_PRESIGN_S)
        credentials_end = getattr(credentials, "_expiry_time", None)
        if credentials_end is not None:
            left_s = int(credentials_end.timestamp()) - now - CREDENTIALS_MARGIN_S
            if left_s < 1:
                raise StorageUnavailable("the S3 credentials expire too soon to sign a link")
            lifetime_s = min(lifetime_s, left_s)
        url = self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": object_key,
                "ResponseContentDisposition": content_disposition(filename),
                "ResponseContentType": content_type,
            },
            ExpiresIn=lifetime_s,
            HttpMethod="GET",
        )
        return url, now + lifetime_s


def _normalise_prefix(prefix: str) -> str:
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    try:
        check_key(stripped)
    except ValueError:
        raise ValueError(f"invalid S3 key prefix {prefix!r}") from None
    return stripped + "/"


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _signing_credentials(client: S3Client) -> Any:
    """The botocore Credentials the client signs with, or None for an anonymous client.

    `_get_credentials` is private, but boto3 itself relies on it (boto3/crt.py).
    """
    return client._get_credentials()  # type: ignore[attr-defined]


class _PartReader:
    """Reads a stream in parts of PART_BYTES, keeping its size and SHA-256, enforcing a limit."""

    def __init__(self, stream: Readable, *, max_bytes: int | None) -> None:
        self._stream = stream
        self._max_bytes = max_bytes
        self.size = 0
        self.sha256 = hashlib.sha256()

    def next_part(self) -> bytes:
        """Up to PART_BYTES (fewer only at the end; b"" when done). Raises ObjectTooLarge."""
        buf = bytearray()
        while len(buf) < PART_BYTES:
            chunk = self._stream.read(min(READ_BYTES, PART_BYTES - len(buf)))
            if not chunk:
                break
            self.size += len(chunk)
            if self._max_bytes is not None and self.size > self._max_bytes:
                raise ObjectTooLarge(self._max_bytes)
            self.sha256.update(chunk)
            buf += chunk
        return bytes(buf)


class _ObjectReader(io.RawIOBase):
    """The body of a GET; a seek elsewhere closes it and issues a ranged GET of the same version."""

    def __init__(self, storage: S3Storage, key: str) -> None:
        super().__init__()
        self._storage = storage
        self._key = key
        self._body: Any = None
        response = storage._get(key)
        self._body = response["Body"]
        self._size: int = response["ContentLength"]
        self._etag: str = response["ETag"]
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._body is None:  # positioned at or past the end
            return 0
        with self._storage._mapped_errors(self._key):
            n: int = self._body.readinto(buffer)
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if target < 0:
            raise ValueError("negative seek position")
        if target != self._pos:
            self._close_body()
            if target < self._size:
                self._body = self._storage._get(self._key, start=target, if_match=self._etag)["Body"]
            self._pos = target
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._close_body()
        super().close()
