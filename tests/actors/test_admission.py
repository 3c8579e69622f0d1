"""Memory admission on a real Redis, real local storage, real headers and real converters."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from dramatiq import Worker

from actors.admission import (
    PROCESS_BASE_BYTES,
    SUPERVISOR_BYTES,
    MemoryAdmission,
    MemoryBudget,
    container_memory_limit,
    worker_budget_bytes,
)
from actors.broker import EXPORT_QUEUE, build_broker
from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, enqueue_export
from actors.outcomes import JobOutcomes
from exporters.base import Limits
from exporters.estimate import MiB
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


@pytest.fixture
def pool_with(
    records: Records, storage: LocalStorage, redis_client: redis.Redis, namespace: str
) -> Iterator[Any]:
    """Starts a one-process worker (two threads) whose jobs are admitted against `budget`."""
    started: list[tuple[Any, Worker]] = []

    def start(budget: MemoryBudget) -> Any:
        admission = MemoryAdmission(budget, records_for=lambda: records, storage=storage, limits=Limits())
        broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000,
                              extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values())), admission])  # fmt: skip
        task = ExportTask(records=records, storage=storage, limits=Limits())
        declare_export_actor(broker, task, time_limit_s=30, max_retries=3)
        worker = Worker(broker, queues={EXPORT_QUEUE}, worker_threads=2, worker_timeout=50)
        worker.start()
        started.append((broker, worker))
        return broker

    yield start
    for broker, worker in started:
        worker.stop()
        broker.close()


def test_a_job_waiting_for_memory_stays_queued_then_runs(
    records: Records, storage: LocalStorage, pool_with: Any
) -> None:
    budget = MemoryBudget(200 * MiB)
    broker = pool_with(budget)
    budget.acquire(190 * MiB)  # another job holds most of this process's memory
    job = _job(records, storage, jpeg_bytes(2000, 1500))  # about 32 MiB estimated
    enqueue_export(broker, job.id)
    time.sleep(1.5)
    waiting = records.get_job(job.id)
    assert (waiting.status, waiting.attempts) == ("queued", 0)
    assert budget.used_bytes == 190 * MiB
    budget.release(190 * MiB)  # that job finished
    done = _wait(records, job.id)
    assert done.status == "succeeded", done.error
    assert budget.used_bytes == 0  # given back after the job


def test_a_job_that_can_never_fit_fails_as_input_too_large_with_the_figures(
    records: Records, storage: LocalStorage, pool_with: Any
) -> None:
    broker = pool_with(MemoryBudget(20 * MiB))
    job = _job(records, storage, jpeg_bytes(2000, 1500))
    enqueue_export(broker, job.id)
    failed = _wait(records, job.id)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "input_too_large"
    assert "needs about 32 MiB (2000×1500 pixels, RGB)" in failed.error.message
    assert "a worker has 20 MiB" in failed.error.message
    assert failed.attempts == 0  # never started, never retried


def test_jobs_that_fit_together_run_together_and_the_rest_wait_their_turn() -> None:
    budget = MemoryBudget(100 * MiB)
    budget.acquire(60 * MiB)
    order: list[str] = []

    def take(name: str, nbytes: int) -> None:
        budget.acquire(nbytes)
        order.append(name)

    big = threading.Thread(target=take, args=("big", 90 * MiB))
    big.start()
    time.sleep(0.2)
    small = threading.Thread(target=take, args=("small", 10 * MiB))
    small.start()
    time.sleep(0.2)
    # The small one would fit now, but the big one came first: it is not overtaken.
    assert order == [] and budget.used_bytes == 60 * MiB
    budget.release(60 * MiB)
    big.join(5)
    small.join(5)
    assert order == ["big", "small"] and budget.used_bytes == 100 * MiB
    with pytest.raises(ValueError):
        budget.acquire(101 * MiB)


def test_the_budget_comes_from_the_cgroup_v2_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("2147483648\n")
    limit = container_memory_limit(tmp_path)
    assert limit == 2 * 1024 * MiB
    per_process = worker_budget_bytes(override_bytes=0, processes=2, limit_bytes=limit)
    assert per_process == (2048 * MiB - SUPERVISOR_BYTES) // 2 - PROCESS_BASE_BYTES


def test_the_budget_comes_from_the_cgroup_v1_limit_and_unlimited_means_none(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("1073741824\n")
    assert container_memory_limit(tmp_path) == 1024 * MiB
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert container_memory_limit(tmp_path) is None
    (tmp_path / "memory.max").write_text("max\n")
    assert container_memory_limit(tmp_path) is None


def test_the_setting_overrides_the_cgroup() -> None:
    assert worker_budget_bytes(override_bytes=300 * MiB, processes=4, limit_bytes=1024 * MiB) == 300 * MiB


# A worker process in miniature: keep_large_buffers() first, as pool.py does, then four Dramatiq
# threads run big jobs side by side through MemoryAdmission; prints its anonymous memory at the
# start and once idle, in MiB.
_WORKER = r"""
import sys, time
from pathlib import Path
from actors.memory import keep_large_buffers
keep_large_buffers()
import redis
from dramatiq import Worker
from actors.admission import MemoryAdmission, MemoryBudget
from actors.broker import EXPORT_QUEUE, build_broker
from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, enqueue_export
from actors.outcomes import JobOutcomes
from exporters.base import Limits
from storage.jobs import Job, Records, Upload, new_id
from storage.local import LocalStorage

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) // 1024

