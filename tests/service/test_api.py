"""The API through falcon's TestClient, on a real Redis, real local storage and real Dramatiq workers."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import falcon.testing
import pypdfium2
import pytest
import redis
from dramatiq import Worker
from PIL import Image

from actors.broker import EXPORT_QUEUE, QUEUES, build_broker
from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, enqueue_export
from actors.outcomes import JobOutcomes
from service.app import create_app, limits_from
from service.settings import Settings, parse_signing_keys
from service.waiting import RESUBSCRIBE_DELAY_S
from storage.jobs import Records
from storage.local import LocalStorage
from storage.sealing import Sealer
from storage.signing import Signer
from tests.conftest import AUTH, TEST_API_KEYS, TEST_KEYS
from tests.helpers import (
    RUSSIAN,
    job_record_keys,
    jpeg_bytes,
    multipart,
    png_bytes,
    problem_body,
    publish_pool,
    raw_job_record,
)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Api:
    client: falcon.testing.TestClient
    broker: Any
    clock: Clock
    records: Records
    storage: LocalStorage
    redis: redis.Redis
    namespace: str

    def queue_length(self) -> int:
        return int(self.redis.llen(f"{self.namespace}:dramatiq:{EXPORT_QUEUE}"))

    def wait_for(self, job_id: str, timeout_s: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.client.simulate_get(f"/v1/exports/{job_id}").json
            if job["status"] in ("succeeded", "failed"):
                return dict(job)
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} did not finish: {job}")

    def download(self, url: str, headers: dict[str, str] | None = None) -> falcon.testing.Result:
        parts = urlsplit(url)
        return self.client.simulate_get(parts.path, query_string=parts.query, headers=headers)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        api_keys=TEST_API_KEYS,
        signing_keys=parse_signing_keys(TEST_KEYS),
        data_dir=tmp_path,
        max_upload_bytes=300_000,
        max_inputs=5,
        public_url="http://exportd.test",
    )


@pytest.fixture
def api(settings: Settings, records: Records, storage: LocalStorage, redis_client: redis.Redis,
        namespace: str, live_pool: Any) -> Iterator[Api]:  # fmt: skip
    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000,
                          extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values()))])  # fmt: skip
    task = ExportTask(records=records, storage=storage, limits=limits_from(settings),
                      sealer=Sealer(settings.signing_keys))  # fmt: skip
    declare_export_actor(broker, task, time_limit_s=60, max_retries=1)
    clock = Clock()
    app = create_app(settings, records=records, storage=storage,
                     enqueue=lambda job_id, queue: enqueue_export(broker, job_id, queue), clock=clock)  # fmt: skip
    yield Api(
        falcon.testing.TestClient(app, headers=AUTH), broker, clock, records, storage, redis_client, namespace
    )
    broker.close()


@pytest.fixture
def worker(api: Api) -> Iterator[Worker]:
    w = Worker(api.broker, queues=set(QUEUES), worker_threads=2, worker_timeout=50)
    w.start()
    yield w
    w.stop()


# -- uploads ---------------------------------------------------------------------------------------------


def test_raw_upload_sniffs_the_type_from_the_bytes(api: Api) -> None:
    data = png_bytes()
    result = api.client.simulate_post(
        "/v1/uploads",
        body=data,
        headers={"Content-Type": "text/plain"},
        params={"filename": "../../etc/x.png"},
    )
    assert result.status_code == 201
    body = result.json
    assert body["content_type"] == "image/png"
    assert body["filename"] == "x.png"
    assert body["size"] == len(data) and body["sha256"] == hashlib.sha256(data).hexdigest()
    assert result.headers["location"] == f"/v1/uploads/{body['id']}"
    assert api.client.simulate_get(f"/v1/uploads/{body['id']}").json == body


def test_multipart_upload(api: Api) -> None:
    body, ctype = multipart([("file", ("фото.jpg", jpeg_bytes()))])
    result = api.client.simulate_post("/v1/uploads", body=body, headers={"Content-Type": ctype})
    assert result.status_code == 201
    assert result.json["filename"] == "фото.jpg" and result.json["content_type"] == "image/jpeg"


def test_oversize_upload_is_refused_with_413(api: Api) -> None:
    result = api.client.simulate_post("/v1/uploads", body=b"\xff\xd8\xff" + b"x" * 400_000)
    problem_body(result, 413, "payload_too_large")
    body, ctype = multipart([("file", ("big.jpg", b"\xff\xd8\xff" + b"x" * 310_000))])
    result = api.client.simulate_post("/v1/uploads", body=body, headers={"Content-Type": ctype})
    problem_body(result, 413, "payload_too_large")
    assert list(api.storage.root.rglob("uploads/*")) == []


@pytest.mark.parametrize(
    "data",
    [
        b"8BPS\x00\x01" + b"\x00" * 200,
        b"%!PS-Adobe-3.0 EPSF-3.0\n" + bytes(range(256)),
        b"",
        bytes(range(256)) * 4,
    ],
    ids=["psd", "eps", "empty", "binary"],
)
def test_unsupported_upload_is_refused_with_415(api: Api, data: bytes) -> None:
    result = api.client.simulate_post("/v1/uploads", body=data, params={"filename": "photo.png"})
    problem_body(result, 415, "unsupported_input")


# -- submitting exports --------------------------------------------------------------------------------------


def _upload(api: Api, data: bytes, filename: str = "in.bin") -> str:
    result = api.client.simulate_post("/v1/uploads", body=data, params={"filename": filename})
    assert result.status_code == 201, result.text
    return str(result.json["id"])


@pytest.mark.parametrize(
    ("request_body", "status", "code"),
    [
        ({"inputs": ["0" * 32], "format": "pdf"}, 422, "unknown_upload"),
        ({"inputs": "UPLOAD", "format": "bmp"}, 400, "invalid_request"),
        ({"inputs": ["UPLOAD"], "format": "docx"}, 422, "unsupported_conversion"),
        ({"inputs": ["UPLOAD"]}, 400, "invalid_request"),
        ({"inputs": [], "format": "pdf"}, 400, "invalid_request"),
        ({"inputs": ["UPLOAD"], "format": "png", "options": {"width": "wide"}}, 422, "invalid_options"),
        ({"inputs": ["UPLOAD"], "format": "png", "options": {"colour": 1}}, 422, "invalid_options"),
        ({"inputs": ["UPLOAD"], "format": "jpeg", "options": {"quality": 101}}, 422, "invalid_options"),
        ({"inputs": ["UPLOAD"], "format": "pdf", "extra": 1}, 400, "invalid_request"),
    ],
)
def test_impossible_exports_are_refused_before_anything_is_queued(
    api: Api, request_body: dict[str, Any], status: int, code: str
) -> None:
    upload_id = _upload(api, jpeg_bytes())
    text = json.dumps(request_body).replace("UPLOAD", upload_id)
    result = api.client.simulate_post("/v1/exports", body=text, headers={"Content-Type": "application/json"})
    problem_body(result, status, code)
    assert api.queue_length() == 0


def test_text_cannot_become_a_png(api: Api) -> None:
    body, ctype = multipart([("file", ("notes.txt", RUSSIAN.encode())), ("format", "png")])
    result = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype})
    problem = problem_body(result, 422, "unsupported_conversion")
    assert "pdf" in problem["detail"]  # says what text can become
    assert api.queue_length() == 0
    assert list(api.storage.list_keys("uploads/")) == []  # the refused request left no file behind


def test_malformed_bodies_get_problem_json(api: Api) -> None:
    result = api.client.simulate_post(
        "/v1/exports", body="{nope", headers={"Content-Type": "application/json"}
    )
    problem_body(result, 400, "invalid_request")
    result = api.client.simulate_post("/v1/exports", body="x", headers={"Content-Type": "text/plain"})
    problem_body(result, 415, "unsupported_media_type")
    body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "pdf"), ("options", "{bad")])
    result = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype})
    problem_body(result, 400, "invalid_request")
    problem_body(api.client.simulate_get("/v1/nothing-here"), 404, "not_found")
    problem_body(api.client.simulate_delete("/v1/formats"), 405, "method_not_allowed")
    problem_body(api.client.simulate_get("/v1/exports/" + "0" * 32), 404, "not_found")


def test_submit_queues_the_job_after_storing_it(api: Api) -> None:
    body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "pdf")])
    result = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype})
    assert result.status_code == 202
    job = result.json
    assert result.headers["location"] == f"/v1/exports/{job['id']}"
    assert job["status"] == "queued" and job["attempts"] == 0 and job["outputs"] == []
    # Defaults are filled in, so the record says exactly what ran.
    assert job["options"]["page_size"] == "A4" and job["options"]["margin_mm"] == 10
    assert api.queue_length() == 1
    assert api.records.get_job(job["id"]).status == "queued"


# -- the whole path, in process -------------------------------------------------------------------------------


def test_photo_to_pdf_download_and_link_security(api: Api, worker: Worker) -> None:
    photo = jpeg_bytes(800, 600)
    body, ctype = multipart([("file", ("holiday photo.jpg", photo)), ("format", "pdf"),
                             ("options", json.dumps({"page_size": "A4", "margin_mm": 10}))])  # fmt: skip
    job_id = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype}).json["id"]
    job = api.wait_for(job_id)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1 and job["error"] is None
    assert job["started_at"] <= job["finished_at"]
    (out,) = job["outputs"]
    assert out["content_type"] == "application/pdf" and out["name"].endswith(".pdf")
    assert out["url"].startswith("http://exportd.test/v1/files/tenants/tests/outputs/")  # under its tenant

    result = api.download(out["url"])
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/pdf"
    assert int(result.headers["content-length"]) == out["size"] == len(result.content)
    assert hashlib.sha256(result.content).hexdigest() == out["sha256"]
    assert result.headers["x-content-type-options"] == "nosniff"
    assert result.headers["content-disposition"].startswith("attachment; filename=")
    assert result.headers["etag"]
    pdf = pypdfium2.PdfDocument(result.content)
    assert len(pdf) == 1

    # Range requests.
    part = api.download(out["url"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == result.content[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{out['size']}"
    tail = api.download(out["url"], headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == result.content[-10:]
    problem_body(
        api.download(out["url"], headers={"Range": f"bytes={out['size'] + 5}-"}), 416, "range_not_satisfiable"
    )
    assert api.download(out["url"], headers={"If-None-Match": result.headers["etag"]}).status_code == 304

    # Any byte of the signature changed: 403.
    parts = urlsplit(out["url"])
    sig = parse_qs(parts.query)["sig"][0]
    bad = sig[:5] + ("A" if sig[5] != "A" else "B") + sig[6:]
    problem_body(api.download(out["url"].replace(sig, bad)), 403, "invalid_signature")
    # Another object with the same signature: 403.
    problem_body(api.download(out["url"].replace(out["name"], "other.pdf")), 403, "invalid_signature")
    # Past its expiry: 403.
    api.clock.now += 3601
    problem_body(api.download(out["url"]), 403, "link_expired")
    # A freshly read job has fresh links.
    fresh = api.client.simulate_get(f"/v1/exports/{job_id}").json["outputs"][0]["url"]
    assert api.download(fresh).status_code == 200
    # Once the file is gone: 404.
    api.storage.delete(f"tenants/tests/outputs/{job_id}/{out['name']}")
    problem_body(api.download(fresh), 404, "not_found")


def test_image_conversion_outputs_one_file_per_input(api: Api, worker: Worker) -> None:
    body, ctype = multipart([("file", ("a.png", png_bytes(400, 300))), ("file", ("b.jpg", jpeg_bytes(1000, 500))),
                             ("format", "webp"), ("options", '{"width": 200, "quality": 70}')])  # fmt: skip
    job_id = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype}).json["id"]
    job = api.wait_for(job_id)
    assert job["status"] == "succeeded", job
    assert [o["name"] for o in job["outputs"]] == ["a.webp", "b.webp"]
    sizes = []
    for out in job["outputs"]:
        im = Image.open(io.BytesIO(api.download(out["url"]).content))
        assert im.format == "WEBP"
        sizes.append(im.size)
    assert sizes == [(200, 150), (200, 100)]


def test_corrupt_input_fails_the_job_and_the_worker_serves_the_next(api: Api, worker: Worker) -> None:
    truncated = jpeg_bytes(800, 600)[:2000]
    bad = api.client.simulate_post("/v1/exports", body=json.dumps({"inputs": [_upload(api, truncated)],
                                   "format": "png"}), headers={"Content-Type": "application/json"})  # fmt: skip
    job = api.wait_for(bad.json["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "corrupt_input" and job["error"]["message"]
    assert job["attempts"] == 1  # user errors are not retried
    assert job["outputs"] == []
    good = api.client.simulate_post("/v1/exports", body=json.dumps({"inputs": [_upload(api, jpeg_bytes())],
                                    "format": "png"}), headers={"Content-Type": "application/json"})  # fmt: skip
    assert api.wait_for(good.json["id"])["status"] == "succeeded"


def test_text_to_pdf_keeps_cyrillic(api: Api, worker: Worker) -> None:
    body, ctype = multipart([("file", ("заметки.txt", RUSSIAN.encode())), ("format", "pdf")])
    job_id = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype}).json["id"]
    job = api.wait_for(job_id)
    assert job["status"] == "succeeded", job
    pdf = pypdfium2.PdfDocument(api.download(job["outputs"][0]["url"]).content)
    assert RUSSIAN in pdf[0].get_textpage().get_text_range().replace("\r\n", " ").replace("\n", " ")


# -- service endpoints --------------------------------------------------------------------------------------


def test_formats_lists_each_conversion_with_its_options(api: Api) -> None:
    body = api.client.simulate_get("/v1/formats").json
    pairs = {(c["from"], c["to"]) for c in body["conversions"]}
    assert {
        ("image", "png"),
        ("image", "jpeg"),
        ("image", "webp"),
        ("image", "pdf"),
        ("text", "pdf"),
    } <= pairs
    jpeg = next(c for c in body["conversions"] if (c["from"], c["to"]) == ("image", "jpeg"))
    assert {"width", "height", "fit", "quality"} <= set(jpeg["options"])
    assert jpeg["options"]["quality"]["maximum"] == 100
    assert jpeg["options"]["fit"]["enum"]
    pdf = next(c for c in body["conversions"] if (c["from"], c["to"]) == ("image", "pdf"))
    assert {"page_size", "margin_mm"} <= set(pdf["options"])


def test_health_and_readiness(api: Api) -> None:
    assert api.client.simulate_get("/healthz").json == {"status": "ok"}
    ready = api.client.simulate_get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"redis": "ok", "storage": "ok"}


def test_readiness_fails_once_the_process_is_stopping(api: Api) -> None:
    """gunicorn's SIGTERM handler (service/gunicorn_config.py) calls stop_being_ready: from then on a
    balancer that probes /readyz stops sending, while liveness still holds."""
    from service.resources import health

    try:
        health.stop_being_ready()
        ready = api.client.simulate_get("/readyz")
        assert ready.status_code == 503 and ready.json["checks"]["process"] == "stopping"
        assert ready.headers["retry-after"]
        assert api.client.simulate_get("/healthz").status_code == 200
    finally:
        health._stopping.clear()
    assert api.client.simulate_get("/readyz").status_code == 200


def test_metrics_count_requests_by_route_template(api: Api) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def count(route: str, status: str) -> float:
        page = api.client.simulate_get("/metrics")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
        total = 0.0  # over every method (DELETE answers 404 on this route too)
        for family in text_string_to_metric_families(page.text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "exportd_http_requests_total" and (labels["route"], labels["status"]) == (
                    route,
                    status,
                ):
                    total += sample.value
        return total

    before = count("/v1/exports/{job_id}", "404")
    api.client.simulate_get("/v1/exports/nope-1")
    api.client.simulate_get("/v1/exports/nope-2")
    assert count("/v1/exports/{job_id}", "404") - before == 2
    assert "nope-1" not in api.client.simulate_get("/metrics").text
    before = count("unmatched", "404")
    api.client.simulate_get("/no/such/route")
    assert count("unmatched", "404") - before == 1


def test_redis_down_gives_503_with_retry_after(settings: Settings, storage: LocalStorage) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    records = Records(dead, namespace="x", retention_s=60)
    client = falcon.testing.TestClient(
        create_app(settings, records=records, storage=storage, enqueue=lambda *_: None), headers=AUTH
    )
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["redis"].startswith("unavailable")
    assert client.simulate_get("/healthz").status_code == 200
    result = client.simulate_get("/v1/exports/abc")
    problem_body(result, 503, "service_unavailable")
    assert result.headers["retry-after"]


def test_enqueue_failure_leaves_no_orphan_job(
    settings: Settings, records: Records, storage: LocalStorage
) -> None:
    def broken_enqueue(job_id: str, queue: str) -> None:
        raise redis.ConnectionError("broker down")

    client = falcon.testing.TestClient(
        create_app(settings, records=records, storage=storage, enqueue=broken_enqueue), headers=AUTH
    )
    body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
    problem_body(client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype}), 503,
             "service_unavailable")  # fmt: skip
    assert not job_record_keys(records.redis, records.namespace)


def test_request_id_is_echoed(api: Api) -> None:
    assert (
        api.client.simulate_get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    generated = api.client.simulate_get("/healthz", headers={"X-Request-ID": "bad id\n"}).headers[
        "x-request-id"
    ]
    assert generated != "bad id\n" and len(generated) == 32


def test_settings_replace_keeps_app_factory_pure(
    settings: Settings, records: Records, storage: LocalStorage
) -> None:
    # create_app reads nothing from the environment: two apps with different limits coexist.
    small = falcon.testing.TestClient(
        create_app(
            replace(settings, max_upload_bytes=10), records=records, storage=storage, enqueue=lambda *_: None
        ),
        headers=AUTH,
    )
    problem_body(small.simulate_post("/v1/uploads", body=png_bytes()), 413, "payload_too_large")


def test_job_result_says_which_metadata_was_removed(api: Api, worker: Worker) -> None:
    gps_photo = (Path(__file__).resolve().parents[1] / "fixtures" / "pillow" / "exif_gps.jpg").read_bytes()
    body, ctype = multipart([("file", ("gps.jpg", gps_photo)), ("format", "jpeg")])
    job_id = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype}).json["id"]
    job = api.wait_for(job_id)
    assert job["status"] == "succeeded", job
    (out,) = job["outputs"]
    assert "gps" in out["details"]["metadata"]["removed"]
    assert out["details"]["metadata"]["kept"] == []
    assert not Image.open(io.BytesIO(api.download(out["url"]).content)).getexif()


DOCUMENTS = Path(__file__).resolve().parents[1] / "fixtures" / "documents"


def _export_files(
    api: Api, files: list[tuple[str, bytes]], fmt: str, options: dict[str, Any] | None = None
) -> Any:
    fields: list[tuple[str, str | tuple[str, bytes]]] = [("file", f) for f in files]
    fields += [("format", fmt), ("options", json.dumps(options or {}))]
    body, ctype = multipart(fields)
    result = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype})
    assert result.status_code == 202, result.text
    return result.json


def test_a_csv_named_csv_becomes_a_spreadsheet(api: Api, worker: Worker) -> None:
    import openpyxl

    job = _export_files(api, [("cities.csv", (DOCUMENTS / "cities-cp1251.csv").read_bytes())], "xlsx")
    assert job["inputs"][0]["content_type"] == "text/csv"  # cp1251 bytes: not UTF-8 text, still a table
    done = api.wait_for(job["id"])
    assert done["status"] == "succeeded", done
    sheet = openpyxl.load_workbook(io.BytesIO(api.download(done["outputs"][0]["url"]).content)).active
    assert sheet is not None
    values = [cell.value for row in sheet.iter_rows() for cell in row]
    assert any(isinstance(v, str) and "Москва" in v for v in values)


def test_markdown_with_its_picture_and_a_pdf_merge(api: Api, worker: Worker) -> None:
    report = b"# Report\n\nA photo:\n\n![shot](shot.jpg)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    job = _export_files(api, [("report.md", report), ("shot.jpg", jpeg_bytes(300, 200))], "pdf")
    done = api.wait_for(job["id"])
    assert done["status"] == "succeeded", done
    made = api.download(done["outputs"][0]["url"]).content
    assert "Report" in pypdfium2.PdfDocument(made)[0].get_textpage().get_text_range()
    # That PDF and a photo, merged in the order given.
    merged = api.wait_for(_export_files(api, [("r.pdf", made), ("p.jpg", jpeg_bytes())], "pdf")["id"])
    assert merged["status"] == "succeeded", merged
    assert len(pypdfium2.PdfDocument(api.download(merged["outputs"][0]["url"]).content)) == 2


def test_pdf_pages_become_images_and_the_password_is_never_shown(api: Api, worker: Worker) -> None:
    import pikepdf

    text_pdf = api.wait_for(_export_files(api, [("a.txt", ("line\n" * 200).encode())], "pdf")["id"])
    plain = io.BytesIO()
    with pikepdf.open(io.BytesIO(api.download(text_pdf["outputs"][0]["url"]).content)) as pdf:
        pdf.save(plain, encryption=pikepdf.Encryption(owner="owner-pw", user="s3cret-pw"))
    pdf_bytes = plain.getvalue()
    job = _export_files(api, [("a.pdf", pdf_bytes)], "png", {"dpi": 50, "password": "s3cret-pw"})
    assert job["options"]["password"] == "********"
    # Sealed in the record: the password is nowhere in Redis, in any form a reader could use.
    stored = raw_job_record(api.redis, api.namespace, job["id"])
    assert stored is not None and b"s3cret-pw" not in stored and b"sealed:v1:" in stored
    done = api.wait_for(job["id"])
    assert done["status"] == "succeeded", done  # the worker unsealed it and opened the PDF
    assert done["options"]["password"] == "********"
    pages = len(pypdfium2.PdfDocument(pdf_bytes, password="s3cret-pw"))
    assert len(done["outputs"]) == pages >= 2
    assert Image.open(io.BytesIO(api.download(done["outputs"][0]["url"]).content)).format == "PNG"


def _needs_office() -> None:
    from exporters import office

    if office.find_soffice() is None:
        pytest.skip("LibreOffice (soffice) is not installed: .ci/run installs it for CI")


def test_office_documents_are_queued_on_their_own_queue(api: Api) -> None:
    _needs_office()
    _export_files(api, [("letter.docx", (DOCUMENTS / "office" / "letter.docx").read_bytes())], "pdf")
    assert api.redis.llen(f"{api.namespace}:dramatiq:office") == 1
    assert api.queue_length() == 0  # nothing on the photos' queue


def test_office_document_to_pdf(api: Api, worker: Worker) -> None:
    _needs_office()
    job = _export_files(api, [("letter.docx", (DOCUMENTS / "office" / "letter.docx").read_bytes())], "pdf")
    assert job["inputs"][0]["content_type"].endswith("wordprocessingml.document")
    done = api.wait_for(job["id"], timeout_s=90)
    assert done["status"] == "succeeded", done
    assert len(pypdfium2.PdfDocument(api.download(done["outputs"][0]["url"]).content)) >= 1


# -- waiting for a job: GET /v1/exports/{id}?wait=N ------------------------------------------------------------


def _queued_job(api: Api) -> str:
    body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
    return str(api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype}).json["id"])


def _get_in_thread(api: Api, path: str, params: dict[str, str]) -> tuple[threading.Thread, dict[str, Any]]:
    answer: dict[str, Any] = {}

    def get() -> None:
        began = time.monotonic()
        result = api.client.simulate_get(path, params=params)
        answer.update(result=result, seconds=time.monotonic() - began)

    thread = threading.Thread(target=get)
    thread.start()
    return thread, answer


def _run_jobs_until_answered(api: Api, thread: threading.Thread) -> None:
    """A worker runs the queued jobs while the waiting request's thread gets its answer."""
    worker = Worker(api.broker, queues=set(QUEUES), worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        thread.join(20)
    finally:
        worker.stop()


def test_a_waiting_request_is_answered_when_its_job_finishes(api: Api) -> None:
    job_id = _queued_job(api)
    thread, answer = _get_in_thread(api, f"/v1/exports/{job_id}", {"wait": "20"})
    thread.join(0.5)
    assert thread.is_alive(), "it answered before the job ran"
    _run_jobs_until_answered(api, thread)
    assert not thread.is_alive()
    body = answer["result"].json
    assert body["status"] == "succeeded" and body["outputs"][0]["url"]
    assert answer["seconds"] < 15  # woken by the finish, not by the end of the wait


def test_waiting_on_a_finished_job_answers_at_once(api: Api, worker: Worker) -> None:
    job_id = _queued_job(api)
    assert api.wait_for(job_id)["status"] == "succeeded"
    began = time.monotonic()
    result = api.client.simulate_get(f"/v1/exports/{job_id}", params={"wait": "20"})
    assert result.json["status"] == "succeeded"
    assert time.monotonic() - began < 5


def test_a_wait_that_runs_out_answers_with_the_job_as_it_is(api: Api) -> None:
    job_id = _queued_job(api)
    began = time.monotonic()
    result = api.client.simulate_get(f"/v1/exports/{job_id}", params={"wait": "0.5"})
    assert result.status_code == 200 and result.json["status"] == "queued"
    assert time.monotonic() - began >= 0.5


@pytest.mark.parametrize("wait", ["-1", "31", "soon", "nan", "inf"])
def test_wait_must_be_seconds_from_0_to_30(api: Api, wait: str) -> None:
    job_id = _queued_job(api)
    body = problem_body(
        api.client.simulate_get(f"/v1/exports/{job_id}", params={"wait": wait}), 400, "invalid_request"
    )
    assert "wait" in body["detail"]


def test_waiting_on_an_unknown_job_is_404(api: Api) -> None:
    problem_body(api.client.simulate_get("/v1/exports/" + "0" * 32, params={"wait": "5"}), 404, "not_found")


def test_a_process_lets_at_most_half_its_connections_wait(
    settings: Settings, records: Records, storage: LocalStorage
) -> None:
    app = create_app(
        replace(settings, api_connections=2), records=records, storage=storage, enqueue=lambda *_: None
    )
    api = Api(
        falcon.testing.TestClient(app, headers=AUTH),
        None,
        Clock(),
        records,
        storage,
        records.redis,
        records.namespace,
    )
    first_id, second_id = _queued_job(api), _queued_job(api)
    first, _ = _get_in_thread(api, f"/v1/exports/{first_id}", {"wait": "3"})
    time.sleep(0.3)
    began = time.monotonic()
    second = api.client.simulate_get(f"/v1/exports/{second_id}", params={"wait": "3"})
    assert second.json["status"] == "queued"
    assert time.monotonic() - began < 1.5, (
        "the second request waited although the first held the only waiting slot"
    )
    assert first.is_alive()
    first.join(10)


def test_waiting_requests_are_woken_when_the_subscription_breaks_and_it_comes_back(api: Api) -> None:
    job_id = _queued_job(api)
    thread, answer = _get_in_thread(api, f"/v1/exports/{job_id}", {"wait": "20"})
    thread.join(0.5)
    assert thread.is_alive()
    assert api.redis.client_kill_filter(_type="pubsub") >= 1
    thread.join(10)
    assert not thread.is_alive() and answer["result"].json["status"] == "queued"
    assert answer["seconds"] < 10  # woken to read the record again, not left until the end of its wait
    # Subscribed again after a pause (meanwhile requests are answered at once): a later wait is
    # woken by its job's finish.
    time.sleep(RESUBSCRIBE_DELAY_S + 1.0)
    thread, answer = _get_in_thread(api, f"/v1/exports/{job_id}", {"wait": "20"})
    thread.join(0.5)
    _run_jobs_until_answered(api, thread)
    assert answer["result"].json["status"] == "succeeded" and answer["seconds"] < 15


def test_an_export_posted_with_wait_comes_back_finished_with_its_links(api: Api, worker: Worker) -> None:
    photo = jpeg_bytes(800, 600)
    body, ctype = multipart([("file", ("photo.jpg", photo)), ("format", "png")])
    result = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype},
                                      params={"wait": "20"})  # fmt: skip
    assert result.status_code == 201, result.text
    job = result.json
    assert result.headers["location"] == f"/v1/exports/{job['id']}"
    assert job["status"] == "succeeded"
    png = api.download(job["outputs"][0]["url"])
    assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (800, 600)


