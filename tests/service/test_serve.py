"""`exportd serve`, the real gunicorn process, on the test Redis: what only a real server shows."""

from __future__ import annotations

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from storage.jobs import Records
from tests.conftest import AUTH, TEST_API_KEYS, TEST_KEYS
from tests.helpers import free_port, jpeg_bytes, multipart

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    port: int
    master: subprocess.Popen[bytes]  # gunicorn's arbiter, what `exportd serve` became
    worker: psutil.Process  # the gunicorn worker process that serves the requests

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str = "") -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(
                method, path, body=body, headers={**AUTH, **({"Content-Type": ctype} if ctype else {})}
            )
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()


@pytest.fixture
def server(tmp_path: Path, redis_url: str, namespace: str) -> Iterator[Server]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env.update({"PYTHONPATH": str(ROOT), "EXPORTD_REDIS_URL": redis_url, "EXPORTD_REDIS_NAMESPACE": namespace,
                "EXPORTD_DATA_DIR": str(tmp_path), "EXPORTD_PORT": str(port), "EXPORTD_API_PROCESSES": "1",
                "EXPORTD_SIGNING_KEYS": TEST_KEYS, "EXPORTD_LOG_LEVEL": "WARNING",
                "EXPORTD_API_KEYS": TEST_API_KEYS})  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if Server(port, proc, psutil.Process(proc.pid)).call("GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "exportd serve did not come up"
            time.sleep(0.2)
        (worker,) = psutil.Process(proc.pid).children()
        yield Server(port, proc, worker)
    finally:
        proc.terminate()
        proc.wait(30)


def _minor_faults(process: psutil.Process) -> int:
    """Page faults the kernel served by mapping a page (zero-filled, for fresh memory), all threads."""
    total = 0
    for task in Path(f"/proc/{process.pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[7])  # minflt, the 10th field of stat
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_api_reuses_its_upload_buffers_instead_of_mapping_fresh_memory_per_upload(server: Server) -> None:
    body = os.urandom(4 * 1024 * 1024)
    # Warm-up: each of the process's threads makes its buffers the first time it takes an upload.
    for _ in range(8):
        assert server.call("POST", "/v1/uploads?filename=a.bin", body, "image/jpeg")[0] in (201, 415)
    faults = []
    for _ in range(9):
        before = _minor_faults(server.worker)
        server.call("POST", "/v1/uploads?filename=a.bin", body, "image/jpeg")
        faults.append(_minor_faults(server.worker) - before)
    # 4 MiB is 1,024 pages. Without the tuning of actors/memory.py in the API process, about 1,500
    # pages were mapped afresh for every upload (measured); with it, none for most uploads, and a
    # full set now and then for a thread taking its first upload.
    assert statistics.median(faults) < 128, faults


def test_a_waiting_request_on_the_real_server_is_woken_by_the_finish(
    server: Server, records: Records
) -> None:
    body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
    status, job = server.call("POST", "/v1/exports", body, ctype)
    assert status == 202
    answer: dict[str, Any] = {}

    def wait() -> None:
        began = time.monotonic()
        answer["status"], answer["job"] = server.call("GET", f"/v1/exports/{job['id']}?wait=20")
        answer["seconds"] = time.monotonic() - began

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive()
    records.finish_job(job["id"], outputs=())  # as a worker would, from another process's view
    thread.join(20)
    assert answer["status"] == 200 and answer["job"]["status"] == "succeeded"
    assert answer["seconds"] < 10


def test_sigterm_answers_waiting_requests_at_once_and_the_server_stops(server: Server) -> None:
    body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
    job_id = server.call("POST", "/v1/exports", body, ctype)[1]["id"]  # no worker runs: it stays queued
    answer: dict[str, Any] = {}

    def wait() -> None:
        answer["status"], answer["job"] = server.call("GET", f"/v1/exports/{job_id}?wait=30")

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive()
    began = time.monotonic()
    server.master.send_signal(signal.SIGTERM)  # what Kubernetes sends on a rolling update
    thread.join(10)
    assert not thread.is_alive()
    assert answer["status"] == 200 and answer["job"]["status"] == "queued"
    assert server.master.wait(20) == 0
    assert time.monotonic() - began < 10  # not held until the end of the wait, nor of graceful_timeout


# -- bodies refused up front, on the real server --------------------------------------------------------


def _post_json_headers(
    server: Server, headers: dict[str, str], body: Any = None, **kwargs: Any
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/v1/exports", body=body, headers={"Content-Type": "application/json", **AUTH, **headers},
                     **kwargs)  # fmt: skip
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_a_json_export_declaring_2_gb_is_refused_before_a_byte_of_it_is_sent(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/exports")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Authorization", AUTH["Authorization"])
        conn.putheader("Content-Length", str(2 * 1024**3))
        conn.endheaders()  # and not one byte of the body
        resp = conn.getresponse()
        assert resp.status == 413 and json.loads(resp.read())["code"] == "payload_too_large"
    finally:
        conn.close()


def _chunks(
    total: int, *, head: bytes = b'{"inputs": [], "format": "pdf", "options": {"title": "'
) -> Iterator[bytes]:
    yield head
    piece = b"x" * (1024 * 1024)
    for _ in range(total // len(piece)):
        yield piece
    yield b'"}}'


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_50_mb_json_export_is_refused_with_413_without_the_api_holding_it(server: Server) -> None:
    rss_before = server.worker.memory_info().rss
    # Sent chunked, without a Content-Length: the API reads up to its limit, then refuses.
    status, problem = _post_json_headers(server, {"Transfer-Encoding": "chunked"}, _chunks(50 * 1024 * 1024),
                                         encode_chunked=True)  # fmt: skip
    assert status == 413 and problem["code"] == "payload_too_large", problem
    body = b"".join(_chunks(50 * 1024 * 1024))
    status, problem = _post_json_headers(server, {}, body)  # with its Content-Length
    assert status == 413 and problem["code"] == "payload_too_large", problem
    # Reading such a body whole and parsing it grew an API process by 438 MB (measured before the limit).
    grown = server.worker.memory_info().rss - rss_before
    assert grown < 32 * 1024 * 1024, grown


def test_a_small_chunked_json_export_is_read_whole(server: Server) -> None:
    body = json.dumps({"inputs": ["0" * 32], "format": "pdf"}).encode()
    status, problem = _post_json_headers(server, {"Transfer-Encoding": "chunked"}, iter([body[:10], body[10:]]),
                                         encode_chunked=True)  # fmt: skip
    assert status == 422 and problem["code"] == "unknown_upload", problem  # parsed, then looked up
