"""The worker pool as a real process tree on a real Redis: kills from outside, real crashes, the sweeper."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis

from actors.broker import EXPORT_QUEUE, build_broker
from actors.export import ACTOR_OF_QUEUE, MAX_CRASHED_ATTEMPTS
from actors.running import RunningJob, blame
from actors.sweeper import Sweeper
from storage.jobs import Job, Records, Upload, new_id
from storage.local import LocalStorage
from tests.helpers import jpeg_bytes
from tests.helpers import wait_finished as _wait_finished

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_MS = 2000
SWEEP_S = 1


def _submit(records: Records, storage: LocalStorage, broker: object, filename: str) -> Job:
    upload_id = new_id()
    stored = storage.put_stream(f"uploads/{upload_id}", io.BytesIO(jpeg_bytes(64, 48)))
    upload = Upload(id=upload_id, filename=filename, content_type="image/jpeg", size=stored.size,
                    sha256=stored.sha256, created_at=time.time())  # fmt: skip
    job = Job(id=new_id(), format="png", inputs=(upload,), options={}, created_at=time.time())
    records.create_job(job)
    from actors.export import enqueue_export

    enqueue_export(broker, job.id)
    return job


def _until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class PoolProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()


@pytest.fixture
def pool(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Callable[..., PoolProcess]]:
    started: list[PoolProcess] = []

    def start(
        *, processes: int = 1, threads: int = 2, grace_s: float = 60, tenants: bool = False
    ) -> PoolProcess:
        config = {
            "redis_url": redis_url, "namespace": namespace, "storage": str(tmp_path / "storage"),
            "run_dir": str(tmp_path / "run"), "heartbeat_ms": HEARTBEAT_MS, "sweep_s": SWEEP_S,
            "processes": processes, "threads": threads, "grace_s": grace_s, "tenants": tenants,
        }  # fmt: skip
        log = tmp_path / "pool.log"
        proc = subprocess.Popen([sys.executable, "-m", "tests.actors.pool_main", json.dumps(config)], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip
        started.append(PoolProcess(proc, log))
        _until(lambda: len(started[-1].children()) == processes, 20, "the pool's processes")
        return started[-1]

    yield start
    for p in started:
        p.proc.send_signal(signal.SIGTERM)
        p.proc.wait(30)


@pytest.fixture
def broker(redis_client: redis.Redis, namespace: str) -> object:
    return build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=HEARTBEAT_MS)


def test_jobs_killed_from_outside_twice_are_not_blamed_and_succeed(
    pool: Callable[..., PoolProcess], records: Records, tmp_path: Path, broker: object
) -> None:
    """An operator's SIGKILL (a node drain, a short grace period) is not the file's fault."""
    running = pool(processes=1, threads=2)
    storage = LocalStorage(tmp_path / "storage")
    jobs = [_submit(records, storage, broker, f"slow-3-{i}.jpg") for i in range(2)]
    for kills in range(1, MAX_CRASHED_ATTEMPTS + 2):
        _until(
            lambda k=kills: all(records.get_job(j.id).attempts == k for j in jobs),
            30,
            f"attempt {kills} running",
        )
        (victim,) = running.children()
        victim.kill()  # SIGKILL from outside, while both valid jobs run
        victim.wait(10)
        _until(
            lambda v=victim: bool(running.children()) and running.children()[0].pid != v.pid,
            30,
            "a new process",
        )
    done = [_wait_finished(records, j.id, 60) for j in jobs]
    assert [(d.status, d.crashes, d.attempts) for d in done] == [
        ("succeeded", 0, MAX_CRASHED_ATTEMPTS + 2)
    ] * 2
    # Killed mid-job three times, each job ended once: one event each in the stream.
    ids = {j.id for j in jobs}
    events = sorted((e.job_id, e.type, e.code) for e in records.events() if e.job_id in ids)
    assert events == sorted((j.id, "export.succeeded", "") for j in jobs)


def test_a_job_that_segfaults_twice_fails_and_its_neighbour_is_not_blamed(
    pool: Callable[..., PoolProcess], records: Records, tmp_path: Path, broker: object
) -> None:
    pool(processes=1, threads=2)
    storage = LocalStorage(tmp_path / "storage")
    neighbour = _submit(records, storage, broker, "slow-2-ok.jpg")
    _until(lambda: records.get_job(neighbour.id).status == "running", 30, "the neighbour running")
    crasher = _submit(records, storage, broker, "segv.jpg")
    failed = _wait_finished(records, crasher.id, 60)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "worker_crashed"
    assert failed.crashes == MAX_CRASHED_ATTEMPTS
    done = _wait_finished(records, neighbour.id, 60)
    assert (done.status, done.crashes) == ("succeeded", 0)
    events = {e.job_id: (e.type, e.code) for e in records.events()}
    assert events == {crasher.id: ("export.failed", "worker_crashed"), neighbour.id: ("export.succeeded", "")}


def test_a_dead_workers_job_returns_within_heartbeat_and_sweep(
    pool: Callable[..., PoolProcess], records: Records, tmp_path: Path, broker: object
) -> None:
    """Dramatiq alone requeues a dead worker's messages on a random 0.1 % of its commands."""
    running = pool(processes=1, threads=1)
    storage = LocalStorage(tmp_path / "storage")
    job = _submit(records, storage, broker, "slow-1-a.jpg")
    _until(lambda: records.get_job(job.id).status == "running", 30, "the job running")
    (child,) = running.children()
    child.kill()
    killed_at = time.monotonic()
    _until(lambda: records.get_job(job.id).attempts == 2, 60, "the job's second attempt")
    returned_after = time.monotonic() - killed_at
    # The bound the README documents: heartbeat timeout + one sweep interval (+ a poll and restart).
    assert returned_after <= HEARTBEAT_MS / 1000 + SWEEP_S + 3, returned_after
    assert _wait_finished(records, job.id, 30).status == "succeeded"


