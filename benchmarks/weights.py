"""What each process pays to start: wall time and peak RSS of the light commands and of the API.

    .venv/bin/python benchmarks/weights.py [--runs 5]

Each command runs in a fresh interpreter, several times; the median wall and CPU (user + system)
times and the largest peak RSS are printed. The targets are judged on CPU time: on a shared machine
the wall time mostly measures the other processes (`python -c pass` is printed as the floor). The API (`import service.wsgi`, what a gunicorn worker loads) is compared with a
baseline measured in the same run: the same import plus what every process used to load with it
before the ground floor (every conversion family, the fonts registered: `registry.prepare()`).
Targets (issue 12): keygen and check-worker under 150 ms and 40 MB; the API at least 35 MB lighter
than the baseline. Exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

API = "import service.wsgi"
BASELINE = "import service.wsgi\nfrom exporters import registry\nregistry.prepare()"
COMMANDS = {
    "python -c pass (the floor)": "pass",
    "exportd keygen": "import sys\nfrom service.cli import main\nsys.exit(main(['keygen']))",
    "exportd check-worker": "import sys\nfrom service.cli import main\nsys.exit(main(['check-worker']))",
    "API (import service.wsgi)": API,
    "baseline (API + every family, fonts)": BASELINE,
}


def environment(alive_file: Path) -> dict[str, str]:
    """Settings enough to build the app without connecting to anything."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "EXPORTD_SIGNING_KEYS": "bench:" + "a" * 43,
        "EXPORTD_REDIS_URL": "redis://127.0.0.1:9/0",  # never dialled at import
        "EXPORTD_WORKER_ALIVE_FILE": str(alive_file),
        "EXPORTD_DATA_DIR": str(alive_file.parent),
    }


def run_once(code: str, env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS bytes) of one interpreter running `code`."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):  # check-worker exits 1 when no pool is alive: still measured
        raise SystemExit(f"{code!r} failed with {process.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def measure(runs: int) -> dict[str, tuple[float, float, int]]:
    with tempfile.TemporaryDirectory(prefix="exportd-weights-") as tmp:
        alive = Path(tmp) / "alive"
        alive.touch()
        env = environment(alive)
        figures = {}
        for label, code in COMMANDS.items():
            samples = [run_once(code, env) for _ in range(runs)]
            figures[label] = (
                statistics.median(wall for wall, _, _ in samples),
                statistics.median(cpu for _, cpu, _ in samples),
                max(rss for _, _, rss in samples),
            )
        return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    figures = measure(args.runs)
    mib = 1024 * 1024
    print(f"{'':40} {'wall':>7}     {'CPU':>7}     {'peak RSS':>10}")
    for label, (wall, cpu, rss) in figures.items():
        print(f"{label:40} {wall * 1000:7.0f} ms  {cpu * 1000:7.0f} ms  {rss / mib:6.1f} MiB")
    api = figures["API (import service.wsgi)"][2]
    baseline = figures["baseline (API + every family, fonts)"][2]
    print(f"API lighter than the baseline by {(baseline - api) / mib:.1f} MiB (ratio {api / baseline:.2f})")
    missed = [
        label
        for label in ("exportd keygen", "exportd check-worker")
        if figures[label][1] >= 0.150 or figures[label][2] >= 40 * mib
    ]
    if baseline - api < 35 * mib:
        missed.append("API at least 35 MiB lighter")
    if missed:
        print("missed: " + ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
