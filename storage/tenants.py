"""Per-tenant quotas, the request rate limit, and fair scheduling between tenants, in Redis.

Fair scheduling holds each tenant's surplus in a backlog of its own and dispatches (queues the
Dramatiq message of) no more jobs than the live worker pools have slots. A job *dispatched* has a
message queued, delayed or running; the others wait in their tenant's backlog (a Redis list) in
the order they came. Three things decide when a held job is dispatched:

- the pools' slots: the sum of `processes x threads` the live pools publish (actors/
  capabilities.py). All tenants together have at most that many jobs dispatched, so the shared
  queue holds nothing a newcomer would wait behind: its first job takes the next free slot. With
  no live pool publishing its slots (pools scaled to zero, or older pools), there is no such cap
  and only each tenant's own limit applies, as before;
- the tenant's `max_running`, whatever the pool;
- the order of release: when a slot frees (a job ends: actors/outcomes.end_job), the backlogged
  tenant with the fewest dispatched jobs per unit of weight gets it. A tenant alone gets every
  slot; when another arrives, freed slots go to the newcomer until both hold slots in proportion
  to their weights (max-min fair shares), and each keeps its share as its own jobs end. A
  tenant that needs less than its share leaves the rest to the others (nothing idles).

Why backlogs rather than per-tenant queues read round-robin: Dramatiq's consumers, the retry
and delay machinery, the dead-worker requeueing and the sweeper all stay as they are, on the
same queues. Nothing is ever removed from a backlog except by the release script, which moves
the job into its tenant's dispatched set in the same step; the message is queued right after. A
job released whose message never made it (a crash in between) is open, not held and has no
message: the sweeper queues it again, as any lost job. A held job has no message on purpose: the
sweeper leaves it alone (held_job_ids). A job that ended without its release (a worker killed in
between) would keep its slot: repair(), run by every sweep, drops ended jobs from the dispatched
sets and releases what the freed slots allow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from storage.jobs import RecordNotFound, Records, text

QUOTA_FIELDS = ("requests_per_second", "max_queued", "max_running", "upload_bytes_per_day", "weight")


@dataclass(frozen=True)
class Quotas:
    requests_per_second: int
    max_queued: int
    max_running: int
    upload_bytes_per_day: int
    weight: int = 1  # the tenant's share of the pool's slots against other busy tenants' weights


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

#: One request's authentication and rate in one round trip. ARGV[1] the key's record key ('' for a
#: key known without Redis, then ARGV[2] is its tenant), ARGV[3] the scope the route needs ('' for
#: any), ARGV[4] the tenant key prefix, ARGV[5] the default request rate. Returns {0} for no such
#: key, {1, record} for a key without the scope (no token taken), else {2, record, tenant, quotas
#: (flat), then the bucket's four numbers as _TAKE}.
_AUTHORIZE = """
local record, tenant = '', ARGV[2]
if ARGV[1] ~= '' then
  record = redis.call('GET', ARGV[1])
  if not record then return {0} end
  local data = cjson.decode(record)
  tenant = data['tenant']
  if ARGV[3] ~= '' then
    local allowed = false
    for _, s in ipairs(data['scopes']) do
      if s == ARGV[3] or s == 'admin' then allowed = true end
    end
    if not allowed then return {1, record} end
  end
end
local quotas = redis.call('HGETALL', ARGV[4] .. tenant .. ':quotas')
local rate = tonumber(ARGV[5])
for i = 1, #quotas, 2 do
  if quotas[i] == 'requests_per_second' then rate = tonumber(quotas[i + 1]) end
