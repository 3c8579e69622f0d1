"""Quotas and revocation on the real server: `exportd serve` with several gunicorn processes on one Redis."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from service.settings import Settings
from storage.jobs import Records
from storage.keys import KeyStore
from storage.tenants import Quotas, Tenants
from tests.conftest import TEST_KEYS
from tests.helpers import free_port, png_bytes

ROOT = Path(__file__).resolve().parents[2]
KEY_A = "exk_" + "a" * 43
PROCESSES = 3


@dataclass
class Served:
    port: int
    records: Records

    def call(self, method: str, path: str, key: str, body: bytes | None = None,
             ctype: str = "", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {
            "Authorization": f"Bearer {key}",
            "Connection": "close",
            **({"Content-Type": ctype} if ctype else {}),
            **(headers or {}),
        }
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(resp.read())
        finally:
            conn.close()

    def tenants(self) -> Tenants:
        d = Settings()
        return Tenants(self.records, defaults=Quotas(d.tenant_requests_per_second, d.tenant_max_queued,
                                                     d.tenant_max_running, d.tenant_upload_bytes_per_day))  # fmt: skip


@pytest.fixture
def served(tmp_path: Path, redis_url: str, namespace: str) -> Iterator[Served]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env.update({"PYTHONPATH": str(ROOT), "EXPORTD_REDIS_URL": redis_url, "EXPORTD_REDIS_NAMESPACE": namespace,
                "EXPORTD_DATA_DIR": str(tmp_path), "EXPORTD_PORT": str(port), "EXPORTD_API_PROCESSES": str(PROCESSES),
                "EXPORTD_SIGNING_KEYS": TEST_KEYS, "EXPORTD_LOG_LEVEL": "WARNING",
                "EXPORTD_API_KEYS": f"a:submit+read:{KEY_A}"})  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    server = Served(port, Records(client, namespace=namespace, retention_s=3600))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if server.call("GET", "/readyz", "")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "exportd serve did not come up"
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        proc.wait(30)
        client.close()


def test_concurrent_submits_from_several_processes_never_pass_the_open_jobs_quota(served: Served) -> None:
    served.tenants().set_quotas("a", max_queued=5)
    status, _, upload = served.call("POST", "/v1/uploads", KEY_A, png_bytes(), "application/octet-stream")
    assert status == 201
    body = json.dumps({"inputs": [upload["id"]], "format": "jpeg"}).encode()
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda _: served.call("POST", "/v1/exports", KEY_A, body, "application/json"),
                                range(24)))  # fmt: skip
    statuses = sorted(a[0] for a in answers)
    assert statuses.count(202) == 5 and statuses.count(429) == 19, statuses
    for status, headers, problem in answers:
        if status == 429:
            assert (
                problem["code"] == "quota_exceeded"
                and headers["retry-after"]
                and headers["ratelimit-limit"] == "5"
            )
    _, _, listing = served.call("GET", "/v1/exports?limit=100", KEY_A)
    assert len(listing["exports"]) == 5


def test_the_request_rate_is_one_bucket_across_the_processes(served: Served) -> None:
    served.tenants().set_quotas("a", requests_per_second=10)
    began = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: served.call("GET", "/v1/formats", KEY_A), range(60)))
    elapsed = time.monotonic() - began
    allowed = [a for a in answers if a[0] == 200]
    refused = [a for a in answers if a[0] == 429]
    # A burst of 10, and 10 more per second that passed: one bucket, not one per process.
    assert 10 <= len(allowed) <= 10 + int(10 * elapsed) + 1, (len(allowed), elapsed)
    assert refused and all(
        r[2]["code"] == "rate_limited" and r[1]["ratelimit-remaining"] == "0" for r in refused
    )
    assert all(int(r[1]["retry-after"]) >= 1 for r in refused)


def test_a_revoked_key_is_refused_by_every_process_within_a_second(served: Served) -> None:
    store = KeyStore(served.records.redis, namespace=served.records.namespace)
    record, key = store.create("c", ("read",))

    def burst() -> list[int]:  # new connections: spread over the processes
        with ThreadPoolExecutor(8) as pool:
            return list(
                pool.map(lambda _: served.call("GET", "/v1/exports", key)[0], range(3 * PROCESSES * 4))
            )

    assert set(burst()) == {200}
    store.revoke(record.id)
    time.sleep(1.0)
    assert set(burst()) == {401}
