"""Fair scheduling between tenants, on a real Redis and a real worker pool (prints figures; not a test).

Tenant A submits --jobs photo conversions (a JPEG to PNG of about 100 ms each); one second later
tenant B submits 5. Printed for exportd's per-tenant backlogs (each tenant at most --max-running
jobs dispatched, by default the pool's slots) and, in the same run, for a FIFO queue (the same
pool with max_running unbounded, which is what exportd did before tenants):

- one job's duration on the idle pool (submit to finish, median of 9): the unit;
- when B's last job finished after B submitted, in that unit (goal: at most 3);
- A's total time, submit to its last finish, and how much it grew against FIFO (goal: under 5 %).

Jobs are submitted the way the API does it (record, then the tenant's dispatch, then the message),
without HTTP in between: what is measured is the scheduling.

    python benchmarks/fairness.py [--jobs 500] [--processes 2] [--threads 1] [--side 800] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors.broker import build_broker, build_redis  # noqa: E402
from actors.export import enqueue_export  # noqa: E402
from service.cli import start_local_redis  # noqa: E402
from storage.jobs import Job, Records, Upload, new_id  # noqa: E402
from storage.local import LocalStorage  # noqa: E402
from storage.tenants import Quotas, Tenants  # noqa: E402

KEYS = "bench:" + "b" * 40
UNBOUNDED = 1_000_000


def _photo(side: int) -> bytes:
    im = Image.linear_gradient("L").resize((side, side * 3 // 4)).convert("RGB")
    im = Image.merge("RGB", (im.getchannel(0), im.rotate(90).getchannel(0), im.getchannel(0)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


class Run:
    def __init__(self, redis_url: str, data_dir: Path, *, max_running: int, processes: int, threads: int,
                 photo: bytes) -> None:  # fmt: skip
        self.namespace = f"bench-fair-{random.randrange(1 << 30)}"
        self.client = build_redis(redis_url)
        self.records = Records(self.client, namespace=self.namespace, retention_s=3600)
        self.broker = build_broker(self.client, namespace=self.namespace, heartbeat_timeout_ms=30_000)
        self.tenants = Tenants(self.records, defaults=Quotas(UNBOUNDED, UNBOUNDED, max_running, 1 << 60))
        storage = LocalStorage(data_dir / "storage")
        self.uploads = {}
        for tenant in ("a", "b"):
            stored = storage.put_stream(f"uploads/{new_id()}", io.BytesIO(photo))
            self.uploads[tenant] = Upload(id=stored.key.split("/")[1], filename="photo.jpg",
                                          content_type="image/jpeg", size=stored.size, sha256=stored.sha256,
                                          created_at=time.time(), tenant=tenant)  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPORTD_ENV": "production", "EXPORTD_SIGNING_KEYS": KEYS,
               "EXPORTD_REDIS_URL": redis_url, "EXPORTD_REDIS_NAMESPACE": self.namespace,
               "EXPORTD_DATA_DIR": str(data_dir), "EXPORTD_WORKER_PROCESSES": str(processes),
               "EXPORTD_WORKER_THREADS": str(threads), "EXPORTD_TENANT_MAX_RUNNING": str(max_running),
               "EXPORTD_LOG_LEVEL": "WARNING", "EXPORTD_WORKER_METRICS_PORT": "0"}  # fmt: skip
        self.pool = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env, cwd=ROOT)
        deadline = time.monotonic() + 30
        while self.client.zcard(f"{self.namespace}:dramatiq:__heartbeats__") < processes:
            if time.monotonic() > deadline:
                raise RuntimeError("worker pool did not start")
            time.sleep(0.05)

    def submit(self, tenant: str) -> tuple[str, float]:
        job = Job(id=new_id(), format="png", inputs=(self.uploads[tenant],), options={}, created_at=time.time(),
                  tenant=tenant)  # fmt: skip
        self.records.create_job(job)
        if self.tenants.dispatch(tenant, job.id):
            enqueue_export(self.broker, job.id)
        return job.id, job.created_at

    def wait_all(self, ids: list[str]) -> list[Job]:
        pending = set(ids)
        while pending:
            done = {i for i in pending if self.records.get_job(i).finished}
            pending -= done
            time.sleep(0.01)
        jobs = [self.records.get_job(i) for i in ids]
        assert all(j.status == "succeeded" for j in jobs), [j.error for j in jobs if j.error][:3]
        return jobs

    def idle_job_s(self, samples: int = 9) -> float:
        durations = []
        for _ in range(samples):
            job_id, submitted = self.submit("b")
            (job,) = self.wait_all([job_id])
            durations.append((job.finished_at or 0) - submitted)
        return statistics.median(durations)

    def contended(self, jobs: int) -> tuple[float, float]:
        """(B's last finish after B's submit, A's total time) in seconds."""
        began = time.time()
        a_ids = [self.submit("a")[0] for _ in range(jobs)]
        time.sleep(max(0.0, began + 1.0 - time.time()))
        b_submitted = time.time()
        b_ids = [self.submit("b")[0] for _ in range(5)]
        b_jobs = self.wait_all(b_ids)
        a_jobs = self.wait_all(a_ids)
        b_wait = max(j.finished_at or 0 for j in b_jobs) - b_submitted
        a_total = max(j.finished_at or 0 for j in a_jobs) - began
        return b_wait, a_total

    def close(self) -> None:
        self.pool.send_signal(signal.SIGTERM)
        self.pool.wait(60)
        keys = list(self.client.scan_iter(f"{self.namespace}:*", count=1000))
        if keys:
            self.client.delete(*keys)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", help="use this Redis instead of starting a private one")
    parser.add_argument("--jobs", type=int, default=500, help="tenant A's batch")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--max-running", type=int, default=0, help="tenant's dispatched jobs (0: the pool's slots)"
    )
    parser.add_argument("--side", type=int, default=800, help="photo width in px (sets one job's duration)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each scheduling")
    args = parser.parse_args()
    max_running = args.max_running or args.processes * args.threads
    photo = _photo(args.side)

    # FIFO and the backlog alternate, --rounds times each: on a shared machine the load drifts, and
    # alternating puts both under the same drift. Medians per scheduling are compared.
    results: dict[str, list[tuple[float, float, float]]] = {"FIFO (baseline)": [], "per-tenant backlog": []}
    with tempfile.TemporaryDirectory(prefix="exportd-bench-") as tmp:
        redis_proc = None
        url = args.redis_url
        if not url:
            redis_proc, url = start_local_redis(Path(tmp))
        try:
            for round_ in range(args.rounds):
                for label, cap in (("FIFO (baseline)", UNBOUNDED), ("per-tenant backlog", max_running)):
                    run = Run(url, Path(tmp) / f"{label.split()[0]}-{round_}", max_running=cap,
                              processes=args.processes, threads=args.threads, photo=photo)  # fmt: skip
                    try:
                        unit = run.idle_job_s()
                        b_wait, a_total = run.contended(args.jobs)
                    finally:
                        run.close()
                    results[label].append((unit, b_wait, a_total))
                    print(f"round {round_ + 1} {label}: idle job {unit * 1000:.0f} ms, B done {b_wait:.2f} s, "
                          f"A total {a_total:.2f} s", flush=True)  # fmt: skip
        finally:
            if redis_proc:
                redis_proc.terminate()
                redis_proc.wait(10)

    print(f"\nfairness: {args.processes} processes × {args.threads} threads, A submits {args.jobs} photo jobs "
          f"({args.side} px JPEG -> PNG), B submits 5 one second later; max_running {max_running}; "
          f"medians of {args.rounds} alternating rounds")  # fmt: skip
    print(
        f"{'scheduling':<22}{'idle job ms':>12}{'B last done s':>15}{'B in idle jobs':>16}{'A total s':>11}"
    )
    medians = {}
    for label, rows in results.items():
        unit, b_wait, a_total = (statistics.median(r[i] for r in rows) for i in range(3))
        b_units = statistics.median(r[1] / r[0] for r in rows)
        medians[label] = (unit, b_wait, a_total, b_units)
        print(f"{label:<22}{unit * 1000:>12.0f}{b_wait:>15.2f}{b_units:>16.1f}{a_total:>11.2f}")
    fifo, fair = medians["FIFO (baseline)"], medians["per-tenant backlog"]
    growth = (fair[2] / fifo[2] - 1) * 100
    print(
        f"\nB waits {fifo[1] / fair[1]:.0f}× less than with FIFO; A's total time {growth:+.1f} % against FIFO"
    )
    print(f"goal B ≤ 3 idle jobs: {'met' if fair[3] <= 3 else 'NOT met'} ({fair[3]:.1f}); "
          f"goal A growth < 5 %: {'met' if growth < 5 else 'NOT met'} ({growth:+.1f} %)")  # fmt: skip


if __name__ == "__main__":
    main()