def test_the_sweeper_requeues_an_open_job_with_no_message(
    pool: Callable[..., PoolProcess], records: Records, tmp_path: Path
) -> None:
    pool(processes=1, threads=1, grace_s=0)
    storage = LocalStorage(tmp_path / "storage")
    upload_id = new_id()
    stored = storage.put_stream(f"uploads/{upload_id}", io.BytesIO(jpeg_bytes(64, 48)))
    upload = Upload(id=upload_id, filename="lost.jpg", content_type="image/jpeg", size=stored.size,
                    sha256=stored.sha256, created_at=time.time())  # fmt: skip
    job = Job(id=new_id(), format="png", inputs=(upload,), options={}, created_at=time.time() - 1)
    records.create_job(job)  # its message was lost (never queued)
    done = _wait_finished(records, job.id, 30)
    assert (done.status, done.sweeps) == ("succeeded", 1)


def test_sweeper_leaves_jobs_with_messages_and_fails_a_job_lost_too_often(
    records: Records, redis_client: redis.Redis, namespace: str
) -> None:
    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=HEARTBEAT_MS)
    sweeper = Sweeper(records=records, broker=broker, actor_of_queue=ACTOR_OF_QUEUE, interval_s=0.001,
                      grace_s=10, max_sweeps=2)  # fmt: skip
    now = time.time()
    queued = Job(id=new_id(), format="png", inputs=(), options={}, created_at=now - 60)
    lost = Job(id=new_id(), format="png", inputs=(), options={}, created_at=now - 60)
    young = Job(id=new_id(), format="png", inputs=(), options={}, created_at=now)
    for job in (queued, lost, young):
        records.create_job(job)
    from actors.export import enqueue_export

    enqueue_export(broker, queued.id)
    msgs = f"{namespace}:dramatiq:{EXPORT_QUEUE}.msgs"
    for sweep in range(1, 4):
        time.sleep(0.002)  # past the lock of the sweep before
        report = sweeper.sweep(now=now)
        assert report is not None
        assert report.checked == 2  # the young job is not judged yet
        if sweep <= 2:
            assert (report.requeued, report.failed) == (1, 0)
            assert records.get_job(lost.id).sweeps == sweep
            redis_client.delete(msgs, f"{namespace}:dramatiq:{EXPORT_QUEUE}")  # lost again
            enqueue_export(broker, queued.id)
        else:
            assert (report.requeued, report.failed) == (0, 1)
    gone = records.get_job(lost.id)
    assert gone.status == "failed" and gone.error is not None and gone.error.code == "internal_error"
    assert [(e.job_id, e.type, e.code) for e in records.events()] == [
        (lost.id, "export.failed", "internal_error")
    ]
    assert records.get_job(queued.id).sweeps == 0
    assert lost.id not in records.open_job_ids(created_before=now)


def test_blame_follows_how_the_process_died() -> None:
    a, b = RunningJob("a", thread=1, estimated_bytes=900), RunningJob("b", thread=2, estimated_bytes=100)
    segv, kill, term = -int(signal.SIGSEGV), -int(signal.SIGKILL), -int(signal.SIGTERM)
    assert blame([a, b], exitcode=segv, oom_killed=False, crashed=2) == ["b"]
    assert blame([a, b], exitcode=segv, oom_killed=False, crashed=None) == ["a", "b"]
    assert blame([a, b], exitcode=kill, oom_killed=False, crashed=None) == []
    assert blame([a, b], exitcode=kill, oom_killed=True, crashed=None) == ["a"]
    assert blame([a, RunningJob("c", 3, 900)], exitcode=kill, oom_killed=True, crashed=None) == []
    assert blame([a, b], exitcode=term, oom_killed=False, crashed=None) == []
    assert blame([a], exitcode=1, oom_killed=True, crashed=None) == []
