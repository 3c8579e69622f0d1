"""The one table from domain exceptions to HTTP problems (RFC 9457, application/problem+json)."""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon
import redis

from actors.outbound import UrlNotAllowed
from exporters.base import ConversionError, InputTooLarge, UnsupportedInput
from service.auth import Forbidden, RateLimited, Unauthorized, rate_headers
from service.logs import request_id_var
from storage.base import ObjectNotFound, ObjectTooLarge, StorageUnavailable
from storage.jobs import QueueFull, RecordNotFound, RecordsUnavailable
from storage.signing import BadSignature, LinkExpired
from storage.tenants import QuotaExceeded

log = logging.getLogger("exportd.api")

PROBLEM_JSON = "application/problem+json"

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER_S = 5

#: After refusing an oversize body, read and discard up to this much of the rest, so the client,
#: still sending, reads our 413 instead of a connection reset. Beyond it, just close.
DISCARD_MAX_BYTES = 64 * 1024 * 1024


class BadRequest(Exception):
    """The request itself is malformed (not JSON, missing field, wrong type)."""

    code = "invalid_request"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status


class BodyTooLarge(Exception):
    """A request body, or a part of one, is larger than its limit: refused before it is read whole."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownUpload(Exception):
    """An export names an upload id that does not exist (or expired)."""


class ConversionUnavailable(Exception):
    """No live worker pool serves the conversion's queue with what it needs (LibreOffice, ...)."""


class AlreadyFinished(Exception):
    """DELETE of a job that has already succeeded or failed: nothing is left to cancel."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the job has already {status}; only a queued or running job can be canceled")
        self.message = str(self)


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key sent again with a different request (method, path, type or body)."""

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was used with a different request in the last 24 hours; "
            "use a new key for a new request"
        )
        self.message = str(self)


class IdempotencyKeyInProgress(Exception):
    """The first request with this Idempotency-Key has not answered yet (or was refused meanwhile)."""

    def __init__(self) -> None:
        super().__init__("a request with this Idempotency-Key is still being processed; retry after a moment")
        self.message = str(self)


#: Seconds a client whose open jobs fill its quota should wait before submitting again.
QUEUE_FULL_RETRY_AFTER_S = 5

# Most specific first: the first matching row wins.
_TABLE: list[tuple[type[BaseException], int, str, str]] = [
    (Unauthorized, 401, "unauthorized", "Unauthorized"),
    (Forbidden, 403, "forbidden", "Forbidden"),
    (RateLimited, 429, "rate_limited", "Too many requests"),
    (QuotaExceeded, 429, "quota_exceeded", "Quota exceeded"),
    (QueueFull, 429, "quota_exceeded", "Quota exceeded"),
    (ObjectTooLarge, 413, "payload_too_large", "Payload too large"),
    (BodyTooLarge, 413, "payload_too_large", "Payload too large"),
    (InputTooLarge, 413, "input_too_large", "Input too large"),
    (UnsupportedInput, 415, "unsupported_input", "Unsupported input"),
    (ConversionError, 422, "", "Cannot convert"),  # the exception's own code
    (BadRequest, 400, "", "Invalid request"),
    (UnknownUpload, 422, "unknown_upload", "Unknown upload"),
    (UrlNotAllowed, 422, "url_not_allowed", "URL not allowed"),
    (ConversionUnavailable, 422, "conversion_unavailable", "Conversion unavailable"),
    (RecordNotFound, 404, "not_found", "Not found"),
    (AlreadyFinished, 409, "already_finished", "Already finished"),
    (IdempotencyKeyReused, 409, "idempotency_key_reused", "Idempotency key reused"),
    (IdempotencyKeyInProgress, 409, "idempotency_key_in_progress", "Idempotency key in progress"),
    (ObjectNotFound, 404, "not_found", "Not found"),
    (BadSignature, 403, "invalid_signature", "Invalid link"),
    (LinkExpired, 403, "link_expired", "Link expired"),
    (RecordsUnavailable, 503, "service_unavailable", "Service unavailable"),
    (StorageUnavailable, 503, "service_unavailable", "Service unavailable"),
    (redis.ConnectionError, 503, "service_unavailable", "Service unavailable"),
    (redis.TimeoutError, 503, "service_unavailable", "Service unavailable"),
]

