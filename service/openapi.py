"""GET /v1/openapi.json: the API's OpenAPI 3.1 contract, generated from what the API runs on.

The paths and methods come from the Falcon app's router, the options of every conversion from
their declarations (exporters.registry, exporters.base.describe_options), the problem codes of
each status from service.errors' table. What only a person can say (a sentence per operation,
which statuses it answers with, its headers) is declared here, once per responder; a route the
router has and OPERATIONS lacks is left out of the document, which tests/service/test_openapi.py
refuses.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import falcon
import falcon.inspect

from exporters import registry
from exporters.base import ConversionError, Limits
from service import errors
from service.early import SERVER_PROBLEMS
from service.resources import page
from storage import jobs
from storage.webhooks import EVENTS

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


# -- problem codes, from service/errors.py ---------------------------------------------------------


def _subclasses(cls: type) -> list[type]:
    found = [cls]
    sub: type
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def problem_codes() -> dict[int, list[str]]:
    """Every problem code the API can answer with, by HTTP status, read from the error table.

    A row without a code of its own takes the exception's: each subclass of ConversionError is
    placed under the first row it matches, as the error handler does.
    """
    by_status: dict[int, set[str]] = {}
    for exc_type, status, code, _title in errors._TABLE:
        if code:
            by_status.setdefault(status, set()).add(code)
        elif exc_type is errors.BadRequest:
            by_status.setdefault(status, set()).add(errors.BadRequest.code)
    for exc_type in _subclasses(ConversionError):
        for row_type, status, code, _title in errors._TABLE:
            if issubclass(exc_type, row_type):
                by_status.setdefault(status, set()).add(code or str(getattr(exc_type, "code", "")))
                break
    for status, code in errors._FALCON_CODES.items():
        by_status.setdefault(status, set()).add(code)
    # BadRequest raised with a status and code of its own (service/resources/exports.py).
    by_status.setdefault(400, set()).add("too_many_inputs")
    by_status.setdefault(415, set()).add("unsupported_media_type")
    # The webhook fields and routes (service/resources/deliveries.py).
    by_status.setdefault(422, set()).add("url_not_allowed")
    by_status.setdefault(409, set()).update(("job_not_finished", "no_webhook_endpoint"))
    # Answered by the HTTP server itself, before any route (service/server.py).
    for status in _SERVER_PROBLEMS:
        by_status.setdefault(status, set()).add(SERVER_PROBLEMS[status])
    return {status: sorted(codes) for status, codes in sorted(by_status.items())}


def job_error_codes() -> list[str]:
    """Codes a failed job's `error.code` can hold."""
    codes = {str(getattr(cls, "code", "")) for cls in _subclasses(ConversionError)}
    # Ends the actors give a job themselves (actors/export.py, actors/outcomes.py, actors/sweeper.py).
    return sorted(codes | {"internal_error", "input_missing", "time_limit_exceeded", "worker_crashed",
                           "input_unreachable", "url_not_allowed"})  # fmt: skip


# -- operations: what the router cannot say ----------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    description: str
    content: dict[str, Any] | None = None  # media type -> schema
    headers: tuple[str, ...] = ()  # names in HEADERS


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    answers: dict[int, Answer]
    problems: tuple[int, ...] = ()  # statuses answered with a problem body
    parameters: tuple[dict[str, Any], ...] = ()
    request_body: dict[str, Any] | Callable[[], dict[str, Any]] | None = None
    description: str = ""


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": schema}


_JOB = Answer("The job, with download links signed for this answer.", _json(_ref("Job")), ("Cache-Control",))

_WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "Seconds to wait for the job to finish before answering (0 to 30); the answer comes as "
    "soon as it finishes.",
    "schema": {"type": "number", "minimum": 0, "maximum": 30, "default": 0},
}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}  # fmt: skip


def _signature(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": True, "description": description,
            "schema": {"type": "string"}}  # fmt: skip


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": {"type": "string"}}  # fmt: skip


