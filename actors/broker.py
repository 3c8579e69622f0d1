"""Builds the Redis client and the broker explicitly; nothing binds to an import-time global broker."""

from __future__ import annotations

from typing import Any

import redis
from dramatiq.middleware import Middleware, ShutdownNotifications, TimeLimit

from actors.consumer import PromptRedisBroker
from exporters.registry import DEFAULT_QUEUE, OFFICE_QUEUE

EXPORT_QUEUE = DEFAULT_QUEUE
#: Every queue the code defines; a worker pool consumes some or all of them.
QUEUES = (EXPORT_QUEUE, OFFICE_QUEUE)


def build_redis(url: str) -> redis.Redis:
    """A pooled client that fails fast when Redis is down instead of hanging a request or a job."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30)


def build_broker(
    client: redis.Redis,
    *,
    namespace: str,
    heartbeat_timeout_ms: int,
    extra_middleware: list[Middleware] | None = None,
) -> Any:
    """A RedisBroker with the middleware exportd relies on, and its queue declared.

    Retries are not Dramatiq's Retries middleware: a worker's broker gets actors.outcomes.JobOutcomes
    in `extra_middleware`, which does not lose a retry while Redis is down.
    """
    middleware: list[Middleware] = [*(extra_middleware or []), TimeLimit(), ShutdownNotifications()]
    broker = PromptRedisBroker(  # type: ignore[no-untyped-call]
        client=client,
        namespace=f"{namespace}:dramatiq",
        heartbeat_timeout=heartbeat_timeout_ms,
        middleware=middleware,
    )
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker
