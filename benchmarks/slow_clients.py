"""Latency of normal requests with slow clients connected, per API server (not a test: figures only).

    .venv/bin/python benchmarks/slow_clients.py [--slow 200] [--samples 60] [--servers exportd,gthread,uvicorn]

For each server, on a real Redis: the median latency of a small upload (POST /v1/uploads, 13 KB)
and of GET /healthz, first idle, then with `--slow` clients connected that send a byte a second,
half in their request's head and half in an upload's body (1 MB announced). A slow client that
the server cuts off is replaced at once, so that many stay connected throughout. Prints the
medians, their ratio (slow / idle; goal: at most 2) and the requests that got no answer in 30 s.

Servers:
- exportd: `exportd serve` as shipped (gunicorn's gevent worker with paced sockets, service/server.py);
- gthread: the same app under gunicorn's gthread worker, 2 processes × 4 threads (what it was);
- uvicorn: an asyncio front, uvicorn with the app behind a2wsgi's WSGI adapter (4 threads per
  process, 2 processes). Needs `uvicorn` and `a2wsgi` importable: give --asgi-path to a directory
  they were installed into with `pip install --target DIR uvicorn a2wsgi`; skipped otherwise.
"""

from __future__ import annotations

import argparse
import http.client
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.cli import start_local_redis  # noqa: E402
from tests.conftest import TEST_KEYS  # noqa: E402
from tests.helpers import free_port, jpeg_bytes  # noqa: E402

PROCESSES = 2
THREADS = 4
ANSWER_TIMEOUT_S = 30.0

ASGI_MODULE = """
from a2wsgi import WSGIMiddleware
from service.wsgi import app as wsgi_app
app = WSGIMiddleware(wsgi_app, workers={threads})
"""


def server_argv(name: str, port: int, module_dir: Path) -> list[str] | None:
    if name == "exportd":
        return [sys.executable, "-m", "service.cli", "serve"]
    if name == "gthread":
        return [sys.executable, "-m", "gunicorn", "service.wsgi:app", "--config", "python:service.gunicorn_config",
                "--bind", f"127.0.0.1:{port}", "--workers", str(PROCESSES), "--threads", str(THREADS),
                "--worker-class", "gthread", "--no-control-socket"]  # fmt: skip
    if name == "uvicorn":
        (module_dir / "asgi_front.py").write_text(ASGI_MODULE.format(threads=THREADS))
        return [sys.executable, "-m", "uvicorn", "asgi_front:app", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(PROCESSES), "--log-level", "warning"]  # fmt: skip
    raise SystemExit(f"unknown server {name!r}")


