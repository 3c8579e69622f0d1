"""Fair scheduling between tenants, on a real Redis and a real worker pool (prints figures; not a test).

Tenant A submits --jobs photo conversions (a JPEG to PNG of about 100 ms each); one second later
tenant B submits 5. Printed for exportd's fair scheduling (no more jobs dispatched than the pool
publishes slots, each freed slot to the tenant with the fewest dispatched, each tenant at most
--max-running) and, in the same run, for a FIFO queue (the same pool, no cap across tenants and
max_running unbounded, which is what exportd did before tenants):

- one job's duration on the idle pool (submit to finish, median of 9): the unit;
- when B's last job finished after B submitted, in that unit (goal: at most 3);
- A's total time, submit to its last finish, and how much it grew against FIFO (goal: under 5 %);
- the lower bounds of B's time on this pool and machine (see bounds()).

Jobs are submitted the way the API does it (record, then the tenant's dispatch, then the message),
without HTTP in between: what is measured is the scheduling.

    python benchmarks/fairness.py [--jobs 500] [--processes 2] [--threads 1] [--side 800] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import math
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
from actors.capabilities import Availability  # noqa: E402
from actors.export import enqueue_export  # noqa: E402
from service.cli import start_local_redis  # noqa: E402
from storage.jobs import Job, Records, Upload, new_id, upload_key  # noqa: E402
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
                 photo: bytes, fair: bool, sleep_ms: int = 0) -> None:  # fmt: skip
        self.namespace = f"bench-fair-{random.randrange(1 << 30)}"
        self.client = build_redis(redis_url)
        self.records = Records(self.client, namespace=self.namespace, retention_s=3600)
        self.broker = build_broker(self.client, namespace=self.namespace, heartbeat_timeout_ms=30_000)
        # FIFO: no cap across tenants (slots unknown) and max_running unbounded.
        availability = Availability(self.client, self.namespace)
        self.tenants = Tenants(self.records, defaults=Quotas(UNBOUNDED, UNBOUNDED, max_running, 1 << 60),
                               slots=availability.slots if fair else None)  # fmt: skip
        storage = LocalStorage(data_dir / "storage")
        self.uploads = {}
        # --sleep-ms: the job holds its slot that long without the CPU (then converts a tiny picture).
        filename = f"slow-{sleep_ms / 1000}-photo.jpg" if sleep_ms else "photo.jpg"
        for tenant in ("a", "b"):
            upload_id = new_id()
            stored = storage.put_stream(upload_key(tenant, upload_id), io.BytesIO(photo))
            self.uploads[tenant] = Upload(id=upload_id, filename=filename, content_type="image/jpeg",
                                          size=stored.size, sha256=stored.sha256, created_at=time.time(),
                                          tenant=tenant, storage_key=stored.key)  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPORTD_ENV": "production", "EXPORTD_SIGNING_KEYS": KEYS,
               "EXPORTD_REDIS_URL": redis_url, "EXPORTD_REDIS_NAMESPACE": self.namespace,
               "EXPORTD_DATA_DIR": str(data_dir), "EXPORTD_WORKER_PROCESSES": str(processes),
               "EXPORTD_WORKER_THREADS": str(threads), "EXPORTD_TENANT_MAX_RUNNING": str(max_running),
               "EXPORTD_LOG_LEVEL": "WARNING", "EXPORTD_WORKER_METRICS_PORT": "0"}  # fmt: skip
        command = [sys.executable, "-m", "service.cli", "worker"]
        if sleep_ms:  # the test suite's pool: exportd's pool, sweeper and fair release, scripted conversions
            config = {"redis_url": redis_url, "namespace": self.namespace, "storage": str(data_dir / "storage"),
                      "run_dir": str(data_dir / "run"), "heartbeat_ms": 30_000, "sweep_s": 10,
                      "processes": processes, "threads": threads, "tenants": True, "log_level": "WARNING"}  # fmt: skip
            command = [sys.executable, "-m", "tests.actors.pool_main", json.dumps(config)]
        self.pool = subprocess.Popen(command, env=env, cwd=ROOT)
        deadline = time.monotonic() + 30
        while self.client.zcard(f"{self.namespace}:dramatiq:__heartbeats__") < processes or (
            fair and sum(p.slots for p in availability.pools(fresh=True)) != processes * threads
        ):
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

    def wait_all(self, ids: list[str], *, every_s: float = 0.01) -> list[Job]:
        """The jobs once all have finished (their finish times are in their records). Checked in
        submission order, up to the first still open: reading all 500 records every 10 ms would
        take a good part of a core from the pool being measured."""
        first_open = 0
        while first_open < len(ids):
            while first_open < len(ids) and self.records.get_job(ids[first_open]).finished:
                first_open += 1
            if first_open < len(ids):
                time.sleep(every_s)
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

    def contended(self, jobs: int) -> tuple[float, float, float, float]:
        """(B's last finish after B's submit, A's total time, the median time a job of A's held its
        slot while B's ran: one job's duration at the machine's load of that moment, the same over
        all of A's jobs) in seconds."""
        began = time.time()
        a_ids = [self.submit("a")[0] for _ in range(jobs)]
        time.sleep(max(0.0, began + 1.0 - time.time()))
        b_submitted = time.time()
        b_ids = [self.submit("b")[0] for _ in range(5)]
        b_jobs = self.wait_all(b_ids)
        a_jobs = self.wait_all(a_ids, every_s=0.2)
        b_wait = max(j.finished_at or 0 for j in b_jobs) - b_submitted
        a_total = max(j.finished_at or 0 for j in a_jobs) - began
        b_end = b_submitted + b_wait
        busy = [(j.finished_at or 0) - (j.started_at or 0) for j in a_jobs
                if b_submitted - 2 <= (j.started_at or 0) <= b_end]  # fmt: skip
        a_job = statistics.median((j.finished_at or 0) - (j.started_at or 0) for j in a_jobs)
        return b_wait, a_total, statistics.median(busy) if busy else float("nan"), a_job

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
    parser.add_argument("--max-running", type=int, default=8,
                        help="each tenant's own cap in the fair runs (the setting's default: 8)")  # fmt: skip
    parser.add_argument("--side", type=int, default=800, help="photo width in px (sets one job's duration)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each scheduling")
    parser.add_argument("--sleep-ms", type=int, default=0,
                        help="jobs that hold their slot this long without the CPU (the test suite's scripted "
                             "conversions on exportd's pool): the scheduling alone, where slots outnumber cores")  # fmt: skip
    args = parser.parse_args()
    photo = _photo(64 if args.sleep_ms else args.side)  # sleeping jobs convert a thumbnail after their sleep
    fair_label = "fair (slots)"

    # FIFO and fair alternate, --rounds times each: on a shared machine the load drifts, and
    # alternating puts both under the same drift. Medians per scheduling are compared.
    results: dict[str, list[tuple[float, float, float, float, float]]] = {
        "FIFO (baseline)": [],
        fair_label: [],
    }
    with tempfile.TemporaryDirectory(prefix="exportd-bench-") as tmp:
        redis_proc = None
        url = args.redis_url
        if not url:
            redis_proc, url = start_local_redis(Path(tmp))
        try:
            for round_ in range(args.rounds):
                for label, cap in (("FIFO (baseline)", UNBOUNDED), (fair_label, args.max_running)):
                    run = Run(url, Path(tmp) / f"{label.split()[0]}-{round_}", max_running=cap,
                              processes=args.processes, threads=args.threads, photo=photo,
                              fair=label == fair_label, sleep_ms=args.sleep_ms)  # fmt: skip
                    try:
                        unit = run.idle_job_s()
                        b_wait, a_total, busy_job, a_job = run.contended(args.jobs)
                    finally:
                        run.close()
                    results[label].append((unit, b_wait, a_total, busy_job, a_job))
                    print(f"round {round_ + 1} {label}: idle job {unit * 1000:.0f} ms, B done {b_wait:.2f} s "
                          f"({b_wait / unit:.1f} idle jobs, {b_wait / busy_job:.1f} jobs as long as A's then), "
                          f"A total {a_total:.2f} s ({a_total / a_job:.0f} of its jobs)", flush=True)  # fmt: skip
        finally:
            if redis_proc:
                redis_proc.terminate()
                redis_proc.wait(10)

    slots, cores = args.processes * args.threads, len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"\nfairness: {args.processes} processes × {args.threads} threads = {slots} slots on {cores} cores "
          f"(load average {load:.1f} at the end), A submits {args.jobs} "
          f"{f'{args.sleep_ms} ms sleeping' if args.sleep_ms else f'photo ({args.side} px JPEG -> PNG)'} jobs, "
          f"B submits 5 one second later; fair runs: max_running {args.max_running}; "
          f"medians of {args.rounds} alternating rounds")  # fmt: skip
    print(
        f"{'scheduling':<22}{'idle job ms':>12}{'B last done s':>15}{'B in idle jobs':>16}{'A total s':>11}"
        f"{'B in busy jobs':>16}"
    )
    medians = {}
    for label, rows in results.items():
        unit, b_wait, a_total = (statistics.median(r[i] for r in rows) for i in range(3))
        b_units = statistics.median(r[1] / r[0] for r in rows)
        b_busy = statistics.median(r[1] / r[3] for r in rows)
        medians[label] = (unit, b_wait, a_total, b_units)
        spread = f"  (B in idle jobs: rounds {min(r[1] / r[0] for r in rows):.1f}–{max(r[1] / r[0] for r in rows):.1f})"
        print(
            f"{label:<22}{unit * 1000:>12.0f}{b_wait:>15.2f}{b_units:>16.1f}{a_total:>11.2f}{b_busy:>16.1f}{spread}"
        )
    fifo, fair = medians["FIFO (baseline)"], medians[fair_label]
    growth = (fair[2] / fifo[2] - 1) * 100
    # Against the machine's drifting load (other work on a shared machine makes every job slower for
    # a while): A's total in units of its own median job, which only scheduling gaps make longer.
    norm = [(f[2] / f[4]) / (b[2] / b[4]) * 100 - 100
            for f, b in zip(results[fair_label], results["FIFO (baseline)"], strict=True)]  # fmt: skip
    growths = [
        (f[2] / b[2] - 1) * 100 for f, b in zip(results[fair_label], results["FIFO (baseline)"], strict=True)
    ]
    print(f"\nB waits {fifo[1] / fair[1]:.0f}× less than with FIFO; A's total time {growth:+.1f} % against FIFO "
          f"(rounds {min(growths):+.1f} to {max(growths):+.1f} %); in units of A's own median job: "
          f"{statistics.median(norm):+.1f} % (rounds {min(norm):+.1f} to {max(norm):+.1f} %)")  # fmt: skip
    share, alone = bounds(slots, slots if args.sleep_ms else cores)
    print(f"lower bounds of B on this pool, in idle jobs (no wait for a first slot, no overhead): {share:.1f} "
          f"with B's fair half of the slots, {alone:.1f} with every slot for B")  # fmt: skip
    print(f"goal B ≤ 3 idle jobs: {'met' if fair[3] <= 3 else 'NOT met'} ({fair[3]:.1f}); "
          f"goal A growth < 5 %: {'met' if growth < 5 else 'NOT met'} ({growth:+.1f} %)")  # fmt: skip


def bounds(slots: int, cores: int, jobs: int = 5) -> tuple[float, float]:
    """B's least possible time for `jobs` non-preemptible jobs, in idle jobs: with half the slots
    (its fair share against A) and with all of them. Jobs run in rounds of the slots B holds; with
    more busy slots than cores, each job runs at cores/slots of its idle speed."""
    stretch = max(1.0, slots / cores)
    return (math.ceil(jobs / max(1, slots // 2)) * stretch, math.ceil(jobs / slots) * stretch)


if __name__ == "__main__":
    main()