redis_url, namespace, root, picture = sys.argv[1:5]
client = redis.Redis.from_url(redis_url)
records = Records(client, namespace=namespace, retention_s=600)
storage = LocalStorage(Path(root))
admission = MemoryAdmission(MemoryBudget(4 << 30), records_for=lambda: records, storage=storage, limits=Limits())
broker = build_broker(client, namespace=namespace, heartbeat_timeout_ms=30_000,
                      extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values())), admission])
declare_export_actor(broker, ExportTask(records=records, storage=storage, limits=Limits()), time_limit_s=120, max_retries=0)
worker = Worker(broker, queues={EXPORT_QUEUE}, worker_threads=4, worker_timeout=50)
worker.start()
start = anon()
ids = []
for options in [{}, {"width": 2000}] * 4:
    upload_id = new_id()
    stored = storage.put_file(f"uploads/{upload_id}", Path(picture))
    upload = Upload(id=upload_id, filename="deep.png", content_type="image/png", size=stored.size,
                    sha256=stored.sha256, created_at=time.time())
    job = Job(id=new_id(), format="jpeg", inputs=(upload,), options=options, created_at=time.time())
    records.create_job(job)
    enqueue_export(broker, job.id)
    ids.append(job.id)
while not all(records.get_job(i).finished for i in ids):
    time.sleep(0.1)
assert all(records.get_job(i).status == "succeeded" for i in ids)
time.sleep(0.5)
print(start, anon())
worker.stop()
broker.close()
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="memory is read from /proc (Linux)")
def test_an_idle_worker_process_gives_back_the_memory_of_its_big_jobs(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    from benchmarks.memory import write_png16

    picture = tmp_path / "deep.png"
    write_png16(picture, 4000, 4000, channels=4)  # 64 MB decoded
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", _WORKER, redis_url, namespace, str(tmp_path / "storage"), str(picture)],
        capture_output=True, text=True, cwd=root, check=True, timeout=300,
    )  # fmt: skip
    start_mib, idle_mib = (int(v) for v in result.stdout.split()[-2:])
    # Eight jobs of 64 MB pixels (four resized, each peaking near 250 MB) in four threads: each
    # thread's malloc arena kept up to 64 MiB once idle (+186 MiB here; in a pod's two processes
    # 313 and 254 MiB), which malloc_trim cannot return; with one arena, it returns all of it.
    assert idle_mib - start_mib < 40, f"idle at {idle_mib} MiB, from {start_mib} MiB"
