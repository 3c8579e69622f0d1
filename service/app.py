"""create_app: the Falcon application, given its collaborators. Reads no environment."""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import falcon
import falcon.media

from actors.broker import build_broker
from actors.capabilities import Availability
from actors.export import release_with
from actors.outbound import OutboundPolicy
from actors.webhooks import enqueuer
from exporters.base import Limits
from service import errors
from service.auth import Authenticate
from service.bodies import strict_loads
from service.idempotency import Idempotency
from service.logs import request_id_var
from service.metrics import Metrics, RequestMetrics
from service.openapi import OpenApi
from service.pacing import ClientTooSlow
from service.resources.deliveries import Deliveries
from service.resources.exports import ExportItem, Exports, Formats, JobView
from service.resources.files import Files, TenantFiles
from service.resources.health import Healthz, Readyz
from service.resources.page import Page, PageAsset
from service.resources.uploads import UploadItem, UploadReceiver, Uploads
from service.settings import Settings
from service.waiting import JobWaiter
from storage.base import Storage
from storage.jobs import Records
from storage.keys import KeyStore, parse_configured_keys
from storage.sealing import Sealer
from storage.signing import Signer
from storage.tenants import Quotas, Tenants
from storage.webhooks import Webhooks

log = logging.getLogger("exportd.api")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContext:
    """Gives each request an id (the client's X-Request-ID when sane) and logs one line per request."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        incoming = req.get_header("X-Request-ID") or ""
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        req.context.request_id = request_id
        req.context.token = request_id_var.set(request_id)
        req.context.started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.set_header("X-Request-ID", req.context.request_id)
        # The query string is left out: it carries link signatures.
        log.info(
            "request",
            extra={
                "method": req.method,
                "path": req.path,
                "status": int(resp.status_code),
                "ms": round((time.perf_counter() - req.context.started) * 1000, 1),
            },
        )
        request_id_var.reset(req.context.token)


#: Request bodies larger than this are read from the server in reads of BODY_READ_BYTES.
LARGE_BODY_BYTES = 64 * 1024
BODY_READ_BYTES = 1024 * 1024


class _ServerInput(io.RawIOBase):
    """The WSGI server's input stream as a raw stream, for io.BufferedReader to read in large pieces."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class LargeBodies:
    """Reads large request bodies from the server a mebibyte at a time.

    Falcon's multipart parser asks for 32 KiB at a time. gunicorn answers each such read from a
    buffer of up to 1 MiB that it then copies whole, minus the 32 KiB, so a 4 MB upload was copied
    about 60 times over: a third of the API's CPU per upload (py-spy). A buffered reader in between
    asks gunicorn for a mebibyte per read and hands out the small pieces itself.
    """

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        length = req.content_length
        chunked = "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
        if chunked or (length is not None and length > LARGE_BODY_BYTES):
            buffered = io.BufferedReader(_ServerInput(req.stream), BODY_READ_BYTES)
            # Falcon wraps req.bounded_stream (and multipart parsing) around wsgi.input, not req.stream.
            req.env["wsgi.input"] = req.stream = buffered


def _client_too_slow(req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any) -> None:
    """Its body stalled or trickled (service/pacing.py): 408, and the connection closes."""
    resp.status = 408
    resp.content_type = errors.PROBLEM_JSON
    resp.text = json.dumps(errors.problem(408, "request_timeout", "Request too slow", str(exc), req))
    resp.set_header("Connection", "close")


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_pixels=settings.max_pixels,
        max_output_side_px=settings.max_output_side_px,
        max_pages=settings.max_pages,
        max_frames=settings.max_frames,
        max_table_pages=settings.max_table_pages,
        max_total_pixels=settings.max_total_pixels,
        # LibreOffice is stopped a little before the job's own time limit interrupts the worker.
        office_timeout_s=max(1.0, settings.job_time_limit_s - 5.0),
    )


def quotas_from(settings: Settings) -> Quotas:
    """A tenant's quotas when `exportd tenants set` gave it none."""
    return Quotas(requests_per_second=settings.tenant_requests_per_second, max_queued=settings.tenant_max_queued,
                  max_running=settings.tenant_max_running, upload_bytes_per_day=settings.tenant_upload_bytes_per_day)  # fmt: skip


