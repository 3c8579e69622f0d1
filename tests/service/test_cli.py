"""`exportd run` starts everything on embedded defaults and Ctrl-C stops everything it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from tests.helpers import free_port, jpeg_bytes, multipart

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str, key: str = "") -> dict:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _cmdline(process: psutil.Process) -> list[str]:
    """A process's command line; [] for one that has just exited (a zombie until reaped)."""
    try:
        return process.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return []


def test_run_starts_api_workers_and_redis_and_ctrl_c_stops_them_all(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env.update(
        {
            "EXPORTD_PORT": str(port),
            "EXPORTD_DATA_DIR": str(tmp_path / "var"),
            "PYTHONPATH": str(ROOT),
            "EXPORTD_WORKER_METRICS_PORT": str(free_port()),
        }
    )
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "run"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if _get(base + "/readyz")["status"] == "ready":
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "exportd run did not come up"
            time.sleep(0.2)
        # The development key, on a line of its own, made once under var/.
        assert proc.stdout is not None
        first_line = proc.stdout.readline().decode()
        assert first_line.startswith("API key: exk_"), first_line
        key = first_line.split(": ", 1)[1].strip()
        assert (tmp_path / "var" / "dev-api-key").read_text().strip() == key
        family = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(_cmdline(p)) for p in family)
        assert "redis-server" in names and "gunicorn" in names and "worker" in names
        # Development mode made its key, Redis keeps its data under ./var.
        assert (tmp_path / "var" / "dev-signing-key").is_file()
        assert (tmp_path / "var" / "redis").is_dir()
        # The job time limit is the setting's (300 s by default), not capped for development.
        (pool,) = [p for p in family if _cmdline(p)[-1:] == ["worker"] and p.ppid() == proc.pid]
        assert pool.environ()["EXPORTD_JOB_TIME_LIMIT_S"] == "300"

        # A second run on the same var/ refuses at once and leaves the first one whole.
        second = subprocess.run([sys.executable, "-m", "service.cli", "run"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert second.returncode != 0
        assert "already using" in second.stderr and str(proc.pid) in second.stderr
        for _ in range(8):  # every API process, on new connections too
            assert _get(base + "/readyz")["status"] == "ready"

        # `exportd keys` finds the Redis of this run under var/ (no EXPORTD_REDIS_URL): the dev key is there.
        listed = subprocess.run([sys.executable, "-m", "service.cli", "keys", "list"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert "\tdev\tsubmit+read+admin\t" in listed.stdout and key not in listed.stdout

        # A resize goes through libvips, which must not log a line per operation.
        body, ctype = multipart([("file", ("p.jpg", jpeg_bytes())), ("format", "jpeg"),
                                 ("options", '{"width": 200}')])  # fmt: skip
        req = urllib.request.Request(base + "/v1/exports", data=body,
                                     headers={"Content-Type": ctype, "Authorization": f"Bearer {key}"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202
            job_id = json.loads(resp.read())["id"]
        deadline = time.monotonic() + 30
        while _get(f"{base}/v1/exports/{job_id}", key)["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, output
    assert "stopped" in output
    assert key not in output, "the key is printed once at start-up (read above) and never logged"
    assert '"level": "critical"' not in output and '"level": "error"' not in output, output
    assert '"logger": "pyvips"' not in output, output
    _gone, alive = psutil.wait_procs(family, timeout=5)
    assert alive == [], [p.cmdline() for p in alive]


def test_production_mode_refuses_to_start_without_a_signing_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env.update(
        {
            "EXPORTD_REDIS_URL": "redis://127.0.0.1:1/0",
            "EXPORTD_DATA_DIR": str(tmp_path),
            "PYTHONPATH": str(ROOT),
        }
    )
    for command in ("serve", "worker"):
        result = subprocess.run([sys.executable, "-m", "service.cli", command], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert result.returncode == 2
        assert "EXPORTD_SIGNING_KEYS is not set" in result.stderr
        assert "exportd keygen" in result.stderr
