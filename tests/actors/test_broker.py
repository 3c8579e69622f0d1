"""The consumer fetches the next message as soon as a running one finishes, not on its next poll."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import redis

from actors.broker import EXPORT_QUEUE, build_broker


def test_a_busy_consumer_wakes_when_its_message_is_acked(redis_client: redis.Redis, namespace: str) -> None:
    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000)

    @dramatiq.actor(broker=broker, queue_name=EXPORT_QUEUE)  # type: ignore[misc]
    def noop(n: int) -> None: ...

    noop.send(1)
    noop.send(2)
    # One slot (prefetch 1) and a poll interval of a minute.
    consumer = broker.consume(EXPORT_QUEUE, prefetch=1, timeout=60_000)
    first = next(consumer)
    assert first is not None and first.args == (1,)
    # As after a long job: Dramatiq's own consumer would now sleep up to the whole minute.
    consumer._misses = 20

    woke: list[Any] = []
    waiter = threading.Thread(target=lambda: woke.append(next(consumer)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive(), "with its slot taken, the consumer must wait, not fetch"
    consumer.ack(first)
    waiter.join(5)
    assert not waiter.is_alive(), "the ack must end the wait at once, not the minute-long poll"
    second = next(consumer)
    assert second is not None and second.args == (2,)
    consumer.ack(second)
    consumer.close()
    broker.close()


def test_delay_queues_are_polled_at_most_once_a_second(redis_client: redis.Redis, namespace: str) -> None:
    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000)
    assert broker.consume(EXPORT_QUEUE, prefetch=1, timeout=50).timeout == 50
    assert broker.consume(f"{EXPORT_QUEUE}.DQ", prefetch=1, timeout=50).timeout == 1000
    broker.close()


def test_no_private_dramatiq_class_is_subclassed() -> None:
    """Private classes are the first thing a Dramatiq upgrade breaks (issue 12)."""
    import inspect

    import actors.broker
    import actors.consumer
    import actors.outcomes
    import actors.pool

    for module in (actors.broker, actors.consumer, actors.outcomes, actors.pool):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            for base in cls.__mro__[1:]:
                if base.__module__.startswith("dramatiq"):
                    assert not base.__name__.startswith("_"), f"{cls.__name__} subclasses {base.__name__}"
