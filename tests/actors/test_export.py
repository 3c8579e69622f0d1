"""The export actor on a real Redis, real local storage and real converters."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from dramatiq import Worker

from actors.broker import EXPORT_QUEUE, build_broker
from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, enqueue_export
from actors.outcomes import JobOutcomes
from exporters.base import Limits
from storage.base import StorageUnavailable
from storage.jobs import Job, Records, Upload, new_id
from storage.local import LocalStorage
from tests.helpers import jpeg_bytes
from tests.helpers import wait_finished as _wait


def _job(records: Records, storage: LocalStorage, data: bytes, fmt: str = "png") -> Job:
    upload_id = new_id()
    stored = storage.put_stream(f"uploads/{upload_id}", io.BytesIO(data))
    upload = Upload(id=upload_id, filename="photo.jpg", content_type="image/jpeg", size=stored.size,
                    sha256=stored.sha256, created_at=time.time())  # fmt: skip
    job = Job(id=new_id(), format=fmt, inputs=(upload,), options={}, created_at=time.time())
    records.create_job(job)
    return job


def test_running_a_job_twice_gives_the_same_visible_result(records: Records, storage: LocalStorage) -> None:
    task = ExportTask(records=records, storage=storage, limits=Limits())
    job = _job(records, storage, jpeg_bytes(), fmt="pdf")
    task(job.id)
    first = records.get_job(job.id)
    assert first.status == "succeeded"
    (out,) = first.outputs
    first_bytes = storage.open(out.key).read()
    task(job.id)  # a duplicate delivery
    assert records.get_job(job.id) == first
    assert storage.open(out.key).read() == first_bytes


def test_a_job_interrupted_mid_run_completes_on_redelivery(records: Records, storage: LocalStorage) -> None:
    task = ExportTask(records=records, storage=storage, limits=Limits())
    job = _job(records, storage, jpeg_bytes(), fmt="pdf")
    records.start_job(job.id)  # attempt 1 started, then its worker died
    task(job.id)
    done = records.get_job(job.id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    # Outputs are deterministic, so a rerun overwrites them with the same bytes.
    twin = _job(records, storage, jpeg_bytes(), fmt="pdf")
    task(twin.id)
    assert records.get_job(twin.id).outputs[0].sha256 == done.outputs[0].sha256


def test_missing_record_and_missing_input(records: Records, storage: LocalStorage) -> None:
    task = ExportTask(records=records, storage=storage, limits=Limits())
    task("no-such-job")  # past its retention: nothing to do, no error
    job = _job(records, storage, jpeg_bytes())
    storage.delete(job.inputs[0].key)
    task(job.id)
    failed = records.get_job(job.id)
    assert failed.status == "failed" and failed.error is not None and failed.error.code == "input_missing"


class FlakyStorage(LocalStorage):
    """Real local storage whose reads fail the first `failures` times: a storage outage, injected."""

    def __init__(self, root: Path, failures: int, error: Exception) -> None:
        super().__init__(root)
        self.failures = failures
        self.error = error

    def fetch(self, key: str, dest: Path) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        super().fetch(key, dest)


@pytest.fixture
def pool_for(records: Records, redis_client: redis.Redis, namespace: str) -> Iterator[Any]:
    started: list[tuple[Any, Worker]] = []

    def start(storage: LocalStorage, max_retries: int) -> Any:
        broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000,
                              extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values()))])  # fmt: skip
        task = ExportTask(records=records, storage=storage, limits=Limits())
        declare_export_actor(broker, task, time_limit_s=30, max_retries=max_retries)
        worker = Worker(broker, queues={EXPORT_QUEUE}, worker_threads=1, worker_timeout=50)
        worker.start()
        started.append((broker, worker))
        return broker

    yield start
    for broker, worker in started:
        worker.stop()
        broker.close()


def test_transient_storage_fault_is_retried_with_backoff(
    records: Records, tmp_path: Path, pool_for: Any
) -> None:
    storage = FlakyStorage(tmp_path / "s", failures=1, error=StorageUnavailable("disk went away"))
    broker = pool_for(storage, 3)
    job = _job(records, storage, jpeg_bytes())
    enqueue_export(broker, job.id)
    done = _wait(records, job.id)
    assert (done.status, done.attempts) == ("succeeded", 2)


def test_a_bug_fails_the_job_as_internal_error_after_its_retries(
    records: Records, tmp_path: Path, pool_for: Any, redis_client: redis.Redis, namespace: str
) -> None:
    storage = FlakyStorage(tmp_path / "s", failures=99, error=RuntimeError("a bug"))
    broker = pool_for(storage, 1)
    job = _job(records, storage, jpeg_bytes())
    enqueue_export(broker, job.id)
    done = _wait(records, job.id)
    assert done.status == "failed" and done.error is not None
    assert done.error.code == "internal_error"
    assert "a bug" not in done.error.message  # no internals leak to clients
    assert done.attempts == 2
    # The message is kept in Dramatiq's dead letters for operators.
    dead = redis_client.zcard(f"{namespace}:dramatiq:{EXPORT_QUEUE}.XQ")
    assert dead == 1
    # Dead-lettered after its retries: it ended once, with one event.
    assert [(e.job_id, e.type, e.code) for e in records.events()] == [
        (job.id, "export.failed", "internal_error")
    ]


def test_a_job_that_crashed_its_worker_twice_is_failed_not_run_again(
    records: Records, storage: LocalStorage
) -> None:
    task = ExportTask(records=records, storage=storage, limits=Limits())
    job = _job(records, storage, jpeg_bytes())
    for _ in range(2):  # attempts whose process crashed, as the pool supervisor records them
        records.start_job(job.id)
        records.note_crash(job.id)
    task(job.id)  # the third delivery
    failed = records.get_job(job.id)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "worker_crashed"
    assert failed.outputs == () and not list(storage.list_keys("outputs/"))


def test_attempts_cut_off_from_outside_are_not_counted_as_crashes(
    records: Records, storage: LocalStorage
) -> None:
    task = ExportTask(records=records, storage=storage, limits=Limits())
    job = _job(records, storage, jpeg_bytes())
    for _ in range(3):  # attempts whose process was killed by an operator: nothing was recorded
        records.start_job(job.id)
    task(job.id)
    done = records.get_job(job.id)
    assert (done.status, done.attempts, done.crashes) == ("succeeded", 4, 0)


def test_retries_after_exceptions_are_not_mistaken_for_crashes(
    records: Records, storage: LocalStorage
) -> None:
    task = ExportTask(records=records, storage=storage, limits=Limits())
    job = _job(records, storage, jpeg_bytes())
    for _ in range(3):  # three attempts that raised (e.g. storage outage) and were requeued
        records.start_job(job.id)
        records.requeue_job(job.id)
    task(job.id)
    done = records.get_job(job.id)
    assert (done.status, done.attempts) == ("succeeded", 4)


def test_running_out_of_memory_fails_at_once_without_retry(records: Records, tmp_path: Path) -> None:
    storage = FlakyStorage(tmp_path / "s", failures=1, error=MemoryError())
    task = ExportTask(records=records, storage=storage, limits=Limits())
    job = _job(records, storage, jpeg_bytes())
    task(job.id)  # returns normally: nothing for Dramatiq to retry
    failed = records.get_job(job.id)
    assert failed.status == "failed" and failed.error is not None
    assert (failed.error.code, failed.attempts) == ("input_too_large", 1)


def test_a_job_stored_before_record_keys_carried_the_tenant_still_runs(
    records: Records, storage: LocalStorage
) -> None:
    # Its message carries the id alone, and its record has no id → tenant index entry: it is found
    # under `{ns}:job:{id}`, started and finished there.
    task = ExportTask(records=records, storage=storage, limits=Limits())
    job = _job(records, storage, jpeg_bytes(), fmt="pdf")
    records.redis.rename(records.job_key(job.tenant, job.id), records.legacy_job_key(job.id))
    records.redis.delete(records.job_tenant_key(job.id))
    task(job.id)
    done = records.get_job(job.id)
    assert (done.status, done.attempts) == ("succeeded", 1)
    assert records.redis.exists(records.legacy_job_key(job.id)) == 1
    assert records.redis.exists(records.job_key(job.tenant, job.id)) == 0