def test_an_export_that_fails_within_its_wait_comes_back_failed(api: Api, worker: Worker) -> None:
    body, ctype = multipart([("file", ("cut.jpg", jpeg_bytes(800, 600)[:400])), ("format", "png")])
    result = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype},
                                      params={"wait": "20"})  # fmt: skip
    assert result.status_code == 201, result.text
    assert result.json["status"] == "failed" and result.json["error"]["code"] == "corrupt_input"


def test_an_export_whose_wait_runs_out_is_accepted_as_usual(api: Api) -> None:
    body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
    began = time.monotonic()
    result = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype},
                                      params={"wait": "0.5"})  # fmt: skip
    assert result.status_code == 202 and result.json["status"] == "queued"
    assert time.monotonic() - began >= 0.5
    assert api.queue_length() == 1


def test_a_bad_wait_refuses_the_export_before_anything_is_stored(api: Api) -> None:
    body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
    result = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype},
                                      params={"wait": "forever"})  # fmt: skip
    problem_body(result, 400, "invalid_request")
    assert api.queue_length() == 0
    assert not list(api.storage.list_keys("uploads/"))


# -- input refused up front -------------------------------------------------------------------------------


class _Unreadable(io.RawIOBase):
    """A request body that must never be read."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the body was read")


def _stored_jobs(api: Api) -> list[Any]:
    return job_record_keys(api.redis, api.namespace)


def _post_json(api: Api, text: str | bytes, **kwargs: Any) -> falcon.testing.Result:
    return api.client.simulate_post("/v1/exports", body=text, headers={"Content-Type": "application/json"},
                                    **kwargs)  # fmt: skip


def _post_form(
    api: Api, fields: list[tuple[str, str | tuple[str, bytes]]], **kwargs: Any
) -> falcon.testing.Result:
    body, ctype = multipart(fields)
    return api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype}, **kwargs)


def test_a_json_export_over_max_json_bytes_is_refused_with_413_and_nothing_stored(api: Api) -> None:
    upload_id = _upload(api, jpeg_bytes())
    body = json.dumps({"inputs": [upload_id], "format": "pdf", "options": {"title": "x" * 2_000_000}})
    problem = problem_body(_post_json(api, body), 413, "payload_too_large")
    assert "1048576" in problem["detail"]
    assert _stored_jobs(api) == [] and api.queue_length() == 0


def test_a_json_body_whose_declared_length_is_too_large_is_refused_before_it_is_read(api: Api) -> None:
    result = api.client.simulate_post(
        "/v1/exports",
        headers={"Content-Type": "application/json", "Content-Length": str(2 * 1024**3)},
        extras={"wsgi.input": _Unreadable()},
    )
    problem_body(result, 413, "payload_too_large")


def test_the_json_limit_is_a_setting(settings: Settings, records: Records, storage: LocalStorage) -> None:
    app = create_app(replace(settings, max_json_bytes=100), records=records, storage=storage,
                     enqueue=lambda job_id, queue: None)  # fmt: skip
    client = falcon.testing.TestClient(app, headers=AUTH)
    body = json.dumps({"inputs": ["0" * 32], "format": "pdf", "options": {"title": "x" * 100}})
    problem_body(client.simulate_post("/v1/exports", body=body, headers={"Content-Type": "application/json"}),
             413, "payload_too_large")  # fmt: skip


def test_huge_options_and_format_parts_are_refused_with_413(api: Api) -> None:
    huge_options = json.dumps({"title": "x" * 1_500_000})  # over 1 MiB, under the whole body's limit
    result = _post_form(
        api, [("format", "pdf"), ("options", huge_options), ("file", ("a.jpg", jpeg_bytes()))]
    )
    assert "'options' part" in problem_body(result, 413, "payload_too_large")["detail"]
    result = _post_form(api, [("format", "pdf" * 1000), ("file", ("a.jpg", jpeg_bytes()))])
    assert "'format' part" in problem_body(result, 413, "payload_too_large")["detail"]
    assert _stored_jobs(api) == [] and api.queue_length() == 0
    assert list(api.storage.list_keys("uploads/")) == []


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_nan_and_infinity_are_refused_where_json_is_parsed(api: Api, literal: str) -> None:
    upload_id = _upload(api, jpeg_bytes())
    text = '{"inputs": ["' + upload_id + '"], "format": "pdf", "options": {"margin_mm": ' + literal + "}}"
    problem_body(_post_json(api, text), 400, "invalid_request")
    result = _post_form(api, [("file", ("a.jpg", jpeg_bytes())), ("format", "pdf"),
                              ("options", '{"margin_mm": ' + literal + "}")])  # fmt: skip
    problem_body(result, 400, "invalid_request")
    assert _stored_jobs(api) == [] and api.queue_length() == 0


def test_overlong_ids_and_formats_in_a_json_export_are_refused_without_being_echoed(api: Api) -> None:
    upload_id = _upload(api, jpeg_bytes())
    for body in (
        {"inputs": ["a" * 500_000], "format": "pdf"},
        {"inputs": [upload_id], "format": "p" * 500_000},
    ):
        problem = problem_body(_post_json(api, json.dumps(body)), 400, "invalid_request")
        assert len(problem["detail"]) < 200, problem["detail"][:200]


def test_json_nested_100000_deep_is_a_400_not_a_500(api: Api) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert "nested too deeply" in problem_body(_post_json(api, deep), 400, "invalid_request")["detail"]
    result = _post_form(api, [("file", ("a.jpg", jpeg_bytes())), ("format", "pdf"),
                              ("options", '{"title": ' + deep + "}")])  # fmt: skip
    problem_body(result, 400, "invalid_request")
    problem_body(
        _post_json(api, '{"inputs": [' + "9" * 5000 + "]}"), 400, "invalid_request"
    )  # int() digit limit


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("png", {"background": "#zzzzzz"}, "background must be a colour"),
        ("png", {"width": 8193}, "width must be at most 8192"),
        ("jpeg", {"height": 10**30}, "height must be at most 8192"),
        ("png", {"crop": [0, 0, 10**400, 1]}, "each item of crop must be at most"),
        ("pdf", {"margin_mm": 10**400}, "margin_mm must be a finite number"),
        ("contact_sheet_pdf", {"title": "x" * 1001}, "title must be at most 1000 characters"),
        ("contact_sheet_png", {"sheet_width_px": 9000}, "sheet_width_px must be at most 8192"),
    ],
)
def test_options_out_of_their_domain_are_refused_at_submit(
    api: Api, target: str, options: dict[str, Any], message: str
) -> None:
    upload_id = _upload(api, jpeg_bytes())
    result = _post_json(api, json.dumps({"inputs": [upload_id], "format": target, "options": options}))
    assert message in problem_body(result, 422, "invalid_options")["detail"]
    assert _stored_jobs(api) == [] and api.queue_length() == 0


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("png", {"pages": "abc"}, "pages must be page ranges"),
        ("png", {"pages": "3-1"}, "'3-1' is not a range of pages numbered from 1"),
        ("png", {"width": 9000}, "width must be at most 8192"),
        ("pdf", {"pages": "0"}, "pages must be page ranges"),
        ("pdf_pages", {"ranges": "1-3;x"}, "ranges must be groups of page ranges"),
        ("pdf_pages", {"ranges": ";"}, "it names no pages"),
    ],
)
def test_page_ranges_and_page_sizes_of_pdfs_are_refused_at_submit(
    api: Api, target: str, options: dict[str, Any], message: str
) -> None:
    result = _post_form(api, [("file", ("doc.pdf", _pdf_bytes())), ("format", target),
                              ("options", json.dumps(options))])  # fmt: skip
    assert message in problem_body(result, 422, "invalid_options")["detail"]
    assert _stored_jobs(api) == [] and api.queue_length() == 0


def _pdf_bytes() -> bytes:
    document = pypdfium2.PdfDocument.new()
    document.new_page(595, 842)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_formats_advertises_the_output_side_limit_the_submit_check_uses(
    settings: Settings, records: Records, storage: LocalStorage
) -> None:
    app = create_app(replace(settings, max_output_side_px=5000), records=records, storage=storage,
                     enqueue=lambda job_id, queue: None)  # fmt: skip
    client = falcon.testing.TestClient(app, headers=AUTH)
    conversions = client.simulate_get("/v1/formats").json["conversions"]
    sides = {(c["from"], c["to"], name): spec["maximum"] for c in conversions
             for name, spec in c["options"].items() if name in ("width", "height", "sheet_width_px")}  # fmt: skip
    assert sides and set(sides.values()) == {5000}, sides
    upload_id = client.simulate_post("/v1/uploads", body=jpeg_bytes(), params={"filename": "a.jpg"}).json[
        "id"
    ]

    def submit(width: int) -> falcon.testing.Result:
        body = json.dumps({"inputs": [upload_id], "format": "png", "options": {"width": width}})
        return client.simulate_post("/v1/exports", body=body, headers={"Content-Type": "application/json"})

    assert submit(5000).status_code == 202
    problem_body(submit(5001), 422, "invalid_options")


def test_a_download_link_with_a_unicode_digit_expiry_is_refused_not_a_500(api: Api) -> None:
    for exp in ("²", "١٢٣", "9" * 5000):
        result = api.client.simulate_get("/v1/files/outputs/" + "0" * 32 + "/a.pdf",
                                         params={"exp": exp, "kid": "k1", "sig": "x"})  # fmt: skip
        problem_body(result, 403, "invalid_signature")


def test_a_range_with_thousands_of_digits_is_not_a_500(api: Api) -> None:
    api.storage.put_stream("outputs/job/a.bin", io.BytesIO(b"0123456789"), max_bytes=100)
    url = Signer(parse_signing_keys(TEST_KEYS)).url(
        "http://exportd.test", "outputs/job/a.bin", expires=int(time.time()) + 60
    )
    huge = "9" * 5000
    assert api.download(url, headers={"Range": f"bytes={huge}-"}).status_code == 416
    whole = api.download(url, headers={"Range": f"bytes=-{huge}"})
    assert whole.status_code == 206 and whole.content == b"0123456789"
    assert api.download(url, headers={"Range": "bytes=²-"}).content == b"0123456789"  # not a range: all


def test_every_answer_with_a_job_is_not_to_be_stored_by_caches(api: Api, worker: Worker) -> None:
    accepted = _post_form(api, [("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
    assert accepted.status_code == 202 and accepted.headers["cache-control"] == "no-store"
    finished = _post_form(api, [("file", ("a.jpg", jpeg_bytes())), ("format", "png")], params={"wait": "20"})
    assert finished.status_code == 201 and finished.json["outputs"][0]["url"]
    assert finished.headers["cache-control"] == "no-store"
    read = api.client.simulate_get(f"/v1/exports/{finished.json['id']}", params={"wait": "1"})
    assert read.status_code == 200 and read.headers["cache-control"] == "no-store"


def test_both_body_kinds_read_the_format_alike(api: Api) -> None:
    """One parser: " PNG " means png in a JSON export as it does in a multipart one."""
    upload_id = _upload(api, jpeg_bytes(), "photo.jpg")
    result = api.client.simulate_post("/v1/exports", json={"inputs": [upload_id], "format": " PNG "})
    assert result.status_code == 202, result.json
    assert result.json["format"] == "png"
    body, ctype = multipart([("file", ("photo.jpg", jpeg_bytes())), ("format", " PNG ")])
    result = api.client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype})
    assert result.status_code == 202 and result.json["format"] == "png"


def test_a_conversion_no_live_pool_can_run_is_refused_and_shown_unavailable(
    settings: Settings,
    records: Records,
    storage: LocalStorage,
    redis_client: redis.Redis,
    namespace: str,
    live_pool: Any,
) -> None:
    """Capabilities are what the workers publish, not what the API finds on its own disk."""
    from actors.capabilities import Availability

    live_pool.withdraw()
    clock = Clock()
    availability = Availability(redis_client, namespace, clock=lambda: clock.now)
    app = create_app(settings, records=records, storage=storage, enqueue=lambda job_id, queue: None,
                     clock=clock, availability=availability)  # fmt: skip
    client = falcon.testing.TestClient(app, headers=AUTH)

    def try_export() -> falcon.testing.Result:
        body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
        return client.simulate_post("/v1/exports", body=body, headers={"Content-Type": ctype})

    def available() -> dict[str, bool]:
        return {
            f"{c['from']}->{c['to']}": c["available"]
            for c in client.simulate_get("/v1/formats").json["conversions"]
        }

    refused = try_export()  # no pool at all
    assert refused.status_code == 422 and refused.json["code"] == "conversion_unavailable"
    assert "no worker pool that converts image to png" in refused.json["detail"]
    assert not any(available().values())
    assert not job_record_keys(redis_client, namespace)  # nothing stored
    # A pool serving only the photos' queue, without LibreOffice (as an image built with it but
    # deployed without office workers): photos yes, Office no.
    pool = publish_pool(redis_client, namespace, queues=("exports",), capabilities={"office": True})
    clock.now += 5  # past the API's cache
    assert try_export().status_code == 202
    shown = available()
    assert shown["image->png"] and not shown["office->pdf"]
    pool.withdraw()  # the pool stops
    clock.now += 5
    assert try_export().json["code"] == "conversion_unavailable"


def test_a_queue_scaled_to_zero_keeps_taking_jobs_once_a_pool_has_served_it(
    redis_client: redis.Redis, namespace: str, live_pool: Any
) -> None:
    """KEDA wakes an idle queue's workers only when a job waits: its jobs must be taken meanwhile."""
    from actors.capabilities import Availability

    live_pool.withdraw()  # the pool scaled to zero; it had published what it runs before
    clock = Clock()
    idle = Availability(redis_client, namespace, scale_from_zero=["office"], clock=lambda: clock.now)
    strict = Availability(redis_client, namespace, clock=lambda: clock.now)
    office_ok = live_pool.body and json.loads(live_pool.body)["capabilities"]["office"]
    assert idle.can_run("office", ("office",)) == office_ok
    assert not idle.can_run("exports", ())  # not listed: a live pool is required
    assert not strict.can_run("office", ())
    assert not Availability(redis_client, f"{namespace}-never", scale_from_zero=["office"]).can_run(
        "office", ()
    )


class _SlowToSubscribe(redis.Redis):
    """A real Redis client whose subscriptions take half a second to start, as on a loaded server."""

    def pubsub(self, **kwargs: Any) -> Any:
        time.sleep(0.5)
        return super().pubsub(**kwargs)


def test_requests_arriving_while_the_first_subscription_is_made_wait_for_it(
    redis_url: str, records: Records
) -> None:
    """Only a subscription that was up and broke answers requests at once; one being made is waited for
    (requests arriving together at a fresh process were answered 'queued' at once)."""
    from service.waiting import JobWaiter

    waiter = JobWaiter(_SlowToSubscribe.from_url(redis_url), records.finished_channel, max_waiting=10)
    got: dict[str, Any] = {}

    def watch(name: str) -> None:
        with waiter.watch(f"job-{name}") as event:
            got[name] = event

    first = threading.Thread(target=watch, args=("first",))
    first.start()
    time.sleep(0.1)  # the subscription is being made
    watch("second")
    first.join(10)
    assert got["first"] is not None and got["second"] is not None
