"""Fair scheduling on a real pool that publishes its slots: a worker killed mid-job strands
nothing in a backlog, and the newcomer still gets the freed slots."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

from storage.jobs import Job, Records, Upload, new_id
from storage.local import LocalStorage
from storage.tenants import Quotas, Tenants
from tests.actors import test_pool
from tests.actors.test_pool import PoolProcess, _until
from tests.helpers import jpeg_bytes
from tests.helpers import wait_finished as _wait_finished

pool = test_pool.pool  # the fixture: a real pool process tree


def _submit(records: Records, storage: LocalStorage, tenants: Tenants, broker: object, tenant: str,
            filename: str) -> Job:  # fmt: skip
    """As the API submits: record, the tenant's dispatch, then the message if dispatched."""
    from actors.export import enqueue_export

    upload_id = new_id()
    stored = storage.put_stream(f"uploads/{upload_id}", io.BytesIO(jpeg_bytes(64, 48)))
    upload = Upload(id=upload_id, filename=filename, content_type="image/jpeg", size=stored.size,
                    sha256=stored.sha256, created_at=time.time(), tenant=tenant)  # fmt: skip
    job = Job(id=new_id(), format="png", inputs=(upload,), options={}, created_at=time.time(), tenant=tenant)
    records.create_job(job)
    if tenants.dispatch(tenant, job.id):
        enqueue_export(broker, job.id)
    return job


def test_a_worker_killed_mid_job_strands_nothing_in_a_backlog(
    pool: Callable[..., PoolProcess], records: Records, tmp_path: Path, redis_client: object, namespace: str
) -> None:
    from actors.broker import build_broker
    from actors.capabilities import Availability
    from tests.actors.test_pool import HEARTBEAT_MS

    running = pool(processes=1, threads=1, tenants=True)
    availability = Availability(redis_client, namespace)
    _until(
        lambda: sum(p.slots for p in availability.pools(fresh=True)) == 1, 20, "the pool publishing its slot"
    )
    tenants = Tenants(records, defaults=Quotas(1000, 1000, 1000, 1 << 40), slots=availability.slots)
    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=HEARTBEAT_MS)  # type: ignore[arg-type]
    storage = LocalStorage(tmp_path / "storage")
    a_jobs = [_submit(records, storage, tenants, broker, "a", f"slow-1-a{i}.jpg") for i in range(3)]
    b_jobs = [_submit(records, storage, tenants, broker, "b", f"slow-0.2-b{i}.jpg") for i in range(2)]
    assert tenants.counts("a")["held"] == 2 and tenants.counts("b")["held"] == 2  # one slot: a's first has it
    _until(lambda: records.get_job(a_jobs[0].id).status == "running", 30, "a's first job running")
    (child,) = running.children()
    child.kill()  # SIGKILL mid-job: its message returns after the heartbeat timeout and a sweep
    done = {j.id: _wait_finished(records, j.id, 90) for j in [*a_jobs, *b_jobs]}
    assert {d.status for d in done.values()} == {"succeeded"}
    assert done[a_jobs[0].id].attempts == 2
    assert tenants.held_job_ids() == set()
    assert tenants.counts("a")["dispatched"] == 0 and tenants.counts("b")["dispatched"] == 0
    # When a's first job ended, b (no slot yet) took the freed slot before a's second.
    order = sorted(done.values(), key=lambda j: j.finished_at or 0)
    assert order[1].tenant == "b", [j.tenant for j in order]
