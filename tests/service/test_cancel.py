"""DELETE /v1/exports/{id}: cancellation through the API, with real Dramatiq workers, Redis and storage."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
import redis
from dramatiq import Worker
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from actors.broker import QUEUES, build_broker
from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, enqueue_export, releaser
from actors.outcomes import JobOutcomes
from exporters.office import find_soffice
from service.app import create_app, limits_from, quotas_from
from service.settings import Settings, parse_signing_keys
from storage.jobs import Records
from storage.local import LocalStorage
from storage.sealing import Sealer
from storage.tenants import Tenants
from tests.conftest import AUTH, TEST_API_KEYS, TEST_KEYS
from tests.helpers import jpeg_bytes, problem_body

OTHER_KEY = "exk_" + "other-tenant-key-" + "o" * 30
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass
class Api:
    client: falcon.testing.TestClient
    broker: Any
    records: Records
    storage: LocalStorage
    tenants: Tenants
    workers: list[Worker]

    def start_worker(self) -> None:
        worker = Worker(self.broker, queues=set(QUEUES), worker_threads=2, worker_timeout=50)
        worker.start()
        self.workers.append(worker)

    def upload(self, data: bytes, filename: str) -> str:
        result = self.client.simulate_post("/v1/uploads", body=data, params={"filename": filename})
        assert result.status_code == 201, result.text
        return str(result.json["id"])

    def submit(self, upload_id: str, fmt: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"inputs": [upload_id], "format": fmt, "options": options or {}})
        result = self.client.simulate_post(
            "/v1/exports", body=body, headers={"Content-Type": "application/json"}
        )
        assert result.status_code == 202, result.text
        return dict(result.json)

    def status_becomes(self, job_id: str, wanted: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.client.simulate_get(f"/v1/exports/{job_id}").json
            if job["status"] == wanted:
                return dict(job)
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} is {job['status']}, never {wanted}")

    def events_of(self, job_id: str) -> list[str]:
        return [e.type for e in self.records.events() if e.job_id == job_id]

    def stored_outputs(self, job_id: str) -> list[Path]:
        folder = self.storage.root / "outputs" / job_id
        return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture
def api(
    tmp_path: Path, records: Records, storage: LocalStorage, redis_client: redis.Redis, live_pool: Any
) -> Iterator[Api]:
    settings = Settings(api_keys=f"{TEST_API_KEYS},other:submit+read:{OTHER_KEY}",
                        signing_keys=parse_signing_keys(TEST_KEYS), data_dir=tmp_path,
                        max_upload_bytes=5_000_000, public_url="http://exportd.test")  # fmt: skip
    tenants = Tenants(records, defaults=quotas_from(settings))
    broker: Any = None

    def release_on_broker(job: Any) -> None:
        releaser(tenants, broker)(job)

    broker = build_broker(redis_client, namespace=records.namespace, heartbeat_timeout_ms=30_000,
                          extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values()),
                                                        release_on_broker)])  # fmt: skip
    task = ExportTask(records=records, storage=storage, limits=limits_from(settings),
                      sealer=Sealer(settings.signing_keys), release=release_on_broker)  # fmt: skip
    declare_export_actor(broker, task, time_limit_s=120, max_retries=1)
    app = create_app(settings, records=records, storage=storage,
                     enqueue=lambda job_id, queue: enqueue_export(broker, job_id, queue))  # fmt: skip
    served = Api(falcon.testing.TestClient(app, headers=AUTH), broker, records, storage, tenants, [])
    yield served
    for worker in served.workers:
        worker.stop()
    broker.close()


def _pdf(pages: int) -> bytes:
    """A real PDF of `pages` pages of text and shapes: slow enough to render at a high DPI."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4)
    for number in range(1, pages + 1):
        canvas.setFont("Helvetica", 28)
        canvas.drawString(72, 760, f"Page {number}")
        for row in range(40):
            canvas.circle(100 + (row * 13) % 400, 100 + row * 15, 30, fill=row % 2)
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def test_a_queued_job_canceled_never_starts_and_emits_one_event(api: Api) -> None:
    job = api.submit(api.upload(jpeg_bytes(), "a.jpg"), "png")  # no worker runs yet: it stays queued
    result = api.client.simulate_delete(f"/v1/exports/{job['id']}")
    assert result.status_code == 200, result.text
    assert result.json["status"] == "canceled" and result.json["outputs"] == []
    assert result.json["finished_at"] and result.json["started_at"] is None
    # Its message is still queued: once a worker takes it, it finds the job over and does nothing.
    api.start_worker()
    control = api.submit(api.upload(jpeg_bytes(), "b.jpg"), "png")
    api.status_becomes(control["id"], "succeeded")  # the worker ran, after the canceled job's message
    after = api.client.simulate_get(f"/v1/exports/{job['id']}").json
    assert after["status"] == "canceled" and after["attempts"] == 0 and after["started_at"] is None
    assert api.stored_outputs(job["id"]) == []
    # Canceling again is harmless: the same answer, and still one event.
    again = api.client.simulate_delete(f"/v1/exports/{job['id']}")
    assert again.status_code == 200 and again.json["status"] == "canceled"
    assert api.events_of(job["id"]) == ["export.canceled"]
    listed = api.client.simulate_get("/v1/exports", params={"status": "canceled"}).json["exports"]
    assert [j["id"] for j in listed] == [job["id"]]


