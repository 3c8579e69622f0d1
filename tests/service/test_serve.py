"""`exportd serve`, the real gunicorn process, on the test Redis: what only a real server shows."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from storage.jobs import Output, Records
from storage.local import LocalStorage
from tests.conftest import AUTH, TEST_API_KEY, TEST_API_KEYS, TEST_KEYS
from tests.helpers import free_port, jpeg_bytes, multipart, publish_pool

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


def _start(tmp_path: Path, redis_url: str, namespace: str, **settings: str) -> Iterator[Server]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env.update({"PYTHONPATH": str(ROOT), "EXPORTD_REDIS_URL": redis_url, "EXPORTD_REDIS_NAMESPACE": namespace,
                "EXPORTD_DATA_DIR": str(tmp_path), "EXPORTD_PORT": str(port), "EXPORTD_API_PROCESSES": "1",
                "EXPORTD_SIGNING_KEYS": TEST_KEYS, "EXPORTD_LOG_LEVEL": "WARNING",
                "EXPORTD_API_KEYS": TEST_API_KEYS})  # fmt: skip
    env.update({f"EXPORTD_{name.upper()}": value for name, value in settings.items()})
    # No worker pool runs beside this API: one is published so that exports are accepted.
    publish_pool(redis.Redis.from_url(redis_url), namespace)
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


@pytest.fixture
def server(tmp_path: Path, redis_url: str, namespace: str) -> Iterator[Server]:
    yield from _start(tmp_path, redis_url, namespace)


#: The paced server's read timeout, short so that the tests need not wait the default 20 s.
READ_TIMEOUT_S = 2


@pytest.fixture
def paced_server(tmp_path: Path, redis_url: str, namespace: str) -> Iterator[Server]:
    yield from _start(tmp_path, redis_url, namespace, api_read_timeout_s=str(READ_TIMEOUT_S),
                      api_min_body_bytes_per_s="1000")  # fmt: skip


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


# -- slow clients: each costs a greenlet, not a thread, and is cut off when it stalls or trickles ----------


#: The API key header of the raw requests below, as a client with a key sends it.
_AUTH_LINE = f"Authorization: Bearer {TEST_API_KEY}\r\n".encode()


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _answer_then_close(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection; fails if it never does (the socket's
    timeout, far beyond the server's read timeout)."""
    sock.settimeout(10 * READ_TIMEOUT_S + 10)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass  # closed with unread bytes of ours in its buffer: a reset, as good as a close
    return received


def test_a_client_that_stops_sending_mid_headers_is_cut_off(paced_server: Server) -> None:
    sock = _connect(paced_server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and the rest never comes
    answer = _answer_then_close(sock)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_a_client_that_stops_sending_mid_body_gets_408_and_is_cut_off(paced_server: Server) -> None:
    sock = _connect(paced_server)
    sock.sendall(b"POST /v1/uploads?filename=a.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: image/jpeg\r\nContent-Length: 200000\r\n" + _AUTH_LINE + b"\r\n")  # fmt: skip
    sock.sendall(jpeg_bytes()[:1000])  # then nothing
    answer = _answer_then_close(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer.lower() and b'"code": "request_timeout"' in answer


def test_a_body_slower_than_the_minimum_rate_is_cut_off(paced_server: Server) -> None:
    """A byte every 0.2 s never leaves the read timeout without bytes, but is far below 1000 bytes/s."""
    sock = _connect(paced_server)
    sock.sendall(b"POST /v1/uploads?filename=a.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: image/jpeg\r\nContent-Length: 100000\r\n" + _AUTH_LINE + b"\r\n")  # fmt: skip
    stop = threading.Event()

    def trickle() -> None:
        for byte in jpeg_bytes()[:100000]:
            if stop.wait(0.2):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        answer = _answer_then_close(sock)
    finally:
        stop.set()
        sender.join()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"too slowly" in answer


@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        (b"GET /v1/exports?" + b"limit=%7B%7D&" * 600 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414,
         b"uri_too_long"),
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n", 431,
         b"header_fields_too_large"),
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: b\r\n" * 120 + b"\r\n", 431,
         b"header_fields_too_large"),
        (b"GET /healthz HTTP/9.1\r\nHost: 127.0.0.1\r\n\r\n", 400, b"invalid_request"),
    ],
    ids=["request-line-too-long", "header-too-long", "too-many-headers", "bad-version"],
)  # fmt: skip
def test_a_head_the_server_refuses_is_answered_as_a_problem(
    server: Server, head: bytes, status: int, code: bytes
) -> None:
    """gunicorn answers these before the app runs: the answer is problem+json like every other error."""
    sock = _connect(server)
    sock.sendall(head)
    answer = _answer_then_close(sock)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head_part.lower()
    assert b"x-request-id: " in head_part.lower()  # every answer carries one (the OpenAPI document says so)
    problem = json.loads(body)
    assert problem["status"] == status and problem["code"] == code.decode() and problem["detail"]


