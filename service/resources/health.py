"""Liveness and readiness."""

from __future__ import annotations

import threading

import falcon

from storage.base import Storage, StorageUnavailable
from storage.jobs import Records, RecordsUnavailable


class Healthz:
    """The process answers: nothing else is checked, so a Redis outage never restarts API pods."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


#: Set once this process is stopping (SIGTERM): readiness fails from then on.
_stopping = threading.Event()


def stop_being_ready() -> None:
    """This process is stopping: /readyz answers 503 from now on."""
    _stopping.set()


class Readyz:
    """Redis and storage are reachable and the process is not stopping, else 503 with what is wrong."""

    def __init__(self, records: Records, storage: Storage) -> None:
        self.records = records
        self.storage = storage

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks: dict[str, str] = {}
        try:
            self.records.ping()
            checks["redis"] = "ok"
        except RecordsUnavailable as exc:
            checks["redis"] = f"unavailable: {exc}"
        try:
            self.storage.check()
            checks["storage"] = "ok"
        except StorageUnavailable as exc:
            checks["storage"] = f"unavailable: {exc}"
        if _stopping.is_set():
            checks["process"] = "stopping"
        ready = all(v == "ok" for v in checks.values())
        resp.status = 200 if ready else 503
        if not ready:
            resp.set_header("Retry-After", "5")
        resp.media = {"status": "ready" if ready else "unavailable", "checks": checks}
