"""Who is calling: the API key of every /v1/ request -> its tenant and scopes, and the tenant's rate.

One middleware for every route. A resource declares the scope each method needs in `scopes`
({"GET": READ, ...}; ANY for any valid key); a method it does not declare needs ADMIN, so a new
route that forgets to declare is closed rather than open. The signed download links
(`signed_link = True`) and everything outside /v1/ (/healthz, /readyz, the page) stay open.
The key itself is never logged, stored or echoed: only its id reaches the request context.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import falcon

from storage.keys import ADMIN, SCOPES, KeyStore
from storage.tenants import RateState, Tenants

log = logging.getLogger("exportd.api")

#: Any valid key, whatever its scopes.
ANY = ""
#: The one tenant of an install running with EXPORTD_AUTH=disabled.
DEFAULT_TENANT = "default"


class Unauthorized(Exception):
    """No key, or a key that is not (or no longer) valid."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Forbidden(Exception):
    """A valid key without the scope the route needs."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RateLimited(Exception):
    """The tenant's requests per second are spent; this request did nothing."""

    def __init__(self, state: RateState) -> None:
        super().__init__(f"more than {state.limit} requests per second for this tenant; retry shortly")
        self.message = str(self)
        self.state = state


@dataclass(frozen=True)
class Caller:
    tenant: str
    key_id: str
    scopes: tuple[str, ...]


def rate_headers(state: RateState) -> dict[str, str]:
    """The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers)."""
    return {
        "RateLimit-Limit": str(state.limit),
        "RateLimit-Remaining": str(state.remaining),
        "RateLimit-Reset": str(state.reset_s),
    }


class Authenticate:
    """Falcon middleware: sets req.context.caller (and .tenant), or refuses with 401/403/429."""

    def __init__(self, *, keys: KeyStore, tenants: Tenants, enabled: bool) -> None:
        self.keys = keys
        self.tenants = tenants
        self.enabled = enabled

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any
    ) -> None:
        if resource is None or not req.path.startswith("/v1/") or getattr(resource, "signed_link", False):
            return
        if self.enabled:
            caller, state = self._caller(req, resource)
        else:
            caller = Caller(tenant=DEFAULT_TENANT, key_id="", scopes=SCOPES)
            state = self._rate("", tenant=DEFAULT_TENANT)
        req.context.caller = caller
        req.context.tenant = caller.tenant
        resp.set_headers(rate_headers(state))
        if not state.allowed:
            raise RateLimited(state)

    def _rate(self, record_key: str, *, tenant: str) -> RateState:
        _, _, _, state = self.tenants.authorize(record_key, tenant=tenant)
        assert state is not None  # a key known without Redis is never unknown
        return state

    def _caller(self, req: falcon.Request, resource: Any) -> tuple[Caller, RateState]:
        """The caller and its tenant's rate. The key's record, the tenant's quotas and a token of
        its bucket are one Redis round trip (storage/tenants.py, Tenants.authorize)."""
        scheme, _, token = (req.get_header("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send an API key as `Authorization: Bearer exk_...`")
        token = token.strip()
        invalid = Unauthorized("the API key is not valid (unknown, malformed or revoked)")
        needed = getattr(resource, "scopes", {}).get(req.method, ADMIN)
        lacking = Forbidden(f"this API key lacks the {needed!r} scope that {req.method} {req.path} needs")
        found = self.keys.lookup(token)
        if found is None:
            raise invalid
        record_key, key = found
        if key is not None:  # configured (a Secret): known without Redis
            if needed != ANY and not key.allows(needed):
                raise lacking
            state = self._rate("", tenant=key.tenant)
        else:
            verdict, record, _, rate = self.tenants.authorize(record_key, scope=needed)
            key = self.keys.verify(token, record) if record is not None else None
            if key is None:
                raise invalid
            if verdict == "forbidden" or rate is None:
                raise lacking
            state = rate
        return Caller(tenant=key.tenant, key_id=key.id, scopes=key.scopes), state
