"""Redis dies while jobs run: no job is left open with nothing behind it (a private Redis, killed for real)."""

from __future__ import annotations

import io
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from dramatiq import Worker

from actors.broker import EXPORT_QUEUE, build_broker
from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, enqueue_export
from actors.outcomes import JobOutcomes
from exporters.base import Limits
from service.cli import start_local_redis
from storage.jobs import Job, Records, RecordsUnavailable, Upload, new_id
from storage.local import LocalStorage
from tests.helpers import jpeg_bytes


class SlowStorage(LocalStorage):
    """Real local storage whose reads take a while, so that Redis can die while a job runs."""

    def fetch(self, key: str, dest: Path) -> None:
        time.sleep(1.5)
        super().fetch(key, dest)


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    data_dir = Path(tmp_path_factory.mktemp("outage", numbered=True))
    proc, url = start_local_redis(data_dir)
    state: dict[str, object] = {"proc": proc, "url": url, "dir": data_dir}
    yield state
    current = state["proc"]
    current.terminate()  # type: ignore[attr-defined]
    current.wait(10)  # type: ignore[attr-defined]


def _get(records: Records, job_id: str) -> Job | None:
    try:
        return records.get_job(job_id)
    except RecordsUnavailable:
        return None


def test_a_job_whose_finish_meets_a_dead_redis_is_retried_once_redis_is_back(
    private_redis: dict[str, object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(str(private_redis["url"]), socket_connect_timeout=1, socket_timeout=2)
    records = Records(client, namespace="outage", retention_s=3600)
    storage = SlowStorage(tmp_path / "s")
    broker = build_broker(client, namespace="outage", heartbeat_timeout_ms=30_000,
                          extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values()))])  # fmt: skip
    declare_export_actor(broker, ExportTask(records=records, storage=storage, limits=Limits()),
                         time_limit_s=30, max_retries=5)  # fmt: skip
    worker = Worker(broker, queues={EXPORT_QUEUE}, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        jobs = []
        for i in range(2):
            upload_id = new_id()
            stored = storage.put_stream(f"uploads/{upload_id}", io.BytesIO(jpeg_bytes(64, 48)))
            upload = Upload(id=upload_id, filename=f"{i}.jpg", content_type="image/jpeg", size=stored.size,
                            sha256=stored.sha256, created_at=time.time())  # fmt: skip
            job = Job(id=new_id(), format="png", inputs=(upload,), options={}, created_at=time.time())
            records.create_job(job)
            enqueue_export(broker, job.id)
            jobs.append(job)
        deadline = time.monotonic() + 20
        while not all((j := _get(records, job.id)) and j.status == "running" for job in jobs):
            assert time.monotonic() < deadline, "the jobs did not start"
            time.sleep(0.02)
        caplog.set_level(logging.INFO, logger="exportd.export")
        proc = private_redis["proc"]
        proc.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]  # while both jobs convert
        proc.wait(10)  # type: ignore[attr-defined]
        time.sleep(3)  # the conversions end, and their finish meets a dead Redis
        claimed_while_down = [r for r in caplog.records if "retry is scheduled" in r.getMessage()]
        assert claimed_while_down == []  # nothing claims a retry that could not be made
        restarted, _ = start_local_redis(Path(str(private_redis["dir"])))  # the same AOF and socket
        private_redis["proc"] = restarted
        deadline = time.monotonic() + 40
        while True:
            done = [_get(records, job.id) for job in jobs]
            if all(d is not None and d.finished for d in done):
                break
            assert time.monotonic() < deadline, f"jobs left open: {done}"
            time.sleep(0.1)
        assert [(d.status, d.attempts) for d in done if d] == [("succeeded", 2)] * 2
        assert [r for r in caplog.records if "retry is scheduled" in r.getMessage()]
    finally:
        worker.stop()
        broker.close()
