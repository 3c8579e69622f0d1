"""gunicorn settings that are not per-deployment (those come from `exportd serve`'s flags)."""

import signal
from typing import Any

import gevent

from service.logs import GUNICORN_LOGCONFIG

logconfig_dict = GUNICORN_LOGCONFIG
# How long a worker process may go without telling the arbiter it lives (its loop blocked).
# Slow clients are cut off by EXPORTD_API_READ_TIMEOUT_S and EXPORTD_API_MIN_BODY_BYTES_PER_S.
timeout = 120
# graceful_timeout comes from EXPORTD_API_GRACEFUL_TIMEOUT_S (`exportd serve` passes it).
keepalive = 5


def post_worker_init(worker: Any) -> None:
    """On SIGTERM, requests waiting for a job (?wait) are answered at once, then gunicorn stops as
    it would: a rolling update does not wait for them, nor cut them off at graceful_timeout."""
    # Imported here, in the worker once gevent has patched it: Redis's client, imported in the
    # arbiter, would keep unpatched names (gevent warns on stderr, which must hold JSON lines only).
    from service.resources.health import stop_being_ready
    from service.waiting import answer_all_now

    stop_gracefully = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        # /readyz answers 503 from now on (on connections still open), so no balancer that probes
        # it keeps sending here while the requests in progress finish.
        stop_being_ready()
        # In a greenlet of its own: the signal may interrupt a greenlet that holds a waiter's lock.
        gevent.spawn(answer_all_now)
        if callable(stop_gracefully):
            stop_gracefully(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def child_exit(server: Any, worker: Any) -> None:
    """A gunicorn process ended: its live gauges (requests in progress, waiting) no longer count."""
    from service.metrics import process_died

    process_died(worker.pid)
