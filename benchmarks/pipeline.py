"""Speed of the pipeline itself, on a real Redis and a real worker pool (not a test: it prints figures).

For Dramatiq's default polling (the baseline: an idle consumer backs off up to 1000 ms) and for
exportd's setting (EXPORTD_WORKER_POLL_MS, default 50), measured in the same run:

- idle latency: a job submitted to an idle pool, until the worker marks it running (median, p99);
- idle CPU: what the pool and Redis burn while nothing happens (% of one core);
- busy throughput: tiny conversions (16×16 PNG -> PNG) per second with a full queue.

Both configurations run exportd's worker pool, so both fetch a message as soon as a running one is
acked (actors/broker.py): the baseline differs only in its poll interval. Dramatiq's own consumer
instead polled on a back-off while busy; photos.py's whole-service figures show what that cost.

    python benchmarks/pipeline.py [--jobs 400] [--samples 60] [--processes 2] [--threads 4]
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

import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors.broker import build_broker, build_redis  # noqa: E402
from actors.export import enqueue_export  # noqa: E402
from service.cli import start_local_redis  # noqa: E402
from storage.jobs import Job, Records, Upload, new_id  # noqa: E402
from storage.local import LocalStorage  # noqa: E402

KEYS = "bench:" + "b" * 40


def _tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


class Run:
    def __init__(self, redis_url: str, data_dir: Path, *, poll_ms: int, processes: int, threads: int) -> None:
        self.namespace = f"bench-{poll_ms}-{random.randrange(1 << 30)}"
        self.client = build_redis(redis_url)
        self.records = Records(self.client, namespace=self.namespace, retention_s=3600)
        self.broker = build_broker(self.client, namespace=self.namespace, heartbeat_timeout_ms=30_000)
        storage = LocalStorage(data_dir / "storage")
        stored = storage.put_stream(f"uploads/{new_id()}", io.BytesIO(_tiny_png()))
        self.upload = Upload(id=stored.key.split("/")[1], filename="tiny.png", content_type="image/png",
                             size=stored.size, sha256=stored.sha256, created_at=time.time())  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPORTD_ENV": "production", "EXPORTD_SIGNING_KEYS": KEYS,
               "EXPORTD_REDIS_URL": redis_url, "EXPORTD_REDIS_NAMESPACE": self.namespace,
               "EXPORTD_DATA_DIR": str(data_dir), "EXPORTD_WORKER_POLL_MS": str(poll_ms),
               "EXPORTD_WORKER_PROCESSES": str(processes), "EXPORTD_WORKER_THREADS": str(threads),
               "EXPORTD_LOG_LEVEL": "WARNING", "EXPORTD_WORKER_METRICS_PORT": "0"}  # fmt: skip
        self.pool = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env, cwd=ROOT)
        # Ready when every worker process has sent a heartbeat.
        deadline = time.monotonic() + 30
        while self.client.zcard(f"{self.namespace}:dramatiq:__heartbeats__") < processes:
            if time.monotonic() > deadline:
                raise RuntimeError("worker pool did not start")
            time.sleep(0.05)

    def submit(self) -> tuple[str, float]:
        job = Job(id=new_id(), format="png", inputs=(self.upload,), options={}, created_at=time.time())
        self.records.create_job(job)
        submitted = time.time()
        enqueue_export(self.broker, job.id)
        return job.id, submitted

    def wait(self, job_id: str) -> Job:
        while True:
            job = self.records.get_job(job_id)
            if job.finished:
                return job
            time.sleep(0.002)

    def idle_latency_ms(self, samples: int) -> list[float]:
        out = []
        for _ in range(samples):
            time.sleep(
                random.uniform(0.3, 1.2)
            )  # long enough for every consumer to reach its longest back-off
            job_id, submitted = self.submit()
            job = self.wait(job_id)
            assert job.status == "succeeded" and job.started_at is not None, job
            out.append((job.started_at - submitted) * 1000)
        return out

    def idle_cpu_percent(self, seconds: float, redis_pid: int | None) -> float:
        procs = [psutil.Process(self.pool.pid), *psutil.Process(self.pool.pid).children(recursive=True)]
        if redis_pid:
            procs.append(psutil.Process(redis_pid))

        def cpu() -> float:
            return sum(sum(p.cpu_times()[:2]) for p in procs)

        time.sleep(2)
        before = cpu()
        time.sleep(seconds)
        return (cpu() - before) / seconds * 100

    def throughput(self, jobs: int) -> float:
        began = time.perf_counter()
        ids = [self.submit()[0] for _ in range(jobs)]
        for job_id in ids:
            assert self.wait(job_id).status == "succeeded"
        return jobs / (time.perf_counter() - began)

    def close(self) -> None:
        self.pool.send_signal(signal.SIGTERM)
        self.pool.wait(60)
        keys = list(self.client.scan_iter(f"{self.namespace}:*", count=1000))
        if keys:
            self.client.delete(*keys)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", help="use this Redis instead of starting a private one")
    parser.add_argument("--samples", type=int, default=60, help="idle-latency samples per configuration")
    parser.add_argument("--jobs", type=int, default=400, help="jobs in the throughput burst")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--baseline-poll-ms", type=int, default=1000, help="Dramatiq's default worker_timeout"
    )
    parser.add_argument(
        "--tuned-poll-ms", type=int, default=50, help="exportd's default EXPORTD_WORKER_POLL_MS"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="exportd-bench-") as tmp:
        redis_proc = None
        url = args.redis_url
        if not url:
            redis_proc, url = start_local_redis(Path(tmp))
        try:
            results = {}
            for label, poll in (("dramatiq default", args.baseline_poll_ms), ("exportd", args.tuned_poll_ms)):
                run = Run(url, Path(tmp) / label.replace(" ", "-"), poll_ms=poll, processes=args.processes,
                          threads=args.threads)  # fmt: skip
                try:
                    lat = run.idle_latency_ms(args.samples)
                    cpu = run.idle_cpu_percent(5, redis_proc.pid if redis_proc else None)
                    tput = run.throughput(args.jobs)
                finally:
                    run.close()
                results[label] = (poll, statistics.median(lat), pct(lat, 0.99), max(lat), cpu, tput)
        finally:
            if redis_proc:
                redis_proc.terminate()
                redis_proc.wait(10)

    print(f"\npipeline: {args.processes} processes × {args.threads} threads, real Redis, 16×16 PNG -> PNG")
    print(f"{'configuration':<18}{'poll ms':>8}{'idle p50 ms':>13}{'idle p99 ms':>13}{'max ms':>9}"
          f"{'idle CPU %':>12}{'busy jobs/s':>13}")  # fmt: skip
    for label, (poll, p50, p99, worst, cpu, tput) in results.items():
        print(f"{label:<18}{poll:>8}{p50:>13.1f}{p99:>13.1f}{worst:>9.1f}{cpu:>12.1f}{tput:>13.1f}")
    base, tuned = results["dramatiq default"], results["exportd"]
    print(f"\nidle latency vs baseline: median {base[1] / tuned[1]:.1f}× lower, p99 {base[2] / tuned[2]:.1f}× lower;"
          f" throughput ratio {tuned[5] / base[5]:.2f}")  # fmt: skip
    ok = tuned[1] <= 30 and tuned[2] <= 100
    print(
        f"goal (idle median ≤ 30 ms, p99 ≤ 100 ms): {'met' if ok else 'NOT met'}; idle CPU {tuned[4]:.1f}% of a core"
    )


if __name__ == "__main__":
    main()