_WEBHOOK_URL = {
    "type": "string", "format": "uri", "maxLength": 2048,
    "description": "Where the job's end is posted (Standard Webhooks, signed); checked by the outbound policy "
    "at submit (422 url_not_allowed). Default: the tenant's endpoint, if it has one.",
}  # fmt: skip

#: The Idempotency-Key request header of the submits (service/idempotency.py).
_IDEMPOTENCY_KEY = {
    **_header(
        "Idempotency-Key",
        'Makes the request safe to send again (IETF draft "The Idempotency-Key HTTP '
        'Header Field"): 1 to 255 printable ASCII characters, e.g. a UUID, as a Structured Field '
        "string or bare. Within 24 hours, per tenant, the same key with the same request answers the "
        "first answer's status and Location and the same job or upload (as it is now), with "
        "`Idempotent-Replayed: true`; with a different request, 409 `idempotency_key_reused`; while "
        "the first is still in progress, 409 `idempotency_key_in_progress` (with Retry-After).",
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _export_request_body() -> dict[str, Any]:
    formats = list(registry.FORMATS)
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "format"],
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary",
                                 "contentMediaType": "application/octet-stream"},
                                 "description": "One part per input file, in order."},
                        "format": {"type": "string", "enum": formats},
                        "options": {"type": "string", "contentMediaType": "application/json",
                                    "description": "A JSON object: the conversion's options "
                                                   "(see ExportOptions)."},
                        "webhook_url": _WEBHOOK_URL,
                        "webhook_events": {"type": "string", "description": "Event names separated by "
                                           "commas, or a JSON array of them: " + ", ".join(EVENTS) + "."},
                    },
                },
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs", "format"],
                    "additionalProperties": False,
                    "properties": {
                        "inputs": {"type": "array", "minItems": 1, "items": {"oneOf": [
                                       {"type": "string", "description": "An upload id (POST /v1/uploads)."},
                                       _ref("UrlInput")]},
                                   "description": "Upload ids (POST /v1/uploads), and URLs the worker "
                                                  "downloads under the outbound policy."},
                        "format": {"type": "string", "enum": formats},
                        "options": _ref("ExportOptions"),
                        "webhook_url": _WEBHOOK_URL,
                        "webhook_events": {"type": "array", "minItems": 1, "uniqueItems": True,
                                           "items": {"type": "string", "enum": list(EVENTS)},
                                           "description": "The events posted (default: all)."},
                    },
                },
            },
        },
    }  # fmt: skip


_FILE_HEADERS = ("ETag", "Accept-Ranges", "Content-Disposition", "Cache-Control")

