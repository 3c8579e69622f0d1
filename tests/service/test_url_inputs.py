"""URL inputs: POST /v1/exports {"inputs": [{"url": ...}]} through the API, real Dramatiq workers,
real Redis, and a real HTTP server on 127.0.0.1 allowed through EXPORTD_OUTBOUND_ALLOW_NETS."""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pypdfium2
import pytest
import redis
from dramatiq import Worker
from PIL import Image

from actors.broker import QUEUES, build_broker
from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, enqueue_export
from actors.outbound import OutboundPolicy
from actors.outcomes import JobOutcomes
from actors.queues import EXPORT_QUEUE, OFFICE_QUEUE
from service.app import create_app, limits_from
from service.settings import Settings, parse_signing_keys
from storage.jobs import Job, Records
from storage.local import LocalStorage
from storage.sealing import Sealer
from tests.conftest import AUTH, TEST_API_KEYS, TEST_KEYS
from tests.helpers import free_port, jpeg_bytes, png_bytes, problem_body, publish_pool, raw_job_record
from tests.receiver import QuietHandler

MAX_UPLOAD = 300_000
PHOTO = jpeg_bytes(320, 200)


class Files(http.server.ThreadingHTTPServer):
    """Serves the routes below on 127.0.0.1 and records each request's path."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[str] = []
        self.failures_left = 0  # /flaky answers 503 this many times, then the photo

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _Handler(QuietHandler):
    server: Files

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        path = self.path.split("?", 1)[0]
        if path in ("/photo.jpg", "/no-extension", "/report.docx"):
            # The bytes decide what it is, not the name or the Content-Type.
            self.answer(200, PHOTO, {"Content-Type": "application/octet-stream"})
        elif path == "/by-id/":
            self.answer(200, PHOTO, {"Content-Disposition": 'attachment; filename="../holiday\x07.jpg"'})
        elif path == "/picture.png":
            self.answer(200, png_bytes(100, 50, alpha=False), {"Content-Type": "image/png"})
        elif path == "/huge.jpg":
            self.answer(200, PHOTO + b"\0" * MAX_UPLOAD, {"Content-Type": "image/jpeg"})
        elif path == "/to-metadata":
            self.answer(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/missing.jpg":
            self.answer(404, b"not here")
        elif path == "/down.jpg":
            self.answer(503, b"later")
        elif path == "/flaky.jpg":
            if self.server.failures_left > 0:
                self.server.failures_left -= 1
                self.answer(503, b"later")
            else:
                self.answer(200, PHOTO)
        elif path == "/noise.bin":
            self.answer(200, bytes(range(256)) * 8)
        elif path == "/empty.jpg":
            self.answer(200, b"")
        else:
            self.answer(404)


@pytest.fixture
def files() -> Iterator[Files]:
    server = Files()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def make_settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(**{
        "env": "development",  # http allowed
        "api_keys": TEST_API_KEYS,
        "signing_keys": parse_signing_keys(TEST_KEYS),
        "data_dir": tmp_path,
        "max_upload_bytes": MAX_UPLOAD,
        "max_inputs": 5,
        "public_url": "http://exportd.test",
        "outbound_allow_nets": "127.0.0.1/32",
        **kw,
    })  # fmt: skip


@dataclasses.dataclass
class Service:
    client: falcon.testing.TestClient
    broker: Any
    records: Records
    storage: LocalStorage
    redis: redis.Redis
    namespace: str
    task: ExportTask

    def submit(self, inputs: list[Any], fmt: str = "png", **body: Any) -> falcon.testing.Result:
        return self.client.simulate_post("/v1/exports", json={"inputs": inputs, "format": fmt, **body})

    def finished(self, job_id: str, timeout_s: float = 30) -> Job:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.records.get_job(job_id)
            if job.finished:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job stuck: {self.records.get_job(job_id)}")

    def queued(self, queue: str) -> int:
        return int(self.redis.llen(f"{self.namespace}:dramatiq:{queue}"))


@pytest.fixture
def service(tmp_path: Path, records: Records, storage: LocalStorage, redis_client: redis.Redis,
            namespace: str, live_pool: Any) -> Iterator[Service]:  # fmt: skip
    yield from _service(
        make_settings(tmp_path), make_settings(tmp_path), records, storage, redis_client, namespace
    )


def _service(api_settings: Settings, worker_settings: Settings, records: Records, storage: LocalStorage,
             redis_client: redis.Redis, namespace: str) -> Iterator[Service]:  # fmt: skip
    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000,
                          extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values()))])  # fmt: skip
    task = ExportTask(records=records, storage=storage, limits=limits_from(worker_settings),
                      sealer=Sealer(worker_settings.signing_keys),
                      outbound_policy=OutboundPolicy.from_settings(worker_settings),
                      max_download_bytes=worker_settings.max_upload_bytes)  # fmt: skip
    declare_export_actor(broker, task, time_limit_s=60, max_retries=1)
    app = create_app(api_settings, records=records, storage=storage,
                     enqueue=lambda job_id, queue: enqueue_export(broker, job_id, queue))  # fmt: skip
    yield Service(
        falcon.testing.TestClient(app, headers=AUTH), broker, records, storage, redis_client, namespace, task
    )
    broker.close()


@pytest.fixture
def worker(service: Service) -> Iterator[Worker]:
    w = Worker(service.broker, queues=set(QUEUES), worker_threads=2, worker_timeout=50)
    w.start()
    yield w
    w.stop()


# -- at submit -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://127.0.0.2:{port}/photo.jpg", "loopback"),
        ("http://[::1]:{port}/photo.jpg", "loopback"),
        ("http://0x7f000002:{port}/photo.jpg", "loopback"),
        ("http://2130706434:{port}/photo.jpg", "loopback"),
        ("http://0.0.0.0:{port}/photo.jpg", "unspecified"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://10.0.0.1/photo.jpg", "private"),
        ("ftp://127.0.0.1/photo.jpg", "https"),
        ("http://user:pw@127.0.0.1:{port}/photo.jpg", "credentials"),
    ],
)
def test_a_url_the_policy_refuses_answers_422_and_nothing_is_stored(
    url: str, reason: str, service: Service, files: Files, tmp_path: Path
) -> None:
    port = files.server_address[1]
    service.submit([], fmt="png")  # the tenant's rate-limit bucket exists from here on
    before = set(service.redis.scan_iter(f"{service.namespace}:*"))
    result = service.submit([{"url": url.format(port=port)}])
    body = problem_body(result, 422, "url_not_allowed")
    assert reason in body["detail"]
    assert set(service.redis.scan_iter(f"{service.namespace}:*")) == before  # no job, no message
    assert [p for p in (tmp_path / "storage").rglob("*") if p.is_file()] == []
    assert files.seen == []


def test_production_refuses_http_urls(tmp_path: Path, records: Records, storage: LocalStorage,
                                      redis_client: redis.Redis, namespace: str, live_pool: Any,
                                      files: Files) -> None:  # fmt: skip
    production = make_settings(tmp_path, env="production")
    for service in _service(production, production, records, storage, redis_client, namespace):
        body = problem_body(service.submit([{"url": f"{files.base}/photo.jpg"}]), 422, "url_not_allowed")
        assert "only https" in body["detail"]


@pytest.mark.parametrize(
    "inputs",
    [
        [{"url": 5}],
        [{"url": ""}],
        [{"href": "http://127.0.0.1/"}],
        [{"url": "http://127.0.0.1/", "filename": 3}],
        [{"url": "http://127.0.0.1/", "headers": {}}],
        [["http://127.0.0.1/"]],
    ],
)
def test_malformed_url_inputs_are_400(inputs: list[Any], service: Service) -> None:
    problem_body(service.submit(inputs), 400, "invalid_request")


def test_the_record_keeps_the_url_sealed_and_shows_it_without_its_query(
    service: Service, files: Files
) -> None:
    url = f"{files.base}/photo.jpg?X-Signature=very-secret-token"
    result = service.submit([{"url": url}])
    assert result.status_code == 202, result.text
    (shown,) = result.json["inputs"]
    assert shown["url"] == f"{files.base}/photo.jpg" and shown["filename"] == "photo.jpg"
    assert (shown["content_type"], shown["size"]) == ("image/jpeg", 0)  # the name's hint, until downloaded
    raw = raw_job_record(service.redis, service.namespace, result.json["id"])
    assert raw is not None and b"very-secret-token" not in raw and b"sealed:v1:" in raw


def test_old_job_records_without_url_fields_still_load() -> None:
    record = {
        "id": "j", "format": "png", "options": {}, "created_at": 1.0, "status": "queued", "error": None,
        "outputs": [], "inputs": [{"id": "u", "filename": "a.jpg", "content_type": "image/jpeg", "size": 3,
                                   "sha256": "x", "created_at": 1.0}],
    }  # fmt: skip
    (upload,) = Job.from_json(json.dumps(record)).inputs
    assert (upload.url, upload.source, upload.to_fetch) == ("", "", False)


# -- in the worker ---------------------------------------------------------------------------------------


def test_a_url_input_is_downloaded_sniffed_and_converted(
    service: Service, files: Files, worker: Worker
) -> None:
    result = service.submit([{"url": f"{files.base}/photo.jpg?sig=1"}])
    assert result.status_code == 202, result.text
    job = service.finished(result.json["id"])
    assert (job.status, job.attempts) == ("succeeded", 1), job.error  # downloading is part of the attempt
    (upload,) = job.inputs
    assert (upload.content_type, upload.size, upload.filename) == ("image/jpeg", len(PHOTO), "photo.jpg")
    assert service.storage.open(upload.key).read() == PHOTO  # kept as an upload: retries do not fetch again
    (out,) = job.outputs
    with Image.open(service.storage.open(out.key)) as im:
        assert (im.format, im.size) == ("PNG", (320, 200))
    assert files.seen == ["/photo.jpg?sig=1"]
    view = service.client.simulate_get(f"/v1/exports/{job.id}").json
    assert view["inputs"][0]["url"] == f"{files.base}/photo.jpg" and view["inputs"][0]["size"] == len(PHOTO)


def test_url_and_upload_inputs_mix_and_keep_their_order(
    service: Service, files: Files, worker: Worker
) -> None:
    upload = service.client.simulate_post("/v1/uploads", body=png_bytes(200, 100, alpha=False),
                                          headers={"Content-Type": "application/octet-stream"}).json  # fmt: skip
    result = service.submit([{"url": f"{files.base}/photo.jpg"}, upload["id"], {"url": f"{files.base}/no-extension",
                             "filename": "third"}], fmt="pdf")  # fmt: skip
    assert result.status_code == 202, result.text
    job = service.finished(result.json["id"])
    assert job.status == "succeeded", job.error
    assert [u.filename for u in job.inputs] == ["photo.jpg", upload["filename"], "third"]
    assert [u.content_type for u in job.inputs] == ["image/jpeg", "image/png", "image/jpeg"]
    pdf = pypdfium2.PdfDocument(service.storage.open(job.outputs[0].key).read())
    assert len(pdf) == 3


def test_a_name_without_a_usable_extension_is_sniffed_in_the_worker(
    service: Service, files: Files, worker: Worker
) -> None:
    result = service.submit([{"url": f"{files.base}/picture.png", "filename": "scan"}], fmt="jpeg")
    job = service.finished(result.json["id"])
    assert job.status == "succeeded", job.error
    assert job.inputs[0].content_type == "image/png" and job.outputs[0].content_type == "image/jpeg"


def test_inputs_that_need_another_queue_are_moved_there(
    service: Service, files: Files, redis_client: redis.Redis, namespace: str
) -> None:
    # Named .docx (an Office conversion, the office queue), the bytes are a photo (the exports queue).
    publish_pool(redis_client, namespace, capabilities={"office": True, "pango": True})
    result = service.submit([{"url": f"{files.base}/report.docx"}], fmt="pdf")
    assert result.status_code == 202, result.text
    job_id = result.json["id"]
    assert service.records.get_job(job_id).queue == OFFICE_QUEUE and service.queued(OFFICE_QUEUE) == 1
    office_only = Worker(service.broker, queues={OFFICE_QUEUE}, worker_threads=1, worker_timeout=50)
    office_only.start()
    try:
        deadline = time.monotonic() + 20
        while service.records.get_job(job_id).queue != EXPORT_QUEUE and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        office_only.stop()
    moved = service.records.get_job(job_id)
    assert (moved.status, moved.queue, moved.inputs[0].content_type) == ("queued", EXPORT_QUEUE, "image/jpeg")
    assert service.queued(EXPORT_QUEUE) == 1
    photos = Worker(service.broker, queues={EXPORT_QUEUE}, worker_threads=1, worker_timeout=50)
    photos.start()
    try:
        done = service.finished(job_id)
    finally:
        photos.stop()
    assert done.status == "succeeded", done.error
    assert files.seen == ["/report.docx"]  # downloaded once, converted from storage


@pytest.mark.parametrize(
    ("path", "code", "words"),
    [
        ("/huge.jpg", "input_too_large", "larger than the limit of 300000 bytes"),
        ("/to-metadata", "url_not_allowed", "metadata"),
        ("/missing.jpg", "input_unreachable", "404"),
        ("/noise.bin", "unsupported_input", "not recognised"),
        ("/empty.jpg", "unsupported_input", "empty"),
    ],
)
def test_inputs_that_cannot_be_had_fail_the_job_clearly_without_retries(
    path: str, code: str, words: str, service: Service, files: Files, worker: Worker
) -> None:
    result = service.submit([{"url": f"{files.base}{path}"}])
    assert result.status_code == 202, result.text
    job = service.finished(result.json["id"])
    assert job.status == "failed" and job.error is not None
    assert job.error.code == code and words in job.error.message, job.error
    assert job.attempts == 1 and files.seen == [path]


def test_the_policy_is_applied_again_when_the_worker_connects(
    tmp_path: Path, records: Records, storage: LocalStorage, redis_client: redis.Redis, namespace: str,
    live_pool: Any, files: Files,
) -> None:  # fmt: skip
    # The API allows 127.0.0.1; the worker's policy (its own settings) does not.
    api, workers = make_settings(tmp_path), make_settings(tmp_path, outbound_allow_nets="")
    for service in _service(api, workers, records, storage, redis_client, namespace):
        w = Worker(service.broker, queues=set(QUEUES), worker_threads=1, worker_timeout=50)
        w.start()
        try:
            result = service.submit([{"url": f"{files.base}/photo.jpg"}])
            assert result.status_code == 202, result.text
            job = service.finished(result.json["id"])
        finally:
            w.stop()
        assert job.error is not None and job.error.code == "url_not_allowed", job
        assert "loopback" in job.error.message and files.seen == []


def test_a_transient_fault_is_retried_then_ends_input_unreachable(
    service: Service, files: Files, worker: Worker
) -> None:
    result = service.submit([{"url": f"{files.base}/down.jpg"}])
    job = service.finished(result.json["id"])
    assert job.error is not None and job.error.code == "input_unreachable", job
    assert "503" in job.error.message
    assert job.attempts == 2 and files.seen == ["/down.jpg", "/down.jpg"]  # max_retries=1


def test_nothing_listening_is_retried_then_ends_input_unreachable(service: Service, worker: Worker) -> None:
    result = service.submit([{"url": f"http://127.0.0.1:{free_port()}/photo.jpg"}])
    job = service.finished(result.json["id"])
    assert job.error is not None and job.error.code == "input_unreachable", job
    assert "could not connect" in job.error.message and job.attempts == 2


def test_a_transient_fault_that_passes_is_retried_to_success(
    service: Service, files: Files, worker: Worker
) -> None:
    files.failures_left = 1
    result = service.submit([{"url": f"{files.base}/flaky.jpg"}])
    job = service.finished(result.json["id"])
    assert job.status == "succeeded", job.error
    assert job.attempts == 2 and files.seen == ["/flaky.jpg", "/flaky.jpg"]


def test_the_output_of_a_url_input_is_a_real_conversion(
    service: Service, files: Files, worker: Worker
) -> None:
    result = service.submit([{"url": f"{files.base}/photo.jpg"}], fmt="webp", options={"width": 160})
    job = service.finished(result.json["id"])
    assert job.status == "succeeded", job.error
    with Image.open(io.BytesIO(service.storage.open(job.outputs[0].key).read())) as im:
        assert (im.format, im.size) == ("WEBP", (160, 100))


def test_without_a_name_in_the_url_the_server_names_the_file(
    service: Service, files: Files, worker: Worker
) -> None:
    result = service.submit([{"url": f"{files.base}/by-id/"}], fmt="png")
    assert result.json["inputs"][0]["filename"] == ""  # known once downloaded
    job = service.finished(result.json["id"])
    assert job.status == "succeeded", job.error
    assert job.inputs[0].filename == "holiday.jpg" and job.outputs[0].name == "holiday.png"
