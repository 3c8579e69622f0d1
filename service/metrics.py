"""The API's metrics (Prometheus), summed over every gunicorn process of the pod.

`exportd serve` sets PROMETHEUS_MULTIPROC_DIR (a fresh directory) before gunicorn starts, so each
worker process counts into files of its own there; GET /metrics reads them all, and gunicorn's
child_exit hook (service/gunicorn_config.py) forgets a dead process's live gauges. Without the
variable (tests, an app served in one process) the counts live in this process only.

Labels are bounded: a route is the template it matched (`/v1/exports/{job_id}`, never the id) or
"unmatched", a method one of the few HTTP methods, a status a number.
"""

from __future__ import annotations

import os
import time

import falcon
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter("exportd_http_requests", "HTTP requests answered, by route template, method and status.",
                   ["route", "method", "status"])  # fmt: skip
LATENCY = Histogram("exportd_http_request_duration_seconds",
                    "Time from a request's head read to its answer, by route template and method.",
                    ["route", "method"], buckets=_LATENCY_BUCKETS)  # fmt: skip
UPLOAD_BYTES = Counter("exportd_http_request_body_bytes",
                       "Declared bytes of request bodies received (uploads, exports), by route template.",
                       ["route"])  # fmt: skip
IN_PROGRESS = Gauge("exportd_http_requests_in_progress", "Requests being handled now.",
                    multiprocess_mode="livesum")  # fmt: skip
WAITING = Gauge("exportd_http_requests_waiting", "Requests waiting for their job to finish (?wait).",
                multiprocess_mode="livesum")  # fmt: skip


class RequestMetrics:
    """Falcon middleware: counts each request by the route template it matched and its status."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_began = time.perf_counter()
        IN_PROGRESS.inc()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        began = req.context.get("metrics_began")
        if began is None:  # process_request did not run (an error before it)
            return
        IN_PROGRESS.dec()
        route = req.uri_template or "unmatched"
        method = req.method if req.method in _METHODS else "other"
        REQUESTS.labels(route, method, str(resp.status_code)).inc()
        LATENCY.labels(route, method).observe(time.perf_counter() - began)
        if req.content_length:
            UPLOAD_BYTES.labels(route).inc(req.content_length)


def exposition() -> bytes:
    """The metrics page: every process of the pod summed when in multiprocess mode."""
    if not os.environ.get(MULTIPROC_ENV):
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


class Metrics:
    """GET /metrics: open like /healthz (no key), Prometheus text format."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = exposition()


def process_died(pid: int) -> None:
    """Forget a dead gunicorn worker's live gauges (called from gunicorn's child_exit hook)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
