"""POST /v1/exports, GET /v1/exports/{id} and GET /v1/formats."""

from __future__ import annotations

import logging
import mimetypes
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import falcon

from actors import outbound
from actors.capabilities import Availability
from actors.outcomes import end_job
from actors.queues import queue_for
from exporters import registry
from exporters.base import Limits, options_as_dict, parse_options, secret_options
from service.auth import ANY
from service.bodies import parse_json, read_at_most, read_body
from service.errors import AlreadyFinished, BadRequest, ConversionUnavailable, UnknownUpload
from service.idempotency import Idempotency
from service.resources.deliveries import MAX_URL_CHARS, check_webhook_url, parse_webhook_events
from service.resources.uploads import UploadReceiver, check_declared_length, clean_filename, upload_view
from service.waiting import JobWaiter
from storage.base import Storage
from storage.jobs import (
    CANCEL_REQUEST,
    CANCELED,
    STATUSES,
    Job,
    Output,
    QueueFull,
    RecordNotFound,
    Records,
    Upload,
    new_id,
    upload_key,
)
from storage.keys import READ, SUBMIT
from storage.sealing import Sealer, is_sealed
from storage.signing import Signer
from storage.tenants import Quotas, Tenants

log = logging.getLogger("exportd.api")

#: What a worker capability is, in words (conversion_unavailable's sentence).
NEED_NAMES = {"office": "LibreOffice", "pango": "Pango, for HTML layout", "heic_write": "an HEVC encoder"}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobView:
    """The job as clients see it, with download links signed at the moment it is read."""

    def __init__(self, *, signer: Signer, storage: Storage, base_url: str, link_ttl_s: int, retention_s: int,
                 clock: Callable[[], float]) -> None:  # fmt: skip
        self.signer = signer
        self.storage = storage
        self.base_url = base_url
        self.link_ttl_s = link_ttl_s
        self.retention_s = retention_s
        self.clock = clock

    def __call__(self, job: Job) -> dict[str, Any]:
        # A link never outlives the file it points to.
        expires = int(min(self.clock() + self.link_ttl_s, job.created_at + self.retention_s))
        return {
            "id": job.id,
            "status": job.status,
            "format": job.format,
            "inputs": [upload_view(u) for u in job.inputs],
            # Secret options (declared on the option) are stored sealed, and never shown back.
            "options": {k: ("********" if is_sealed(v) else v) for k, v in job.options.items()},
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            "attempts": job.attempts,
            # DELETE came while it ran: its worker stops it at its next safe point.
            "cancel_requested": job.cancel_requested and not job.finished,
            "error": {"code": job.error.code, "message": job.error.message} if job.error else None,
            "outputs": [self._output(out, expires) for out in job.outputs],
        }

    def _output(self, out: Output, expires: int) -> dict[str, Any]:
        # A store that signs its own links (S3) serves the bytes directly; otherwise the API does.
        direct = self.storage.presigned_url(out.key, expires_at=expires, filename=out.name,
                                            content_type=out.content_type)  # fmt: skip
        url, expires = direct or (self.signer.url(self.base_url, out.key, expires=expires), expires)
        return {
            "name": out.name,
            "content_type": out.content_type,
            "size": out.size,
            "sha256": out.sha256,
            "url": url,
            "expires_at": _iso(expires),
            **({"details": out.details} if out.details else {}),
        }


#: Longest string taken as an upload id (ids are 32 hex digits).
MAX_ID_CHARS = 64

#: Longest `format` part of a multipart export: the longest format name is a few dozen bytes.
MAX_FORMAT_BYTES = 100

#: The longest `wait` a request may ask for: below the idle timeout of common load balancers.
MAX_WAIT_S = 30.0


def wait_param(req: falcon.Request) -> float:
    """The request's `?wait=` in seconds, 0 without one. Raises BadRequest."""
    raw = req.get_param("wait")
    if raw is None:
        return 0.0
    try:
        wait_s = float(raw)
    except ValueError:
        wait_s = -1.0
    if not 0 <= wait_s <= MAX_WAIT_S:  # also refuses nan and inf
        raise BadRequest(f"wait must be a number of seconds from 0 to {MAX_WAIT_S:g}, not {raw!r}")
    return wait_s


