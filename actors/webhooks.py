"""Webhook delivery (Standard Webhooks): from the durable events stream to the receiver, at least once.

How an event reaches a receiver, and why none is lost:

1. A job ends in end_job; the same Redis call that writes its terminal record appends an entry to
   the stream `{ns}:events` (storage/jobs.py). Nothing can end a job without its event.
2. The Dispatcher reads that stream through the consumer group `webhooks`, in every webhook process
   (one consumer each). For each event whose job has an endpoint (its `webhook_url`, else its
   tenant's default) and wants that event, it queues a message on the `webhooks` queue, and only
   then acknowledges (XACK) the entry. A process that dies between the read and the XACK leaves
   the entry pending in the group; another process (or its replacement) claims it (XAUTOCLAIM)
   once it has been idle for `claim_idle_ms`, and queues it again.
3. The `deliver_webhook` actor, on worker threads of processes that run nothing else, posts the
   event through the outbound policy (actors/outbound.py: no redirects, the checked address, a
   time limit, a capped answer), records the attempt in the job's delivery log, and on failure
   queues the next attempt as a delayed message (Dramatiq keeps it in Redis: it survives worker
   and Redis restarts) after the next delay of the retry schedule, with ±20 % jitter. A worker
   killed in the middle of a delivery leaves its message unacknowledged: it is delivered again
   with the same webhook-id.

The webhook-id of an event is derived from the job and the event (a job ends once), so it is the
same on every attempt, every re-send and in every process: receivers deduplicate on it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from actors import outbound
from actors.queues import WEBHOOK_QUEUE
from storage.jobs import Job, JobEvent, RecordNotFound, Records, RecordsUnavailable, text
from storage.sealing import Unsealable
from storage.webhooks import EVENTS, Attempt, Webhooks, secret_bytes, webhook_id

log = logging.getLogger("exportd.webhooks")

WEBHOOK_ACTOR = "deliver_webhook"
#: The consumer group of the events stream that webhook processes read.
GROUP = "webhooks"
#: Most bytes of a receiver's answer read (and then dropped): receivers answer with a status.
MAX_RESPONSE_BYTES = 4096
#: Jitter of each retry delay: ±this fraction.
JITTER = 0.2
#: How long a delivery waits for Redis to come back to record its attempt, before giving up (the
#: message is then not acknowledged: it is delivered again once its process is gone).
REDIS_PATIENCE_S = 300.0

#: Enqueue a delivery: (job id, event, endpoint URL, delay in ms, re-send).
Enqueue = Callable[[str, str, str, int, bool], None]


def sign(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """One `v1,<base64>` signature of Standard Webhooks: HMAC-SHA256 of "id.timestamp.body"."""
    mac = hmac.new(secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _patiently(what: str, fn: Callable[[], Any], patience_s: float = REDIS_PATIENCE_S) -> Any:
    """fn(), tried again each second while Redis is unreachable, for up to patience_s."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return fn()
        except (RecordsUnavailable, redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning(f"cannot {what} yet: Redis is unreachable; trying again", extra={"error": str(exc)})
            time.sleep(1.0)


class Delivery:
    """What the deliver_webhook actor runs: one attempt of one event to one endpoint."""

    def __init__(self, *, records: Records, webhooks: Webhooks, view: Callable[[Job], dict[str, Any]], policy: Any,
                 schedule: tuple[int, ...], timeout_s: float, enqueue: Enqueue,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.records = records
        self.webhooks = webhooks
        self.view = view  # the job as GET /v1/exports/{id} shows it, with fresh links
        self.policy = policy  # actors.outbound.OutboundPolicy
        self.schedule = schedule
        self.timeout_s = timeout_s
        self.enqueue = enqueue
        self.clock = clock

    def __call__(self, job_id: str, event: str, url: str, resend: bool = False) -> None:
        # Here, not at the top: the API imports this module (enqueuer) and counts no deliveries.
        from actors import metrics

        msg_id = webhook_id(job_id, event)
        ctx: dict[str, Any] = {"job_id": job_id, "webhook_id": msg_id, "event": event}
        try:
            job = _patiently("read the job", lambda: self.records.get_job(job_id))
        except RecordNotFound:
            log.warning("job record is gone (past its retention); webhook not sent", extra=ctx)
            return
        attempt = _patiently("read the delivery log", lambda: self.webhooks.attempts_of(job_id, msg_id)) + 1
        ctx["attempt"] = attempt
        now = self.clock()
        if _patiently("read the endpoint's state", lambda: self.webhooks.is_gone(job.tenant, url)):
            self._record(job_id, Attempt(msg_id, event, attempt, now, None,
                                         "endpoint_gone: this endpoint answered 410 Gone before; nothing is sent "
                                         "to it (set it again with `exportd webhooks set-endpoint` to resume)",
                                         None, None, url))  # fmt: skip
            metrics.WEBHOOK_DELIVERIES.labels("gone").inc()
            log.info("webhook not sent: the endpoint answered 410 Gone before", extra=ctx)
            return
        body = json.dumps(
            {"type": event, "timestamp": _iso(job.finished_at or now), "data": self.view(job)},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        timestamp = str(int(now))
        try:
            secrets = _patiently(
                "read the signing secrets", lambda: self.webhooks.signing_secrets(job.tenant, now=now)
            )
        except Unsealable as exc:  # sealed with a signing key no longer configured
            self._record(job_id, Attempt(msg_id, event, attempt, now, None,
                                         f"secret_unreadable: the tenant's webhook secret cannot be read ({exc}); "
                                         "make a new one with `exportd webhooks rotate-secret`",
                                         None, None, url))  # fmt: skip
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
            log.error("webhook not sent: the tenant's secret cannot be read", extra=ctx)
            return
        headers = {
            "content-type": "application/json",
            "user-agent": "exportd-webhooks",
            "webhook-id": msg_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
        }
        status: int | None = None
        error: str | None = None
        final = False
        started = time.perf_counter()
        try:
            result = outbound.post(self.policy, url, body, headers, timeout_s=self.timeout_s,
                                   max_response_bytes=MAX_RESPONSE_BYTES)  # fmt: skip
            status, duration_ms = result.status_code, result.duration_ms
            if status == 410:
                error, final = (
                    "endpoint_gone: the endpoint answered 410 Gone; nothing more is sent to it",
                    True,
                )
            elif not 200 <= status < 300:
                error = f"unexpected_status: the endpoint answered {status}"
        except outbound.UrlNotAllowed as exc:
            duration_ms = round((time.perf_counter() - started) * 1000)
            error, final = f"url_not_allowed: {exc.reason}", True
        except outbound.OutboundError as exc:
            duration_ms = round((time.perf_counter() - started) * 1000)
            error = f"{exc.code}: {exc.message}"
        metrics.WEBHOOK_DURATION.observe(time.perf_counter() - started)
        next_at: float | None = None
        if error is not None and not final and not resend and attempt <= len(self.schedule):
            delay_s = self.schedule[attempt - 1] * random.uniform(1 - JITTER, 1 + JITTER)
            next_at = now + delay_s
        self._record(job_id, Attempt(msg_id, event, attempt, now, status, error, duration_ms, next_at, url))
        if status == 410:
            _patiently("remember the endpoint is gone", lambda: self.webhooks.mark_gone(job.tenant, url))
        if next_at is not None:
            delay_ms = max(0, round((next_at - now) * 1000))
            _patiently("queue the next attempt", lambda: self.enqueue(job_id, event, url, delay_ms, False))
        outcome = ("delivered" if error is None else "gone" if status == 410 else "refused" if final
                   else "retrying" if next_at is not None else "failed")  # fmt: skip
        metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
        log.info(
            "webhook " + outcome,
            extra={**ctx, "status": status, "error": error, "ms": duration_ms,
                   **({"retry_in_s": round(next_at - now, 1)} if next_at is not None else {})},
        )  # fmt: skip

    def _record(self, job_id: str, attempt: Attempt) -> None:
        _patiently("record the attempt", lambda: self.webhooks.record(job_id, attempt))


class Dispatcher:
    """Turns job events into delivery messages: reads the events stream in the consumer group
    GROUP as `consumer`, and claims entries another consumer left pending too long."""

    def __init__(self, *, records: Records, webhooks: Webhooks, enqueue: Enqueue, consumer: str,
                 claim_idle_ms: int = 30_000, block_ms: int = 1000, batch: int = 100) -> None:  # fmt: skip
        self.records = records
        self.redis = records.redis
        self.webhooks = webhooks
        self.enqueue = enqueue
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.block_ms = block_ms
        self.batch = batch
        self._group_ready = False

    @property
    def stream(self) -> str:
        return self.records.events_key

    def ensure_group(self) -> None:
        """Create the consumer group (from the start of the stream) unless it exists."""
        try:
            self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def step(self) -> int:
        """Claim stale pending entries, then read new ones (waiting up to block_ms); dispatch each,
        XACK it after. Returns how many entries were handled."""
        if not self._group_ready:
            self.ensure_group()
        entries: list[tuple[Any, Any]] = []
        claimed: Any = self.redis.xautoclaim(self.stream, GROUP, self.consumer, self.claim_idle_ms,
                                             start_id="0-0", count=self.batch)  # fmt: skip
        entries.extend((e_id, fields) for e_id, fields in claimed[1] if fields)
        if not entries:
            read: Any = self.redis.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=self.batch,
                                              block=self.block_ms)  # fmt: skip
            for _stream, items in read or []:
                entries.extend(items)
        for entry_id, fields in entries:
            data = {text(k): text(v) for k, v in fields.items()}
            event = JobEvent(id=text(entry_id), type=data.get("type", ""), job_id=data.get("job_id", ""),
                             code=data.get("code", ""))  # fmt: skip
            self.dispatch(event)
            self.redis.xack(self.stream, GROUP, entry_id)
        return len(entries)

    def dispatch(self, event: JobEvent) -> bool:
        """Queue the event's delivery if its job has an endpoint that wants it; True if queued."""
        try:
            job = self.records.get_job(event.job_id)
        except RecordNotFound:
            return False
        url = job.webhook_url or self.webhooks.endpoint(job.tenant)
        wanted = job.webhook_events or EVENTS
        if not url or event.type not in wanted:
            return False
        self.enqueue(job.id, event.type, url, 0, False)
        log.info("webhook queued", extra={"job_id": job.id, "event": event.type,
                                          "webhook_id": webhook_id(job.id, event.type)})  # fmt: skip
        return True

    def leave(self) -> None:
        """Remove this consumer from the group, unless it still holds entries (another consumer
        claims those): stopped processes do not pile up in the group."""
        pending: Any = self.redis.xpending_range(self.stream, GROUP, "-", "+", 1, consumername=self.consumer)
        if not pending:
            self.redis.xgroup_delconsumer(self.stream, GROUP, self.consumer)

    def prune(self, *, idle_ms: int = 24 * 3600 * 1000) -> None:
        """Remove consumers idle that long that hold nothing: processes killed without leaving."""
        for consumer in self.redis.xinfo_consumers(self.stream, GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > idle_ms:
                self.redis.xgroup_delconsumer(self.stream, GROUP, consumer["name"])

    def run(self, stop: threading.Event) -> None:
        """step() until `stop` is set; Redis errors are logged and the loop goes on."""
        try:
            self._loop(stop)
        finally:
            with contextlib.suppress(Exception):  # Redis down: an idle consumer is pruned later
                self.leave()

    def _loop(self, stop: threading.Event) -> None:
        steps = 0
        while not stop.is_set():
            steps += 1
            if steps % 3600 == 1:  # about once an hour when idle
                with contextlib.suppress(Exception):
                    self.prune()
            try:
                self.step()
            except (RecordsUnavailable, redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("cannot read the events stream; trying again", extra={"error": str(exc)})
                self._group_ready = False
                stop.wait(1.0)
            except redis.ResponseError as exc:  # NOGROUP: a Redis that lost the group (no AOF)
                log.warning(
                    "events stream or its group is gone; creating it again", extra={"error": str(exc)}
                )
                self._group_ready = False
                stop.wait(1.0)
            except Exception:
                log.exception("webhook dispatcher failed; going on")
                stop.wait(1.0)


class DispatchEvents(Middleware):
    """Runs a Dispatcher in a thread of each worker process that delivers webhooks."""

    def __init__(self, dispatcher_for: Callable[[], Dispatcher]) -> None:
        self._dispatcher_for = dispatcher_for
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        dispatcher = self._dispatcher_for()
        self._thread = threading.Thread(target=dispatcher.run, args=(self._stop,), name="webhook-dispatcher",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def enqueuer(broker: Any) -> Enqueue:
    """Queue a delivery message on the webhooks queue, after `delay_ms`."""

    def enqueue(job_id: str, event: str, url: str, delay_ms: int, resend: bool) -> None:
        message: Any = dramatiq.Message(queue_name=WEBHOOK_QUEUE, actor_name=WEBHOOK_ACTOR,
                                        args=(job_id, event, url), kwargs={"resend": resend}, options={})  # fmt: skip
        broker.enqueue(message, delay=delay_ms or None)

    return enqueue


def declare_webhook_actor(broker: Any, delivery: Delivery, *, timeout_s: float) -> None:
    """Register deliver_webhook on `broker`: no Dramatiq retries (the schedule is the delivery's own)."""
    dramatiq.Actor(
        delivery,
        broker=broker,
        actor_name=WEBHOOK_ACTOR,
        queue_name=WEBHOOK_QUEUE,
        priority=0,
        options={"time_limit": int((timeout_s + 4 * REDIS_PATIENCE_S + 60) * 1000)},
    )


def new_consumer_name() -> str:
    return f"webhooks-{uuid.uuid4().hex[:12]}"
