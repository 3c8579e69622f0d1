"""S3Storage against a real S3-compatible HTTP server: moto's emulator (not AWS itself) by default.

The server comes from tests/storage/s3_server.py: moto in server mode on a free port of 127.0.0.1,
started once for this module and stopped afterwards, or the store EXPORTD_TEST_S3_ENDPOINT names.
moto checks neither the signature nor the expiry of a presigned URL, so the test that a tampered
link is refused runs only against such an external store. Credentials are fixed test values set
here; nothing is read from the machine's AWS configuration.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.session
import pytest
from botocore.credentials import CredentialProvider, CredentialResolver, RefreshableCredentials

from storage.base import ObjectNotFound, ObjectTooLarge, Storage, StorageUnavailable, content_disposition
from storage.s3 import (
    CREDENTIALS_MARGIN_S,
    MAX_PRESIGN_S,
    PART_BYTES,
    S3Storage,
    build_client,
)
from tests.storage.s3_server import S3TestServer, s3_test_server

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3TestServer]:
    with s3_test_server() as server:
        yield server


def _scrub_aws_env(monkeypatch: pytest.MonkeyPatch, server: S3TestServer, scratch: Path) -> None:
    """boto3's default chain sees the test credentials and nothing of this machine's AWS setup."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_access_key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(scratch / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(scratch / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3_server: S3TestServer) -> None:
    _scrub_aws_env(monkeypatch, s3_server, tmp_path)