def read_job(records: Records, waiter: JobWaiter, job_id: str, wait_s: float, *, tenant: str) -> Job:
    """The tenant's job's record; with wait_s, once it has finished or wait_s has passed."""
    if not wait_s:
        return records.get_job(job_id, tenant=tenant)
    with waiter.watch(job_id) as finished:
        job = records.get_job(job_id, tenant=tenant)  # after watch(): a finish from here on sets `finished`
        if finished is not None and not job.finished:
            finished.wait(wait_s)
            job = records.get_job(job_id, tenant=tenant)
    return job


#: Most jobs in one page of GET /v1/exports, and how many without `limit`.
MAX_PAGE, DEFAULT_PAGE = 100, 20


def page_params(req: falcon.Request) -> tuple[str | None, int, str | None]:
    """`status`, `limit` and `cursor` of GET /v1/exports. Raises BadRequest."""
    status = req.get_param("status")
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}, not {status[:40]!r}")
    raw = req.get_param("limit")
    limit = DEFAULT_PAGE
    if raw is not None:
        limit = int(raw) if raw.isdigit() and len(raw) < 4 else 0
        if not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}, not {raw[:40]!r}")
    return status, limit, req.get_param("cursor")


class Exports:
    scopes: ClassVar[dict[str, str]] = {"POST": SUBMIT, "GET": READ}

    def __init__(self, *, receiver: UploadReceiver, records: Records, enqueue: Callable[[str, str], None],
                 view: JobView, waiter: JobWaiter, max_inputs: int, max_json_bytes: int, limits: Limits,
                 sealer: Sealer, availability: Availability, clock: Callable[[], float],
                 tenants: Tenants, idempotency: Idempotency,
                 outbound_policy: outbound.OutboundPolicy | None = None) -> None:  # fmt: skip
        self.idempotency = idempotency  # the Idempotency-Key header
        # URL inputs and webhook_url are checked against it at submit (and again when the worker connects).
        self.outbound_policy = outbound_policy or outbound.OutboundPolicy()
        self.availability = availability  # what the live worker pools can run
        self.tenants = tenants  # quotas and fair dispatch
        self.receiver = receiver
        self.sealer = sealer  # seals secret options before the record is stored
        self.records = records
        self.enqueue = enqueue
        self.view = view
        self.waiter = waiter
        self.max_inputs = max_inputs
        self.max_json_bytes = max_json_bytes
        self.limits = limits  # options bounded by a limit (width, height) are checked against these
        self.clock = clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status, limit, cursor = page_params(req)
        try:
            jobs, next_cursor = self.records.list_jobs(
                req.context.tenant, status=status, limit=limit, cursor=cursor
            )
        except ValueError:
            raise BadRequest("cursor must be a next_cursor this API gave") from None
        resp.media = {"exports": [self.view(job) for job in jobs], "next_cursor": next_cursor}
        resp.cache_control = ["no-store"]  # the body holds freshly signed links

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        tenant: str = req.context.tenant
        self.idempotency.handle(
            req, resp, respond=lambda: self._post(req, resp),
            replay=lambda job_id: self.view(self.records.get_job(job_id, tenant=tenant)),
            max_body_bytes=max(self.max_json_bytes, (self.receiver.max_bytes + 64 * 1024) * self.max_inputs),
        )  # fmt: skip

    def _post(self, req: falcon.Request, resp: falcon.Response) -> None:
        wait_s = wait_param(req)  # refused before anything is stored
        tenant: str = req.context.tenant
        quotas = self.tenants.quotas(tenant)
        if self.tenants.counts(tenant)["open"] >= quotas.max_queued:  # before any upload is read
            raise QueueFull(quotas.max_queued)
        received: list[Upload] = []  # files this request stored: removed again if it is refused
        try:
            job = self._accept(req, received, tenant, quotas)
        except Exception:
            self.receiver.discard(received)
            raise
        log.info("job queued", extra={"job_id": job.id, "format": job.format, "inputs": len(job.inputs)})
        job = read_job(self.records, self.waiter, job.id, wait_s, tenant=tenant) if wait_s else job
        # 201 once the job has finished (succeeded or failed: its status says which), else 202.
        resp.status = falcon.HTTP_201 if job.finished else falcon.HTTP_202
        resp.location = f"/v1/exports/{job.id}"
        resp.media = self.view(job)
        resp.cache_control = ["no-store"]  # a finished job's links are signed for this answer alone

    def _accept(self, req: falcon.Request, received: list[Upload], tenant: str, quotas: Quotas) -> Job:
        webhook: dict[str, Any] = {}  # webhook_url and webhook_events, as the body gave them
        if req.content_type and req.content_type.startswith("multipart/form-data"):
            uploads, target, raw_options = self._from_multipart(req, received, tenant, webhook)
        elif req.content_type and req.content_type.startswith("application/json"):
            uploads, target, raw_options = self._from_json(req, tenant, webhook)
        else:
            raise BadRequest(
                "send multipart/form-data (file parts, format, options) or application/json "
                '({"inputs": [upload ids], "format": ..., "options": {...}})',
                code="unsupported_media_type",
                status=415,
            )
        # Both body kinds normalise the format the same way from here on.
        target = target.strip().lower() if isinstance(target, str) else target
        if not isinstance(target, str) or not target:
            raise BadRequest("'format' is required: the output format, e.g. pdf, png, jpeg, webp")
        if len(target) > MAX_FORMAT_BYTES:
            raise BadRequest(f"'format' must be a format name, not {len(target)} characters long")
        conversion = registry.find(_types_for_choice(uploads), target)
        options: Any = parse_options(conversion.options, raw_options, limits=self.limits)
        webhook_events = (
            parse_webhook_events(webhook["webhook_events"], form=webhook.get("form", False))
            if webhook.get("webhook_events") is not None
            else ()
        )
        webhook_url = (
            check_webhook_url(webhook["webhook_url"], self.outbound_policy)
            if webhook.get("webhook_url") is not None
            else ""
        )
        if not self.availability.can_run(queue_for(conversion), conversion.needs):
            needs = (
                f" (it needs {', '.join(NEED_NAMES.get(n, n) for n in conversion.needs)})"
                if conversion.needs
                else ""
            )
            raise ConversionUnavailable(
                f"no worker pool that converts {conversion.kind} to {conversion.format} is running now{needs}; "
                "the job would wait for one: try again later, or ask the operator"
            )
        job_id = new_id()
        stored_options = options_as_dict(options)
        if any(u.to_fetch for u in uploads):
            # The worker chooses the conversion again once it has sniffed the downloads: only the
            # options given are kept, its own defaults are filled in then.
            given = raw_options if isinstance(raw_options, dict) else {}
            stored_options = {k: v for k, v in stored_options.items() if k in given}
        for name in secret_options(conversion.options):
            if stored_options.get(name) is not None:
                stored_options[name] = self.sealer.seal(str(stored_options[name]), context=f"{job_id}:{name}")
        job = Job(
            id=job_id,
            format=target,
            inputs=tuple(uploads),
            options=stored_options,
            created_at=self.clock(),
            queue=queue_for(conversion),
            tenant=tenant,
            webhook_url=webhook_url,
            webhook_events=webhook_events,
        )
        # The record exists before its message: a worker never meets a message without a job.
        # Past the tenant's open jobs quota, nothing is stored (QueueFull).
        self.records.create_job(job, max_queued=quotas.max_queued)
        try:
            # Past its running quota, the job waits in its tenant's backlog (storage/tenants.py).
            if self.tenants.dispatch(tenant, job.id):
                self.enqueue(job.id, queue_for(conversion))
        except Exception:
            # Refused: the client gets a 503 and submits again. Should this delete fail too, the
            # sweeper finds the record without a message and runs the job (actors/sweeper.py).
            self.records.delete_job(job.id, tenant=tenant)
            self.tenants.undispatch(tenant, job.id)
            raise
        return job

    def _check_count(self, count: int) -> None:
        if count == 0:
            raise BadRequest("an export needs at least one input file")
        if count > self.max_inputs:
            raise BadRequest(
                f"an export takes at most {self.max_inputs} inputs, not {count}", code="too_many_inputs"
            )

    def _from_multipart(
        self, req: falcon.Request, uploads: list[Upload], tenant: str, webhook: dict[str, Any]
    ) -> tuple[list[Upload], Any, Any]:
        check_declared_length(req, (self.receiver.max_bytes + 64 * 1024) * self.max_inputs)
        target: str | None = None
        raw_options: Any = None
        for part in req.get_media():
            if part.name == "file":
                self._check_count(len(uploads) + 1)
                uploads.append(self.receiver.receive(part.stream, part.filename, tenant=tenant))
            elif part.name == "format":
                data = read_at_most(part.stream, MAX_FORMAT_BYTES, what="the 'format' part")
                target = data.decode("utf-8", errors="replace")
            elif part.name == "options":
                data = read_at_most(part.stream, self.max_json_bytes, what="the 'options' part")
                raw_options = parse_json(data, what="'options'") if data.strip() else None
            elif part.name in ("webhook_url", "webhook_events"):
                data = read_at_most(part.stream, MAX_URL_CHARS + 1, what=f"the {part.name!r} part")
                webhook[part.name] = data.decode("utf-8", errors="replace")
                webhook["form"] = True
            else:
                raise BadRequest(
                    f"unexpected form field {part.name!r}; expected file, format, options, webhook_url and "
                    "webhook_events"
                )
        self._check_count(len(uploads))
        return uploads, target, raw_options

    def _from_json(
        self, req: falcon.Request, tenant: str, webhook: dict[str, Any]
    ) -> tuple[list[Upload], Any, Any]:
        body = parse_json(read_body(req, self.max_json_bytes, what="the JSON body"), what="the body")
        if not isinstance(body, dict):
            raise BadRequest("the JSON body must be an object")
        unknown = set(body) - {"inputs", "format", "options", "webhook_url", "webhook_events"}
        if unknown:
            raise BadRequest(
                f"unknown field(s) {', '.join(sorted(unknown))}; expected inputs, format, options, "
                "webhook_url, webhook_events"
            )
        webhook.update({k: body[k] for k in ("webhook_url", "webhook_events") if k in body})
        items = body.get("inputs")
        # An id is 32 hex digits; anything much longer is not one, and is not echoed back whole.
        if not isinstance(items, list) or not all(
            (isinstance(i, str) and len(i) <= MAX_ID_CHARS) or isinstance(i, dict) for i in items
        ):
            raise BadRequest("'inputs' must be a list of upload ids and {\"url\": ...} objects")
        self._check_count(len(items))
        ids = [i for i in items if isinstance(i, str)]
        try:
            # Another tenant's upload is as unknown as one never made.
            by_id = {u.id: u for u in self.records.get_uploads(ids, tenant=tenant)} if ids else {}
        except RecordNotFound as exc:
            raise UnknownUpload(f"no upload with id {exc.args[0]!r} (never uploaded, or expired)") from None
        uploads = [by_id[i] if isinstance(i, str) else self._url_input(i, tenant) for i in items]
        return uploads, body.get("format"), body.get("options")

    def _url_input(self, item: dict[str, Any], tenant: str) -> Upload:
        """A URL input, checked against the outbound policy now (the worker checks it again when it
        connects). Raises BadRequest, UrlNotAllowed."""
        unknown = set(item) - {"url", "filename"}
        if unknown:
            raise BadRequest(
                f"unknown field(s) {', '.join(sorted(unknown))} in an input; expected url, filename"
            )
        url, filename = item.get("url"), item.get("filename")
        if not isinstance(url, str) or not url:
            raise BadRequest("an input object needs 'url', a string")
        if filename is not None and not isinstance(filename, str):
            raise BadRequest("an input's 'filename' must be a string")
        try:
            target = self.outbound_policy.check(url)
        except outbound.OutboundError:
            # The host does not resolve now: the worker tries again, and fails the job clearly.
            target = None
        source = (target.url if target else url).split("?", 1)[0]
        upload_id = new_id()
        # The client's name, else the URL's last path segment; else the worker takes the server's
        # (Content-Disposition).
        segment = urllib.parse.unquote(source.rsplit("/", 1)[-1])
        name = clean_filename(filename or segment, fallback="")
        return Upload(
            id=upload_id,
            filename=name,
            content_type=_type_hint(name),
            size=0,
            sha256="",
            created_at=self.clock(),
            tenant=tenant,
            url=self.sealer.seal(url, context=outbound.url_context(upload_id)),
            source=source,
            storage_key=upload_key(tenant, upload_id),  # where the worker stores what it downloads
        )