def request(port: int, method: str, path: str, body: bytes | None = None) -> float | None:
    """Seconds until the whole answer arrived, or None when none came in time."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "image/jpeg"} if body else {})
        resp = conn.getresponse()
        resp.read()
        if resp.status >= 400:
            raise OSError(f"{method} {path}: HTTP {resp.status}")
        return time.perf_counter() - began
    except (TimeoutError, ConnectionError):
        return None
    finally:
        conn.close()


class SlowClients:
    """`count` connections sending a byte a second; one cut off is replaced at once."""

    HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    BODY = (
        b"POST /v1/uploads?filename=a.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n"
    )

    def __init__(self, port: int, count: int, kind: str) -> None:
        self.port = port
        self.kind = kind
        self.socks: list[socket.socket | None] = [None] * count
        self.replaced = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, slot: int) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            in_head = self.kind == "head" or (self.kind == "mixed" and slot % 2)
            sock.sendall(self.HEAD if in_head else self.BODY)
            sock.setblocking(False)
        except OSError:
            sock = None  # the server's backlog is full: try again next second
        self.socks[slot] = sock

    def start(self) -> None:
        for slot in range(len(self.socks)):
            self._open(slot)
        self._thread.start()

    def open_now(self) -> int:
        return sum(1 for s in self.socks if s is not None)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            live = [s for s in self.socks if s is not None]
            answered = set(select.select(live, [], [], 0)[0]) if live else set()
            for slot, sock in enumerate(self.socks):
                if sock is not None and sock not in answered:
                    try:
                        sock.send(b"x")
                        continue
                    except OSError:
                        pass
                if sock is not None:  # the server answered (408) or closed it: replace it
                    sock.close()
                    self.replaced += 1
                self._open(slot)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.socks:
            if sock is not None:
                sock.close()


def measure(port: int, samples: int, upload: bytes) -> dict[str, list[float | None]]:
    times: dict[str, list[float | None]] = {"upload": [], "healthz": []}
    deadline = time.monotonic() + 60  # a server that stalls gets a few tries, not all of them
    for _ in range(samples):
        times["upload"].append(request(port, "POST", "/v1/uploads?filename=a.jpg", upload))
        times["healthz"].append(request(port, "GET", "/healthz"))
        if time.monotonic() > deadline:
            break
    return times


def summary(values: list[float | None]) -> tuple[float, int]:
    answered = [v for v in values if v is not None]
    return (statistics.median(answered) * 1000 if answered else float("nan")), len(values) - len(answered)


def run_server(name: str, args: argparse.Namespace, redis_url: str, work: Path) -> None:
    port = free_port()
    module_dir = Path(tempfile.mkdtemp(prefix=f"module-{name}-", dir=work))
    argv = server_argv(name, port, module_dir)
    assert argv is not None
    pythonpath = [str(module_dir), str(ROOT)] + ([args.asgi_path] if args.asgi_path else [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env.update({"PYTHONPATH": os.pathsep.join(pythonpath), "EXPORTD_REDIS_URL": redis_url,
                "EXPORTD_DATA_DIR": str(work / name), "EXPORTD_PORT": str(port),
                "EXPORTD_API_PROCESSES": str(PROCESSES), "EXPORTD_SIGNING_KEYS": TEST_KEYS, "EXPORTD_AUTH": "disabled", "EXPORTD_TENANT_REQUESTS_PER_SECOND": "1000000", "EXPORTD_TENANT_MAX_RUNNING": "1000000", "EXPORTD_TENANT_MAX_QUEUED": "1000000",
                "EXPORTD_LOG_LEVEL": "WARNING", "EXPORTD_REDIS_NAMESPACE": f"bench-{name}"})  # fmt: skip
    if args.read_timeout_s:
        env["EXPORTD_API_READ_TIMEOUT_S"] = str(args.read_timeout_s)
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    slow: SlowClients | None = None
    try:
        deadline = time.monotonic() + 30
        while request(port, "GET", "/readyz") is None or proc.poll() is not None:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{name}: the server did not come up")
            time.sleep(0.3)
        upload = jpeg_bytes()
        measure(port, 10, upload)  # warm-up: imports, connections to Redis, buffers
        # Idle and loaded phases take turns, so that the drift of this shared machine's speed
        # falls on both alike.
        idle: dict[str, list[float | None]] = {"upload": [], "healthz": []}
        loaded: dict[str, list[float | None]] = {"upload": [], "healthz": []}
        open_during, replaced = [], 0
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        rss_mb = [sum(p.memory_info().rss for p in tree) / 2**20]
        for _ in range(args.rounds):
            for what, values in measure(port, args.samples // args.rounds, upload).items():
                idle[what] += values
            slow = SlowClients(port, args.slow, args.kind)
            slow.start()
            time.sleep(2.0)
            for what, values in measure(port, args.samples // args.rounds, upload).items():
                loaded[what] += values
            open_during.append(slow.open_now())
            rss_mb.append(sum(p.memory_info().rss for p in tree) / 2**20)
            slow.stop()
            replaced += slow.replaced
            slow = None
            time.sleep(1.0)
        for what in ("upload", "healthz"):
            idle_ms, _ = summary(idle[what])
            slow_ms, unanswered = summary(loaded[what])
            print(f"{name:8} {what:8} idle {idle_ms:8.1f} ms   {args.slow} slow clients {slow_ms:8.1f} ms   "
                  f"ratio {slow_ms / idle_ms:6.2f}   unanswered {unanswered}/{len(loaded[what])}")  # fmt: skip
        print(f"{name:8} slow clients ({args.kind}) open at the end of each round: {open_during}; replaced "
              f"after the server cut them off: {replaced}; server RSS idle {rss_mb[0]:.0f} MB, with them "
              f"{', '.join(f'{m:.0f}' for m in rss_mb[1:])} MB")  # fmt: skip
    finally:
        if slow is not None:
            slow.stop()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slow", type=int, default=200, help="slow clients kept connected")
    parser.add_argument("--samples", type=int, default=60, help="requests of each kind per phase")
    parser.add_argument("--kind", choices=("mixed", "head", "body"), default="mixed",
                        help="where the slow clients stall: in their head, in a body, or half each")  # fmt: skip
    parser.add_argument("--read-timeout-s", type=int, default=0,
                        help="exportd's EXPORTD_API_READ_TIMEOUT_S (short: slow clients are cut off and replaced all along)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="idle and loaded phases alternate this often")
    parser.add_argument("--servers", default="exportd,gthread,uvicorn")
    parser.add_argument("--asgi-path", default="", help="directory holding uvicorn and a2wsgi")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="exportd-slow-") as tmp:
        work = Path(tmp)
        redis_proc, redis_url = start_local_redis(work)
        try:
            for name in args.servers.split(","):
                if name == "uvicorn":
                    probe = subprocess.run([sys.executable, "-c", "import uvicorn, a2wsgi"],
                                           env={**os.environ, "PYTHONPATH": args.asgi_path}, capture_output=True)  # fmt: skip
                    if probe.returncode:
                        print("uvicorn   skipped: uvicorn and a2wsgi are not importable (see --asgi-path)")
                        continue
                run_server(name, args, redis_url, work)
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    main()
