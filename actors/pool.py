"""The worker pool: N processes × M threads of Dramatiq workers, supervised.

Dramatiq's own CLI shuts the whole pool down when one process dies. exportd's converters run
native decoders, and one crashing file must not stop the service, so this supervisor replaces
a dead process instead; the dead process's unfinished messages go back to the queue when its
heartbeat expires (the sweeper makes that prompt, actors/sweeper.py).

How a process died decides whether its jobs are to blame (actors/running.py): a crash signal or
an OOM kill counts against the job that caused it, and a job that crashed its process twice is
failed; a SIGKILL from outside (an operator, a node drain) counts against nobody.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from dramatiq import Worker

from actors import metrics, running
from actors.broker import EXPORT_QUEUE
from actors.memory import keep_large_buffers
from actors.queues import WEBHOOK_QUEUE

log = logging.getLogger("exportd.pool")

#: Restarting a process that keeps dying at once would spin: back off up to this long.
MAX_RESTART_DELAY_S = 30.0


#: How often the supervisor touches its alive file while every process lives.
ALIVE_EVERY_S = 5.0


@dataclass(frozen=True)
class PoolConfig:
    processes: int
    threads: int
    poll_ms: int  # longest idle sleep between queue polls: the idle latency bound
    shutdown_timeout_s: int
    queues: tuple[str, ...] = (EXPORT_QUEUE,)
    alive_file: Path | None = None  # touched every ALIVE_EVERY_S while all processes are alive
    # Where each process marks the jobs it runs (one directory per process); None: no blame is told.
    run_dir: Path | None = None
    sweep_interval_s: float = 10.0
    # Processes that deliver webhooks (the webhooks queue), beside the `processes` that convert:
    # a slow receiver holds one of their threads, never a conversion's.
    webhook_processes: int = 0
    webhook_threads: int = 8

    @property
    def conversion_queues(self) -> tuple[str, ...]:
        return tuple(q for q in self.queues if q != WEBHOOK_QUEUE)


#: How recent an OOM kill in the cgroup must be for a process found dead of SIGKILL to count as it.
OOM_WINDOW_S = 5.0


def _child(
    boot: Callable[[], Any], config: PoolConfig, index: int, queues: tuple[str, ...], threads: int
) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    keep_large_buffers()
    if config.run_dir is not None:
        running.use_directory(config.run_dir / str(index))
    broker = boot()
    broker.emit_after("process_boot")
    worker = Worker(broker, queues=set(queues), worker_threads=threads, worker_timeout=config.poll_ms)
    # Prefetch no more than the threads can start: a busy process must not hold messages an idle one could run.
    worker.queue_prefetch = threads
    worker.start()
    log.info("worker process ready", extra={"worker": index, "threads": threads, "queues": ",".join(queues)})
    while not stop.wait(1.0):
        pass
    log.info("worker process stopping", extra={"worker": index})
    worker.stop(timeout=config.shutdown_timeout_s * 1000)
    broker.close()


class Pool:
    """`boot` builds a process's broker; `note_crash(job_id)` counts a crash against a job (it may
    raise while Redis is down: it is called again); `sweep()` runs the sweeper once."""

    def __init__(
        self,
        boot: Callable[[], Any],
        config: PoolConfig,
        *,
        note_crash: Callable[[str], None] | None = None,
        sweep: Callable[[], Any] | None = None,
        publisher: Any = None,
        webhook_boot: Callable[[], Any] | None = None,
    ) -> None:
        self.boot = boot
        self.webhook_boot = webhook_boot  # builds a webhook process's broker (config.webhook_processes)
        self.config = config
        self.note_crash = note_crash
        self.sweep = sweep
        self.publisher = publisher  # actors.capabilities.Publisher: what this pool can run
        self._ctx = multiprocessing.get_context("fork")
        self._procs: dict[int, BaseProcess] = {}
        self._stopping = threading.Event()
        self._crashes: list[float] = []
        self._blamed: list[str] = []  # jobs whose crash is still to be recorded (Redis was down)
        self._oom_kills = running.oom_kills()
        self._oom_at = float("-inf")

    def _indexes(self) -> list[int]:
        """Conversion processes first (0..processes-1, none when the pool converts nothing), then
        the webhook processes."""
        converting = self.config.processes if self.config.conversion_queues else 0
        webhooks = self.config.webhook_processes if self.webhook_boot is not None else 0
        return list(range(converting)) + [10_000 + i for i in range(webhooks)]

    def _spawn(self, index: int) -> None:
        if index >= 10_000:
            assert self.webhook_boot is not None
            args: tuple[Any, ...] = (self.webhook_boot, self.config, index, (WEBHOOK_QUEUE,),
                                     self.config.webhook_threads)  # fmt: skip
            name = f"exportd-webhooks-{index - 10_000}"
        else:
            args = (self.boot, self.config, index, self.config.conversion_queues, self.config.threads)
            name = f"exportd-worker-{index}"
        proc = self._ctx.Process(target=_child, args=args, name=name)
        proc.start()
        self._procs[index] = proc

    def _restart_delay(self) -> float:
        now = time.monotonic()
        self._crashes = [t for t in self._crashes if now - t < 60] + [now]
        return (
            min(MAX_RESTART_DELAY_S, 0.5 * 2 ** (len(self._crashes) - 1)) if len(self._crashes) > 3 else 0.0
        )

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; returns the exit status."""
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        log.info(
            "worker pool starting",
            extra={"processes": self.config.processes, "threads": self.config.threads, "pid": os.getpid()},
        )
        for index in self._indexes():
            self._spawn(index)
        last_alive = 0.0
        next_sweep = time.monotonic()
        while not self._stopping.wait(0.5):
            self._watch_oom_kills()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.config.sweep_interval_s
                self._publish()
                if self.sweep is not None:
                    self._sweep()
            if (
                all(p.is_alive() for p in self._procs.values())
                and time.monotonic() - last_alive >= ALIVE_EVERY_S
            ):
                self._touch_alive()
                last_alive = time.monotonic()
            self._record_blame()
            for index, proc in list(self._procs.items()):
                if proc.is_alive() or self._stopping.is_set():
                    continue
                if proc.pid is not None:
                    metrics.process_died(proc.pid)
                blamed = self._blame(index, proc.exitcode)
                delay = self._restart_delay()
                log.error(
                    "worker process died; replacing it",
                    extra={"worker": index, "exitcode": proc.exitcode, "restart_in_s": delay,
                           "blamed_jobs": blamed},
                )  # fmt: skip
                if self._stopping.wait(delay):
                    break
                self._spawn(index)
        return self._shutdown()

    def _watch_oom_kills(self) -> None:
        kills = running.oom_kills()
        if kills is not None and self._oom_kills is not None and kills > self._oom_kills:
            self._oom_at = time.monotonic()
        self._oom_kills = kills

    def _blame(self, index: int, exitcode: int | None) -> list[str]:
        """The jobs the death of process `index` counts against; they are recorded by _record_blame."""
        if self.config.run_dir is None:
            return []
        directory = self.config.run_dir / str(index)
        self._watch_oom_kills()
        oom_killed = time.monotonic() - self._oom_at <= OOM_WINDOW_S
        blamed = running.blame(
            running.jobs_in(directory),
            exitcode=exitcode,
            oom_killed=oom_killed,
            crashed=running.crashed_thread(directory),
        )
        metrics.CRASHES.labels(running.cause_of_death(exitcode, oom_killed=oom_killed)).inc()
        self._blamed.extend(blamed)
        self._record_blame()
        return blamed

    def _record_blame(self) -> None:
        while self._blamed and self.note_crash is not None:
            try:
                self.note_crash(self._blamed[0])
            except Exception as exc:  # Redis down: kept, and tried again on the next turn
                log.warning("cannot record a crash yet", extra={"jobs": self._blamed, "error": str(exc)})
                return
            self._blamed.pop(0)

    def _publish(self) -> None:
        if self.publisher is None:
            return
        try:
            self.publisher.publish()
        except Exception as exc:  # Redis down: the next interval tries again
            log.warning("cannot publish what this pool runs", extra={"error": f"{type(exc).__name__}: {exc}"})

    def _sweep(self) -> None:
        assert self.sweep is not None
        try:
            self.sweep()
        except Exception as exc:  # Redis down: the next interval tries again
            log.warning("sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    def _touch_alive(self) -> None:
        if self.config.alive_file is None:
            return
        try:
            self.config.alive_file.touch()
        except OSError as exc:
            log.warning(
                "cannot touch the alive file", extra={"path": str(self.config.alive_file), "error": str(exc)}
            )

    def _shutdown(self) -> int:
        log.info(
            "worker pool stopping; running jobs may finish",
            extra={"timeout_s": self.config.shutdown_timeout_s},
        )
        for proc in self._procs.values():
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_timeout_s + 5
        for proc in self._procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker process did not stop in time; killing it", extra={"pid": proc.pid})
                proc.kill()
                proc.join()
        if self.config.alive_file is not None:
            self.config.alive_file.unlink(missing_ok=True)
        if self.publisher is not None:
            with contextlib.suppress(Exception):  # Redis down: the entry expires by itself
                self.publisher.withdraw()
        log.info("worker pool stopped")
        return 0
