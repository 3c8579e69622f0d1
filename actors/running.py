"""Which jobs a worker process is running, kept where its supervisor can read them after it dies.

One small file per running job, named by the job id, in a directory of that process alone: the
thread running it and the job's estimated peak memory. The process also writes Python's fault
report there when it crashes (faulthandler), which names the thread that crashed. When a process
dies, the supervisor reads the directory and decides, from how the process died, which of those
jobs are to blame (see blame() and actors/pool.py).
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

FAULT_LOG = "fault.log"

#: Signals a process gets from its own code: a decoder that crashed on a file.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGILL})

_directory: Path | None = None
_fault_file: IO[str] | None = None
_expected_bytes: dict[str, int] = {}  # job id -> estimated peak, told before the job runs


def use_directory(path: Path) -> None:
    """In a worker process, before its threads start: mark running jobs in `path` (made empty)."""
    global _directory, _fault_file
    path.mkdir(parents=True, exist_ok=True)
    for old in path.iterdir():
        old.unlink(missing_ok=True)
    _directory = path
    _fault_file = open(path / FAULT_LOG, "w")  # noqa: SIM115  # open for the life of the process
    faulthandler.enable(file=_fault_file, all_threads=True)


def expect(job_id: str, *, estimated_bytes: int) -> None:
    """Tell the marker of a job about to run its estimated peak memory (the admission knows it)."""
    _expected_bytes[job_id] = estimated_bytes


def forget_expected(job_id: str) -> None:
    """Drop what expect() told, for a job that did not run (a duplicate delivery, say)."""
    _expected_bytes.pop(job_id, None)


@contextlib.contextmanager
def marked(job_id: str, *, estimated_bytes: int | None = None) -> Iterator[None]:
    """Mark `job_id` as running on this thread for the duration of the block."""
    estimated_bytes = _expected_bytes.pop(job_id, estimated_bytes)
    directory = _directory
    marker: Path | None = None
    if directory is not None and job_id.isalnum():
        marker = directory / job_id
        try:
            marker.write_text(
                json.dumps({"thread": threading.get_ident(), "estimated_bytes": estimated_bytes})
            )
        except OSError:
            marker = None  # no blame can be told for it; the job still runs
    try:
        yield
    finally:
        if marker is not None:
            with contextlib.suppress(OSError):
                marker.unlink()


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    thread: int | None
    estimated_bytes: int | None


def jobs_in(directory: Path) -> list[RunningJob]:
    """The jobs marked in `directory` (a dead process's directory)."""
    try:
        names = sorted(name for name in os.listdir(directory) if name.isalnum())
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        try:
            data = json.loads((directory / name).read_text() or "{}")
        except (OSError, ValueError):
            data = {}
        found.append(RunningJob(name, data.get("thread"), data.get("estimated_bytes")))
    return found


def crashed_thread(directory: Path) -> int | None:
    """The thread named by the fault report in `directory`, None without one."""
    try:
        text = (directory / FAULT_LOG).read_text(errors="replace")
    except OSError:
        return None
    found = re.search(r"Current thread (0x[0-9a-fA-F]+)", text)
    return int(found.group(1), 16) if found else None


def blame(
    jobs: list[RunningJob], *, exitcode: int | None, oom_killed: bool, crashed: int | None
) -> list[str]:
    """The jobs a dead process's death counts against: only those that crashed it themselves.

    - a crash signal (SIGSEGV, SIGABRT, ...): the job on the thread the fault report names, or,
      without a report, every job the process was running;
    - SIGKILL while the container's OOM killer struck: the job holding most of the process's
      estimated memory (more than half), or the only job running;
    - anything else (SIGKILL or SIGTERM from outside: an operator, a node drain, a supervisor): none.
    """
    if exitcode is None or exitcode >= 0 or not jobs:
        return []
    signum = -exitcode
    if signum in CRASH_SIGNALS:
        on_thread = [j.job_id for j in jobs if crashed is not None and j.thread == crashed]
        return on_thread or [j.job_id for j in jobs]
    if signum == signal.SIGKILL and oom_killed:
        if len(jobs) == 1:
            return [jobs[0].job_id]
        sized = [j for j in jobs if j.estimated_bytes]
        if sized:
            biggest = max(sized, key=lambda j: j.estimated_bytes or 0)
            if (biggest.estimated_bytes or 0) * 2 > sum(j.estimated_bytes or 0 for j in sized):
                return [biggest.job_id]
    return []


def oom_kills() -> int | None:
    """How many processes the OOM killer has killed in this process's cgroup, None if unknown."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            root, name = Path("/sys/fs/cgroup"), "memory.events"
        elif "memory" in controllers.split(","):  # cgroup v1
            root, name = Path("/sys/fs/cgroup/memory"), "memory.oom_control"
        else:
            continue
        # Inside a container the cgroup's own directory is usually mounted as the root.
        candidates = [root / path.lstrip("/") / name, root / name]
        for file in candidates:
            try:
                text = file.read_text()
            except OSError:
                continue
            found = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
            if found:
                return int(found.group(1))
    return None


def cause_of_death(exitcode: int | None, *, oom_killed: bool) -> str:
    """A bounded label for how a worker process died: crash, oom, killed or exit."""
    if exitcode is not None and exitcode < 0:
        if -exitcode in CRASH_SIGNALS:
            return "crash"
        if -exitcode == signal.SIGKILL:
            return "oom" if oom_killed else "killed"
    return "exit"
