"""Per-tenant quotas, the request rate limit, and fair scheduling between tenants, in Redis.

Fair scheduling holds each tenant's surplus in a backlog of its own. A tenant has at most
`max_running` jobs *dispatched* (a Dramatiq message queued, delayed or running); the others
wait in the tenant's backlog (a Redis list) in the order they came, and are released one for one
as the tenant's dispatched jobs end (actors/outcomes.end_job). The shared queue thus never holds
more than `max_running` messages of one tenant: a newcomer's job waits behind at most that many
of another tenant's jobs, never behind its whole batch.

Why a backlog rather than per-tenant queues read round-robin: Dramatiq's consumers, the retry
and delay machinery, the dead-worker requeueing and the sweeper all stay as they are, on the
same queues. Nothing is ever removed from the backlog except by the release script, which moves
the job into the dispatched set in the same step; the message is queued right after. A job
released whose message never made it (a crash in between) is open, not held and has no message:
the sweeper queues it again, as any lost job. A held job has no message on purpose: the sweeper
leaves it alone (held_job_ids), and releases the backlogs of tenants whose dispatched jobs ended
without their release (repair).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from storage.jobs import RecordNotFound, Records, text

QUOTA_FIELDS = ("requests_per_second", "max_queued", "max_running", "upload_bytes_per_day")


@dataclass(frozen=True)
class Quotas:
    requests_per_second: int
    max_queued: int
    max_running: int
    upload_bytes_per_day: int


@dataclass(frozen=True)
class RateState:
    """One request against the token bucket: the numbers of the RateLimit-* headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # until the bucket is full again
    retry_after_s: int  # until one more request is allowed (0 when allowed)


class QuotaExceeded(Exception):
    """A tenant's quota refuses a request; nothing was stored."""

    def __init__(self, message: str, *, limit: int, retry_after_s: int, reset_s: int) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.reset_s = reset_s


#: A token bucket of ARGV[2] tokens refilled at ARGV[1] per second, on Redis' clock (every API
#: process shares it). Returns allowed, tokens left, ms until one token, ms until full.
_TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
local wait = 0
if allowed == 0 then wait = math.ceil((1 - tokens) / rate * 1000) end
return {allowed, math.floor(tokens), wait, math.ceil((capacity - tokens) / rate * 1000)}
"""

#: Adds ARGV[1] bytes to today's count KEYS[1] unless that passes ARGV[2]; returns 1 or 0.
_ADD_BYTES = """
local total = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
if total > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], total, 'EX', 2 * 86400)
return 1
"""

#: Dispatch ARGV[1] now (1) if the tenant has fewer than its max_running (KEYS[3] field, else
#: ARGV[2]) dispatched and nothing held before it; else hold it in the backlog (0).
_DISPATCH = """
local cap = tonumber(redis.call('HGET', KEYS[3], 'max_running') or ARGV[2])
if redis.call('LLEN', KEYS[2]) == 0 and redis.call('SCARD', KEYS[1]) < cap then
  redis.call('SADD', KEYS[1], ARGV[1])
  return 1
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[3])
return 0
"""

#: The job ARGV[1] (if any) leaves the dispatched set, or the backlog if it ended held (canceled
#: before its turn); held jobs move in while there is room.
_RELEASE = """
if ARGV[1] ~= '' and redis.call('SREM', KEYS[1], ARGV[1]) == 0 then redis.call('LREM', KEYS[2], 0, ARGV[1]) end
local cap = tonumber(redis.call('HGET', KEYS[3], 'max_running') or ARGV[2])
local out = {}
while redis.call('SCARD', KEYS[1]) < cap do
  local id = redis.call('LPOP', KEYS[2])
  if not id then break end
  redis.call('SADD', KEYS[1], id)
  table.insert(out, id)