#: A signed link's parameters, the same for GET and HEAD.
_FILE_PARAMETERS = (
    _path("job_id", "The job's id."), _path("name", "The output's name."),
    _signature("exp", "Expiry (Unix seconds), as in the link."),
    _signature("kid", "Signing key id, as in the link."),
    _signature("sig", "Signature, as in the link."),
    _header("Range", "One byte range, e.g. bytes=0-1023."),
    _header("If-Range", "The ETag the Range applies to."),
    _header("If-None-Match", "ETags the client has."),
)  # fmt: skip


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("Healthz", "GET"): Operation(
        "getHealthz", "Liveness: the process answers", "operations",
        {200: Answer("Alive.", _json(_ref("Health")))},
    ),
    ("Readyz", "GET"): Operation(
        "getReadyz", "Readiness: Redis and storage are reachable", "operations",
        {200: Answer("Ready.", _json(_ref("Readiness"))),
         503: Answer("Not ready: `checks` says what is unavailable.", _json(_ref("Readiness")), ("Retry-After",))},
    ),
    ("Metrics", "GET"): Operation(
        "getMetrics", "Prometheus metrics of this pod's API processes (summed)", "operations",
        {200: Answer("The Prometheus text exposition format.", {"text/plain": {"type": "string"}})},
    ),
    ("OpenApi", "GET"): Operation(
        "getOpenApi", "This document", "documentation",
        {200: Answer("The OpenAPI 3.1 document.", _json({"type": "object"}))},
    ),
    ("Page", "GET"): Operation(
        "getPage", "The web page: files in, exports out", "page",
        {200: Answer("The page.", {"text/html": {"type": "string"}}, ("Content-Security-Policy",))},
    ),
    ("PageAsset", "GET"): Operation(
        "getPageAsset", "A script or style sheet of the web page", "page",
        {200: Answer("The file.", {"text/css": {"type": "string"}, "text/javascript": {"type": "string"}},
                     ("Content-Security-Policy",))},
        problems=(404,),
        parameters=({**_path("name", "The file's name."), "schema": {"type": "string", "enum": sorted(page.ASSETS)}},),
    ),
    ("Formats", "GET"): Operation(
        "getFormats", "Every conversion, with its options", "exports",
        {200: Answer("Output formats, accepted media types and conversions with their options.",
                     _json(_ref("Formats")))},
    ),
    ("Uploads", "POST"): Operation(
        "createUpload", "Upload one file for later exports", "uploads",
        {201: Answer("Stored; its type sniffed from its bytes.", _json(_ref("Upload")),
                     ("Location", "Idempotent-Replayed"))},
        problems=(400, 409, 411, 413, 415, 503),
        parameters=({"name": "filename", "in": "query", "required": False,
                     "description": "The file's name, for a raw (non-multipart) body.",
                     "schema": {"type": "string"}}, _IDEMPOTENCY_KEY),
        request_body={
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {
                    "type": "object", "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary",
                                            "contentMediaType": "application/octet-stream"}}}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
    ),
    ("UploadItem", "GET"): Operation(
        "getUpload", "An upload's record", "uploads",
        {200: Answer("The upload.", _json(_ref("Upload")))},
        problems=(404, 503),
        parameters=(_path("upload_id", "The upload's id."),),
    ),
    ("Exports", "POST"): Operation(
        "createExport", "Convert files: upload them in the request, or name earlier uploads", "exports",
        {201: Answer("Finished within `wait` (succeeded or failed: `status` says which).", _json(_ref("Job")),
                     ("Location", "Cache-Control", "Idempotent-Replayed")),
         202: Answer("Accepted and queued; follow `Location`.", _json(_ref("Job")),
                     ("Location", "Cache-Control", "Idempotent-Replayed"))},
        problems=(400, 409, 411, 413, 415, 422, 503),
        parameters=(_WAIT, _IDEMPOTENCY_KEY),
        request_body=_export_request_body,
        description="The options depend on the conversion, chosen by the inputs' kind and `format`: "
        "see the `*Options` schemas and GET /v1/formats.",
    ),
    ("Exports", "GET"): Operation(
        "listExports", "The caller's jobs, newest first", "exports",
        {200: Answer("A page of jobs; `next_cursor` fetches the next one (null: no more).", _json(_ref("JobList")),
                     ("Cache-Control",))},
        problems=(400, 503),
        parameters=(
            {"name": "status", "in": "query", "required": False, "description": "Only jobs in this status.",
             "schema": {"type": "string", "enum": list(jobs.STATUSES)}},
            {"name": "limit", "in": "query", "required": False, "description": "Jobs per page.",
             "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
            {"name": "cursor", "in": "query", "required": False,
             "description": "The `next_cursor` of the previous page.", "schema": {"type": "string"}},
        ),
    ),
    ("ExportItem", "GET"): Operation(
        "getExport", "A job: its status, error or download links", "exports",
        {200: _JOB},
        problems=(400, 404, 503),
        parameters=(_path("job_id", "The job's id."), _WAIT),
    ),
    ("Deliveries", "GET"): Operation(
        "listDeliveries", "A job's webhook delivery attempts, oldest first", "exports",
        {200: Answer("Every attempt to post the job's event.", _json(_ref("DeliveryList")), ("Cache-Control",))},
        problems=(404, 503),
        parameters=(_path("job_id", "The job's id."),),
    ),
    ("Deliveries", "POST"): Operation(
        "resendDelivery", "Re-send the job's event to its endpoint now", "exports",
        {202: Answer("Queued: one attempt, with the event's webhook-id; see GET for its outcome.",
                     _json(_ref("Resend")), ("Location",))},
        problems=(404, 409, 503),
        parameters=(_path("job_id", "The job's id."),),
        description="409 job_not_finished: the job has not ended yet; 409 no_webhook_endpoint: neither the job "
        "nor its tenant has an endpoint.",
    ),
    ("ExportItem", "DELETE"): Operation(
        "cancelExport", "Cancel a job: a queued one never starts, a running one stops at its next safe point",
        "exports",
        {200: Answer("Canceled (now, or by an earlier DELETE): `status` is `canceled`, with no outputs.",
                     _json(_ref("Job")), ("Cache-Control",)),
         202: Answer("Running: its worker stops it at the next safe point (between frames, pages or inputs; "
                     "LibreOffice is killed), then it ends `canceled`. `cancel_requested` is true meanwhile; "
                     "`wait` waits for the end.", _json(_ref("Job")), ("Cache-Control",))},
        problems=(400, 404, 409, 503),
        parameters=(_path("job_id", "The job's id."), _WAIT),
        description="Canceling twice is harmless (the same answers). A job that has already succeeded or "
        "failed answers 409 `already_finished`. The `export.canceled` event is emitted once.",
    ),
    ("Files", "GET"): Operation(
        "downloadOutput", "Download an output through its signed link", "files",
        {200: Answer("The file.", {"*/*": {"type": "string", "format": "binary"}}, _FILE_HEADERS),
         206: Answer("The byte range asked for.", {"*/*": {"type": "string", "format": "binary"}},
                     (*_FILE_HEADERS, "Content-Range")),
         304: Answer("Not modified (If-None-Match).", None, _FILE_HEADERS)},
        problems=(403, 404, 416, 503),
        parameters=_FILE_PARAMETERS,
    ),
    ("Files", "HEAD"): Operation(
        "headOutput", "An output's size and headers, without its bytes", "files",
        {200: Answer("The file's headers.", None, _FILE_HEADERS),
         206: Answer("The range's headers.", None, (*_FILE_HEADERS, "Content-Range")),
         304: Answer("Not modified (If-None-Match).", None, _FILE_HEADERS)},
        problems=(403, 404, 416, 503),
        parameters=_FILE_PARAMETERS,
    ),
    ("TenantFiles", "GET"): Operation(
        "downloadTenantOutput", "Download an output through its signed link", "files",
        {200: Answer("The file.", {"*/*": {"type": "string", "format": "binary"}}, _FILE_HEADERS),
         206: Answer("The byte range asked for.", {"*/*": {"type": "string", "format": "binary"}},
                     (*_FILE_HEADERS, "Content-Range")),
         304: Answer("Not modified (If-None-Match).", None, _FILE_HEADERS)},
        problems=(403, 404, 416, 503),
        parameters=(_path("tenant", "The tenant the output belongs to."), *_FILE_PARAMETERS),
    ),
    ("TenantFiles", "HEAD"): Operation(
        "headTenantOutput", "An output's size and headers, without its bytes", "files",
        {200: Answer("The file's headers.", None, _FILE_HEADERS),
         206: Answer("The range's headers.", None, (*_FILE_HEADERS, "Content-Range")),
         304: Answer("Not modified (If-None-Match).", None, _FILE_HEADERS)},
        problems=(403, 404, 416, 503),
        parameters=(_path("tenant", "The tenant the output belongs to."), *_FILE_PARAMETERS),
    ),
}  # fmt: skip

