"""The worker pool's metrics (Prometheus), counted where things happen and served by the supervisor.

Every worker process counts into files under PROMETHEUS_MULTIPROC_DIR, which the pool supervisor
sets (to a directory of its own) before any process imports prometheus_client; the supervisor
serves the sum of all its processes on EXPORTD_WORKER_METRICS_PORT, with the queues' state read
from Redis at each scrape. Labels are bounded: a conversion is "<input kind>_to_<format>" from the
registry's table, an outcome is "succeeded" or a job error code; no job ids, no file names.

Webhook deliveries are counted per attempt where actors/webhooks.py decides it, by outcome
(delivered, retrying, failed, gone, refused: bounded, never the endpoint's URL).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("exportd.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

JOBS = Counter("exportd_jobs", "Jobs that ended, by conversion and outcome (succeeded or an error code).",
               ["conversion", "outcome"])  # fmt: skip
DURATION = Histogram("exportd_conversion_duration_seconds", "Time an attempt spent converting, by conversion.",
                     ["conversion"], buckets=_DURATION_BUCKETS)  # fmt: skip
INPUT_BYTES = Counter("exportd_input_bytes", "Bytes of the inputs of attempts started, by conversion.",
                      ["conversion"])  # fmt: skip
INPUT_PIXELS = Counter("exportd_input_pixels", "Decoded picture pixels of the inputs of jobs admitted "
                       "(width × height × frames, from their headers), by conversion.", ["conversion"])  # fmt: skip
RETRIES = Counter("exportd_job_retries", "Retries scheduled after a transient fault or a bug.")
CRASHES = Counter("exportd_worker_crashes", "Worker processes that died, by cause (crash, oom, killed, exit).",
                  ["cause"])  # fmt: skip
DEAD_LETTERS = Counter("exportd_dead_letters", "Messages moved to the dead letters after their last retry.")
WEBHOOK_DELIVERIES = Counter("exportd_webhook_deliveries", "Webhook delivery attempts, by outcome: delivered (2xx), "
                             "retrying (another attempt is scheduled), failed (the schedule is spent, or a re-send "
                             "failed), gone (410, or not sent to an endpoint that answered 410), refused (the "
                             "outbound policy refused the URL).", ["outcome"])  # fmt: skip
WEBHOOK_DURATION = Histogram("exportd_webhook_delivery_duration_seconds", "Time a webhook delivery attempt took, "
                             "from connecting to the end of the answer.", buckets=_DURATION_BUCKETS)  # fmt: skip
IN_FLIGHT = Gauge("exportd_jobs_in_flight", "Jobs being converted now.", multiprocess_mode="livesum")
MEMORY_BUDGET = Gauge("exportd_memory_budget_bytes", "Memory for jobs of the pool's processes (admission's budget).",
                      multiprocess_mode="livesum")  # fmt: skip
MEMORY_ADMITTED = Gauge("exportd_memory_admitted_bytes", "Estimated peak memory of the jobs admitted now.",
                        multiprocess_mode="livesum")  # fmt: skip


def conversion_label(kind: str, fmt: str) -> str:
    return f"{kind}_to_{fmt}"


class Attempt:
    """Counts one attempt: in flight while it runs, its duration when it converted."""

    def __init__(self, conversion: str, input_bytes: int) -> None:
        self.conversion = conversion
        INPUT_BYTES.labels(conversion).inc(input_bytes)

    def __enter__(self) -> Attempt:
        IN_FLIGHT.inc()
        self._began = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        IN_FLIGHT.dec()
        DURATION.labels(self.conversion).observe(time.perf_counter() - self._began)


class QueueCollector(Collector):
    """Waiting and delayed messages per queue and the age of the oldest waiting one, read from
    Redis at each scrape (Dramatiq's key layout: a list of ids and a hash of messages)."""

    def __init__(self, client: Any, namespace: str, queues: tuple[str, ...]) -> None:
        self.client = client
        self.namespace = namespace
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from dramatiq import Message

        waiting = GaugeMetricFamily(
            "exportd_queue_messages", "Messages waiting in a queue.", labels=["queue"]
        )
        delayed = GaugeMetricFamily("exportd_queue_delayed_messages", "Messages waiting for their retry time.",
                                    labels=["queue"])  # fmt: skip
        oldest = GaugeMetricFamily("exportd_queue_oldest_message_age_seconds",
                                   "Age of the oldest waiting message (0 when none waits).", labels=["queue"])  # fmt: skip
        try:
            for queue in self.queues:
                key = f"{self.namespace}:{queue}"
                waiting.add_metric([queue], float(self.client.llen(key)))
                delayed.add_metric([queue], float(self.client.hlen(f"{key}.DQ.msgs")))
                age = 0.0
                first = self.client.lindex(key, 0)
                if first is not None:
                    data = self.client.hget(f"{key}.msgs", first)
                    if data is not None:
                        age = max(0.0, time.time() - Message.decode(data).message_timestamp / 1000)
                oldest.add_metric([queue], age)
            memory = self.client.info("memory")
        except Exception as exc:  # Redis down: the scrape still answers, without queue figures
            log.warning("cannot read the queues for metrics", extra={"error": str(exc)})
            return
        yield waiting
        yield delayed
        yield oldest
        # Writes fail once used reaches maxmemory (noeviction): the alert ExportdRedisMemoryHigh.
        yield GaugeMetricFamily("exportd_redis_memory_used_bytes", "Memory Redis uses (INFO memory used_memory).",
                                value=float(memory.get("used_memory", 0)))  # fmt: skip
        yield GaugeMetricFamily("exportd_redis_maxmemory_bytes", "Redis's maxmemory (0: no limit).",
                                value=float(memory.get("maxmemory", 0)))  # fmt: skip


def serve(port: int, host: str, *, queues: QueueCollector | None) -> threading.Thread:
    """Serve the pool's metrics (all its processes, summed) on host:port, in a thread."""
    from prometheus_client import multiprocess, start_http_server

    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if queues is not None:
        registry.register(queues)
    _server, thread = start_http_server(port, addr=host, registry=registry)
    return thread


def process_died(pid: int) -> None:
    """Forget a dead process's live gauges (its in-flight jobs are no longer in flight)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
