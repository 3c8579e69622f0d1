"""GET and POST /v1/exports/{id}/deliveries: a job's webhook delivery log, and re-sending its event;
and the webhook fields of POST /v1/exports (`webhook_url`, `webhook_events`), checked at submit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import falcon

from actors import outbound
from service.bodies import parse_json
from service.errors import BadRequest
from storage.jobs import EVENT_OF_STATUS, Records
from storage.keys import READ, SUBMIT
from storage.webhooks import EVENTS, Attempt, Webhooks, webhook_id

#: Longest webhook_url taken.
MAX_URL_CHARS = 2048


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_webhook_events(raw: Any, *, form: bool) -> tuple[str, ...]:
    """`webhook_events`: a list of event names (JSON), or in a form field a JSON list or names
    separated by commas. Raises BadRequest."""
    if form and isinstance(raw, str):
        raw = (
            parse_json(raw.encode(), what="'webhook_events'")
            if raw.strip().startswith("[")
            else [p.strip() for p in raw.split(",") if p.strip()]
        )
    if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
        raise BadRequest(
            f"'webhook_events' must be a non-empty list of event names among {', '.join(EVENTS)}"
        )
    unknown = [e for e in raw if e not in EVENTS]
    if unknown:
        raise BadRequest(f"unknown webhook event {unknown[0][:40]!r}; events are {', '.join(EVENTS)}")
    return tuple(dict.fromkeys(raw))


def check_webhook_url(raw: Any, policy: Any) -> str:
    """An absolute http(s) URL that the outbound policy does not refuse now. Raises BadRequest (400
    for a malformed URL, 422 url_not_allowed for one the policy refuses)."""
    if not isinstance(raw, str) or len(raw) > MAX_URL_CHARS:
        raise BadRequest(
            f"'webhook_url' must be an absolute http or https URL of at most {MAX_URL_CHARS} characters"
        )
    parts = urlsplit(raw.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"'webhook_url' must be an absolute http or https URL, not {raw[:80]!r}")
    try:
        policy.check(raw.strip())
    except outbound.UrlNotAllowed as exc:
        raise BadRequest(
            f"webhook_url is not allowed: {exc.reason}", code="url_not_allowed", status=422
        ) from None
    except outbound.OutboundError:
        pass  # the host does not resolve now: as for URL inputs, each delivery tries (and logs dns_failed)
    return raw.strip()


def delivery_view(attempt: Attempt) -> dict[str, Any]:
    return {
        "webhook_id": attempt.webhook_id,
        "event": attempt.event,
        "attempt": attempt.attempt,
        "at": _iso(attempt.at),
        "status_code": attempt.status_code,
        "error": attempt.error,
        "duration_ms": attempt.duration_ms,
        "next_retry_at": _iso(attempt.next_retry_at),
    }


class Deliveries:
    scopes: ClassVar[dict[str, str]] = {"GET": READ, "POST": SUBMIT}

    def __init__(
        self, *, records: Records, webhooks: Webhooks, enqueue: Callable[[str, str, str], None]
    ) -> None:
        self.records = records
        self.webhooks = webhooks
        self.enqueue = enqueue  # (job id, event, endpoint URL): one delivery, now, not retried

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        self.records.get_job(job_id, tenant=req.context.tenant)  # another tenant's job: 404
        resp.media = {"deliveries": [delivery_view(a) for a in self.webhooks.attempts(job_id)]}
        resp.cache_control = ["no-store"]

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        """Re-send the job's event (a job ends once: its latest event is its only one) now."""
        job = self.records.get_job(job_id, tenant=req.context.tenant)
        if not job.finished:
            raise BadRequest(
                f"the job is {job.status}: it has no event to send until it ends",
                code="job_not_finished",
                status=409,
            )
        url = job.webhook_url or self.webhooks.endpoint(job.tenant)
        if not url:
            raise BadRequest(
                "this job has no webhook_url and its tenant no default endpoint "
                "(`exportd webhooks set-endpoint URL`)",
                code="no_webhook_endpoint",
                status=409,
            )
        event = EVENT_OF_STATUS[job.status]
        self.enqueue(job.id, event, url)
        resp.status = falcon.HTTP_202
        resp.location = f"/v1/exports/{job.id}/deliveries"
        resp.media = {"webhook_id": webhook_id(job.id, event), "event": event}
