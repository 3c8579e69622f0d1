"""The sweeper: no accepted job stays open without something in Redis that will run it.

Run by every pool supervisor once per interval (a Redis lock lets one of them do it per interval
across the cluster). Each sweep:

1. returns the messages of dead worker processes to their queues at once. Dramatiq does this on a
   random 0.1 % of its Redis commands, so a dead worker's jobs came back after 32-97 s; with the
   sweep they come back within the heartbeat timeout plus one interval.
2. finds open jobs (queued or running, older than a grace period) that have no message in any of
   their queue's hashes (waiting, delayed for a retry, or fetched by a live worker) and queues
   them again; a job lost more than `max_sweeps` times is failed as `internal_error`.

How a job can lose its message: Redis killed and restarted from an AOF that missed the last
writes, an API process that stored the record but could not queue the message nor delete the
record, a message acked by a Dramatiq version that swallowed a failed retry. A message found
missing while it was in fact moving between two hashes (a retry becoming due) is queued twice:
jobs are safe to run twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dramatiq import Message
from dramatiq.common import dq_name

from actors.outcomes import end_job
from storage.jobs import Job, JobError, RecordNotFound, Records
from storage.tenants import Tenants

log = logging.getLogger("exportd.sweeper")

#: Half of Lua's default stack, as Dramatiq's own maintenance uses it (unpacking dead letters).
_LUA_UNPACK = 4000


@dataclass(frozen=True)
class SweepReport:
    checked: int = 0
    requeued: int = 0
    failed: int = 0


class Sweeper:
    def __init__(
        self,
        *,
        records: Records,
        broker: Any,
        actor_of_queue: Mapping[str, str],
        interval_s: float,
        grace_s: float,
        max_sweeps: int = 3,
        tenants: Tenants | None = None,
        release: Callable[[Job], None] | None = None,
        other_queues: tuple[str, ...] = (),
    ) -> None:
        self.records = records
        self.broker = broker
        self.actor_of_queue = dict(actor_of_queue)
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.max_sweeps = max_sweeps
        self._token = uuid.uuid4().hex
        self.tenants = tenants  # held jobs are not lost; backlogs left behind are released
        self.release = release
        # Queues of messages that are not jobs (webhook deliveries): only their dead workers' messages are returned.
        self.other_queues = other_queues

    def sweep(self, *, now: float | None = None) -> SweepReport | None:
        """One sweep, unless another supervisor made one within the interval (then None)."""
        now = time.time() if now is None else now
        lock = f"{self.records.namespace}:sweeper"
        if not self.records.redis.set(
            lock, self._token, nx=True, px=max(1, int(self.interval_s * 1000 * 0.9))
        ):
            return None
        for queue in (*self.actor_of_queue, *self.other_queues):
            for name in (queue, dq_name(queue)):
                self._requeue_dead_workers(name, now)
        if self.tenants is not None:
            self.tenants.repair(self._enqueue)
        candidates = self.records.open_job_ids(created_before=now - self.grace_s, limit=10_000)
        if not candidates:
            return SweepReport()
        # Held jobs first, then messages: a job released in between is still seen, as held or by
        # its message (the release queues it right after leaving the backlog).
        held = self.tenants.held_job_ids() if self.tenants is not None else set()
        live = self._jobs_with_messages() | held  # held: waiting their turn in a backlog, on purpose
        if self.tenants is not None and any(job_id not in live for job_id in candidates):
            # A job released after the held jobs were read gets its message a moment later, possibly
            # after the scan: look once more before judging it lost (saves running it twice).
            live |= self._jobs_with_messages()
        requeued = failed = 0
        for job_id in candidates:
            if job_id in live:
                continue
            try:
                job = self.records.get_job(job_id)
            except RecordNotFound:
                self.records.forget_open(job_id)  # expired: nothing left to run
                continue
            if job.finished:
                self.records.forget_open(job_id)
                continue
            ctx = {"job_id": job_id, "status": job.status, "sweeps": job.sweeps}
            if job.sweeps >= self.max_sweeps:
                end_job(
                    self.records,
                    job,
                    error=JobError(
                        "internal_error",
                        f"the job was lost from the queue {job.sweeps + 1} times (Redis restarts) "
                        "and was given up; submit it again",
                    ),
                    release=self.release,
                )
                log.error("job lost from the queue again; failed", extra=ctx)
                failed += 1
                continue
            self.records.sweep_job(job_id)
            self._enqueue(job_id, job.queue)
            log.warning("job was open with no message behind it; queued again", extra=ctx)
            requeued += 1
        return SweepReport(checked=len(candidates), requeued=requeued, failed=failed)

    def _enqueue(self, job_id: str, queue: str) -> None:
        queue = queue if queue in self.actor_of_queue else next(iter(self.actor_of_queue))
        self.broker.enqueue(
            Message(
                queue_name=queue, actor_name=self.actor_of_queue[queue], args=(job_id,), kwargs={}, options={}
            )
        )

    def _requeue_dead_workers(self, queue_name: str, now: float) -> None:
        # Dramatiq's own maintenance pass (the dispatch script's documented arguments), made certain.
        self.broker.scripts["dispatch"](
            args=[
                "qsize",
                int(now * 1000),
                queue_name,
                self.broker.broker_id,
                self.broker.heartbeat_timeout,
                self.broker.dead_message_ttl,
                1,
                _LUA_UNPACK,
            ],
            keys=[self.broker.namespace],
        )

    def _jobs_with_messages(self) -> set[str]:
        """Job ids with a message waiting, delayed or being worked on, in any of the queues."""
        actors = set(self.actor_of_queue.values())
        live: set[str] = set()
        client = self.records.redis
        for queue in self.actor_of_queue:
            for name in (queue, dq_name(queue)):
                for _, data in client.hscan_iter(f"{self.broker.namespace}:{name}.msgs", count=1000):
                    try:
                        message = Message.decode(data)
                    except Exception:  # not ours to judge; it is not a job's message
                        continue
                    if message.actor_name in actors and message.args:
                        live.add(str(message.args[0]))
        return live
