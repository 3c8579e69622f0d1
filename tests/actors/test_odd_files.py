"""Odd files through a real worker pool (real Redis, local storage, the real converters): whatever a
decoder raises on a file ends the job at once as corrupt_input, never retried, never dead-lettered."""

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
from storage.jobs import Job, Records, Upload, new_id
from storage.local import LocalStorage
from tests.helpers import wait_finished as _wait

PILLOW = Path(__file__).parent.parent / "fixtures" / "pillow"


@pytest.fixture
def broker(
    records: Records, storage: LocalStorage, redis_client: redis.Redis, namespace: str
) -> Iterator[Any]:
    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000,
                          extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values()))])  # fmt: skip
    task = ExportTask(records=records, storage=storage, limits=Limits())
    declare_export_actor(broker, task, time_limit_s=30, max_retries=3)
    worker = Worker(broker, queues={EXPORT_QUEUE}, worker_threads=1, worker_timeout=50)
    worker.start()
    yield broker
    worker.stop()
    broker.close()


def _job(records: Records, storage: LocalStorage, path: Path, content_type: str, fmt: str) -> Job:
    upload_id = new_id()
    stored = storage.put_stream(f"uploads/{upload_id}", io.BytesIO(path.read_bytes()))
    upload = Upload(id=upload_id, filename=path.name, content_type=content_type, size=stored.size,
                    sha256=stored.sha256, created_at=time.time())  # fmt: skip
    job = Job(id=new_id(), format=fmt, inputs=(upload,), options={}, created_at=time.time())
    records.create_job(job)
    return job


@pytest.mark.parametrize("fmt", ["png", "pdf"])
@pytest.mark.parametrize(
    "name", ["crash-2020-10-test.tif", "crash-63b1dffefc8c075ddc606c0a2f5fdc15ece78863.tif"]
)
def test_a_tiff_pillow_fails_on_with_a_type_error_fails_once_as_corrupt_input(
    name: str, fmt: str, records: Records, storage: LocalStorage, broker: Any, redis_client: redis.Redis,
    namespace: str,
) -> None:  # fmt: skip
    job = _job(records, storage, PILLOW / name, "image/tiff", fmt)

    enqueue_export(broker, job.id)
    done = _wait(records, job.id)

    assert done.status == "failed" and done.error is not None
    assert done.error.code == "corrupt_input"
    assert done.error.message.startswith(
        f'"{name}" cannot be read as a TIFF image: it is damaged or incomplete'
    )
    assert done.attempts == 1  # not retried
    assert redis_client.zcard(f"{namespace}:dramatiq:{EXPORT_QUEUE}.XQ") == 0  # nothing dead-lettered


def test_an_album_with_a_broken_jpeg_succeeds(records: Records, storage: LocalStorage, broker: Any) -> None:
    job = _job(records, storage, PILLOW / "junk_jpeg_header.jpg", "image/jpeg", "pdf")

    enqueue_export(broker, job.id)
    done = _wait(records, job.id)

    assert done.status == "succeeded", done.error
