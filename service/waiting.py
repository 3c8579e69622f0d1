"""Requests that wait for a job to finish (`?wait=N` on GET and POST /v1/exports), woken by Redis pub/sub.

The worker that finishes a job publishes its id on the namespace's channel in the same Lua call
that writes the record (storage/jobs.py), so waking costs no extra Redis round trip. Each API
process keeps one subscription, on a thread of its own started by the first waiting request, and
wakes the requests waiting for that id.

Under the API's gevent worker (service/server.py, which patches threading) a waiting request
costs a greenlet and its connection, not a thread; at most `max_waiting` wait at once. Past that,
while the subscription is down, and once the process is stopping (answer_all_now, called on
SIGTERM by service/gunicorn_config.py), a request is answered at once, as without `wait`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator

import redis

from service.metrics import WAITING

log = logging.getLogger("exportd.api")

#: How long the first waiting request waits for the subscription to be in place.
SUBSCRIBE_TIMEOUT_S = 2.0
#: Pause before subscribing again after Redis went away.
RESUBSCRIBE_DELAY_S = 1.0


#: Every JobWaiter of this process, for answer_all_now.
_WAITERS: weakref.WeakSet[JobWaiter] = weakref.WeakSet()


def answer_all_now() -> None:
    """The process is stopping: answer the waiting requests now, and any later one at once, so a
    graceful shutdown is not held up by waits (nor cut short in the middle of one)."""
    for waiter in list(_WAITERS):
        waiter.stop_waiting()


class JobWaiter:
    def __init__(self, client: redis.Redis, channel: str, *, max_waiting: int) -> None:
        self._client = client
        self._channel = channel
        self._max_waiting = max_waiting
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self._subscribed = threading.Event()
        self._connecting = False  # the first subscription is being made: requests wait for it
        self._thread: threading.Thread | None = None
        self._stopping = False
        _WAITERS.add(self)

    def stop_waiting(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake_all()

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[threading.Event | None]:
        """An event set when `job_id` finishes, or None when this request cannot wait.

        Read the job's record inside the block, after this: a finish published in between still
        sets the event, so it is never missed.
        """
        # Requests wait for the subscription to be in place while it is being made (the one that
        # starts it, and any arriving meanwhile); while it is down later on, they are answered at once.
        started = self._start()
        if not self._subscribed.wait(SUBSCRIBE_TIMEOUT_S if started or self._connecting else 0):
            yield None
            return
        event = threading.Event()
        with self._lock:
            waiting = sum(len(events) for events in self._waiting.values())
            room = waiting < self._max_waiting and not self._stopping
            if room:
                self._waiting.setdefault(job_id, set()).add(event)
        if not room:
            yield None
            return
        try:
            with WAITING.track_inprogress():
                yield event
        finally:
            with self._lock:
                events = self._waiting[job_id]
                events.discard(event)
                if not events:
                    del self._waiting[job_id]

    def _start(self) -> bool:
        """Start the subscribing thread unless it runs; whether this call started it."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._connecting = True  # until the first subscription is confirmed or fails
            self._thread = threading.Thread(target=self._listen, name="exportd-job-waiter", daemon=True)
            self._thread.start()
            return True

    def _wake(self, job_id: str) -> None:
        with self._lock:
            for event in self._waiting.get(job_id, ()):
                event.set()

    def _wake_all(self) -> None:
        """Every waiting request reads the record again now (the subscription broke, so finishes
        may be missed; or the process is stopping)."""
        with self._lock:
            for events in self._waiting.values():
                for event in events:
                    event.set()

    def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self._channel)
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":  # Redis confirmed it: no finish is missed from here
                        self._subscribed.set()
                        self._connecting = False
                    elif message["type"] == "message":
                        self._wake(message["data"].decode("ascii", "replace"))
            except Exception as exc:  # Redis went away, or its client was closed: subscribe again
                self._connecting = False
                self._subscribed.clear()
                self._wake_all()
                log.warning("job finish subscription lost; subscribing again", extra={"error": str(exc)})
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
            threading.Event().wait(RESUBSCRIBE_DELAY_S)
