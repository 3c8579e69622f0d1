"""Worker pools say what they can do; the API offers a conversion only while one can run it.

Each pool supervisor publishes, once per sweep interval, the queues it serves and what it probed
at start-up (LibreOffice present, ...) under `{ns}:pools:{pool id}`, expiring after three
intervals: a pool that stops publishing (gone, or cut off from Redis) stops counting. The API
reads the live pools (cached for a couple of seconds per process) and answers whether a
conversion's queue is served by a pool that has everything the conversion needs. The API never
probes its own disk: what matters is what the workers have.

A queue whose workers are scaled to zero when idle (KEDA) has no live pool while it waits for its
first job, yet must take that job to be woken. For the queues listed in
EXPORTD_SCALE_FROM_ZERO_QUEUES, a pool that served the queue within the retention period counts:
each pool also leaves what it had under `{ns}:pools-seen:{queue}`.
"""

from __future__ import annotations

import contextlib
import json
import platform
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

#: How long the API trusts what it read of the pools.
CACHE_S = 2.0


def pool_key(namespace: str, pool_id: str) -> str:
    return f"{namespace}:pools:{pool_id}"


def seen_key(namespace: str, queue: str) -> str:
    return f"{namespace}:pools-seen:{queue}"


@dataclass(frozen=True)
class PoolInfo:
    pool_id: str
    queues: tuple[str, ...]
    capabilities: Mapping[str, bool]
    versions: Mapping[str, str]
    slots: int = 0  # jobs it runs at once (processes x threads); 0: not published


def versions() -> dict[str, str]:
    """Versions worth knowing when a pool misbehaves."""
    found = {"python": platform.python_version()}
    for dist in ("exportd", "dramatiq", "pillow", "pypdfium2"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


class Publisher:
    """Publishes one pool: publish() once per interval (a Redis error when Redis is down),
    withdraw() when it stops, so the API stops offering what only it could run at once."""

    def __init__(self, client: Any, namespace: str, pool_id: str, *, queues: Sequence[str],
                 capabilities: Mapping[str, bool], ttl_s: float, seen_ttl_s: float = 7 * 24 * 3600,
                 slots: int = 0) -> None:  # fmt: skip
        self.client = client
        self.key = pool_key(namespace, pool_id)
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.seen_keys = [seen_key(namespace, q) for q in queues]
        self.seen_ttl_ms = max(1, int(seen_ttl_s * 1000))
        self.body = json.dumps(
            {
                "queues": list(queues),
                "capabilities": dict(capabilities),
                "versions": versions(),
                "slots": slots,
            },
            sort_keys=True,
        )

    def publish(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key, self.body, px=self.ttl_ms)
        for key in self.seen_keys:
            pipe.set(key, self.body, px=self.seen_ttl_ms)
        pipe.execute()

    def withdraw(self) -> None:
        self.client.delete(self.key)


def live_pools(client: Any, namespace: str) -> list[PoolInfo]:
    pools = []
    keys = list(client.scan_iter(pool_key(namespace, "*"), count=100))
    for key, raw in zip(keys, client.mget(keys) if keys else [], strict=True):
        if raw is None:
            continue  # expired between the scan and the read
        data = json.loads(raw)
        name = key.decode() if isinstance(key, bytes) else str(key)
        pools.append(
            PoolInfo(
                name.rsplit(":", 1)[1],
                tuple(data["queues"]),
                data["capabilities"],
                data["versions"],
                int(data.get("slots", 0)),
            )
        )
    return pools


class Availability:
    """What the live pools can run, read at most every CACHE_S seconds."""

    def __init__(self, client: Any, namespace: str, *, scale_from_zero: Sequence[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.client = client
        self.namespace = namespace
        self.scale_from_zero = frozenset(scale_from_zero)
        self.clock = clock
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._pools: list[PoolInfo] = []

    def pools(self, *, fresh: bool = False) -> list[PoolInfo]:
        """Raises a Redis error when Redis is down (the caller answers 503)."""
        with self._lock:
            if not fresh and self.clock() - self._read_at < CACHE_S:
                return self._pools
        pools = live_pools(self.client, self.namespace)
        with self._lock:
            self._pools, self._read_at = pools, self.clock()
        return pools

    def slots(self) -> dict[str, int]:
        """Jobs the live pools run at once, per queue, as they publish it. Fair scheduling
        dispatches no more than this across tenants (storage/tenants.py). A queue served by a pool
        that publishes no slots (an older version) is left out: no cap for it."""
        found: dict[str, int] = {}
        unknown: set[str] = set()
        for pool in self.pools():
            for queue in pool.queues:
                if pool.slots > 0:
                    found[queue] = found.get(queue, 0) + pool.slots
                else:
                    unknown.add(queue)
        return {queue: n for queue, n in found.items() if queue not in unknown}

    def can_run(self, queue: str, needs: Sequence[str]) -> bool:
        def served(pools: list[PoolInfo]) -> bool:
            return any(
                queue in pool.queues and all(pool.capabilities.get(need, False) for need in needs)
                for pool in pools
            )

        # A yes may come from the cache; a no is read again first (a pool may have just started).
        if served(self.pools()) or served(self.pools(fresh=True)):
            return True
        if queue not in self.scale_from_zero:
            return False
        raw = self.client.get(seen_key(self.namespace, queue))  # what its pools had, last time
        capabilities = json.loads(raw)["capabilities"] if raw else {}
        return raw is not None and all(capabilities.get(need, False) for need in needs)