@pytest.fixture(scope="module")
def admin(s3_server: S3TestServer, tmp_path_factory: pytest.TempPathFactory) -> S3Client:
    """A plain boto3 client, to look at the bucket behind the storage's back."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _scrub_aws_env(monkeypatch, s3_server, tmp_path_factory.mktemp("aws"))
        return build_client(
            endpoint_url=s3_server.endpoint_url, region=s3_server.region, addressing_style="path"
        )


@pytest.fixture
def bucket(admin: S3Client) -> Iterator[str]:
    """A new bucket of this test alone, emptied and removed afterwards."""
    name = f"exportd-test-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=name)
    yield name
    for upload in admin.list_multipart_uploads(Bucket=name).get("Uploads", []):
        admin.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            admin.delete_object(Bucket=name, Key=obj["Key"])
    admin.delete_bucket(Bucket=name)


def _storage(server: S3TestServer, bucket: str, **kwargs: Any) -> S3Storage:
    kwargs.setdefault("addressing_style", "path")  # what works against a server at 127.0.0.1
    return S3Storage(bucket=bucket, endpoint_url=server.endpoint_url, region=server.region, **kwargs)


@pytest.fixture
def store(s3_server: S3TestServer, bucket: str) -> S3Storage:
    return _storage(s3_server, bucket, prefix="tenant-a")


def test_s3_storage_is_a_storage(store: S3Storage) -> None:
    as_protocol: Storage = store  # mypy checks the signatures against the protocol
    assert as_protocol is store


def _pending_uploads(admin: S3Client, bucket: str) -> list[Any]:
    return list(admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# -- writes and reads ----------------------------------------------------------------------------


def test_small_body_round_trip(store: S3Storage, admin: S3Client, bucket: str) -> None:
    data = b"hello, bucket"
    stored = store.put_stream("uploads/a", io.BytesIO(data))
    assert (stored.key, stored.size, stored.sha256) == (
        "uploads/a",
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    with store.open("uploads/a") as fh:
        assert fh.read() == data
    head = admin.head_object(Bucket=bucket, Key="tenant-a/uploads/a")
    assert head["Metadata"]["sha256"] == stored.sha256
    assert "-" not in head["ETag"]  # one PUT, no multipart upload


def test_multipart_body_round_trip(store: S3Storage, admin: S3Client, bucket: str, tmp_path: Path) -> None:
    data = os.urandom(20 * MIB + 17)
    stored = store.put_stream("uploads/big", io.BytesIO(data))
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    # A multipart ETag is "<md5 of the parts' md5s>-<number of parts>": 8 + 8 + 4 MiB.
    assert store.stat("uploads/big").etag.strip('"').endswith("-3")
    assert store.stat("uploads/big").size == len(data)
    with store.open("uploads/big") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == stored.sha256
    store.fetch("uploads/big", tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == data
    assert _pending_uploads(admin, bucket) == []


def test_body_of_exactly_one_part(store: S3Storage) -> None:
    data = os.urandom(PART_BYTES)
    stored = store.put_stream("uploads/one-part", io.BytesIO(data))
    assert stored.size == PART_BYTES
    with store.open("uploads/one-part") as fh:
        assert fh.read() == data


class _Trickle:
    """A stream that returns fewer bytes than asked, as a socket does."""

    def __init__(self, data: bytes, step: int) -> None:
        self._buf = io.BytesIO(data)
        self._step = step

    def read(self, size: int = -1, /) -> bytes:
        return self._buf.read(min(size, self._step) if size >= 0 else self._step)


def test_short_reads_still_fill_whole_parts(store: S3Storage) -> None:
    data = os.urandom(17 * MIB)
    stored = store.put_stream("uploads/trickle", _Trickle(data, 300_000))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert (
        store.stat("uploads/trickle").etag.strip('"').endswith("-3")
    )  # no part shorter than 5 MiB but the last


def test_put_file_stores_sha256_metadata_also_when_multipart(
    store: S3Storage, admin: S3Client, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "out.pdf"
    src.write_bytes(os.urandom(9 * MIB))
    stored = store.put_file("outputs/j/out.pdf", src)
    assert stored.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    head = admin.head_object(Bucket=bucket, Key="tenant-a/outputs/j/out.pdf")
    assert head["ETag"].strip('"').endswith("-2")
    assert head["Metadata"]["sha256"] == stored.sha256


@pytest.mark.parametrize(("size", "limit"), [(5000, 4096), (20 * MIB, 10 * MIB)], ids=["single", "multipart"])
def test_over_limit_write_leaves_nothing_behind(
    store: S3Storage, admin: S3Client, bucket: str, size: int, limit: int
) -> None:
    with pytest.raises(ObjectTooLarge) as info:
        store.put_stream("uploads/big", io.BytesIO(b"x" * size), max_bytes=limit)
    assert info.value.limit_bytes == limit
    assert not store.exists("uploads/big")
    assert _pending_uploads(admin, bucket) == []
    assert "Contents" not in admin.list_objects_v2(Bucket=bucket)


def test_body_at_the_limit_is_accepted(store: S3Storage) -> None:
    assert store.put_stream("uploads/exact", io.BytesIO(b"x" * 4096), max_bytes=4096).size == 4096


class _BrokenStream:
    """Yields `good` bytes, then fails as a client that hangs up mid-upload."""

    def __init__(self, good: int) -> None:
        self._left = good

    def read(self, size: int = -1, /) -> bytes:
        if self._left <= 0:
            raise OSError("client went away")
        n = min(size, self._left)
        self._left -= n
        return b"y" * n


def test_failed_stream_aborts_the_multipart_upload(store: S3Storage, admin: S3Client, bucket: str) -> None:
    with pytest.raises(OSError, match="client went away"):
        store.put_stream("uploads/cut", _BrokenStream(2 * PART_BYTES + 5))
    assert not store.exists("uploads/cut")
    assert _pending_uploads(admin, bucket) == []


class _GatedStream:
    """Two full parts, then waits for the gate before the end, so a test can look mid-upload."""

    def __init__(self, gate: threading.Event) -> None:
        self._parts = [b"a" * PART_BYTES, b"b" * PART_BYTES, b"c" * 10]
        self._gate = gate

    def read(self, size: int = -1, /) -> bytes:
        if len(self._parts) == 1:
            self._gate.wait(10)
        if not self._parts:
            return b""
        head, self._parts[0] = self._parts[0][:size], self._parts[0][size:]
        if not self._parts[0]:
            self._parts.pop(0)
        return head


def test_half_written_object_is_never_visible(store: S3Storage, admin: S3Client, bucket: str) -> None:
    gate = threading.Event()
    writer = threading.Thread(target=store.put_stream, args=("outputs/j/out.pdf", _GatedStream(gate)))
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while not _pending_uploads(admin, bucket) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _pending_uploads(admin, bucket), "the upload never started"
        assert not store.exists("outputs/j/out.pdf")
        with pytest.raises(ObjectNotFound):
            store.stat("outputs/j/out.pdf")
    finally:
        gate.set()
        writer.join()
    assert store.stat("outputs/j/out.pdf").size == 2 * PART_BYTES + 10


def test_open_stat_fetch_delete_exists(store: S3Storage, tmp_path: Path) -> None:
    before = time.time()
    store.put_stream("uploads/x", io.BytesIO(b"hello"))
    assert store.exists("uploads/x")
    stat = store.stat("uploads/x")
    assert stat.size == 5
    assert stat.etag.startswith('"') and stat.etag.endswith('"')
    assert before - 5 <= stat.modified <= time.time() + 5
    dest = tmp_path / "copy"
    store.fetch("uploads/x", dest)
    assert dest.read_bytes() == b"hello"
    store.delete("uploads/x")
    store.delete("uploads/x")  # deleting twice is fine
    assert not store.exists("uploads/x")


def test_missing_objects_raise_object_not_found(store: S3Storage, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound):
        store.open("uploads/none")
    with pytest.raises(ObjectNotFound):
        store.stat("uploads/none")
    with pytest.raises(ObjectNotFound):
        store.fetch("uploads/none", tmp_path / "dest")
    assert list(tmp_path.iterdir()) == []  # no half-made file either


def test_open_can_seek_for_ranges(store: S3Storage) -> None:
    data = os.urandom(3 * MIB)
    store.put_stream("outputs/j/big.zip", io.BytesIO(data))
    with store.open("outputs/j/big.zip") as fh:
        fh.seek(2 * MIB + 5)
        assert fh.read(100) == data[2 * MIB + 5 : 2 * MIB + 105]
        fh.seek(10)
        assert fh.read(10) == data[10:20]
        fh.seek(0, io.SEEK_END)
        assert fh.read() == b""


def test_etag_changes_when_content_is_replaced(store: S3Storage) -> None:
    store.put_stream("k", io.BytesIO(b"one"))
    first = store.stat("k").etag
    store.put_stream("k", io.BytesIO(b"three"))
    assert store.stat("k").etag != first


def test_prefixes_keep_storages_apart(s3_server: S3TestServer, bucket: str, admin: S3Client) -> None:
    a = _storage(s3_server, bucket, prefix="tenant-a")
    b = _storage(s3_server, bucket, prefix="/tenant-b/")
    a.put_stream("uploads/same", io.BytesIO(b"from a"))
    assert not b.exists("uploads/same")
    with pytest.raises(ObjectNotFound):
        b.open("uploads/same")
    b.put_stream("uploads/same", io.BytesIO(b"from b"))
    with a.open("uploads/same") as fh:
        assert fh.read() == b"from a"
    b.delete("uploads/same")
    assert a.exists("uploads/same")
    keys = sorted(o["Key"] for o in admin.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["tenant-a/uploads/same"]


def test_list_keys_strips_our_prefix(s3_server: S3TestServer, bucket: str) -> None:
    store = _storage(s3_server, bucket, prefix="tenant-a")
    other = _storage(s3_server, bucket, prefix="tenant-ab")  # shares the first characters only
    for key in ("outputs/j1/a.pdf", "outputs/j2/b.pdf", "uploads/u1"):
        store.put_stream(key, io.BytesIO(key.encode()))
    other.put_stream("outputs/j9/z.pdf", io.BytesIO(b"z"))
    listed = list(store.list_keys("outputs/"))
    assert [o.key for o in listed] == ["outputs/j1/a.pdf", "outputs/j2/b.pdf"]
    assert listed[0].size == len(b"outputs/j1/a.pdf")
    assert abs(listed[0].modified - time.time()) < 60
    assert {o.key for o in store.list_keys()} == {"outputs/j1/a.pdf", "outputs/j2/b.pdf", "uploads/u1"}


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", ""])
def test_invalid_keys_are_refused(store: S3Storage, key: str) -> None:
    with pytest.raises(ValueError):
        store.put_stream(key, io.BytesIO(b"x"))


@pytest.mark.parametrize("prefix", ["../up", "a//b", "a/.hidden"])
def test_invalid_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        S3Storage(bucket="b", prefix=prefix, endpoint_url="http://127.0.0.1:1")


# -- presigned links -----------------------------------------------------------------------------


def _link(store: S3Storage, key: str, *, in_s: int, filename: str = "o.pdf") -> tuple[str, int]:
    return store.presigned_url(key, expires_at=int(time.time()) + in_s, filename=filename, content_type="a/b")


def test_presigned_url_downloads_as_an_attachment(store: S3Storage) -> None:
    store.put_stream("outputs/j/out.pdf", io.BytesIO(b"%PDF-1.7 body"))
    wanted = int(time.time()) + 300
    url, expires_at = store.presigned_url(
        "outputs/j/out.pdf", expires_at=wanted, filename='Résumé "final".pdf', content_type="application/pdf"
    )
    assert expires_at == wanted
    assert _query(url)["X-Amz-Expires"] in ("300", "299")  # counted from the signing second
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"%PDF-1.7 body"
        assert resp.headers["Content-Type"] == "application/pdf"
        assert resp.headers["Content-Disposition"] == content_disposition('Résumé "final".pdf')
    assert content_disposition('Résumé "final".pdf') == (
        "attachment; filename=\"R_sum_ _final_.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22final%22.pdf"
    )


def test_tampered_presigned_url_is_refused(store: S3Storage, s3_server: S3TestServer) -> None:
    if not s3_server.verifies_presigned_urls:
        pytest.skip("moto does not verify presigned URLs; set EXPORTD_TEST_S3_ENDPOINT to a real store")
    store.put_stream("outputs/j/out.pdf", io.BytesIO(b"secret"))
    store.put_stream("outputs/k/other.pdf", io.BytesIO(b"other"))
    url, _ = _link(store, "outputs/j/out.pdf", in_s=300)
    tampered = url.replace("/outputs/j/out.pdf", "/outputs/k/other.pdf")
    assert tampered != url
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(tampered, timeout=10)
    assert info.value.code == 403


def test_presigned_expiry_is_capped_at_seven_days(store: S3Storage) -> None:
    url, expires_at = _link(store, "outputs/j/out.pdf", in_s=30 * 86400)
    assert _query(url)["X-Amz-Expires"] == str(MAX_PRESIGN_S)
    assert abs(expires_at - (time.time() + MAX_PRESIGN_S)) <= 2


def test_presigned_expiry_already_past_gives_a_one_second_link(store: S3Storage) -> None:
    url, expires_at = _link(store, "outputs/j/out.pdf", in_s=-100)
    assert _query(url)["X-Amz-Expires"] == "1"
    assert expires_at <= time.time() + 1


class _ShortLivedProvider(CredentialProvider):
    """Temporary credentials ending at `expires_at`, as web identity (IRSA) or STS gives them."""

    METHOD = "exportd-test-temporary"

    def __init__(self, server: S3TestServer, expires_at: dt.datetime) -> None:
        super().__init__()
        self._metadata = {
            "access_key": server.access_key_id,
            "secret_key": server.secret_access_key,
            "token": "exportd-test-session-token",
            "expiry_time": expires_at.isoformat(),
        }
        self.loads = 0

    def _fetch(self) -> dict[str, str]:
        self.loads += 1
        return self._metadata

    def load(self) -> RefreshableCredentials:
        return RefreshableCredentials.create_from_metadata(self._fetch(), self._fetch, self.METHOD)


def _session_with(provider: CredentialProvider) -> boto3.Session:
    core = botocore.session.Session()
    core.register_component("credential_provider", CredentialResolver(providers=[provider]))
    return boto3.Session(botocore_session=core)


def test_presigned_expiry_is_capped_at_the_credentials_lifetime(s3_server: S3TestServer, bucket: str) -> None:
    credentials_end = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=10)
    session = _session_with(_ShortLivedProvider(s3_server, credentials_end))
    client = build_client(
        session=session, endpoint_url=s3_server.endpoint_url, region=s3_server.region, addressing_style="path"
    )
    store = S3Storage(bucket=bucket, client=client)
    # The storage reads the expiry of exactly the object the client signs with.
    assert client._get_credentials() is session.get_credentials()  # type: ignore[attr-defined]
    store.put_stream("outputs/j/out.pdf", io.BytesIO(b"pdf"))

    url, expires_at = _link(store, "outputs/j/out.pdf", in_s=3600)

    end = int(credentials_end.timestamp())
    assert end - CREDENTIALS_MARGIN_S - 2 <= expires_at <= end - CREDENTIALS_MARGIN_S
    query = _query(url)
    signed_at = dt.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert signed_at.timestamp() + int(query["X-Amz-Expires"]) <= end  # the URL itself dies first
    assert "X-Amz-Security-Token" in query  # signed by the temporary credentials
    # A shorter wish is kept as it is.
    short_url, _ = _link(store, "outputs/j/out.pdf", in_s=60)
    assert _query(short_url)["X-Amz-Expires"] in ("60", "59")


def test_no_link_from_credentials_about_to_expire(s3_server: S3TestServer, bucket: str) -> None:
    credentials_end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=CREDENTIALS_MARGIN_S // 2)
    session = _session_with(_ShortLivedProvider(s3_server, credentials_end))
    client = build_client(
        session=session, endpoint_url=s3_server.endpoint_url, region=s3_server.region, addressing_style="path"
    )
    store = S3Storage(bucket=bucket, client=client)
    with pytest.raises(StorageUnavailable, match="expire too soon"):
        _link(store, "outputs/j/out.pdf", in_s=600)


# -- addressing and readiness --------------------------------------------------------------------


def test_path_and_virtual_addressing(s3_server: S3TestServer, bucket: str) -> None:
    host = urlsplit(s3_server.endpoint_url).netloc
    path_style = _storage(s3_server, bucket, addressing_style="path")
    path_style.check()
    url = urlsplit(_link(path_style, "k", in_s=60)[0])
    assert (url.netloc, url.path) == (host, f"/{bucket}/k")
    # Virtual style moves the bucket into the host name, which need not resolve here: only the URL is checked.
    # botocore keeps path style for an IP address whatever it is asked, so name the host.
    by_name = s3_server.endpoint_url.replace("127.0.0.1", "localhost")
    virtual = S3Storage(
        bucket=bucket, endpoint_url=by_name, region=s3_server.region, addressing_style="virtual"
    )
    url = urlsplit(_link(virtual, "k", in_s=60)[0])
    assert (url.netloc, url.path) == (f"{bucket}.{urlsplit(by_name).netloc}", "/k")
    _storage(s3_server, bucket, addressing_style="auto").check()  # auto picks path style for an IP address
    with pytest.raises(ValueError):
        _storage(s3_server, bucket, addressing_style="sideways")


def test_check_passes_for_a_reachable_bucket(store: S3Storage) -> None:
    store.check()


def test_check_names_a_missing_bucket(s3_server: S3TestServer) -> None:
    store = _storage(s3_server, f"exportd-test-missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(StorageUnavailable, match="does not exist"):
        store.check()


def test_check_fails_fast_when_the_server_is_not_there() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = build_client(
        endpoint_url=f"http://127.0.0.1:{port}",
        region="us-east-1",
        addressing_style="path",
        connect_timeout_s=1,
        read_timeout_s=1,
        max_attempts=1,
    )
    store = S3Storage(bucket="exportd-test", client=client)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="unreachable"):
        store.check()
    with pytest.raises(StorageUnavailable, match="unreachable"):
        store.put_stream("uploads/x", io.BytesIO(b"x"))
    assert time.monotonic() - started < 5


def test_missing_credentials_make_the_storage_unavailable(
    s3_server: S3TestServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = _storage(s3_server, bucket)
    with pytest.raises(StorageUnavailable, match="no usable S3 credentials"):
        store.check()
    with pytest.raises(StorageUnavailable, match="no usable S3 credentials"):
        _link(store, "k", in_s=60)


def test_denied_access_says_so(
    store: S3Storage, admin: S3Client, bucket: str, s3_server: S3TestServer
) -> None:
    if s3_server.kind != "moto":
        pytest.skip("relies on a Deny bucket policy applying to the test credentials, as moto does")
    store.put_stream("outputs/j/out.pdf", io.BytesIO(b"pdf"))
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    with pytest.raises(StorageUnavailable, match="denied"):
        store.open("outputs/j/out.pdf")


def test_cleanup_aborts_multipart_uploads_a_crashed_write_left(
    store: S3Storage, admin: S3Client, bucket: str
) -> None:
    """The storage protocol's stale-temp clean-up on S3 (moto's emulator, not AWS)."""
    started = admin.create_multipart_upload(Bucket=bucket, Key="tenant-a/outputs/j/crashed.pdf")
    (pending,) = _pending_uploads(admin, bucket)
    # moto reports a fixed start date (2010), so the clock is set from the one it reports.
    initiated = pending["Initiated"].timestamp()
    assert store.remove_stale_temp_files(older_than_s=3600, now=initiated + 60) == 0  # too recent
    assert store.remove_stale_temp_files(older_than_s=3600, now=initiated + 7200) == 1
    assert _pending_uploads(admin, bucket) == []
    assert started["UploadId"]