def _established(process: psutil.Process, port: int) -> int:
    return sum(
        1 for c in process.net_connections("tcp") if c.laddr.port == port and c.status == "ESTABLISHED"
    )


def test_with_200_slow_clients_open_healthz_and_normal_requests_still_answer(server: Server) -> None:
    """One API process (the fixture's), whose old 4 threads eight such clients used to fill."""
    slow: list[socket.socket] = []
    try:
        for i in range(200):
            sock = _connect(server)
            if i % 2:  # half stall in their head, half in a body
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            else:
                sock.sendall(b"POST /v1/uploads?filename=a.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: image/jpeg\r\nContent-Length: 1000000\r\n" + _AUTH_LINE + b"\r\nxyz")  # fmt: skip
            slow.append(sock)
        time.sleep(0.5)  # let the server take them all in
        assert _established(server.worker, server.port) >= 200  # all open, none cut off yet
        assert server.call("GET", "/healthz")[0] == 200
        status, upload = server.call("POST", "/v1/uploads?filename=a.jpg", jpeg_bytes(), "image/jpeg")
        assert status == 201 and upload["size"] > 0
        body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
        assert server.call("POST", "/v1/exports", body, ctype)[0] == 202
        assert _established(server.worker, server.port) >= 200  # the slow ones are still there
    finally:
        for sock in slow:
            sock.close()


def test_more_requests_than_the_old_thread_count_all_wait_and_are_woken(
    server: Server, records: Records
) -> None:
    """Twelve waits at once on one process (gthread's four threads let three wait): all woken with
    their finished job, none answered 202/queued early."""
    body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
    job_ids = [server.call("POST", "/v1/exports", body, ctype)[1]["id"] for _ in range(8)]
    answers: dict[str, tuple[int, Any]] = {}

    def get(job_id: str) -> None:
        answers[job_id] = server.call("GET", f"/v1/exports/{job_id}?wait=30")

    def post(key: str) -> None:
        answers[key] = server.call("POST", "/v1/exports?wait=30", body, ctype)

    threads = [threading.Thread(target=get, args=(job_id,)) for job_id in job_ids]
    threads += [threading.Thread(target=post, args=(f"post-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    waiting: set[str] = set()
    # Finish every job, those POSTed with ?wait as well, once it is known (no worker runs here).
    while len(waiting) < 12 and time.monotonic() < deadline:
        for job_id in records.redis.scan_iter(f"{records.namespace}:tenant:*:job:*"):
            waiting.add(job_id.decode().rsplit(":", 1)[1])
        time.sleep(0.2)
    time.sleep(1.0)  # every request is in its wait: none has answered yet
    assert not answers, answers
    for job_id in waiting:
        records.finish_job(job_id, outputs=())
    for thread in threads:
        thread.join(30)
    assert len(answers) == 12
    for key, (status, job) in answers.items():
        assert job["status"] == "succeeded", (key, status, job)
        assert status == (201 if key.startswith("post-") else 200)


def test_a_download_through_the_paced_socket_arrives_whole_and_in_ranges(
    server: Server, records: Records, tmp_path: Path
) -> None:
    """gunicorn sends files with sendfile, here through service/pacing.py's socket."""
    body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
    job_id = server.call("POST", "/v1/exports", body, ctype)[1]["id"]
    data = os.urandom(3 * 1024 * 1024 + 17)
    key = f"outputs/{job_id}/out.bin"
    LocalStorage(tmp_path / "storage").put_stream(key, io.BytesIO(data))
    digest = hashlib.sha256(data).hexdigest()
    records.finish_job(
        job_id, outputs=(Output("out.bin", key, "application/octet-stream", len(data), digest),)
    )
    url = urllib.parse.urlsplit(server.call("GET", f"/v1/exports/{job_id}")[1]["outputs"][0]["url"])
    path = f"{url.path}?{url.query}"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("GET", path)
        whole = conn.getresponse()
        assert whole.status == 200 and whole.read() == data
        conn.request("GET", path, headers={"Range": "bytes=1000-2000999"})  # same kept-alive connection
        part = conn.getresponse()
        assert part.status == 206 and part.read() == data[1000:2001000]
    finally:
        conn.close()
