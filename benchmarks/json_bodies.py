"""What a 50 MB JSON export costs the API, with EXPORTD_MAX_JSON_BYTES and without it, in the same run.

Not a test: it prints figures. Each case starts its own `exportd serve` (one gunicorn process) on a
private Redis, uploads one photo, then posts a contact-sheet export whose `title` option is 50 MB
of text, once with its Content-Length and once chunked. The baseline is the same server with the
limit raised above the body (what exportd did before the limit existed): it reads and parses the
body whole, then refuses the title as longer than 1000 characters (422; before that check existed,
it stored the job with a 50 MB record in Redis).

    python benchmarks/json_bodies.py [--mb 50]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.cli import start_local_redis  # noqa: E402
from tests.helpers import free_port, jpeg_bytes  # noqa: E402

KEY = "b1:" + "benchmark-signing-secret-" + "x" * 24


def _serve(
    redis_url: str, data_dir: Path, namespace: str, max_json_bytes: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env.update({"PYTHONPATH": str(ROOT), "EXPORTD_REDIS_URL": redis_url, "EXPORTD_REDIS_NAMESPACE": namespace,
                "EXPORTD_DATA_DIR": str(data_dir), "EXPORTD_PORT": str(port), "EXPORTD_API_PROCESSES": "1",
                "EXPORTD_SIGNING_KEYS": KEY, "EXPORTD_LOG_LEVEL": "WARNING", "EXPORTD_AUTH": "disabled", "EXPORTD_TENANT_REQUESTS_PER_SECOND": "1000000", "EXPORTD_TENANT_MAX_RUNNING": "1000000", "EXPORTD_TENANT_MAX_QUEUED": "1000000",
                "EXPORTD_MAX_JSON_BYTES": str(max_json_bytes)})  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if _call(port, "GET", "/readyz")[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("exportd serve did not come up")


def _call(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
          **kwargs: Any) -> tuple[int, bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request(method, path, body=body, headers=headers or {}, **kwargs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 1024 * 1024):
        yield data[start : start + 1024 * 1024]


def _case(label: str, redis_url: str, max_json_bytes: int, size_mb: int) -> float:
    """Posts the body both ways; returns how many MB the API process grew."""
    client = redis.Redis.from_url(redis_url)
    namespace = f"bench-{os.getpid()}-{max_json_bytes}"
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = _serve(redis_url, Path(tmp), namespace, max_json_bytes)
        try:
            (worker,) = psutil.Process(proc.pid).children()
            upload = json.loads(_call(port, "POST", "/v1/uploads?filename=a.jpg", jpeg_bytes())[1])["id"]
            title = "x" * (size_mb * 1000 * 1000)
            body = json.dumps(
                {"inputs": [upload], "format": "contact_sheet_pdf", "options": {"title": title}}
            )
            data = body.encode()
            rss_before = worker.memory_info().rss
            for how, extra in (("Content-Length", {}), ("chunked", {"encode_chunked": True})):
                payload: Any = data if how == "Content-Length" else _chunks(data)
                headers = {"Content-Type": "application/json"}
                if how == "chunked":
                    headers["Transfer-Encoding"] = "chunked"
                began = time.perf_counter()
                status, _ = _call(port, "POST", "/v1/exports", payload, headers, **extra)
                ms = (time.perf_counter() - began) * 1000
                print(f"  {label:<28} {how:<15} -> {status} in {ms:7.1f} ms")
            grown_mb = float(worker.memory_info().rss - rss_before) / 1e6
            records = list(client.scan_iter(f"{namespace}:tenant:*:job:*"))
            stored_mb = sum(int(client.strlen(k)) for k in records) / 1e6
            print(
                f"  {label:<28} API process grew {grown_mb:6.1f} MB; {len(records)} job records, {stored_mb:.1f} MB in Redis"
            )
        finally:
            proc.terminate()
            proc.wait(30)
            for key in client.scan_iter(f"{namespace}:*"):
                client.delete(key)
    return grown_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="size of the JSON body in megabytes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="exportd-bench-") as tmp:
        redis_proc, redis_url = start_local_redis(Path(tmp))
        try:
            print(f"A {args.mb} MB JSON export, posted with its Content-Length and then chunked:")
            limited = _case("limit 1 MiB (the default)", redis_url, 1024 * 1024, args.mb)
            baseline = _case("baseline: limit above body", redis_url, (args.mb + 10) * 1000 * 1000, args.mb)
            print(f"API growth, baseline / limited: {baseline / max(limited, 0.1):.1f}x")
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    main()