def test_a_finished_job_cannot_be_canceled(api: Api) -> None:
    api.start_worker()
    job = api.submit(api.upload(jpeg_bytes(), "a.jpg"), "png")
    api.status_becomes(job["id"], "succeeded")
    problem_body(api.client.simulate_delete(f"/v1/exports/{job['id']}"), 409, "already_finished")
    done = api.client.simulate_get(f"/v1/exports/{job['id']}").json
    assert done["status"] == "succeeded" and len(done["outputs"]) == 1
    assert api.events_of(job["id"]) == ["export.succeeded"]


def test_another_tenants_job_is_not_found_as_an_unknown_one(api: Api) -> None:
    job = api.submit(api.upload(jpeg_bytes(), "a.jpg"), "png")
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    theirs = api.client.simulate_delete(f"/v1/exports/{job['id']}", headers=other)
    unknown = api.client.simulate_delete(f"/v1/exports/{'0' * 32}", headers=other)
    problem_body(theirs, 404, "not_found")
    assert theirs.json["detail"] == unknown.json["detail"] and unknown.status_code == 404
    assert api.client.simulate_get(f"/v1/exports/{job['id']}").json["status"] == "queued"


def test_a_read_only_key_cannot_cancel(api: Api, redis_client: redis.Redis) -> None:
    from storage.keys import KeyStore

    _, key = KeyStore(redis_client, namespace=api.records.namespace).create("tests", ("read",))
    job = api.submit(api.upload(jpeg_bytes(), "a.jpg"), "png")
    problem_body(api.client.simulate_delete(f"/v1/exports/{job['id']}", headers={"Authorization": f"Bearer {key}"}),
             403, "forbidden")  # fmt: skip