def _type_hint(filename: str) -> str:
    """The media type a URL input's name suggests ("" if none that exportd converts)."""
    guessed = mimetypes.guess_type(filename, strict=False)[0] or ""
    return guessed if guessed in registry.KIND_OF_CONTENT_TYPE else ""


def _types_for_choice(uploads: list[Upload]) -> list[str]:
    """The media types the conversion is chosen by at submit.

    A URL input's type is known once the worker has downloaded and sniffed it. Until then, its
    name's extension stands for it; without a usable one it is taken to be like the other inputs,
    or a picture. The worker chooses again with the sniffed types (actors/export.py).
    """
    known = [u.content_type for u in uploads if u.content_type]
    fallback = known[0] if known else "image/jpeg"
    return [u.content_type or fallback for u in uploads]


class ExportItem:
    scopes: ClassVar[dict[str, str]] = {"GET": READ, "DELETE": SUBMIT}

    def __init__(self, *, records: Records, view: JobView, waiter: JobWaiter,
                 release: Callable[[Job], None] | None = None) -> None:  # fmt: skip
        self.records = records
        self.view = view
        self.waiter = waiter
        self.release = release  # queues the tenant's held jobs when a canceled one frees a slot

    def on_delete(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        """Cancel: a job not yet running ends canceled now (200); a running one is stopped by its
        worker at its next safe point (202 while it still runs; `?wait` waits for that). Canceling
        a canceled job answers it again (200); a succeeded or failed one is 409 already_finished."""
        wait_s = wait_param(req)
        tenant: str = req.context.tenant
        job = self.records.get_job(job_id, tenant=tenant)  # another tenant's job: 404 as unknown
        if not job.finished:
            job = end_job(self.records, job, cancel=CANCEL_REQUEST, release=self.release)
            log.info("cancel asked", extra={"job_id": job.id, "status": job.status})
        if job.finished and job.status != CANCELED:
            raise AlreadyFinished(job.status)
        if not job.finished and wait_s:
            job = read_job(self.records, self.waiter, job_id, wait_s, tenant=tenant)
        resp.status = falcon.HTTP_200 if job.finished else falcon.HTTP_202
        resp.media = self.view(job)
        resp.cache_control = ["no-store"]

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        job = read_job(self.records, self.waiter, job_id, wait_param(req), tenant=req.context.tenant)
        resp.media = self.view(job)
        resp.cache_control = ["no-store"]  # the body holds freshly signed links


class Formats:
    scopes: ClassVar[dict[str, str]] = {"GET": ANY}

    def __init__(self, limits: Limits, availability: Availability) -> None:
        self._body = registry.describe(limits=limits)  # the bounds the submit check uses: one source
        self._availability = availability

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Whether a live worker pool can run each conversion now (what submit checks too).
        conversions = [
            {**described, "available": self._availability.can_run(queue_for(c), c.needs)}
            for c, described in zip(registry.CONVERSIONS, self._body["conversions"], strict=True)
        ]
        resp.media = {**self._body, "conversions": conversions}
