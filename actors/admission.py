"""Memory admission: a job starts only when its estimated peak fits in its worker process's budget.

Each worker process gets a share of the container's memory limit (read from the cgroup, or
EXPORTD_WORKER_MEMORY_BYTES), less what a process holds before any job. Before a job starts,
its peak is estimated from its inputs' headers (exporters/estimate.py) and:

- if it could never fit, even alone, it fails at once as `input_too_large`, with both figures;
- if it fits beside the jobs already running, it starts;
- otherwise its thread waits (first come, first served) until enough running jobs finish.

Why the thread waits rather than the message being put back with a delay: a process holds at
most as many messages as it has threads (pool.py sets the prefetch), so a waiting message keeps no
other worker from work it could do, it is not counted as a retry, and it starts the moment memory
frees instead of after a guessed delay; if the process dies meanwhile, the message returns to the
queue with its heartbeat as any other. This runs as Dramatiq middleware listed before TimeLimit,
so the wait is not counted against the job's time limit, and before the actor runs, so the job's
record stays `queued` while it waits (the actor marks it running).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

from dramatiq.middleware import Middleware, SkipMessage

from actors import metrics, running
from actors.export import ACTOR_OF_QUEUE
from actors.memory import TRIM_AFTER_BYTES, release_free_memory
from actors.outcomes import end_job
from exporters import registry
from exporters.base import Limits
from exporters.estimate import Estimate, EstimateInput, estimate_job
from storage.base import Storage, StorageUnavailable
from storage.jobs import JobError, RecordNotFound, Records

log = logging.getLogger("exportd.admission")

MiB = 1024 * 1024

#: What a worker process holds with no job running: interpreter, Pillow, pypdfium2, reportlab,
#: boto3, the broker and its threads, and what glibc keeps between small jobs. Measured in the
#: image under podman: an idle worker container (supervisor and two workers) used 76 MiB in its
#: cgroup, each process 53–55 MiB of anonymous memory, largely shared since the fork; a worker
#: process back at 56 MiB after big jobs (scripts/memory-under-podman).
PROCESS_BASE_BYTES = 120 * MiB
#: The pool's supervisor, which forks the workers (its pages are shared with them until written).
SUPERVISOR_BYTES = 40 * MiB
#: A cgroup v1 "no limit" is a huge number near 2**63; anything above this is taken as no limit.
_UNLIMITED = 1 << 60


def container_memory_limit(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The memory limit of this container from its cgroup (v2, then v1), or None when it has none."""
    for path in (cgroup_root / "memory.max", cgroup_root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            continue
        return value if value < _UNLIMITED else None
    return None


def worker_budget_bytes(*, override_bytes: int, processes: int, limit_bytes: int | None) -> int:
    """Bytes for jobs in each of `processes` worker processes.

    `override_bytes` (EXPORTD_WORKER_MEMORY_BYTES) wins when set; otherwise the container's limit
    (or, without one, the machine's memory) less the supervisor, shared among the processes, less
    each process's base.
    """
    if override_bytes > 0:
        return override_bytes
    if limit_bytes is None:
        limit_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(0, (limit_bytes - SUPERVISOR_BYTES) // max(1, processes) - PROCESS_BASE_BYTES)


class MemoryBudget:
    """Bytes shared by the jobs of one process: taken before a job starts, given back after it."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._used = 0
        metrics.MEMORY_BUDGET.set(capacity_bytes)
        metrics.MEMORY_ADMITTED.set(0)
        self._turns: collections.deque[object] = collections.deque()
        self._changed = threading.Condition()

    @property
    def used_bytes(self) -> int:
        with self._changed:
            return self._used

    def fits(self, nbytes: int) -> bool:
        """Whether a job of `nbytes` could ever run here (alone)."""
        return nbytes <= self.capacity_bytes

    def acquire(self, nbytes: int, *, on_wait: Callable[[], None] | None = None) -> None:
        """Take `nbytes`, waiting in turn until they are free. `nbytes` must fit (see fits)."""
        if not self.fits(nbytes):
            raise ValueError(f"{nbytes} bytes can never fit in {self.capacity_bytes}")
        turn = object()
        with self._changed:
            self._turns.append(turn)
            try:
                if not self._can_take(turn, nbytes) and on_wait is not None:
                    on_wait()
                self._changed.wait_for(lambda: self._can_take(turn, nbytes))
                self._used += nbytes
                metrics.MEMORY_ADMITTED.set(self._used)
            finally:
                self._turns.remove(turn)
                self._changed.notify_all()

    def _can_take(self, turn: object, nbytes: int) -> bool:
        # First come, first served: a big job is not overtaken forever by small ones.
        return self._turns[0] is turn and self._used + nbytes <= self.capacity_bytes

    def release(self, nbytes: int) -> None:
        with self._changed:
            self._used -= nbytes
            metrics.MEMORY_ADMITTED.set(self._used)
            self._changed.notify_all()


class MemoryAdmission(Middleware):
    """Admits each export job against this process's MemoryBudget before its actor runs (see the module)."""

    def __init__(
        self,
        budget: MemoryBudget,
        *,
        records_for: Callable[[], Records],
        storage: Storage,
        limits: Limits,
    ) -> None:
        self.budget = budget
        self._records_for = records_for
        self._storage = storage
        self._limits = limits
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def before_process_message(self, broker: Any, message: Any) -> None:
        if message.actor_name not in ACTOR_OF_QUEUE.values():
            return
        job_id = message.args[0]
        estimate = self.estimate(job_id)
        if estimate is None:
            return
        ctx = {
            "job_id": job_id,
            "needs_mib": estimate.peak_mib,
            "budget_mib": self.budget.capacity_bytes // MiB,
        }
        if not self.budget.fits(estimate.peak_bytes):
            end_job(
                self._records_for(),
                job_id,
                error=JobError(
                    "input_too_large",
                    f"converting this export needs about {estimate.peak_mib} MiB ({estimate.basis}), "
                    f"a worker has {self.budget.capacity_bytes // MiB} MiB; "
                    "send a smaller file, or ask the operator for workers with more memory",
                ),
            )
            log.warning("job refused: it can never fit in a worker's memory", extra=ctx)
            raise SkipMessage()
        self.budget.acquire(
            estimate.peak_bytes,
            on_wait=lambda: log.info("job waits for memory; it stays queued", extra=ctx),
        )
        with self._lock:
            self._held[message.message_id] = estimate.peak_bytes
        # Should the OOM killer strike, the supervisor blames the job holding most of the memory.
        running.expect(job_id, estimated_bytes=estimate.peak_bytes)
        if estimate.peak_bytes >= TRIM_AFTER_BYTES:
            # What small jobs left free in the heap would not serve this job's large buffers
            # (mapped apart above glibc's mmap threshold): give it back first.
            release_free_memory()

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        with self._lock:
            nbytes = self._held.pop(message.message_id, None)
        if nbytes is None:
            return
        running.forget_expected(message.args[0])
        self.budget.release(nbytes)
        if nbytes >= TRIM_AFTER_BYTES:
            release_free_memory()

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self.after_process_message(broker, message)

    def estimate(self, job_id: str) -> Estimate | None:
        """The job's estimated peak, or None when there is nothing to admit.

        None for a job that is gone or finished (the actor says so), and for inputs whose headers
        cannot be read: the converter then fails them with its own error before decoding anything.
        Raises RecordsUnavailable (Redis down: the message is retried).
        """
        try:
            job = self._records_for().get_job(job_id)
        except RecordNotFound:
            return None
        if job.finished:
            return None
        try:
            kind = registry.find([u.content_type for u in job.inputs], job.format).kind
            inputs = [EstimateInput(u.content_type, u.size, self._opener(u.key)) for u in job.inputs]
            estimate = estimate_job(
                kind,
                job.format,
                inputs,
                job.options,
                max_frames=self._limits.max_frames,
                max_pages=self._limits.max_pages,
            )
            if estimate.pixels:
                metrics.INPUT_PIXELS.labels(metrics.conversion_label(kind, job.format)).inc(estimate.pixels)
            return estimate
        except StorageUnavailable:
            raise  # transient: the message is retried
        except Exception as exc:  # a damaged header, a missing input: the converter's errors say it better
            log.info(
                "no memory estimate for this job; its converter decides",
                extra={"job_id": job_id, "error": type(exc).__name__},
            )
            return None

    def _opener(self, key: str) -> Callable[[], AbstractContextManager[BinaryIO]]:
        return lambda: self._storage.open(key)