def create_app(
    settings: Settings,
    *,
    records: Records,
    storage: Storage,
    enqueue: Callable[[str, str], None],
    clock: Callable[[], float] = time.time,
    availability: Availability | None = None,
    enqueue_webhook: Callable[[str, str, str], None] | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """The WSGI app. `enqueue(job_id, queue)` queues a job's message; `availability` tells what the
    live worker pools can run (by default read from Redis, as the pools publish it);
    `enqueue_webhook(job_id, event, url)` queues one delivery now (by default on a broker over
    `records`' Redis)."""
    scale_from_zero = [q.strip() for q in settings.scale_from_zero_queues.split(",") if q.strip()]
    availability = availability or Availability(
        records.redis, records.namespace, scale_from_zero=scale_from_zero
    )
    # Fair dispatch: at most as many jobs dispatched as the live pools have slots (storage/tenants.py).
    tenants = Tenants(records, defaults=quotas_from(settings), slots=availability.slots)
    keys = KeyStore(
        records.redis, namespace=records.namespace, configured=parse_configured_keys(settings.api_keys)
    )
    authenticate = Authenticate(keys=keys, tenants=tenants, enabled=settings.auth != "disabled")
    middleware: list[Any] = [RequestMetrics(), RequestContext(), LargeBodies(), authenticate]
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    multipart = cast(
        falcon.media.MultipartFormHandler, app.req_options.media_handlers[falcon.MEDIA_MULTIPART]
    )
    multipart.parse_options.max_body_part_count = settings.max_inputs + 4
    # Whatever reads JSON through Falcon reads it strictly (no NaN, no Infinity, no RecursionError).
    app.req_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(loads=strict_loads)
    errors.install(app)
    app.add_error_handler(ClientTooSlow, _client_too_slow)

    signer = Signer(settings.signing_keys)
    receiver = UploadReceiver(
        storage=storage, records=records, max_bytes=settings.max_upload_bytes, clock=clock, tenants=tenants
    )
    view = JobView(
        signer=signer,
        storage=storage,
        base_url=settings.base_url,
        link_ttl_s=settings.link_ttl_s,
        retention_s=settings.retention_s,
        clock=clock,
    )
    app.add_route("/healthz", Healthz())
    app.add_route("/readyz", Readyz(records, storage))
    app.add_route("/metrics", Metrics())  # open like /healthz: counts only, no tenant data
    app.add_route("/v1/formats", Formats(limits_from(settings), availability))
    idempotency = Idempotency(records.redis, records.namespace)
    app.add_route("/v1/uploads", Uploads(receiver, idempotency))
    app.add_route("/v1/uploads/{upload_id}", UploadItem(records))
    # A waiting request costs a greenlet and a connection: half the connections are left for the others.
    waiter = JobWaiter(records.redis, records.finished_channel, max_waiting=settings.api_connections // 2)
    app.add_route(
        "/v1/exports",
        Exports(receiver=receiver, records=records, enqueue=enqueue, view=view, waiter=waiter,
                max_inputs=settings.max_inputs, max_json_bytes=settings.max_json_bytes,
                limits=limits_from(settings), sealer=Sealer(settings.signing_keys), availability=availability,
                clock=clock, tenants=tenants, outbound_policy=OutboundPolicy.from_settings(settings),
                idempotency=idempotency),
    )  # fmt: skip
    # A job canceled before its turn frees its tenant's slot: the next held job is queued.
    app.add_route("/v1/exports/{job_id}", ExportItem(records=records, view=view, waiter=waiter,
                                                     release=release_with(tenants, enqueue)))  # fmt: skip
    if enqueue_webhook is None:
        broker = build_broker(records.redis, namespace=records.namespace,
                              heartbeat_timeout_ms=settings.worker_heartbeat_timeout_ms)  # fmt: skip
        deliver = enqueuer(broker)
        enqueue_webhook = lambda job_id, event, url: deliver(job_id, event, url, 0, True)  # noqa: E731
    app.add_route(
        "/v1/exports/{job_id}/deliveries",
        Deliveries(records=records, webhooks=Webhooks(records, Sealer(settings.signing_keys)),
                   enqueue=enqueue_webhook),
    )  # fmt: skip
    app.add_route("/v1/files/outputs/{job_id}/{name}", Files(storage=storage, signer=signer, clock=clock))
    app.add_route("/v1/files/tenants/{tenant}/outputs/{job_id}/{name}",
                  TenantFiles(storage=storage, signer=signer, clock=clock))  # fmt: skip
    app.add_route("/", Page())
    app.add_route("/ui/{name}", PageAsset())
    app.add_route("/v1/openapi.json", OpenApi(app, limits=limits_from(settings), base_url=settings.base_url))
    return app
