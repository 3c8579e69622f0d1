"""Photos per second with clients that wait (`?wait`), 4 against 64 at once, beside thumbor (figures only).

    .venv/bin/python benchmarks/wait_clients.py [--photos 20] [--jobs 80] [--rounds 3] [--thumbor /tmp/thumbor-venv/bin/thumbor]

Twenty 12-megapixel photos (benchmarks/photos.py's synthetic ones) are uploaded beforehand; each
client then sends `POST /v1/exports?wait=30` (JSON: the upload, format jpeg, width 1600) and, if the
answer is a 202, `GET /v1/exports/{id}?wait=30` until the job has finished (each such GET is
counted as a poll). exportd runs as shipped: 2 API processes and a pool of 2 worker processes
(2 threads each, photos.py's setting for this 2-core machine) on a private Redis.

thumbor, when --thumbor names its executable (install it in a venv of its own, e.g.
`python3.11 -m venv /tmp/thumbor-venv && /tmp/thumbor-venv/bin/pip install thumbor`), serves
`/unsafe/1600x0/photoN.jpg` from the same photos with its file loader, no storage and 2 processes.

Both run alternately, `--rounds` times, each frozen (SIGSTOP) while the other runs; each figure is
the median of its rounds. The CPU time per photo of each server's processes (exportd: API, workers
and Redis) is printed too: on this shared machine, whose speed other work moves by 2x and more,
it is the steadier figure, and polling, the failure this measures, shows there first. Prints photos/s for 4 and 64 clients, their ratio (goal: the 64-client
figure within 5 % of the 4-client one) and exportd/thumbor at each.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from photos import PHOTO_SIZE, TARGET_W, photo_like  # noqa: E402

from service.cli import start_local_redis  # noqa: E402
from storage.jobs import TERMINAL  # noqa: E402
from tests.helpers import free_port, wait_for_pool  # noqa: E402

CONCURRENCY = (4, 64)


class Client:
    """One kept-alive connection per thread, as an HTTP client library keeps."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()
        self.polls = 0
        self.lock = threading.Lock()

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str = "") -> tuple[int, bytes]:
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def exportd_photo(client: Client, upload_id: str) -> None:
    body = json.dumps(
        {"inputs": [upload_id], "format": "jpeg", "options": {"width": TARGET_W, "quality": 85}}
    )
    status, data = client.call("POST", "/v1/exports?wait=30", body.encode(), "application/json")
    if status not in (201, 202):
        raise OSError(f"POST /v1/exports: HTTP {status} {data[:200]!r}")
    job = json.loads(data)
    while job["status"] not in TERMINAL:
        with client.lock:
            client.polls += 1
        status, data = client.call("GET", f"/v1/exports/{job['id']}?wait=30")
        job = json.loads(data)
    if job["status"] != "succeeded":
        raise OSError(f"job {job['id']} {job['status']}: {job.get('error')}")


def thumbor_photo(client: Client, name: str) -> None:
    status, data = client.call("GET", f"/unsafe/{TARGET_W}x0/{name}")
    if status != 200 or not data.startswith(b"\xff\xd8"):
        raise OSError(f"thumbor: HTTP {status}")


def cpu_s(procs: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for p in (p for proc in procs for p in tree(proc)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def throughput(
    items: list[str], clients: int, one: Callable[[str], None], procs: list[subprocess.Popen[bytes]]
) -> tuple[float, float]:
    """Photos per second, and CPU milliseconds per photo of the server's processes."""
    cpu = cpu_s(procs)
    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, items))
    wall = time.perf_counter() - began
    return len(items) / wall, (cpu_s(procs) - cpu) * 1000 / len(items)