#: Response headers, as the operations above name them.
HEADERS: dict[str, dict[str, Any]] = {
    "Location": {"description": "Where the created resource is read.", "schema": {"type": "string"},
                 "required": True},
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "string"},
                    "required": True},
    "Cache-Control": {"description": "no-store on answers holding signed links.", "schema": {"type": "string"}},
    "Content-Security-Policy": {"description": "The page's policy: no inline scripts, no framing.",
                                "schema": {"type": "string"}, "required": True},
    "ETag": {"description": "The file's version.", "schema": {"type": "string"}},
    "Accept-Ranges": {"description": "bytes", "schema": {"type": "string"}},
    "Content-Disposition": {"description": "attachment, with the file's name.", "schema": {"type": "string"}},
    "Content-Range": {"description": "The range sent, of the whole size.", "schema": {"type": "string"}},
    "X-Request-ID": {"description": "The request's id (the client's X-Request-ID when sane); also in logs.",
                     "schema": {"type": "string"}, "required": True},
    "WWW-Authenticate": {"description": "Bearer: send an API key.", "schema": {"type": "string"},
                         "required": True},
    "RateLimit-Limit": {"description": "The tenant's limit (requests per second, or the quota refused).",
                        "schema": {"type": "string"}},
    "RateLimit-Remaining": {"description": "What is left of it now.", "schema": {"type": "string"}},
    "RateLimit-Reset": {"description": "Seconds until it is whole again.", "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "true: the answer to an earlier request with the same "
                            "Idempotency-Key, replayed.", "schema": {"type": "string", "enum": ["true"]}},
}  # fmt: skip