#: Codes for errors Falcon raises itself (routing, parsing, methods).
_FALCON_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    500: "internal_error",
    503: "service_unavailable",
}


def problem(
    status: int, code: str, title: str, detail: str, req: falcon.Request | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:exportd:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if req is not None:
        body["instance"] = req.path
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    return body


def _write(resp: falcon.Response, status: int, body: dict[str, Any]) -> None:
    resp.status = status
    resp.content_type = PROBLEM_JSON
    resp.text = json.dumps(body, ensure_ascii=False)
    if status == 503:
        resp.set_header("Retry-After", str(RETRY_AFTER_S))


def _tenant_headers(resp: falcon.Response, exc: Exception) -> None:
    """WWW-Authenticate on a 401; Retry-After and the RateLimit fields on a 429."""
    if isinstance(exc, Unauthorized):
        resp.set_header("WWW-Authenticate", 'Bearer realm="exportd"')
    elif isinstance(exc, RateLimited):
        resp.set_headers({**rate_headers(exc.state), "Retry-After": str(max(1, exc.state.retry_after_s))})
    elif isinstance(exc, QuotaExceeded):
        resp.set_headers({"Retry-After": str(exc.retry_after_s), "RateLimit-Limit": str(exc.limit),
                          "RateLimit-Remaining": "0", "RateLimit-Reset": str(exc.reset_s)})  # fmt: skip
    elif isinstance(exc, IdempotencyKeyInProgress):
        resp.set_header("Retry-After", "1")
    elif isinstance(exc, QueueFull):
        resp.set_headers({"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S), "RateLimit-Limit": str(exc.max_queued),
                          "RateLimit-Remaining": "0", "RateLimit-Reset": str(QUEUE_FULL_RETRY_AFTER_S)})  # fmt: skip


def _discard_rest_of_body(req: falcon.Request, resp: falcon.Response) -> None:
    resp.set_header("Connection", "close")
    declared = req.content_length
    if declared is not None and declared > DISCARD_MAX_BYTES:
        return
    stream = req.bounded_stream if declared is not None else req.stream
    left = DISCARD_MAX_BYTES
    try:
        while left > 0 and (chunk := stream.read(min(left, 1024 * 1024))):
            left -= len(chunk)
    except OSError:  # the client gave up first
        pass


def handle_domain_error(
    req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict[str, Any]
) -> None:
    if isinstance(exc, (ObjectTooLarge, BodyTooLarge)):
        _discard_rest_of_body(req, resp)
    for exc_type, status, code, title in _TABLE:
        if isinstance(exc, exc_type):
            code = code or getattr(exc, "code", "invalid_request")
            status = getattr(exc, "status", status) if isinstance(exc, BadRequest) else status
            if status == 503:
                log.warning("dependency unavailable", extra={"error": str(exc)})
                detail = "a service exportd depends on is unavailable; retry shortly"
            elif isinstance(exc, (RecordNotFound, ObjectNotFound)):
                detail = "no such resource (it never existed or is past its retention)"
            else:
                detail = getattr(exc, "message", None) or str(exc)
            _write(resp, status, problem(status, code, title, detail, req))
            _tenant_headers(resp, exc)
            return
    log.exception("unhandled error", extra={"path": req.path, "method": req.method})
    _write(resp, 500, problem(500, "internal_error", "Internal error", "an unexpected error occurred", req))


def serialize_http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Falcon's own errors (unknown route, bad method, unparsable body) as problem JSON too."""
    status = exc.status_code
    code = _FALCON_CODES.get(status, "invalid_request")
    body = problem(status, code, exc.title or "Error", exc.description or exc.title or "", req)
    resp.content_type = PROBLEM_JSON
    resp.text = json.dumps(body, ensure_ascii=False)


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    app.add_error_handler(Exception, handle_domain_error)
    app.set_error_serializer(serialize_http_error)
