"""API keys: which tenant is calling, with which scopes. Keys are stored only as SHA-256 hashes.

A key is `exk_` and 43 characters of a 256-bit random secret: guessing one is hopeless, so one
unsalted SHA-256 is enough (a slow hash protects low-entropy passwords, not random keys). The
hash is the lookup key in Redis; the stored hash is compared again with hmac.compare_digest, so
no comparison of secrets depends on how many leading characters match.

Every request reads its key's record from Redis (one GET): a revoked key is refused by every API
process from the next request on, with no cache to expire.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

import redis

from storage.jobs import text

PREFIX = "exk_"
#: What a key lets its holder do, within its own tenant.
SUBMIT, READ, ADMIN = "submit", "read", "admin"
SCOPES = (SUBMIT, READ, ADMIN)
#: A tenant name: what goes into Redis keys and logs.
TENANT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class InvalidKeySpec(Exception):
    """A key or tenant given to the key store is malformed."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    scopes: tuple[str, ...]
    created_at: float
    hash: str  # hex SHA-256 of the whole key

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def check_tenant(name: str) -> str:
    """Raises InvalidKeySpec for a name that is not 1-64 letters, digits, - _ or . (not dots alone:
    the name is a segment of storage keys)."""
    if not 1 <= len(name) <= 64 or not set(name) <= TENANT_CHARS or set(name) == {"."}:
        raise InvalidKeySpec(f"tenant names are 1-64 letters, digits, '-', '_' or '.', not {name!r}")
    return name


def check_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise InvalidKeySpec(
            f"scopes are among {', '.join(SCOPES)}, not {', '.join(sorted(unknown)) or 'none'}"
        )
    return tuple(s for s in SCOPES if s in scopes)


def parse_configured_keys(raw: str) -> tuple[ApiKey, ...]:
    """Keys from a Secret: "TENANT:SCOPE+SCOPE:KEY" entries, comma-separated, KEY either the key
    itself (exk_...) or its hash as "sha256:<64 hex digits>". Raises InvalidKeySpec (never echoing a key)."""
    keys = []
    for index, item in enumerate(i.strip() for i in raw.split(",")):
        if not item:
            continue
        tenant, _, rest = item.partition(":")
        scopes, _, secret = rest.partition(":")
        if not secret:
            raise InvalidKeySpec(f"API key entry {index + 1}: expected TENANT:SCOPE+SCOPE:KEY")
        if secret.startswith("sha256:"):
            digest = secret.removeprefix("sha256:").lower()
            if len(digest) != 64 or set(digest) - set("0123456789abcdef"):
                raise InvalidKeySpec(f"API key entry {index + 1}: sha256: must be followed by 64 hex digits")
        elif secret.startswith(PREFIX) and len(secret) >= len(PREFIX) + 32:
            digest = hash_key(secret)
        else:
            raise InvalidKeySpec(f"API key entry {index + 1}: the key must start with {PREFIX} or sha256:")
        checked = check_scopes(scopes.split("+"))
        keys.append(
            ApiKey(
                id=f"cfg{index + 1}", tenant=check_tenant(tenant), scopes=checked, created_at=0.0, hash=digest
            )
        )
    return tuple(keys)


class KeyStore:
    """Keys in Redis: `{ns}:apikey:{hash}` -> the key's record, `{ns}:apikeys` id -> hash."""

    def __init__(self, client: redis.Redis, *, namespace: str, configured: tuple[ApiKey, ...] = ()) -> None:
        self.redis = client
        self.namespace = namespace
        self._configured = {k.hash: k for k in configured}

    def _record_key(self, digest: str) -> str:
        return f"{self.namespace}:apikey:{digest}"

    @property
    def _index(self) -> str:
        return f"{self.namespace}:apikeys"

    def create(self, tenant: str, scopes: tuple[str, ...], *, key: str | None = None) -> tuple[ApiKey, str]:
        """A new key (or `key`, registered again); returns its record and the key, shown this once."""
        key = key or new_key()
        record = ApiKey(id=secrets.token_hex(6), tenant=check_tenant(tenant), scopes=check_scopes(scopes),
                        created_at=time.time(), hash=hash_key(key))  # fmt: skip
        data = json.dumps(record.__dict__)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._record_key(record.hash), data)
        pipe.hset(self._index, record.id, record.hash)
        pipe.execute()
        return record, key

    def list(self) -> list[ApiKey]:
        """Every stored key (never the key itself), oldest first."""
        hashes = [text(h) for h in self.redis.hvals(self._index)]
        raws = self.redis.mget([self._record_key(h) for h in hashes]) if hashes else []
        found = [ApiKey(**{**json.loads(r), "scopes": tuple(json.loads(r)["scopes"])}) for r in raws if r]
        return sorted(found, key=lambda k: k.created_at)

    def revoke(self, key_id: str) -> bool:
        digest = self.redis.hget(self._index, key_id)
        if digest is None:
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._record_key(text(digest)))
        pipe.hdel(self._index, key_id)
        pipe.execute()
        return True

    def has_any(self) -> bool:
        return bool(self._configured) or bool(self.redis.hlen(self._index))

    def holds(self, key: str) -> bool:
        """Whether `key` is stored (the development key is registered again when it is not)."""
        return bool(self.redis.exists(self._record_key(hash_key(key))))

    def lookup(self, presented: str) -> tuple[str, ApiKey | None] | None:
        """None for a malformed key; else where its record is in Redis, and the key itself when it
        is configured (known without Redis). The caller reads the record (service/auth.py reads
        it in the same round trip as the tenant's quotas and rate) and checks it with verify()."""
        if not presented.startswith(PREFIX) or len(presented) > 200:
            return None
        digest = hash_key(presented)
        return self._record_key(digest), self._configured.get(digest)

    @staticmethod
    def verify(presented: str, record: bytes | str) -> ApiKey | None:
        """The key's stored record, once its hash matches the presented key's (in constant time)."""
        data = json.loads(record)
        found = ApiKey(**{**data, "scopes": tuple(data["scopes"])})
        return found if hmac.compare_digest(found.hash, hash_key(presented)) else None

    def authenticate(self, presented: str) -> ApiKey | None:
        """The key's record, or None for an unknown, revoked or malformed key."""
        if not presented.startswith(PREFIX) or len(presented) > 200:
            return None
        digest = hash_key(presented)
        found = self._configured.get(digest)
        if found is None:
            raw = self.redis.get(self._record_key(digest))
            if raw is None:
                return None
            data = json.loads(raw)
            found = ApiKey(**{**data, "scopes": tuple(data["scopes"])})
        # The lookup went by hash; the stored hash is checked again without an early exit.
        return found if hmac.compare_digest(found.hash, digest) else None