#: What every /v1/ operation but the signed links may also answer (service/auth.py).
_AUTH_PROBLEMS = (401, 403, 429)
#: What the server answers on any route when a request's head is too large (service/server.py).
_SERVER_PROBLEMS = (414, 431)
_PROBLEM_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining",
                                                      "RateLimit-Reset"), 503: ("Retry-After",)}  # fmt: skip


def _needs_key(path: str, class_name: str) -> bool:
    return path.startswith("/v1/") and class_name not in ("Files", "TenantFiles")


# -- schemas -------------------------------------------------------------------------------------------


def _option_schema(described: dict[str, Any]) -> dict[str, Any]:
    """One option of /v1/formats as a JSON Schema (2020-12, as OpenAPI 3.1 uses)."""
    schema = {k: copy.deepcopy(v) for k, v in described.items() if k != "nullable"}
    if described.get("nullable"):
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema


def options_schema_name(conversion: registry.Conversion) -> str:
    return f"{conversion.kind}_to_{conversion.format}_Options"


def _options_schemas(limits: Limits) -> dict[str, dict[str, Any]]:
    from exporters.base import describe_options

    schemas: dict[str, dict[str, Any]] = {}
    for conversion in registry.CONVERSIONS:
        described = describe_options(conversion.options, limits=limits)
        schemas[options_schema_name(conversion)] = {
            "type": "object",
            "title": f"{conversion.kind} → {conversion.format}",
            "description": conversion.description,
            "additionalProperties": False,
            "properties": {name: _option_schema(entry) for name, entry in described.items()},
        }
    return schemas


