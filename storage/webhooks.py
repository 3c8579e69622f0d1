"""Webhook state in Redis: each tenant's signing secrets and default endpoint, endpoints that
answered 410 Gone, and each job's delivery log.

Secrets are in the Standard Webhooks form, `whsec_` + base64 of 24 random bytes, one per tenant.
They are stored sealed (storage/sealing.py, under the signing keys the API and workers share), so
a copy of Redis alone does not sign. A rotation keeps the previous secret for a window, during
which deliveries carry both signatures.

Keys (all under the tenant's own prefix, `{namespace}:tenant:{tenant}:`):
  webhook:secrets   hash: current, previous (sealed), previous_until (unix seconds)
  webhook:endpoint  the tenant's default endpoint URL
  webhook:gone      set of endpoint URLs that answered 410 Gone
and `{namespace}:job:{id}:deliveries`, a list of JSON attempts, kept for the retention period.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from storage.jobs import Records, _wrap_redis_errors, text
from storage.sealing import Sealer, Unsealable

SECRET_PREFIX = "whsec_"
#: Random bytes in a new secret (Standard Webhooks: 24 to 64).
SECRET_BYTES = 24

#: Events a job can emit, in the order they are documented.
EVENTS = ("export.succeeded", "export.failed", "export.canceled")


@dataclass(frozen=True)
class Attempt:
    """One line of GET /v1/exports/{id}/deliveries."""

    webhook_id: str
    event: str
    attempt: int
    at: float
    status_code: int | None
    error: str | None
    duration_ms: int | None
    next_retry_at: float | None
    url: str = ""  # not shown in the API (it may carry a token); for logs and the 410 check


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def webhook_id(job_id: str, event: str) -> str:
    """The webhook-id of a job's event: a job ends once, so (job, event) names one event for good,
    the same on every retry, every re-send and in every process."""
    return f"msg_{job_id}_{event.rpartition('.')[2]}"


class Webhooks:
    def __init__(self, records: Records, sealer: Sealer) -> None:
        self.records = records
        self.redis = records.redis
        self.sealer = sealer

    def _key(self, tenant: str, what: str) -> str:
        return self.records.tenant_key(tenant, f"webhook:{what}")

    def _deliveries_key(self, job_id: str) -> str:
        return f"{self.records.namespace}:job:{job_id}:deliveries"

    # -- secrets -----------------------------------------------------------------------------------

    def _seal(self, tenant: str, secret: str) -> str:
        return self.sealer.seal(secret, context=f"webhook-secret:{tenant}")

    def _unseal(self, tenant: str, sealed: bytes | str) -> str:
        return self.sealer.unseal(text(sealed), context=f"webhook-secret:{tenant}")

    @_wrap_redis_errors
    def secret(self, tenant: str) -> str:
        """The tenant's current secret, made now if it has none (concurrent first calls agree)."""
        key = self._key(tenant, "secrets")
        raw = self.redis.hget(key, "current")
        if raw is None:
            self.redis.hsetnx(key, "current", self._seal(tenant, new_secret()))
            raw = self.redis.hget(key, "current")
        return self._unseal(tenant, raw)  # type: ignore[arg-type]

    @_wrap_redis_errors
    def rotate_secret(self, tenant: str, *, window_s: int, now: float | None = None) -> str:
        """A new current secret; the old one keeps signing too for `window_s` seconds."""
        now = time.time() if now is None else now
        new = new_secret()
        key = self._key(tenant, "secrets")
        try:
            old = self.secret(tenant)
        except Unsealable:  # sealed under a signing key no longer configured: nothing to keep
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(key)
            pipe.hset(key, "current", self._seal(tenant, new))
            pipe.execute()
            return new
        self.redis.hset(
            key,
            mapping={"current": self._seal(tenant, new), "previous": self._seal(tenant, old),
                     "previous_until": repr(now + window_s)},
        )  # fmt: skip
        return new

    @_wrap_redis_errors
    def signing_secrets(self, tenant: str, *, now: float | None = None) -> list[str]:
        """The secrets a delivery is signed with now: the current one, and the previous one while
        its rotation window lasts."""
        now = time.time() if now is None else now
        current = self.secret(tenant)
        fields: Any = self.redis.hmget(self._key(tenant, "secrets"), ["previous", "previous_until"])
        previous, until = fields
        if previous is not None and until is not None and float(text(until)) > now:
            return [current, self._unseal(tenant, previous)]
        return [current]

    # -- endpoints -----------------------------------------------------------------------------------

    @_wrap_redis_errors
    def set_endpoint(self, tenant: str, url: str | None) -> None:
        """The tenant's default endpoint (None: none). Setting a URL clears its 410 Gone mark."""
        key = self._key(tenant, "endpoint")
        if url is None:
            self.redis.delete(key)
            return
        self.redis.set(key, url)
        self.redis.srem(self._key(tenant, "gone"), url)

    @_wrap_redis_errors
    def endpoint(self, tenant: str) -> str | None:
        raw = self.redis.get(self._key(tenant, "endpoint"))
        return text(raw) if raw is not None else None

    @_wrap_redis_errors
    def mark_gone(self, tenant: str, url: str) -> None:
        self.redis.sadd(self._key(tenant, "gone"), url)

    @_wrap_redis_errors
    def is_gone(self, tenant: str, url: str) -> bool:
        return bool(self.redis.sismember(self._key(tenant, "gone"), url))

    # -- delivery log ----------------------------------------------------------------------------------

    @_wrap_redis_errors
    def record(self, job_id: str, attempt: Attempt) -> None:
        key = self._deliveries_key(job_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(asdict(attempt), separators=(",", ":")))
        pipe.expire(key, self.records.retention_s)
        pipe.execute()

    @_wrap_redis_errors
    def attempts(self, job_id: str) -> list[Attempt]:
        """Every attempt for the job, oldest first."""
        raws: Any = self.redis.lrange(self._deliveries_key(job_id), 0, -1)
        return [Attempt(**json.loads(raw)) for raw in raws]

    def attempts_of(self, job_id: str, webhook_id: str) -> int:
        """How many attempts were recorded for one event (its next attempt is this plus one)."""
        return sum(1 for a in self.attempts(job_id) if a.webhook_id == webhook_id)