end
if redis.call('LLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[4], ARGV[3]) end
return out
"""


def _seconds_to_utc_midnight(now: float) -> int:
    day = datetime.fromtimestamp(now, UTC)
    midnight = (day + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - day).total_seconds()) + 1)


class Tenants:
    """Quotas (`{ns}:tenant:{name}:quotas`, defaults from settings), their counters, fair dispatch."""

    def __init__(self, records: Records, *, defaults: Quotas) -> None:
        self.records = records
        self.redis: redis.Redis = records.redis
        self.defaults = defaults
        self._take = self.redis.register_script(_TAKE)
        self._add_bytes = self.redis.register_script(_ADD_BYTES)
        self._dispatch = self.redis.register_script(_DISPATCH)
        self._release = self.redis.register_script(_RELEASE)

    def _key(self, tenant: str, what: str) -> str:
        return self.records.tenant_key(tenant, what)

    @property
    def _with_backlog(self) -> str:
        return f"{self.records.namespace}:tenants:backlogged"

    # -- quotas ------------------------------------------------------------------------------------

    def quotas(self, tenant: str) -> Quotas:
        raw = self.redis.hgetall(self._key(tenant, "quotas"))
        stored = {text(k): int(v) for k, v in raw.items() if text(k) in QUOTA_FIELDS}
        return dataclasses.replace(self.defaults, **stored)

    def set_quotas(self, tenant: str, **values: int) -> Quotas:
        """Raises ValueError for an unknown field or a value below 1."""
        for name, value in values.items():
            if name not in QUOTA_FIELDS or value < 1:
                raise ValueError(f"{name} must be a quota ({', '.join(QUOTA_FIELDS)}) of at least 1")
        if values:
            self.redis.hset(self._key(tenant, "quotas"), mapping=values)  # type: ignore[arg-type]
        return self.quotas(tenant)

    def take_request(self, tenant: str, quotas: Quotas) -> RateState:
        rate = quotas.requests_per_second
        allowed, left, wait_ms, full_ms = self._take(keys=[self._key(tenant, "bucket")], args=[rate, rate])
        return RateState(allowed=bool(allowed), limit=rate, remaining=int(left),
                         reset_s=max(0, -(-int(full_ms) // 1000)), retry_after_s=-(-int(wait_ms) // 1000))  # fmt: skip

    def check_upload_room(self, tenant: str, quotas: Quotas, size: int, *, now: float) -> None:
        """Raises QuotaExceeded if `size` more bytes would pass today's upload quota."""
        used = int(self.redis.get(self._bytes_key(tenant, now)) or 0)
        if used + size > quotas.upload_bytes_per_day:
            self._refuse_bytes(quotas, now)

    def add_upload_bytes(self, tenant: str, quotas: Quotas, size: int, *, now: float) -> None:
        """Count `size` bytes uploaded today. Raises QuotaExceeded (then nothing is counted)."""
        if not self._add_bytes(keys=[self._bytes_key(tenant, now)], args=[size, quotas.upload_bytes_per_day]):
            self._refuse_bytes(quotas, now)

    def _bytes_key(self, tenant: str, now: float) -> str:
        return self._key(tenant, "upload-bytes:" + datetime.fromtimestamp(now, UTC).strftime("%Y%m%d"))

    @staticmethod
    def _refuse_bytes(quotas: Quotas, now: float) -> None:
        wait = _seconds_to_utc_midnight(now)
        raise QuotaExceeded(
            f"this upload would pass the tenant's {quotas.upload_bytes_per_day} bytes per day (UTC)",
            limit=quotas.upload_bytes_per_day, retry_after_s=wait, reset_s=wait,
        )  # fmt: skip

    # -- fair dispatch -----------------------------------------------------------------------------

    def _dispatch_keys(self, tenant: str) -> list[str]:
        return [self._key(tenant, "dispatched"), self._key(tenant, "backlog"), self._key(tenant, "quotas"),
                self._with_backlog]  # fmt: skip

    def dispatch(self, tenant: str, job_id: str) -> bool:
        """True: queue the job's message now; False: it is held in the tenant's backlog."""
        args: list[str | int] = [job_id, self.defaults.max_running, tenant]
        return bool(self._dispatch(keys=self._dispatch_keys(tenant), args=args))

    def release(self, tenant: str, job_id: str) -> list[str]:
        """The ended job leaves the dispatched set; returns the held jobs to queue now, in order."""
        args: list[str | int] = [job_id, self.defaults.max_running, tenant]
        return [text(i) for i in self._release(keys=self._dispatch_keys(tenant), args=args)]

    def undispatch(self, tenant: str, job_id: str) -> None:
        """Forget a dispatched job whose submit was refused after all (its message never queued)."""
        self.redis.srem(self._key(tenant, "dispatched"), job_id)
        self.redis.lrem(self._key(tenant, "backlog"), 0, job_id)

    def held_job_ids(self) -> set[str]:
        """Every job waiting in a backlog: open, with no message, and not lost."""
        held: set[str] = set()
        for tenant in self.redis.smembers(self._with_backlog):
            held.update(text(i) for i in self.redis.lrange(self._key(text(tenant), "backlog"), 0, -1))
        return held

    def repair(self, enqueue: Callable[[str], None]) -> int:
        """Release the backlogs of tenants whose dispatched jobs ended without releasing them
        (a worker that died between the two). Returns how many jobs were queued."""
        queued = 0
        for raw in self.redis.smembers(self._with_backlog):
            tenant = text(raw)
            for member in self.redis.smembers(self._key(tenant, "dispatched")):
                job_id = text(member)
                try:
                    gone = self.records.get_job(job_id).finished
                except RecordNotFound:
                    gone = True
                if gone:
                    self.redis.srem(self._key(tenant, "dispatched"), job_id)
            for job_id in self.release(tenant, ""):
                enqueue(job_id)
                queued += 1
        return queued

    def counts(self, tenant: str) -> dict[str, int]:
        """Open, dispatched and held jobs of a tenant, as `exportd tenants show` prints them."""
        now = time.time()
        return {
            "open": int(self.redis.zcount(self._key(tenant, "open"), now - self.records.retention_s, "+inf")),
            "dispatched": int(self.redis.scard(self._key(tenant, "dispatched"))),
            "held": int(self.redis.llen(self._key(tenant, "backlog"))),
        }