def _schemas(limits: Limits) -> dict[str, Any]:
    options = _options_schemas(limits)
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    upload = {
        "type": "object",
        "required": ["id", "filename", "content_type", "size", "sha256"],
        "properties": {
            "id": {"type": "string"},
            "filename": {"type": "string"},
            "content_type": {"type": "string", "description": "Sniffed from the file's bytes."},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string"},
            "url": {
                "type": "string",
                "description": "A URL input: the URL without its query. Its "
                "content_type, size and sha256 are filled in once the worker has downloaded it.",
            },
        },
    }
    url_input = {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "maxLength": 2048,
                    "description": "https (http in development only). Refused with 422 url_not_allowed "
                                   "if it is not allowed by the outbound policy (non-public addresses, "
                                   "credentials in the URL); checked again when the worker connects."},
            "filename": {"type": "string", "description": "The input's name; by default the URL's last "
                                                          "path segment. Its extension hints the type."},
        },
    }  # fmt: skip
    output = {
        "type": "object",
        "required": ["name", "content_type", "size", "sha256", "url", "expires_at"],
        "properties": {
            "name": {"type": "string"},
            "content_type": {"type": "string"},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string"},
            "url": {"type": "string", "description": "Signed download link."},
            "expires_at": {"type": "string", "format": "date-time"},
            "details": {"type": "object"},
        },
    }
    job = {
        "type": "object",
        "required": ["id", "status", "format", "inputs", "options", "created_at", "started_at",
                     "finished_at", "attempts", "cancel_requested", "error", "outputs"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": list(jobs.STATUSES)},
            "format": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("Upload")},
            "options": {"type": "object", "description": "The options accepted, defaults filled in."},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": nullable_time,
            "finished_at": nullable_time,
            "attempts": {"type": "integer", "minimum": 0},
            "cancel_requested": {"type": "boolean", "description": "DELETE came while it ran: it stops at "
                                 "its next safe point and ends `canceled`."},
            "error": {
                "oneOf": [
                    {"type": "null"},
                    {"type": "object", "required": ["code", "message"],
                     "properties": {"code": {"type": "string", "description": "Stable: one of "
                                             + ", ".join(job_error_codes()) + "."},
                                    "message": {"type": "string", "description": "A sentence for people."}}},
                ]
            },
            "outputs": {"type": "array", "items": _ref("Output")},
        },
    }  # fmt: skip
    problem = {
        "type": "object",
        "description": "RFC 9457 problem details; `code` is stable, `detail` a sentence for people.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "instance": {"type": "string"},
            "request_id": {"type": "string"},
        },
    }
    formats = {
        "type": "object",
        "required": ["formats", "inputs", "conversions"],
        "properties": {
            "formats": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Output format -> media type of its files."},
            "inputs": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "Accepted media type -> input kind."},
            "conversions": {"type": "array", "items": {
                "type": "object",
                "required": ["from", "to", "description", "outputs", "options"],
                "properties": {
                    "from": {"type": "string"}, "to": {"type": "string"}, "description": {"type": "string"},
                    "outputs": {"type": "string",
                                "enum": ["one_per_input", "one", "one_per_page", "one_per_range"]},
                    "also_takes": {"type": "array", "items": {"type": "string"}},
                    "options": {"type": "object", "additionalProperties": {"type": "object"}},
                },
            }},
        },
    }  # fmt: skip
    return {
        "Problem": problem,
        "Upload": upload,
        "UrlInput": url_input,
        "Output": output,
        "Job": job,
        "JobList": {
            "type": "object",
            "required": ["exports", "next_cursor"],
            "additionalProperties": False,
            "properties": {
                "exports": {"type": "array", "items": _ref("Job")},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "Formats": formats,
        "Delivery": {
            "type": "object",
            "required": [
                "webhook_id",
                "event",
                "attempt",
                "at",
                "status_code",
                "error",
                "duration_ms",
                "next_retry_at",
            ],
            "properties": {
                "webhook_id": {
                    "type": "string",
                    "description": "The webhook-id header: the same on every attempt of one event.",
                },
                "event": {"type": "string", "enum": list(EVENTS)},
                "attempt": {"type": "integer", "minimum": 1},
                "at": {"type": "string", "format": "date-time"},
                "status_code": {
                    "type": ["integer", "null"],
                    "description": "The receiver's status (null: no answer).",
                },
                "error": {
                    "type": ["string", "null"],
                    "description": "null when delivered; else a code "
                    "(unexpected_status, timeout, connect_failed, connection_failed, tls_failed, dns_failed, url_not_allowed, endpoint_gone), "
                    "a colon and a sentence.",
                },
                "duration_ms": {"type": ["integer", "null"]},
                "next_retry_at": {
                    **nullable_time,
                    "description": "When the next attempt is due (null: none).",
                },
            },
        },
        "DeliveryList": {
            "type": "object",
            "required": ["deliveries"],
            "additionalProperties": False,
            "properties": {"deliveries": {"type": "array", "items": _ref("Delivery")}},
        },
        "Resend": {
            "type": "object",
            "required": ["webhook_id", "event"],
            "properties": {
                "webhook_id": {"type": "string"},
                "event": {"type": "string", "enum": list(EVENTS)},
            },
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Readiness": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "unavailable"]},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "ExportOptions": {
            "description": "The options of the conversion chosen by the inputs' kind and `format`.",
            "anyOf": [_ref(name) for name in options],
        },
        **options,
    }


def _responses(operation: Operation, codes: dict[int, list[str]], *, keyed: bool = False) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status, answer in operation.answers.items():
        entry: dict[str, Any] = {"description": answer.description}
        if answer.content:
            entry["content"] = {media: {"schema": schema} for media, schema in answer.content.items()}
        names = ("X-Request-ID", *answer.headers)
        entry["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in names}
        answers[str(status)] = entry
    for status in sorted(
        set(operation.problems) | set(_AUTH_PROBLEMS if keyed else ()) | set(_SERVER_PROBLEMS)
    ):
        listed = ", ".join(f"`{code}`" for code in codes.get(status, []))
        headers = ("X-Request-ID", *_PROBLEM_HEADERS.get(status, ()))
        answers[str(status)] = {
            "description": f"A problem; its code is one of: {listed}.",
            "content": {errors.PROBLEM_JSON: {"schema": _ref("Problem")}},
            "headers": {name: {"$ref": f"#/components/headers/{name}"} for name in headers},
        }
    return answers


def undocumented_routes(app: falcon.App[Any, Any]) -> list[str]:
    """'METHOD /path' of every responder the router has and OPERATIONS lacks."""
    missing = []
    for route in falcon.inspect.inspect_routes(app):
        for method in route.methods:
            if not method.internal and (route.class_name, method.method) not in OPERATIONS:
                missing.append(f"{method.method} {route.path}")
    return missing


def build_document(app: falcon.App[Any, Any], *, limits: Limits, base_url: str) -> dict[str, Any]:
    """The OpenAPI document of `app`: its routes, each conversion's options, the problem codes."""
    codes = problem_codes()
    paths: dict[str, dict[str, Any]] = {}
    for route in falcon.inspect.inspect_routes(app):
        for method in route.methods:
            operation = OPERATIONS.get((route.class_name, method.method))
            if method.internal or operation is None:
                continue
            entry: dict[str, Any] = {
                "operationId": operation.operation_id,
                "summary": operation.summary,
                "tags": [operation.tag],
                "parameters": [
                    *copy.deepcopy(operation.parameters),
                    {"$ref": "#/components/parameters/RequestId"},
                ],
                "responses": _responses(operation, codes, keyed=_needs_key(route.path, route.class_name)),
            }
            if _needs_key(route.path, route.class_name):
                entry["security"] = [{"bearer": []}]
            if operation.description:
                entry["description"] = operation.description
            body = operation.request_body() if callable(operation.request_body) else operation.request_body
            if body:
                entry["requestBody"] = copy.deepcopy(body)
            paths.setdefault(route.path, {})[method.method.lower()] = entry
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "exportd",
            "version": API_VERSION,
            "description": "Hand exportd files and a target format; workers convert them and the job "
            "gives signed, expiring download links. Every error is application/problem+json with a "
            "stable `code`.",
        },
        "servers": [{"url": base_url}],
        "tags": [{"name": name} for name in ("exports", "uploads", "files", "operations", "page",
                                             "documentation")],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _schemas(limits),
            "headers": HEADERS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An API key (exk_...): `exportd keys create`."}},
            "parameters": {"RequestId": _header("X-Request-ID", "Your id for this request, echoed back "
                                                "and logged (letters, digits, . _ -; at most 64).")},
        },
        "x-problem-codes": {str(status): names for status, names in codes.items()},
    }  # fmt: skip


class OpenApi:
    """The document, built from the app on the first request (every route is in place by then)."""

    scopes: ClassVar[dict[str, str]] = {"GET": ""}  # any valid key (service.auth.ANY)

    def __init__(self, app: falcon.App[Any, Any], *, limits: Limits, base_url: str) -> None:
        self._app = app
        self._limits = limits
        self._base_url = base_url
        self._lock = threading.Lock()
        self._body: bytes | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        with self._lock:
            if self._body is None:
                document = build_document(self._app, limits=self._limits, base_url=self._base_url)
                self._body = json.dumps(document, ensure_ascii=False).encode()
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._body