end
local bucket = ARGV[4] .. tenant .. ':bucket'
""" + _TAKE.replace("ARGV[1]", "rate").replace("ARGV[2]", "rate").replace("KEYS[1]", "bucket").replace(
    "return {allowed", "return {2, record, tenant, cjson.encode(quotas), allowed"
)

#: Adds ARGV[1] bytes to today's count KEYS[1] unless that passes ARGV[2]; returns 1 or 0.
_ADD_BYTES = """
local total = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
if total > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], total, 'EX', 2 * 86400)
return 1
"""

#: What the two scheduling scripts share. KEYS[1] is the set of tenants with held jobs, KEYS[2]
#: the set of tenants with dispatched jobs, KEYS[3] when each tenant was last given a slot (a
#: sequence number under '#'; no tenant is '#'), KEYS[4] the queue of every dispatched job (a hash).
#: ARGV[1] the namespace, ARGV[2] the default max_running, ARGV[3] the default weight, ARGV[4] the
#: live pools' slots per queue (JSON; a queue not in it has no cap).
_SCHEDULING = """
local function key(t, what) return ARGV[1] .. ':tenant:' .. t .. ':' .. what end
local slots = cjson.decode(ARGV[4])
local busy = {}  -- dispatched jobs per queue
for _, q in ipairs(redis.call('HVALS', KEYS[4])) do busy[q] = (busy[q] or 0) + 1 end
local function room(q) return slots[q] == nil or (busy[q] or 0) < slots[q] end
-- Job `id` of tenant `t`: its record under the tenant (`{ns}:tenant:{t}:job:{id}`), else under the
-- key it had before record keys carried the tenant (`{ns}:job:{id}`, until it expires). Keys are
-- computed in the script: exportd runs on one Redis, never a cluster, where that is allowed.
local function queue_of(t, id)  -- nil once the job's record is past its retention
  local raw = redis.call('GET', key(t, 'job:' .. id)) or redis.call('GET', ARGV[1] .. ':job:' .. id)
  if not raw then return nil end
  local q = cjson.decode(raw)['queue']
  if type(q) ~= 'string' then q = 'exports' end
  return q
end
local function take(t, id, q)
  redis.call('SADD', key(t, 'dispatched'), id)
  redis.call('SADD', KEYS[2], t)
  redis.call('HSET', KEYS[4], id, q)
  busy[q] = (busy[q] or 0) + 1
  local seq = redis.call('HINCRBY', KEYS[3], '#', 1)
  redis.call('HSET', KEYS[3], t, seq)
  return seq
end
-- One token per held job in `{ns}:tenants:held:{queue}`: its length is the demand the Dramatiq
-- queue no longer shows, what KEDA scales the queue's workers on (helm/.../worker-scaledobjects.yaml).
local function held_list(q) return ARGV[1] .. ':tenants:held:' .. q end
local function limits(t)
  local q = redis.call('HMGET', key(t, 'quotas'), 'max_running', 'weight')
  return tonumber(q[1] or ARGV[2]), tonumber(q[2] or ARGV[3])
end
"""

#: Dispatch job ARGV[6] of tenant ARGV[5] now (its queue) if nothing of the tenant is held before
#: it, the tenant is under its max_running and its queue's pools have a free slot; else hold it ('').
_DISPATCH = (
    _SCHEDULING
    + """
local t, id = ARGV[5], ARGV[6]
local q = queue_of(t, id) or 'exports'
if redis.call('LLEN', key(t, 'backlog')) == 0 and redis.call('SCARD', key(t, 'dispatched')) < limits(t)
   and room(q) then
  take(t, id, q)
  return q
end
redis.call('RPUSH', key(t, 'backlog'), id)
redis.call('RPUSH', held_list(q), '1')
redis.call('SADD', KEYS[1], t)
return ''
"""
)

#: Job ARGV[6] (if any) of tenant ARGV[5] leaves the dispatched set, or its backlog if it ended
#: held (canceled before its turn); then, while a held job can
#: go, the backlogged tenant with the fewest dispatched per weight (under its max_running, its next
#: job's queue with a free slot; of equals, the one served longest ago) releases its next held
#: job. A held job past its retention is dropped. Returns {tenant, job, queue, ...} in order.
_RELEASE = (
    _SCHEDULING
    + """
if ARGV[6] ~= '' then
  if redis.call('SREM', key(ARGV[5], 'dispatched'), ARGV[6]) == 1 then
    local q = redis.call('HGET', KEYS[4], ARGV[6])
    if q then busy[q] = busy[q] - 1 end
  elseif redis.call('LREM', key(ARGV[5], 'backlog'), 0, ARGV[6]) > 0 then  -- ended held: canceled
    redis.call('LPOP', held_list(queue_of(ARGV[5], ARGV[6]) or 'exports'))
  end
  redis.call('HDEL', KEYS[4], ARGV[6])
  if redis.call('SCARD', key(ARGV[5], 'dispatched')) == 0 then redis.call('SREM', KEYS[2], ARGV[5]) end