def test_canceling_a_held_job_frees_nothing_and_a_dispatched_one_frees_its_slot(api: Api) -> None:
    """Fair scheduling holds a tenant's surplus: canceled jobs leave the backlog or the dispatched
    set, so the tenant's slot is never lost and the held job behind gets it."""
    api.tenants.set_quotas("tests", max_running=1)
    upload = api.upload(jpeg_bytes(), "a.jpg")
    first, held, last = (api.submit(upload, "png") for _ in range(3))
    assert api.tenants.counts("tests") == {"open": 3, "dispatched": 1, "held": 2}
    assert api.client.simulate_delete(f"/v1/exports/{held['id']}").json["status"] == "canceled"
    assert api.tenants.counts("tests") == {"open": 2, "dispatched": 1, "held": 1}
    assert api.client.simulate_delete(f"/v1/exports/{first['id']}").json["status"] == "canceled"
    # The slot went to the last job, whose message is queued now.
    assert api.tenants.counts("tests") == {"open": 1, "dispatched": 1, "held": 0}
    api.start_worker()
    api.status_becomes(last["id"], "succeeded")
    deadline = time.monotonic() + 5  # its worker releases the slot just after writing the record
    while api.tenants.counts("tests")["dispatched"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert api.tenants.counts("tests") == {"open": 0, "dispatched": 0, "held": 0}
    assert [api.events_of(j["id"]) for j in (first, held, last)] == [
        ["export.canceled"],
        ["export.canceled"],
        ["export.succeeded"],
    ]


def test_a_running_multi_page_job_stops_at_the_next_page_with_nothing_published(api: Api) -> None:
    api.start_worker()
    job = api.submit(api.upload(_pdf(60), "long.pdf"), "png", {"dpi": 300})
    api.status_becomes(job["id"], "running")
    time.sleep(0.5)  # a few pages in
    asked = time.monotonic()
    result = api.client.simulate_delete(f"/v1/exports/{job['id']}")
    assert result.status_code == 202, result.text
    assert result.json["status"] == "running" and result.json["cancel_requested"] is True
    ended = api.client.simulate_delete(f"/v1/exports/{job['id']}", params={"wait": "20"})  # twice: harmless
    stopped_after_s = time.monotonic() - asked
    assert ended.status_code == 200 and ended.json["status"] == "canceled", ended.text
    assert ended.json["outputs"] == [] and ended.json["cancel_requested"] is False
    # Stopped between pages (a page takes well under a second), not after rendering all 60.
    assert stopped_after_s < 3, stopped_after_s
    assert api.stored_outputs(job["id"]) == []
    time.sleep(0.5)
    assert api.events_of(job["id"]) == ["export.canceled"]
    assert api.records.get_job(job["id"]).attempts == 1


def test_a_running_multi_frame_job_stops_between_frames(api: Api) -> None:
    from PIL import Image, ImageDraw

    base = Image.linear_gradient("L").resize((1200, 900))
    frames = []
    for index in range(90):  # a ball crossing a gradient: seconds to resize and encode here
        frame = base.copy()
        ImageDraw.Draw(frame).ellipse((index * 10, 100, index * 10 + 200, 300), fill=255)
        frames.append(frame)
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50)
    api.start_worker()
    job = api.submit(api.upload(gif.getvalue(), "long.gif"), "webp", {"width": 1100})
    api.status_becomes(job["id"], "running")
    time.sleep(0.3)
    asked = time.monotonic()
    result = api.client.simulate_delete(f"/v1/exports/{job['id']}", params={"wait": "20"})
    assert result.status_code == 200 and result.json["status"] == "canceled", result.text
    assert time.monotonic() - asked < 2  # at the next frame, not after all 90 and their encoding
    assert api.stored_outputs(job["id"]) == [] and api.events_of(job["id"]) == ["export.canceled"]


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below `pid`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            cmdline = (
                Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            )
        except OSError:
            continue
        found.append((child, cmdline))
        todo.extend(children.get(child, []))
    return found


def _long_odt(paragraphs: int) -> bytes:
    """A real OpenDocument text of a few hundred pages: LibreOffice takes many seconds over it."""
    text = "lorem ipsum dolor sit amet " * 20
    body = "".join(f"<text:p>Paragraph {i}: {text}</text:p>" for i in range(paragraphs))
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f"<office:body><office:text>{body}</office:text></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>'
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(
            zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text"
        )  # stored, first
        archive.writestr("META-INF/manifest.xml", manifest)
        archive.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


@pytest.mark.skipif(find_soffice() is None, reason="LibreOffice is not installed here (CI has it)")
def test_canceling_an_office_job_kills_libreoffice(api: Api) -> None:
    api.start_worker()
    # About 300 pages: over 10 s of LibreOffice here (and 4 s for a one-page letter, most of it start-up).
    job = api.submit(api.upload(_long_odt(1000), "long.odt"), "pdf")
    deadline = time.monotonic() + 30
    while not any("soffice" in cmd for _, cmd in _descendants(os.getpid())):
        assert time.monotonic() < deadline, "LibreOffice never started"
        time.sleep(0.02)
    time.sleep(0.5)
    asked = time.monotonic()
    result = api.client.simulate_delete(f"/v1/exports/{job['id']}", params={"wait": "20"})
    assert result.status_code == 200 and result.json["status"] == "canceled", result.text
    assert time.monotonic() - asked < 2  # killed, not waited for
    assert [cmd for _, cmd in _descendants(os.getpid()) if "soffice" in cmd] == []
    assert api.stored_outputs(job["id"]) == [] and api.events_of(job["id"]) == ["export.canceled"]
