"""One place where a job ends: every outcome writes its terminal record and exactly one event."""

from __future__ import annotations

import io
import time
from pathlib import Path

import redis
from dramatiq import Worker

from actors.broker import EXPORT_QUEUE, build_broker
from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, enqueue_export
from actors.outcomes import INTERNAL_ERROR, JobOutcomes, end_job
from exporters.base import Limits
from storage.jobs import CANCEL_REQUEST, Job, Output, Records, Upload, new_id
from storage.local import LocalStorage
from tests.helpers import jpeg_bytes


def _job(records: Records, storage: LocalStorage, data: bytes) -> Job:
    upload_id = new_id()
    stored = storage.put_stream(f"uploads/{upload_id}", io.BytesIO(data))
    upload = Upload(id=upload_id, filename="photo.jpg", content_type="image/jpeg", size=stored.size,
                    sha256=stored.sha256, created_at=time.time())  # fmt: skip
    job = Job(id=new_id(), format="png", inputs=(upload,), options={}, created_at=time.time())
    records.create_job(job)
    return job


def _events_of(records: Records, job_id: str) -> list[tuple[str, str]]:
    return [(e.type, e.code) for e in records.events() if e.job_id == job_id]


def test_success_and_a_bad_input_each_end_with_one_event(records: Records, storage: LocalStorage) -> None:
    task = ExportTask(records=records, storage=storage, limits=Limits())
    good = _job(records, storage, jpeg_bytes())
    bad = _job(records, storage, b"\xff\xd8\xff\xe0 not really a jpeg")
    for job in (good, bad, good, bad):  # the second deliveries are duplicates
        task(job.id)
    assert _events_of(records, good.id) == [("export.succeeded", "")]
    assert _events_of(records, bad.id) == [("export.failed", "corrupt_input")]
    assert not records.open_job_ids(created_before=time.time() + 1)


class SlowStorage(LocalStorage):
    def fetch(self, key: str, dest: Path) -> None:
        time.sleep(3)
        super().fetch(key, dest)


def test_a_job_over_its_time_limit_ends_once_with_the_limit_named(
    records: Records, redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    storage = SlowStorage(tmp_path / "s")
    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000,
                          extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values()))])  # fmt: skip
    task = ExportTask(records=records, storage=storage, limits=Limits(), time_limit_s=1)
    declare_export_actor(broker, task, time_limit_s=1, max_retries=3)
    broker.emit_after("process_boot")  # starts TimeLimit's watcher, as the pool does
    worker = Worker(broker, queues={EXPORT_QUEUE}, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        job = _job(records, storage, jpeg_bytes())
        enqueue_export(broker, job.id)
        deadline = time.monotonic() + 30
        while not records.get_job(job.id).finished:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # a retry, if one were wrongly made, would start here
    finally:
        worker.stop()
        broker.close()
    ended = records.get_job(job.id)
    assert ended.error is not None and ended.error.code == "time_limit_exceeded"
    assert "(1 s, EXPORTD_JOB_TIME_LIMIT_S)" in ended.error.message
    assert ended.attempts == 1
    assert _events_of(records, job.id) == [("export.failed", "time_limit_exceeded")]


def test_events_older_than_the_retention_are_trimmed(redis_client: redis.Redis, namespace: str) -> None:
    records = Records(redis_client, namespace=namespace, retention_s=1)
    first = Job(id=new_id(), format="png", inputs=(), options={}, created_at=time.time())
    records.create_job(first)
    records.finish_job(first.id)
    time.sleep(1.2)
    second = Job(id=new_id(), format="png", inputs=(), options={}, created_at=time.time())
    records.create_job(second)
    records.finish_job(second.id)
    assert [e.job_id for e in records.events()] == [second.id]
    assert records.events(after=records.events()[0].id) == []


def test_a_running_job_whose_cancel_was_requested_never_succeeds(
    records: Records, storage: LocalStorage
) -> None:
    job = _job(records, storage, jpeg_bytes())
    running = records.start_job(job.id)
    marked = end_job(records, running, cancel=CANCEL_REQUEST)  # DELETE: only marked, its worker stops it
    assert (marked.status, marked.cancel_requested) == ("running", True) and _events_of(records, job.id) == []
    assert end_job(records, job.id, cancel=CANCEL_REQUEST) == marked  # asked twice: nothing more
    output = Output(name="a.png", key=f"outputs/{job.id}/a.png", content_type="image/png", size=1, sha256="0")
    ended = end_job(records, job.id, outputs=(output,))  # the worker finished before its next checkpoint
    assert (ended.status, ended.outputs, ended.error) == ("canceled", (), None)
    assert end_job(records, job.id, error=INTERNAL_ERROR).status == "canceled"  # first finish won
    assert _events_of(records, job.id) == [("export.canceled", "")]


def test_a_queued_job_is_canceled_at_once(records: Records, storage: LocalStorage) -> None:
    job = _job(records, storage, jpeg_bytes())
    ended = end_job(records, job.id, cancel=CANCEL_REQUEST)
    assert ended.status == "canceled" and ended.started_at is None
    assert not records.open_job_ids(created_before=time.time() + 1)
    ExportTask(records=records, storage=storage, limits=Limits())(job.id)  # its message, delivered later
    assert records.get_job(job.id).attempts == 0
    assert _events_of(records, job.id) == [("export.canceled", "")]


def test_a_job_redelivered_after_its_cancel_ends_canceled_without_running(
    records: Records, storage: LocalStorage
) -> None:
    """Canceled while running on a worker that then died: the redelivery stops it before it converts."""
    job = _job(records, storage, jpeg_bytes())
    records.start_job(job.id)
    end_job(records, job.id, cancel=CANCEL_REQUEST)
    ExportTask(records=records, storage=storage, limits=Limits())(job.id)
    ended = records.get_job(job.id)
    assert ended.status == "canceled" and ended.outputs == ()
    assert list(storage.root.glob(f"outputs/{job.id}/*")) == []
    assert _events_of(records, job.id) == [("export.canceled", "")]
