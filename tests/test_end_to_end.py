"""The real thing: `exportd serve` (gunicorn) and `exportd worker` (the pool) as processes, on a real Redis."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psutil
import pypdfium2
import pytest

from service.settings import parse_signing_keys
from storage.signing import Signer
from tests.conftest import AUTH, TEST_API_KEYS, TEST_KEYS
from tests.helpers import RUSSIAN, free_port, jpeg_bytes, multipart, wait_for_pool

ROOT = Path(__file__).resolve().parent.parent
MAX_UPLOAD = 1_000_000


@dataclass
class Service:
    base: str
    worker: subprocess.Popen[bytes]
    api: subprocess.Popen[bytes]
    log_dir: Path
    env: dict[str, str]

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        req = urllib.request.Request(
            self.base + path, data=body, method=method, headers={**AUTH, **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()

    def json(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
        status, _, raw = self.request(method, path, body, headers)
        return status, json.loads(raw)

    def export(self, files: list[tuple[str, bytes]], fmt: str, options: dict[str, Any] | None = None) -> Any:
        fields: list[tuple[str, str | tuple[str, bytes]]] = [("file", f) for f in files]
        fields += [("format", fmt), ("options", json.dumps(options or {}))]
        body, ctype = multipart(fields)
        status, job = self.json("POST", "/v1/exports", body, {"Content-Type": ctype})
        assert status == 202, job
        return job

    def wait(self, job_id: str, timeout_s: float = 30) -> Any:
        seen = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _, job = self.json("GET", f"/v1/exports/{job_id}")
            if not seen or seen[-1] != job["status"]:
                seen.append(job["status"])
            if job["status"] in ("succeeded", "failed"):
                job["_seen"] = seen
                return job
            time.sleep(0.01)
        raise AssertionError(f"job {job_id} stuck in {seen}")

    def worker_children(self) -> list[psutil.Process]:
        return psutil.Process(self.worker.pid).children()


@pytest.fixture(scope="module")
def service(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = tmp_path_factory.mktemp("e2e")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "EXPORTD_ENV": "production",
        "EXPORTD_SIGNING_KEYS": TEST_KEYS,
        "EXPORTD_API_KEYS": TEST_API_KEYS,
        "EXPORTD_REDIS_URL": redis_url,
        "EXPORTD_REDIS_NAMESPACE": f"e2e-{port}",
        "EXPORTD_DATA_DIR": str(data),
        "EXPORTD_PORT": str(port),
        "EXPORTD_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
        "EXPORTD_WORKER_PROCESSES": "2",
        # The conversion queues only: the pool's children are its two conversion processes (webhook
        # delivery has processes of its own, tested in tests/actors/test_webhooks.py).
        "EXPORTD_WORKER_QUEUES": "exports,office",
        "EXPORTD_WORKER_THREADS": "2",
        "EXPORTD_API_PROCESSES": "2",
        "EXPORTD_WORKER_ALIVE_FILE": str(data / "worker.alive"),
        "EXPORTD_WORKER_METRICS_PORT": str(free_port()),
    }
    logs = data / "logs"
    logs.mkdir()
    start = [sys.executable, "-m", "service.cli"]
    worker = subprocess.Popen([*start, "worker"], env=env, cwd=ROOT,
                              stdout=(logs / "worker.log").open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    api = subprocess.Popen([*start, "serve"], env=env, cwd=ROOT,
                           stdout=(logs / "api.log").open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    svc = Service(f"http://127.0.0.1:{port}", worker, api, logs, env)
    deadline = time.monotonic() + 30
    while True:
        try:
            if svc.request("GET", "/readyz")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or api.poll() is not None:
            raise RuntimeError("API did not come up:\n" + (logs / "api.log").read_text())
        time.sleep(0.1)
    wait_for_pool(svc.base, headers=AUTH)
    yield svc
    for proc in (api, worker):
        proc.send_signal(signal.SIGTERM)
    for proc in (api, worker):
        proc.wait(40)


def test_photo_to_pdf_end_to_end(service: Service) -> None:
    photo = jpeg_bytes(1200, 900)
    job = service.export([("photo.jpg", photo)], "pdf", {"page_size": "Letter", "margin_mm": 12})
    assert job["status"] == "queued"
    done = service.wait(job["id"])
    assert done["status"] == "succeeded", done
    assert done["_seen"][-1] == "succeeded"
    (out,) = done["outputs"]
    parts = urlsplit(out["url"])
    status, headers, body = service.request("GET", f"{parts.path}?{parts.query}")
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == out["sha256"]
    assert headers["content-type"] == "application/pdf"
    assert headers["content-disposition"] == "attachment; filename=\"photo.pdf\"; filename*=UTF-8''photo.pdf"
    page = pypdfium2.PdfDocument(body)[0]
    # A landscape photo gets a landscape Letter page (orientation "auto").
    assert (round(page.get_width()), round(page.get_height())) == (792, 612)


def test_text_to_pdf_end_to_end_keeps_cyrillic(service: Service) -> None:
    done = service.wait(service.export([("заметки.txt", (RUSSIAN + "\n").encode() * 3)], "pdf")["id"])
    assert done["status"] == "succeeded", done
    url = urlsplit(done["outputs"][0]["url"])
    _, _, body = service.request("GET", f"{url.path}?{url.query}")
    text = pypdfium2.PdfDocument(body)[0].get_textpage().get_text_range()
    assert text.count(RUSSIAN) == 3


def test_tampered_and_expired_links_are_refused(service: Service) -> None:
    done = service.wait(service.export([("a.jpg", jpeg_bytes())], "png")["id"])
    url = urlsplit(done["outputs"][0]["url"])
    query = parse_qs(url.query)
    sig = query["sig"][0]
    for i in (0, len(sig) // 2, len(sig) - 1):
        bad = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1 :]
        status, headers, body = service.request("GET", f"{url.path}?{url.query.replace(sig, bad)}")
        assert status == 403 and json.loads(body)["code"] == "invalid_signature"
        assert headers["content-type"] == "application/problem+json"
    # A genuine signature whose time is up.
    object_key = url.path.removeprefix("/v1/files/")
    expired = Signer(parse_signing_keys(TEST_KEYS)).query(object_key, expires=int(time.time()) - 1)
    status, _, body = service.request("GET", f"{url.path}?{expired}")
    assert status == 403 and json.loads(body)["code"] == "link_expired"


def test_corrupt_input_fails_cleanly_and_the_pool_keeps_serving(service: Service) -> None:
    pids_before = sorted(p.pid for p in service.worker_children())
    bad = service.wait(service.export([("broken.jpg", jpeg_bytes(900, 700)[:3000])], "jpeg")["id"])
    assert bad["status"] == "failed"
    assert bad["error"]["code"] == "corrupt_input"
    assert bad["attempts"] == 1
    good = service.wait(service.export([("fine.jpg", jpeg_bytes())], "jpeg")["id"])
    assert good["status"] == "succeeded"
    assert sorted(p.pid for p in service.worker_children()) == pids_before


def test_unsupported_conversion_and_oversize_upload_are_refused(service: Service) -> None:
    body, ctype = multipart([("file", ("notes.txt", b"hello")), ("format", "webp")])
    status, problem = service.json("POST", "/v1/exports", body, {"Content-Type": ctype})
    assert status == 422 and problem["code"] == "unsupported_conversion"
    status, problem = service.json("POST", "/v1/uploads", b"\xff\xd8\xff" + b"0" * MAX_UPLOAD)
    assert status == 413 and problem["code"] == "payload_too_large"


def test_chunked_upload_over_the_limit_is_cut_off_with_413(service: Service) -> None:
    # No Content-Length: the limit is enforced while streaming.
    conn = http.client.HTTPConnection(urlsplit(service.base).netloc, timeout=30)
    chunks = (b"\xff\xd8\xff" + b"0" * 65_533 for _ in range(MAX_UPLOAD // 65_536 + 2))
    conn.request("POST", "/v1/uploads", body=chunks, encode_chunked=True, headers=AUTH)
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["code"] == "payload_too_large"
    conn.close()


def test_cleanup_command_keeps_fresh_files(service: Service) -> None:
    service.wait(service.export([("keep.jpg", jpeg_bytes())], "png")["id"])
    result = subprocess.run([sys.executable, "-m", "service.cli", "cleanup"], env=service.env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["deleted"] == 0 and report["dry_run"] is False


def test_check_worker_reports_the_pool_alive(service: Service) -> None:
    env = dict(service.env)
    check = [sys.executable, "-m", "service.cli", "check-worker"]
    deadline = time.monotonic() + 10
    while subprocess.run(check, env=env, cwd=ROOT, capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "the pool never reported alive"
        time.sleep(0.5)
    env["EXPORTD_WORKER_ALIVE_FILE"] = str(service.log_dir.parent / "no-such-pool.alive")
    result = subprocess.run(check, env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "not alive" in result.stdout


def test_a_killed_worker_process_is_replaced(service: Service) -> None:
    victim = service.worker_children()[0]
    victim.kill()
    victim.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        children = service.worker_children()
        if len(children) == 2 and victim.pid not in [c.pid for c in children]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the pool did not replace the killed process")
    assert service.worker.poll() is None
    done = [service.wait(service.export([(f"{i}.jpg", jpeg_bytes())], "webp")["id"]) for i in range(4)]
    assert [d["status"] for d in done] == ["succeeded"] * 4


def test_logs_are_json_lines_with_ids(service: Service) -> None:
    service.wait(service.export([("log.jpg", jpeg_bytes())], "png")["id"])
    time.sleep(0.3)
    for name, key in (("api.log", "request_id"), ("worker.log", "job_id")):
        lines = [ln for ln in (service.log_dir / name).read_text().splitlines() if ln.strip()]
        entries = [json.loads(ln) for ln in lines]  # every line parses
        assert any(key in e for e in entries), name
        assert not any("sig=" in ln for ln in lines)  # no signed URL is ever logged


def test_chunked_upload_within_the_limit_is_stored_whole(service: Service) -> None:
    data = jpeg_bytes(700, 500)
    conn = http.client.HTTPConnection(urlsplit(service.base).netloc, timeout=30)
    conn.request("POST", "/v1/uploads?filename=c.jpg", body=(data[i : i + 4096] for i in range(0, len(data), 4096)),
                 encode_chunked=True, headers=AUTH)  # fmt: skip
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 201
    assert body["size"] == len(data) and body["sha256"] == hashlib.sha256(data).hexdigest()


def _scrape(url: str) -> dict[str, float]:
    """The samples of a /metrics page, by their full name with labels."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_worker_metrics_count_jobs_as_they_end_and_promtool_accepts_them(service: Service) -> None:
    url = f"http://127.0.0.1:{service.env['EXPORTD_WORKER_METRICS_PORT']}/metrics"
    ok = 'exportd_jobs_total{conversion="image_to_png",outcome="succeeded"}'
    bad = 'exportd_jobs_total{conversion="image_to_png",outcome="corrupt_input"}'
    before = _scrape(url)
    for name, data in (("m.jpg", jpeg_bytes()), ("m2.jpg", jpeg_bytes()), ("broken.jpg", jpeg_bytes()[:400])):
        service.wait(service.export([(name, data)], "png")["id"])
    after = _scrape(url)
    assert after[ok] - before.get(ok, 0) == 2
    assert after[bad] - before.get(bad, 0) == 1
    assert after['exportd_conversion_duration_seconds_count{conversion="image_to_png"}'] >= 2
    pixels = 'exportd_input_pixels_total{conversion="image_to_png"}'
    assert after[pixels] - before.get(pixels, 0) >= 2 * 640 * 480  # the two good photos' headers
    assert after["exportd_jobs_in_flight"] == 0
    # Both processes' admission budgets summed; nothing admitted once the jobs ended.
    assert after["exportd_memory_budget_bytes"] > 0
    assert after["exportd_memory_admitted_bytes"] == 0
    assert after['exportd_queue_messages{queue="exports"}'] == 0
    assert after["exportd_redis_memory_used_bytes"] > 0 and "exportd_redis_maxmemory_bytes" in after
    # Bounded labels: no job id and no file name in any sample.
    assert not [s for s in after if "broken" in s or "m2.jpg" in s]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed: .ci/run installs it")
    with urllib.request.urlopen(url, timeout=10) as resp:
        checked = subprocess.run([promtool, "check", "metrics"], input=resp.read(), capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_api_metrics_sum_every_gunicorn_process_by_route_template(service: Service) -> None:
    url = f"{service.base}/metrics"
    formats = 'exportd_http_requests_total{method="GET",route="/v1/formats",status="200"}'
    job_get = 'exportd_http_requests_total{method="GET",route="/v1/exports/{job_id}",status="200"}'
    missing = 'exportd_http_requests_total{method="GET",route="/v1/exports/{job_id}",status="404"}'
    body_bytes = 'exportd_http_request_body_bytes_total{route="/v1/exports"}'
    before = _scrape(url)
    # Each request on a new connection: the two API processes share them, and the page sums both.
    for _ in range(20):
        assert service.request("GET", "/v1/formats")[0] == 200
    job = service.wait(service.export([("a.jpg", jpeg_bytes())], "png")["id"])
    assert service.request("GET", "/v1/exports/no-such-job")[0] == 404
    after = _scrape(url)
    assert after[formats] - before.get(formats, 0) == 20
    assert after[job_get] - before.get(job_get, 0) >= 1
    assert after[missing] - before.get(missing, 0) == 1
    assert after[body_bytes] - before.get(body_bytes, 0) > len(jpeg_bytes())
    assert after['exportd_http_request_duration_seconds_count{method="GET",route="/v1/formats"}'] >= 20
    assert after["exportd_http_requests_waiting"] == 0
    # The scrape itself is the one request in progress.
    assert after["exportd_http_requests_in_progress"] == 1
    # Bounded labels: templates, never a job id or a path of its own.
    assert not [s for s in after if job["id"] in s or "no-such-job" in s]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed: .ci/run installs it")
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        checked = subprocess.run([promtool, "check", "metrics"], input=resp.read(), capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
