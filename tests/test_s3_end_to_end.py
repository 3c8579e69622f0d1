"""API and worker processes that share nothing but Redis and an S3 bucket: the cluster layout.

The S3 server is moto's emulator (see tests/storage/s3_server.py), not AWS itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pypdfium2
import pytest

from storage.s3 import build_client
from tests.conftest import AUTH, TEST_API_KEYS, TEST_KEYS
from tests.helpers import free_port, jpeg_bytes, multipart, wait_for_pool
from tests.storage.s3_server import S3TestServer, s3_test_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, S3TestServer, str]]:
    with s3_test_server() as s3:
        aws = {"AWS_ACCESS_KEY_ID": s3.access_key_id, "AWS_SECRET_ACCESS_KEY": s3.secret_access_key,
               "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
        bucket = f"exportd-e2e-{uuid.uuid4().hex[:10]}"
        os.environ.update(aws)
        try:
            build_client(
                endpoint_url=s3.endpoint_url, region=s3.region, addressing_style="path"
            ).create_bucket(Bucket=bucket)
        finally:
            for name in aws:
                os.environ.pop(name)
        port = free_port()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTD_", "AWS_"))}
        env = {**base_env, **aws, "PYTHONPATH": str(ROOT), "EXPORTD_SIGNING_KEYS": TEST_KEYS, "EXPORTD_API_KEYS": TEST_API_KEYS,
               "EXPORTD_REDIS_URL": redis_url, "EXPORTD_REDIS_NAMESPACE": f"s3e2e-{port}",
               "EXPORTD_STORAGE": "s3", "EXPORTD_S3_BUCKET": bucket, "EXPORTD_S3_PREFIX": "install-1",
               "EXPORTD_S3_ENDPOINT_URL": s3.endpoint_url, "EXPORTD_S3_REGION": s3.region,
               "EXPORTD_S3_ADDRESSING_STYLE": "path", "EXPORTD_PORT": str(port), "EXPORTD_API_PROCESSES": "1",
               "EXPORTD_WORKER_PROCESSES": "1"}  # fmt: skip
        # Each process gets its own empty data dir: nothing is shared but Redis and the bucket.
        procs = []
        for role in ("worker", "serve"):
            data = tmp_path_factory.mktemp(role)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "service.cli", role], cwd=ROOT,
                env={**env, "EXPORTD_DATA_DIR": str(data), "EXPORTD_WORKER_ALIVE_FILE": str(data / "alive"),
                     "EXPORTD_WORKER_METRICS_PORT": "0"},
                stdout=(data / "log").open("wb"), stderr=subprocess.STDOUT,
            ))  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60  # a loaded CI machine starts the API slowly
            while True:
                try:
                    with urllib.request.urlopen(base + "/readyz", timeout=5) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "API did not become ready"
                time.sleep(0.1)
            wait_for_pool(base, headers=AUTH)
            yield base, s3, bucket
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)


def test_export_through_s3_hands_out_a_presigned_link(cluster: tuple[str, S3TestServer, str]) -> None:
    base, s3, bucket = cluster
    body, ctype = multipart([("file", ("trip photo.jpg", jpeg_bytes(900, 600))), ("format", "pdf")])
    req = urllib.request.Request(base + "/v1/exports", data=body, headers={"Content-Type": ctype, **AUTH})
    with urllib.request.urlopen(req, timeout=10) as resp:
        job_id = json.loads(resp.read())["id"]
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(urllib.request.Request(f"{base}/v1/exports/{job_id}", headers=AUTH),
                                    timeout=10) as resp:  # fmt: skip
            job = json.loads(resp.read())
        if job["status"] in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["status"] == "succeeded", job
    (out,) = job["outputs"]
    url = urlsplit(out["url"])
    # The link is the store's own: the bytes never pass through the API.
    assert f"{url.scheme}://{url.netloc}" == s3.endpoint_url
    # The tests' tenant is "tests" (TEST_API_KEYS): its files live under its own prefix.
    assert url.path == f"/{bucket}/install-1/tenants/tests/outputs/{job_id}/{out['name']}"
    with urllib.request.urlopen(out["url"], timeout=10) as resp:
        data = resp.read()
        disposition = resp.headers["Content-Disposition"]
        content_type = resp.headers["Content-Type"]
    assert hashlib.sha256(data).hexdigest() == out["sha256"]
    assert content_type == "application/pdf"
    assert disposition.startswith(f'attachment; filename="{out["name"]}"') and out["name"] == "trip_photo.pdf"
    assert len(pypdfium2.PdfDocument(data)) == 1
