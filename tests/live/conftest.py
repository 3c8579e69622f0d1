"""One real `exportd run` (API under gunicorn, worker pool, its own Redis) for the tests of this folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Live:
    url: str
    env: dict[str, str]  # the environment a client subprocess runs in (no EXPORTD_* of the service)
    data_dir: Path  # the service's var/
    api_key: str  # the development key `exportd run` printed

    def uploads(self) -> set[str]:
        """The names of the uploaded files the service keeps."""
        folder = self.data_dir / "storage" / "uploads"
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as resp:
            return bool(json.loads(resp.read())["status"] == "ready")
    except OSError:
        return False


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    port = free_port()
    data_dir = tmp_path_factory.mktemp("live", numbered=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env = {
        **clean,
        "EXPORTD_PORT": str(port),
        "EXPORTD_DATA_DIR": str(data_dir / "var"),
        "EXPORTD_WORKER_PROCESSES": "1",
        "EXPORTD_WORKER_THREADS": "2",
        "EXPORTD_API_PROCESSES": "1",
        "EXPORTD_WORKER_METRICS_PORT": str(free_port()),  # 9101 may be taken on a shared machine
        "EXPORTD_MAX_UPLOAD_BYTES": str(20 * 1024 * 1024),
        "PYTHONPATH": str(ROOT),
    }
    log = (data_dir / "run.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "run"], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "exportd run did not come up: " + (data_dir / "run.log").read_text()[-3000:]
                )
            time.sleep(0.2)
        printed = [
            line for line in (data_dir / "run.log").read_text().splitlines() if line.startswith("API key: ")
        ]
        api_key = printed[0].removeprefix("API key: ").strip()
        # The client verbs read EXPORTD_API_KEY (a client setting, not one of the service's).
        env = {**clean, "PYTHONPATH": str(ROOT), "EXPORTD_API_KEY": api_key}
        yield Live(url=url, env=env, data_dir=data_dir / "var", api_key=api_key)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