end
local waiting = {}
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local cap, weight = limits(t)
  table.insert(waiting, {t = t, d = redis.call('SCARD', key(t, 'dispatched')), cap = cap, w = weight,
                         at = tonumber(redis.call('HGET', KEYS[3], t) or '0')})
end
table.sort(waiting, function(a, b) return a.t < b.t end)  -- the same choice on every replica
local out = {}
while true do
  local best, best_q = nil, nil
  for _, s in ipairs(waiting) do
    if s.d < s.cap and (best == nil or s.d * best.w < best.d * s.w
                        or (s.d * best.w == best.d * s.w and s.at < best.at)) then
      local head = redis.call('LINDEX', key(s.t, 'backlog'), 0)
      local q = head and queue_of(s.t, head)
      if head and not q then  -- past its retention: nothing to run; look at the next one
        redis.call('LPOP', key(s.t, 'backlog'))
        redis.call('LPOP', held_list('exports'))  -- its queue went with its record: the likeliest
        head = redis.call('LINDEX', key(s.t, 'backlog'), 0)
        q = head and (queue_of(s.t, head) or 'exports')
      end
      if not head then
        redis.call('SREM', KEYS[1], s.t)
        s.cap = 0  -- nothing left to release
      elseif room(q) then
        best, best_q = s, q
      end
    end
  end
  if best == nil then break end
  local id = redis.call('LPOP', key(best.t, 'backlog'))
  redis.call('LPOP', held_list(best_q))
  best.at = take(best.t, id, best_q)
  best.d = best.d + 1
  table.insert(out, best.t)
  table.insert(out, id)
  table.insert(out, best_q)
  if redis.call('LLEN', key(best.t, 'backlog')) == 0 then
    redis.call('SREM', KEYS[1], best.t)
    best.cap = 0
  end