def tree(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    root = psutil.Process(proc.pid)
    return [root, *root.children(recursive=True)]


@contextmanager
def frozen(procs: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """These processes (and their children) stopped meanwhile, so that they cost the other nothing."""
    stopped = [p for proc in procs for p in tree(proc)]
    for p in stopped:
        p.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for p in stopped:
            p.send_signal(signal.SIGCONT)


def wait_until_up(client: Client, path: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.call("GET", path)[0] == 200:
                return
        except OSError:
            client.local.conn = None
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not come up")
        time.sleep(0.3)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=80, help="photos converted per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--thumbor", default="", help="thumbor's executable, in a venv of its own")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="exportd-wait-") as tmp:
        work = Path(tmp)
        photo_dir = work / "photos"
        photo_dir.mkdir()
        names = []
        for index in range(args.photos):
            names.append(f"photo{index}.jpg")
            photo_like(*PHOTO_SIZE, seed=index).save(photo_dir / names[-1], "JPEG", quality=92)

        redis_proc, redis_url = start_local_redis(work)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
        env.update({"PYTHONPATH": str(ROOT), "EXPORTD_ENV": "development", "EXPORTD_AUTH": "disabled",
                    "EXPORTD_TENANT_REQUESTS_PER_SECOND": "1000000", "EXPORTD_TENANT_MAX_RUNNING": "1000000", "EXPORTD_TENANT_MAX_QUEUED": "1000000", "EXPORTD_DATA_DIR": str(work / "var"),
                    "EXPORTD_REDIS_URL": redis_url, "EXPORTD_PORT": str(port), "EXPORTD_API_PROCESSES": "2",
                    "EXPORTD_WORKER_PROCESSES": "2", "EXPORTD_WORKER_THREADS": "2",
                    "EXPORTD_WORKER_QUEUES": "exports", "EXPORTD_WORKER_ALIVE_FILE": str(work / "alive"),
                    "EXPORTD_LOG_LEVEL": "WARNING", "EXPORTD_WORKER_METRICS_PORT": "0"})  # fmt: skip
        exportd = [subprocess.Popen([sys.executable, "-m", "service.cli", role], env=env, cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                   for role in ("worker", "serve")]  # fmt: skip
        thumbor: list[subprocess.Popen[bytes]] = []
        try:
            api = Client(port)
            wait_until_up(api, "/readyz", exportd[1], "exportd")
            wait_for_pool(f"http://127.0.0.1:{port}")
            uploads = []
            for name in names:
                status, data = api.call(
                    "POST", f"/v1/uploads?filename={name}", (photo_dir / name).read_bytes()
                )
                assert status == 201, (status, data[:200])
                uploads.append(json.loads(data)["id"])
            jobs = [uploads[i % len(uploads)] for i in range(args.jobs)]
            for upload_id in uploads[:4]:  # warm-up: each worker process imports and decodes once
                exportd_photo(api, upload_id)

            thumbor_port = free_port()
            if args.thumbor:
                conf = work / "thumbor.conf"
                conf.write_text(
                    f"LOADER = 'thumbor.loaders.file_loader'\nFILE_LOADER_ROOT_PATH = {str(photo_dir)!r}\n"
                    "STORAGE = 'thumbor.storages.no_storage'\nRESULT_STORAGE = None\n"
                    "ALLOW_UNSAFE_URL = True\nQUALITY = 85\nAUTO_WEBP = False\n"
                )
                with frozen([*exportd, redis_proc]):
                    thumbor.append(subprocess.Popen(
                        [args.thumbor, "--port", str(thumbor_port), "--ip", "127.0.0.1", "--conf", str(conf),
                         "--processes", "2", "--log-level", "error"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
                    thumb = Client(thumbor_port)
                    wait_until_up(thumb, "/healthcheck", thumbor[0], "thumbor")
                    for name in names[:4]:
                        thumbor_photo(thumb, name)

            figures: dict[str, list[float]] = {}
            polls: dict[int, int] = {}
            cpu: dict[str, list[float]] = {}  # CPU ms per photo of the server's processes
            for round_ in range(args.rounds):
                # The order alternates, so that a drift of the machine's speed within a round
                # favours neither; each round's ratios are taken between runs seconds apart.
                for clients in CONCURRENCY if round_ % 2 == 0 else CONCURRENCY[::-1]:
                    client = Client(port)
                    with frozen(thumbor):
                        rate, cpu_ms = throughput(
                            jobs, clients, lambda u, c=client: exportd_photo(c, u), [*exportd, redis_proc]
                        )  # type: ignore[misc]
                    figures.setdefault(f"exportd {clients}", []).append(rate)
                    cpu.setdefault(f"exportd {clients}", []).append(cpu_ms)
                    polls[clients] = polls.get(clients, 0) + client.polls
                    if thumbor:
                        items = [names[i % len(names)] for i in range(args.jobs)]
                        client = Client(thumbor_port)
                        with frozen([*exportd, redis_proc]):
                            rate, cpu_ms = throughput(
                                items, clients, lambda n, c=client: thumbor_photo(c, n), thumbor
                            )  # type: ignore[misc]
                        figures.setdefault(f"thumbor {clients}", []).append(rate)
                        cpu.setdefault(f"thumbor {clients}", []).append(cpu_ms)

            def median(key: str) -> float:
                return statistics.median(figures[key])

            def ratios(top: str, bottom: str) -> str:
                each = [a / b for a, b in zip(figures[top], figures[bottom], strict=True)]
                return f"{statistics.median(each):.3f} (rounds: {', '.join(f'{r:.3f}' for r in each)})"

            print(
                f"{args.jobs} photos per measurement, {args.rounds} rounds, 12 MP JPEG -> {TARGET_W} px JPEG"
            )
            for key, values in figures.items():
                print(
                    f"{key:12} clients: {median(key):6.2f} photos/s  (rounds: {', '.join(f'{v:.2f}' for v in values)})"
                )
            for key, values in cpu.items():
                print(f"{key:12} clients: {statistics.median(values):6.1f} CPU ms per photo, the server's processes "
                      f"(rounds: {', '.join(f'{v:.1f}' for v in values)})")  # fmt: skip
            for clients in CONCURRENCY:
                print(
                    f"exportd {clients:2} clients: {polls[clients]} polls (GETs after a 202) over {args.rounds} rounds"
                )
            print(
                f"exportd 64 / 4 clients, median of each round's ratio: {ratios('exportd 64', 'exportd 4')}  (goal: >= 0.95)"
            )
            if thumbor:
                for clients in CONCURRENCY:
                    print(
                        f"exportd / thumbor at {clients:2} clients: {ratios(f'exportd {clients}', f'thumbor {clients}')}"
                    )
            else:
                print("thumbor: not run (no --thumbor)")
        finally:
            stop(thumbor + exportd)
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    main()
