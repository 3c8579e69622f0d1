"""exportd's consumer of a Redis queue: it fetches the next message as soon as a running one ends.

Dramatiq's own Redis consumer, with every worker thread busy, polls on a growing back-off (up to
the poll interval) until its counter shows a free thread, so each job waited up to 50 ms after the
one before it: a third of a 2-process pool's throughput on 70 ms photo jobs. This one waits on an
event that ack and nack set instead. It also polls the delay queues (retries waiting for their
time, which wait a second or more anyway) at most once a second, instead of as often as the main
queues.

It is written against Dramatiq's public Consumer interface and the Redis broker's dispatch
commands (`do_fetch`, `do_ack`, `do_nack`, `do_requeue`), not by subclassing Dramatiq's private
consumer class.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import redis
from dramatiq import Message
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import compute_backoff
from dramatiq.errors import ConnectionClosed

#: Longest idle poll of a delay queue, in milliseconds.
DELAY_QUEUE_POLL_MS = 1000


class PromptConsumer(Consumer):
    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = prefetch
        self.timeout = max(timeout, DELAY_QUEUE_POLL_MS) if queue_name.endswith(".DQ") else timeout
        self._fetched: deque[bytes] = deque()  # fetched from Redis, not yet handed out
        self._running: set[str] = set()  # handed out, not yet acked or nacked
        self._misses = 0
        self._slot_freed = threading.Event()

    def ack(self, message: MessageProxy) -> None:
        self._settle(message, self.broker.do_ack)

    def nack(self, message: MessageProxy) -> None:
        self._settle(message, self.broker.do_nack)

    def _settle(self, message: MessageProxy, command: Any) -> None:
        try:
            # The queue this consumer reads, not message.queue_name: a delayed message is settled
            # on the delay queue it was fetched from.
            command(self.queue_name, message.options["redis_message_id"])
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        finally:
            self._running.discard(message.message_id)
            self._slot_freed.set()

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        ids = [m.options["redis_message_id"] for m in messages]
        if ids:
            self.broker.do_requeue(self.queue_name, *ids)

    def __next__(self) -> MessageProxy | None:
        try:
            while self._fetched:
                data = self._fetched.popleft()
                if data is None:  # the message vanished between the fetch's pop and its read
                    continue
                message = Message.decode(data)
                self._running.add(message.message_id)
                self._misses = 0
                return MessageProxy(message)
            self._slot_freed.clear()  # before the check: an ack after it still wakes the wait below
            free = self.prefetch - len(self._running)
            if free <= 0:
                self._slot_freed.wait(self.timeout / 1000)
                self._misses = 0
                return None  # Dramatiq's consumer thread handles its delayed messages, then asks again
            self._fetched.extend(self.broker.do_fetch(self.queue_name, free))
            if self._fetched:
                return self.__next__()
            self._misses, backoff_ms = compute_backoff(self._misses, max_backoff=self.timeout)
            time.sleep(backoff_ms / 1000)
            return None
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]


class PromptRedisBroker(RedisBroker):
    """Dramatiq's RedisBroker, consuming with PromptConsumer."""

    @property
    def consumer_class(self) -> type[PromptConsumer]:
        return PromptConsumer