end
return out
"""
)


def _seconds_to_utc_midnight(now: float) -> int:
    day = datetime.fromtimestamp(now, UTC)
    midnight = (day + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - day).total_seconds()) + 1)


class Tenants:
    """Quotas (`{ns}:tenant:{name}:quotas`, defaults from settings), their counters, fair dispatch."""

    def __init__(
        self, records: Records, *, defaults: Quotas, slots: Callable[[], Mapping[str, int]] | None = None
    ) -> None:
        """`slots`: how many jobs the live pools run at once, per queue (a queue not in it: no cap)."""
        self.records = records
        self.redis: redis.Redis = records.redis
        self.defaults = defaults
        self.slots = slots or dict
        self._take = self.redis.register_script(_TAKE)
        self._authorize = self.redis.register_script(_AUTHORIZE)
        self._add_bytes = self.redis.register_script(_ADD_BYTES)
        self._dispatch = self.redis.register_script(_DISPATCH)
        self._release = self.redis.register_script(_RELEASE)

    def _key(self, tenant: str, what: str) -> str:
        return self.records.tenant_key(tenant, what)

    @property
    def _with_backlog(self) -> str:
        return f"{self.records.namespace}:tenants:backlogged"

    @property
    def _with_dispatched(self) -> str:
        return f"{self.records.namespace}:tenants:dispatching"

    @property
    def _queue_of_dispatched(self) -> str:
        return f"{self.records.namespace}:tenants:dispatched-queues"

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

    def authorize(
        self, record_key: str, *, tenant: str = "", scope: str = ""
    ) -> tuple[str, bytes | None, Quotas | None, RateState | None]:
        """What one /v1/ request costs in Redis, in one round trip: the key's record (under
        `record_key`; "" for a key known without Redis, whose `tenant` is given), whether it has
        `scope` ("" for any), the tenant's quotas and a token from its request bucket.

        Returns ("unknown", None, None, None) for no such key, ("forbidden", record, None, None)
        for a key without the scope (no token taken), else ("ok", record or None, quotas, rate)."""
        out = self._authorize(args=[record_key, tenant, scope, f"{self.records.namespace}:tenant:",
                                    self.defaults.requests_per_second])  # fmt: skip
        if int(out[0]) == 0:
            return "unknown", None, None, None
        record = bytes(out[1]) if out[1] else None
        if int(out[0]) == 1:
            return "forbidden", record, None, None
        flat = [text(v) for v in json.loads(out[3])] if out[3] not in (b"{}", "{}") else []
        stored = {k: int(v) for k, v in zip(flat[0::2], flat[1::2], strict=True) if k in QUOTA_FIELDS}
        quotas = dataclasses.replace(self.defaults, **stored)
        allowed, left, wait_ms, full_ms = (int(v) for v in out[4:8])
        rate = quotas.requests_per_second
        return "ok", record, quotas, RateState(
            allowed=bool(allowed), limit=rate, remaining=left, reset_s=max(0, -(-full_ms // 1000)),
            retry_after_s=-(-wait_ms // 1000),
        )  # fmt: skip

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

    def _scheduling(self) -> tuple[list[str], list[str | int]]:
        ns = self.records.namespace
        keys = [self._with_backlog, self._with_dispatched, f"{ns}:tenants:served", self._queue_of_dispatched]
        slots = json.dumps({q: n for q, n in self.slots().items() if n > 0}, sort_keys=True)
        return keys, [ns, self.defaults.max_running, self.defaults.weight, slots]

    def dispatch(self, tenant: str, job_id: str) -> bool:
        """True: queue the job's message now; False: it is held in the tenant's backlog."""
        keys, args = self._scheduling()
        return bool(text(self._dispatch(keys=keys, args=[*args, tenant, job_id])))

    def release(self, tenant: str, job_id: str) -> list[tuple[str, str, str]]:
        """The ended job (`job_id` of `tenant`; "" for none) leaves the dispatched set; returns the
        held jobs to queue now, as (tenant, job id, queue), in order: any tenant's, fairest first."""
        keys, args = self._scheduling()
        flat = [text(v) for v in self._release(keys=keys, args=[*args, tenant, job_id])]
        return list(zip(flat[0::3], flat[1::3], flat[2::3], strict=True))

    def undispatch(self, tenant: str, job_id: str) -> None:
        """Forget a dispatched job whose submit was refused after all (its message never queued)."""
        self.redis.srem(self._key(tenant, "dispatched"), job_id)
        self.redis.hdel(self._queue_of_dispatched, job_id)
        if self.redis.lrem(self._key(tenant, "backlog"), 0, job_id):  # it was held: one token less
            self.redis.lpop(f"{self.records.namespace}:tenants:held:exports")

    def held_job_ids(self) -> set[str]:
        """Every job waiting in a backlog: open, with no message, and not lost."""
        held: set[str] = set()
        for tenant in self.redis.smembers(self._with_backlog):
            held.update(text(i) for i in self.redis.lrange(self._key(text(tenant), "backlog"), 0, -1))
        return held

    def repair(self, enqueue: Callable[[str, str], None]) -> int:
        """Drop from the dispatched sets the jobs that ended without releasing their slot (a
        worker that died between the two), then release what the free slots allow. Returns how
        many jobs were queued."""
        tenants = {text(t) for t in self.redis.sunion([self._with_backlog, self._with_dispatched])}
        for tenant in tenants:
            members = [text(m) for m in self.redis.smembers(self._key(tenant, "dispatched"))]
            if members:
                self.redis.sadd(self._with_dispatched, tenant)  # dispatched before this index existed
            for job_id in members:
                try:
                    job = self.records.get_job(job_id)
                except RecordNotFound:
                    job = None
                if job is None or job.finished:
                    self.redis.srem(self._key(tenant, "dispatched"), job_id)
                    self.redis.hdel(self._queue_of_dispatched, job_id)
                else:  # counted against its queue's slots (dispatched before that count existed)
                    self.redis.hsetnx(self._queue_of_dispatched, job_id, job.queue)
        for job_id in {text(i) for i in self.redis.hkeys(self._queue_of_dispatched)}:
            with contextlib.suppress(RecordNotFound):
                if not self.records.get_job(job_id).finished:
                    continue
            self.redis.hdel(self._queue_of_dispatched, job_id)  # ended, or its record is gone
        queued = 0
        for _, job_id, queue in self.release("", ""):
            enqueue(job_id, queue)
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
