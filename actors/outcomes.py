"""How a job ends, in one place: end_job, and what happens when an actor raised.

end_job is the only function that ends a job: every outcome passes through it (succeeded, failed
with the input's error code, crashed twice, timed out, out of memory, dead-lettered after its
retries, lost from the queue too often, canceled). It writes the terminal record, which in the same Redis
call leaves the open-jobs index, appends one event to the durable events stream and wakes the
requests waiting on the job (storage/jobs.py), and logs one line.

Errors that are not retried are declared once (NOT_RETRIED, the actors' `throws`), and turned into
the job's error by one table (job_error).

What happens to a job whose actor raised anything else: a retry, or its end as `internal_error`.

This replaces Dramatiq's Retries middleware for exportd's actors. Dramatiq's version enqueues the
retry inside an "after" hook, whose errors Dramatiq logs and swallows: with Redis down, the retry
was lost, "a retry is scheduled" was logged anyway, and the message was acked once Redis came
back, leaving the job `running` forever with nothing in Redis to run it.

Here the verdict is decided after the actor raised, but it is carried out just before the message
is acked (a retry: the record goes back to `queued`, then the retry is enqueued) or nacked (the
last attempt: the record is failed). Until that succeeds, the ack or nack does not happen:
Dramatiq retries the post-processing of a message while the broker's connection is down, and
`RecordsOrBrokerDown` is the error that tells it so. Each step is done once per message, so a
retried post-processing does not enqueue two retries; a retry that did reach Redis before its
reply was lost may run the job twice, which at-least-once delivery allows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from dramatiq.common import compute_backoff
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Middleware, MiddlewareError
from dramatiq.middleware.time_limit import TimeLimitExceeded

from actors import metrics
from exporters import registry
from exporters.base import ConversionError
from storage.jobs import CANCELED, Job, JobError, Output, RecordNotFound, Records, RecordsUnavailable

log = logging.getLogger("exportd.export")

INTERNAL_ERROR = JobError(
    "internal_error",
    "the export failed because of a fault in the service; it was retried and then given up",
)


class CrashedTwice(ConversionError):
    code = "worker_crashed"

    def __init__(self) -> None:
        super().__init__(
            "converting this file crashed the worker twice, so it was not tried again; "
            "the file is probably damaged or built to attack image decoders"
        )


class RetriedFault(Exception):
    """A transient fault the job can say in words (an input URL that did not answer): retried
    like any other fault, and if the last retry fails too, the job ends with `error` instead of
    internal_error."""

    def __init__(self, error: JobError) -> None:
        super().__init__(error.message)
        self.error = error


#: Raised by a conversion, these end the job at once: the input's fault (ConversionError and its
#: codes), or work that would exhaust memory or time again if retried.
NOT_RETRIED: tuple[type[BaseException], ...] = (ConversionError, MemoryError, TimeLimitExceeded)


def job_error(exc: BaseException, *, time_limit_s: int | None) -> JobError:
    """The error a job ends with for one of the NOT_RETRIED exceptions."""
    if isinstance(exc, ConversionError):
        return JobError(exc.code, exc.message)
    if isinstance(exc, MemoryError):
        return JobError(
            "input_too_large", "converting this file needed more memory than a worker has; try a smaller file"
        )
    if isinstance(exc, TimeLimitExceeded):
        limit = f" ({time_limit_s} s, EXPORTD_JOB_TIME_LIMIT_S)" if time_limit_s else ""
        return JobError(
            "time_limit_exceeded",
            f"the conversion took longer than this service allows{limit}; try a smaller file or fewer pages",
        )
    raise TypeError(f"{type(exc).__name__} is not an error that ends a job")


def _conversion_of(job: Job) -> str:
    try:
        conversion = registry.find([u.content_type for u in job.inputs], job.format)
    except ConversionError:
        return "unknown"
    return metrics.conversion_label(conversion.kind, conversion.format)


def end_job(
    records: Records,
    job: Job | str,
    *,
    outputs: tuple[Output, ...] = (),
    error: JobError | None = None,
    cancel: str | None = None,
    release: Callable[[Job], None] | None = None,
) -> Job:
    """End the job (succeeded without `error`): terminal record, its event and its wake-up, once.

    `job`: the record as this caller last saw it (tried first, which saves a read), or its id.
    `cancel`: CANCEL_NOW ends it canceled; CANCEL_REQUEST (DELETE) ends it canceled unless it is
    running, which is only marked for its worker to stop (the marked job is returned). A job whose
    cancel was requested ends canceled however it ends, with no outputs (Records.finish_job_once).
    `release`: called once with the ended job, to queue its tenant's held jobs (fair scheduling);
    should it fail, the sweeper releases them later (storage/tenants.py).
    A job that had already ended is returned unchanged. Raises RecordNotFound, RecordsUnavailable.
    """
    seen = job if isinstance(job, Job) else None
    job_id = job.id if isinstance(job, Job) else job
    ended, by_this_call = records.finish_job_once(
        job_id, outputs=outputs, error=error, seen=seen, cancel=cancel
    )
    if not by_this_call:
        if ended.finished:
            log.info(
                "job had already ended; nothing changed", extra={"job_id": job_id, "status": ended.status}
            )
        else:
            log.info(
                "cancel requested; the worker stops the job at its next safe point", extra={"job_id": job_id}
            )
        return ended
    code = ended.error.code if ended.error else ended.status  # succeeded, canceled or the error's code
    metrics.JOBS.labels(_conversion_of(ended), code).inc()
    ctx: dict[str, Any] = {"job_id": job_id, "status": ended.status, "attempt": ended.attempts}
    if ended.started_at and ended.finished_at:
        ctx["ms"] = round((ended.finished_at - ended.started_at) * 1000)
    if ended.error is not None:
        log.info("job failed", extra={**ctx, "code": ended.error.code, "reason": ended.error.message})
    elif ended.status == CANCELED:
        log.info("job canceled", extra=ctx)
    else:
        log.info("job succeeded", extra={**ctx, "outputs": len(ended.outputs)})
    if release is not None:
        try:
            release(ended)
        except (RecordsUnavailable, redis.ConnectionError, redis.TimeoutError):
            log.warning(
                "could not release the tenant's held jobs; the sweeper will", extra={"job_id": job_id}
            )
    return ended


class RecordsOrBrokerDown(MiddlewareError, ConnectionClosed):
    """Redis could not take a job's outcome: Dramatiq must retry the ack or nack later.

    A MiddlewareError, so Dramatiq's before-hooks let it through; a broker connection error, so
    Dramatiq's post-processing waits and tries again instead of acking the message.
    """


@dataclass
class _Verdict:
    retry_in_ms: int | None  # None: no retry left, the job fails
    error: str
    ends_as: JobError = INTERNAL_ERROR  # the job's error if no retry is left
    record_done: bool = False
    enqueued: bool = False


_VERDICT = "_exportd_verdict"


class JobOutcomes(Middleware):
    """Retries with exponential backoff, and job records kept true, for the actors in `actor_names`.

    Actor options read: max_retries, min_backoff, max_backoff (ms), and throws (exceptions that
    are never retried).
    """

    def __init__(
        self,
        records_for: Callable[[], Records],
        actor_names: frozenset[str],
        release: Callable[[Job], None] | None = None,
    ) -> None:
        self._records_for = records_for
        self._actor_names = actor_names
        self._release = release

    @property
    def actor_options(self) -> set[str]:
        return {"max_retries", "min_backoff", "max_backoff", "throws"}

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is None or message.actor_name not in self._actor_names:
            return
        actor = broker.get_actor(message.actor_name)
        error = type(exception).__name__
        throws = actor.options.get("throws")
        retries = message.options.get("retries", 0)
        if (throws and isinstance(exception, throws)) or retries >= actor.options.get("max_retries", 0):
            message.fail()
            ends_as = exception.error if isinstance(exception, RetriedFault) else INTERNAL_ERROR
            setattr(message, _VERDICT, _Verdict(retry_in_ms=None, error=error, ends_as=ends_as))
            return
        _, delay_ms = compute_backoff(
            retries,
            factor=actor.options.get("min_backoff", 1000),
            max_backoff=actor.options.get("max_backoff", 60_000),
        )
        setattr(message, _VERDICT, _Verdict(retry_in_ms=int(delay_ms), error=error))

    def before_ack(self, broker: Any, message: Any) -> None:
        verdict: _Verdict | None = getattr(message, _VERDICT, None)
        if verdict is None or verdict.retry_in_ms is None:
            return
        job_id = message.args[0]
        try:
            if not verdict.record_done:
                # Past its retention (RecordNotFound), the retry will find nothing to do.
                with contextlib.suppress(RecordNotFound):
                    self._records_for().requeue_job(job_id)
                verdict.record_done = True
            if not verdict.enqueued:
                retry = message.copy(
                    options={**message.options, "retries": message.options.get("retries", 0) + 1}
                )
                broker.enqueue(retry, delay=verdict.retry_in_ms)
                verdict.enqueued = True
        except (RecordsUnavailable, redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning(
                "cannot schedule the retry of a job yet: Redis is unreachable; trying again",
                extra={"job_id": job_id, "error": verdict.error},
            )
            raise RecordsOrBrokerDown(str(exc)) from None  # type: ignore[no-untyped-call]
        metrics.RETRIES.inc()
        log.warning(
            "job raised; a retry is scheduled",
            extra={"job_id": job_id, "error": verdict.error, "retry_in_ms": verdict.retry_in_ms},
        )

    def before_nack(self, broker: Any, message: Any) -> None:
        verdict: _Verdict | None = getattr(message, _VERDICT, None)
        if verdict is None or verdict.retry_in_ms is not None or verdict.record_done:
            return
        job_id = message.args[0]
        try:
            end_job(self._records_for(), job_id, error=verdict.ends_as, release=self._release)
        except RecordNotFound:
            pass
        except (RecordsUnavailable, redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning(
                "cannot record the failure of a job yet: Redis is unreachable; trying again",
                extra={"job_id": job_id},
            )
            raise RecordsOrBrokerDown(str(exc)) from None  # type: ignore[no-untyped-call]
        verdict.record_done = True
        metrics.DEAD_LETTERS.inc()
        log.error(
            "job failed after its last retry; its message is kept in the dead letters",
            extra={"job_id": job_id, "error": verdict.error},
        )
