"""Job and upload records in Redis: one JSON document per record, kept for the retention period.

State changes are optimistic: read the record, then write the change with a compare-and-set
script that refuses it if the record changed meanwhile (and the change is computed again). Two
deliveries of the same message can race without corrupting a record, and a finished job never
changes again.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import redis

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
CANCELED = "canceled"  # DELETE /v1/exports/{id}: ended by its tenant, with no outputs
TERMINAL = (SUCCEEDED, FAILED, CANCELED)
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED)
#: How finish_job_once cancels: at once (the worker stopped the job), or as DELETE asks (a running
#: job is only marked, and its worker stops it at its next safe point).
CANCEL_NOW, CANCEL_REQUEST = "now", "request"


class RecordNotFound(Exception):
    """No record under that id (never created, or past its retention)."""


class RecordsUnavailable(Exception):
    """Redis cannot be reached: transient."""


class QueueFull(Exception):
    """The tenant has as many open jobs as its quota allows; nothing was stored."""

    def __init__(self, max_queued: int) -> None:
        super().__init__(f"this tenant already has {max_queued} jobs queued or running (its quota)")
        self.max_queued = max_queued


@dataclass(frozen=True)
class Upload:
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: float
    tenant: str = ""  # who uploaded it: nobody else can see it or export it
    # An input given by URL (POST /v1/exports {"inputs": [{"url": ...}]}): the worker downloads it
    # under the outbound policy (actors/outbound.py) and stores it under `key`, then fills in
    # size, sha256 and the sniffed content_type. `url` is sealed (storage/sealing.py: a URL often
    # carries a signature); `source` is the URL without its query, what the API shows.
    url: str = ""
    source: str = ""
    # Where its bytes are (upload_key); "" in records written before storage keys carried the tenant.
    storage_key: str = ""

    @property
    def key(self) -> str:
        return self.storage_key or f"uploads/{self.id}"

    @property
    def to_fetch(self) -> bool:
        """A URL input not downloaded yet."""
        return bool(self.url) and not self.sha256


def upload_key(tenant: str, upload_id: str) -> str:
    """Where an upload's bytes go: under its tenant (`tenants/{tenant}/uploads/{id}`), so that a key
    built for one tenant can never name another's file; `uploads/{id}` for no tenant."""
    return f"tenants/{tenant}/uploads/{upload_id}" if tenant else f"uploads/{upload_id}"


@dataclass(frozen=True)
class Output:
    name: str
    key: str
    content_type: str
    size: int
    sha256: str
    details: dict[str, Any] = field(default_factory=dict)  # what the converter reports, e.g. metadata removed


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Job:
    id: str
    format: str
    inputs: tuple[Upload, ...]
    options: dict[str, Any]
    created_at: float
    status: str = QUEUED
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    retries: int = 0  # attempts that raised and were queued again
    error: JobError | None = None
    outputs: tuple[Output, ...] = ()
    queue: str = "exports"  # the queue its messages go to (the sweeper re-queues it there)
    # Attempts whose process crashed on its own (SIGSEGV, SIGABRT, an OOM kill while this job held
    # most of its memory), as the pool supervisor saw them. A process killed from outside (an
    # operator's SIGKILL, a node drain) is not counted: the job was not at fault.
    crashes: int = 0
    # Times the sweeper found this job open with no message behind it and queued it again.
    sweeps: int = 0
    tenant: str = ""  # who submitted it: nobody else can see it
    # Where its end is posted (Standard Webhooks; "": the tenant's default endpoint, if any), and
    # which events are (empty: all of them).
    webhook_url: str = ""
    webhook_events: tuple[str, ...] = ()
    # DELETE /v1/exports/{id} came while it ran: its worker stops at the next safe point, and
    # however the job ends then, it ends canceled with no outputs (finish_job_once).
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_json(self) -> str:
        # What dataclasses.asdict would give, without its deep copy of every value: the record is
        # written two or three times per job.
        return json.dumps(self, default=_fields_of, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Job:
        data = _known(cls, json.loads(raw))
        data["inputs"] = tuple(Upload(**_known(Upload, u)) for u in data["inputs"])
        data["outputs"] = tuple(Output(**_known(Output, o)) for o in data["outputs"])
        data["error"] = JobError(**data["error"]) if data["error"] else None
        data["webhook_events"] = tuple(data.get("webhook_events", ()))
        return cls(**data)


def _fields_of(value: object) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Only the fields `cls` has: records written by another version of exportd still load."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


#: Sets KEYS[1] (or, where it does not exist, KEYS[5]: the record's key before record keys carried
#: the tenant) to ARGV[2], keeping its expiry, only while it still holds ARGV[1]: a read and a
#: conditional write, two round trips where WATCH/GET/MULTI-EXEC took three. A job that finishes
#: (ARGV[3] set) leaves the open-jobs index KEYS[2], gets one event in the stream KEYS[3] (events
#: older than the retention, ARGV[6] ms, are trimmed), and is announced on channel ARGV[3], all in
#: this one call: a finished record never exists without its event.
_COMPARE_AND_SET = """
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then key = KEYS[5] end  -- a record of the layout before (_LOCATE)
if redis.call('GET', key) == ARGV[1] then
  redis.call('SET', key, ARGV[2], 'KEEPTTL')
  if ARGV[3] then
    redis.call('ZREM', KEYS[2], ARGV[4])
    redis.call('ZREM', KEYS[4], ARGV[4])
    local now = redis.call('TIME')
    local oldest = (tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)) - tonumber(ARGV[6])
    redis.call('XADD', KEYS[3], 'MINID', tostring(math.max(oldest, 0)), '*',
               'type', ARGV[5], 'job_id', ARGV[4], 'code', ARGV[7])
    redis.call('PUBLISH', ARGV[3], ARGV[4])
  end
  return 1
end
return 0
"""

#: Stores a new job (KEYS[1]; refused, -1, if its id is known, in the index KEYS[5] or under its old
#: key KEYS[6]) with its tenant in the id → tenant index (KEYS[5], expiring with it),
#: its place in the open-jobs index (KEYS[2]), its tenant's open
#: jobs (KEYS[3]) and its tenant's listing (KEYS[4]), unless the tenant already has ARGV[5] open
#: jobs (0: no limit): the check and the write are one step, so concurrent submits cannot overrun
#: the quota. Index entries older than the retention (ARGV[6]) are dropped on the way.
_CREATE = """
local max_queued = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[6])
if max_queued > 0 and redis.call('ZCARD', KEYS[3]) >= max_queued then
  return 0
end
if redis.call('EXISTS', KEYS[5], KEYS[6]) > 0 or not redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then
  return -1
end
redis.call('SET', KEYS[5], ARGV[7], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[4], 'NX', ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[2])
return 1
"""

#: The record of job ARGV[2] when only its id is known (the worker side: messages, the sweeper, crash
#: marks, events carry the id alone): its tenant from the index KEYS[1] (`{ns}:job-tenant:{id}`, written
#: with the record by _CREATE), then `{ns}:tenant:{tenant}:job:{id}`; without an index entry (a record
#: written before record keys carried the tenant) the old key KEYS[2], `{ns}:job:{id}`. The key is
#: computed here, not declared: exportd runs on one Redis, never a cluster, where that is allowed.
#: One round trip; returns {key, record or nil}.
_LOCATE = """
local tenant = redis.call('GET', KEYS[1])
local key = KEYS[2]
if tenant then key = ARGV[1] .. ':tenant:' .. tenant .. ':job:' .. ARGV[2] end
return {key, redis.call('GET', key)}
"""

#: The event type of each way a job ends (the names webhooks use).
EVENT_OF_STATUS = {SUCCEEDED: "export.succeeded", FAILED: "export.failed", CANCELED: "export.canceled"}


@dataclass(frozen=True)
class JobEvent:
    """One entry of the durable events stream: a job ended."""

    id: str  # the stream entry id, e.g. "1764470000000-0"; increasing
    type: str  # export.succeeded, export.failed, export.canceled
    job_id: str
    code: str  # the error code of a failed job, "" otherwise


def text(value: bytes | str) -> str:
    """A Redis reply as text (clients may decode replies or not)."""
    return value.decode() if isinstance(value, bytes) else value


def new_id() -> str:
    return uuid.uuid4().hex


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _wrap_redis_errors(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RecordsUnavailable(f"Redis is unreachable: {exc}") from exc

    return wrapper


class Records:
    """Jobs and uploads under their tenant: `{namespace}:tenant:{tenant}:job:{id}` and
    `{namespace}:tenant:{tenant}:upload:{id}`. A read for a tenant builds the key from that tenant,
    so another tenant's id is simply absent. The worker side knows a job by its id alone: the index
    `{namespace}:job-tenant:{id}` (written with the record, expiring with it) names its tenant.

    Records written before keys carried the tenant (`{namespace}:job:{id}`, `{namespace}:upload:{id}`,
    no index entry) are still read, updated and finished where they are until they expire: a read
    for a tenant accepts one only if its `tenant` field is that tenant."""

    def __init__(self, client: redis.Redis, *, namespace: str, retention_s: int) -> None:
        self.redis = client
        self.namespace = namespace
        self.retention_s = retention_s
        self._swap = client.register_script(_COMPARE_AND_SET)
        self._create = client.register_script(_CREATE)
        self._locate = client.register_script(_LOCATE)

    def job_key(self, tenant: str, job_id: str) -> str:
        """Where a job's record is: `{namespace}:tenant:{tenant}:job:{id}`."""
        return self.tenant_key(tenant, f"job:{job_id}")

    def upload_record_key(self, tenant: str, upload_id: str) -> str:
        """Where an upload's record is: `{namespace}:tenant:{tenant}:upload:{id}`."""
        return self.tenant_key(tenant, f"upload:{upload_id}")

    def job_tenant_key(self, job_id: str) -> str:
        """The index entry naming a job's tenant, for the paths that know its id alone."""
        return f"{self.namespace}:job-tenant:{job_id}"

    def legacy_job_key(self, job_id: str) -> str:
        """A job record's key before record keys carried the tenant (read until it expires)."""
        return f"{self.namespace}:job:{job_id}"

    def legacy_upload_key(self, upload_id: str) -> str:
        """An upload record's key before record keys carried the tenant (read until it expires)."""
        return f"{self.namespace}:upload:{upload_id}"

    def _raw_job(self, job_id: str, tenant: str | None) -> Any:
        """The stored record (or None), in one round trip: under `tenant`'s key (or the old key: the
        caller checks its tenant field), or, for no tenant, wherever the id → tenant index says."""
        if tenant is None:
            _, raw = self._locate(keys=[self.job_tenant_key(job_id), self.legacy_job_key(job_id)],
                                  args=[self.namespace, job_id])  # fmt: skip
            return raw
        current, legacy = self.redis.mget([self.job_key(tenant, job_id), self.legacy_job_key(job_id)])
        return current if current is not None else legacy

    def tenant_key(self, tenant: str, what: str) -> str:
        """A key of one tenant's own: `{namespace}:tenant:{tenant}:{what}`."""
        return f"{self.namespace}:tenant:{tenant}:{what}"

    @property
    def open_key(self) -> str:
        """A sorted set of the jobs not yet finished, scored by creation time: what the sweeper
        checks (storage is never scanned for it)."""
        return f"{self.namespace}:jobs:open"

    @property
    def events_key(self) -> str:
        """The durable stream of job events, kept for the retention period."""
        return f"{self.namespace}:events"

    @property
    def finished_channel(self) -> str:
        """Where the id of every job that finishes is published (service/waiting.py listens)."""
        return f"{self.namespace}:jobs:finished"

    @_wrap_redis_errors
    def ping(self) -> None:
        """Redis answers on a new connection too: pooled connections can outlive the server's
        socket (a Redis restarted elsewhere, its socket file deleted) while new ones fail."""
        connection = self.redis.connection_pool.make_connection()
        try:
            connection.connect()  # type: ignore[no-untyped-call]
            connection.send_command("PING")  # type: ignore[no-untyped-call]
            connection.read_response()
        finally:
            connection.disconnect()  # type: ignore[no-untyped-call]

    # -- uploads ---------------------------------------------------------------------------------

    @_wrap_redis_errors
    def add_upload(self, upload: Upload) -> None:
        data = json.dumps(dataclasses.asdict(upload))
        self.redis.set(self.upload_record_key(upload.tenant, upload.id), data, ex=self.retention_s)

    @_wrap_redis_errors
    def get_uploads(self, upload_ids: list[str], *, tenant: str) -> list[Upload]:
        """`tenant`'s uploads. Raises RecordNotFound naming the first unknown id, or the first of
        another tenant (whose key is another key; an old-layout record is checked by its field)."""
        if not upload_ids:
            return []
        n = len(upload_ids)
        raws = self.redis.mget([self.upload_record_key(tenant, u) for u in upload_ids]
                               + [self.legacy_upload_key(u) for u in upload_ids])  # fmt: skip
        uploads = []
        for upload_id, current, legacy in zip(upload_ids, raws[:n], raws[n:], strict=True):
            raw = current if current is not None else legacy
            upload = Upload(**_known(Upload, json.loads(raw))) if raw is not None else None
            if upload is None or upload.tenant != tenant:
                raise RecordNotFound(upload_id)
            uploads.append(upload)
        return uploads

    # -- jobs ------------------------------------------------------------------------------------

    @_wrap_redis_errors
    def create_job(self, job: Job, *, max_queued: int = 0) -> None:
        """Store a new job, unless its tenant has `max_queued` open jobs (0: no limit).

        Raises QueueFull (nothing stored), ValueError for an id that exists."""
        keys = [self.job_key(job.tenant, job.id), self.open_key, self.tenant_key(job.tenant, "open"),
                self.tenant_key(job.tenant, "jobs"), self.job_tenant_key(job.id),
                self.legacy_job_key(job.id)]  # fmt: skip
        cutoff = job.created_at - self.retention_s
        created = self._create(keys=keys, args=[job.to_json(), self.retention_s, job.created_at, job.id,
                                                max_queued, cutoff, job.tenant])  # fmt: skip
        if created == 0:
            raise QueueFull(max_queued)
        if created != 1:
            raise ValueError(f"job {job.id} exists already")

    @_wrap_redis_errors
    def list_jobs(
        self, tenant: str, *, status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[Job], str | None]:
        """The tenant's jobs, newest first, `limit` of them after `cursor`; and the next cursor.

        A cursor is the last job's "created_at:id": jobs submitted meanwhile do not shift the pages.
        Raises ValueError for a malformed cursor."""
        index = self.tenant_key(tenant, "jobs")
        top: str = "+inf"
        after_id = None
        if cursor:
            score, _, after_id = cursor.partition(":")
            top = repr(float(score))
            if not after_id:
                raise ValueError("malformed cursor")
        found: list[Job] = []
        offset = 0
        while len(found) <= limit:
            batch: Any = self.redis.zrevrangebyscore(
                index, top, "-inf", start=offset, num=200, withscores=True
            )
            if not batch:
                break
            offset += len(batch)
            members = [(text(m), s) for m, s in batch]
            if after_id is not None:  # equal scores come in reverse order of id: skip up to the cursor's
                members = [(m, s) for m, s in members if repr(s) != top or m < after_id]
            ids = [m for m, _ in members]
            both = (self.redis.mget([self.job_key(tenant, m) for m in ids] + [self.legacy_job_key(m) for m in ids])
                    if ids else [])  # fmt: skip
            raws = [
                c if c is not None else old for c, old in zip(both[: len(ids)], both[len(ids) :], strict=True)
            ]
            for (member, _), raw in zip(members, raws, strict=True):
                if raw is None:
                    self.redis.zrem(index, member)  # past its retention
                    continue
                job = Job.from_json(raw)
                if job.tenant == tenant and (status is None or job.status == status):
                    found.append(job)
            if len(batch) < 200:
                break
        page = found[:limit]
        more = len(found) > limit
        return page, (f"{page[-1].created_at!r}:{page[-1].id}" if more and page else None)

    @_wrap_redis_errors
    def open_job_ids(self, *, created_before: float, limit: int | None = None) -> list[str]:
        """Ids of jobs not finished, created before `created_before`, oldest first (all, or `limit`)."""
        if limit:
            ids = self.redis.zrangebyscore(self.open_key, 0, created_before, start=0, num=limit)
        else:
            ids = self.redis.zrangebyscore(self.open_key, 0, created_before)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    @_wrap_redis_errors
    def forget_open(self, job_id: str) -> None:
        """Drop a job from the open-jobs index (its record expired, or it finished)."""
        self.redis.zrem(self.open_key, job_id)

    @_wrap_redis_errors
    def get_job(self, job_id: str, *, tenant: str | None = None) -> Job:
        """Raises RecordNotFound, also for a job of a tenant other than `tenant` (when given)."""
        raw = self._raw_job(job_id, tenant)
        job = Job.from_json(raw) if raw is not None else None
        if job is None or (tenant is not None and job.tenant != tenant):
            raise RecordNotFound(job_id)
        return job

    @_wrap_redis_errors
    def cancel_requested(self, job_id: str) -> bool:
        """Whether DELETE asked to stop the job: what a running job's cancel token asks
        (actors/export.py). Once true, the job can only end canceled (finish_job_once)."""
        raw = self._raw_job(job_id, None)
        return raw is not None and Job.from_json(raw).cancel_requested

    @_wrap_redis_errors
    def events(self, *, after: str = "0", count: int = 1000) -> list[JobEvent]:
        """Job events after the entry id `after`, oldest first."""
        entries: Any = self.redis.xrange(
            self.events_key, min=f"({after}" if after != "0" else "-", count=count
        )
        out = []
        for entry_id, fields in entries:
            data = {text(k): text(v) for k, v in fields.items()}
            out.append(
                JobEvent(id=text(entry_id), type=data["type"], job_id=data["job_id"], code=data["code"])
            )
        return out

    @_wrap_redis_errors
    def delete_job(self, job_id: str, *, tenant: str = "") -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.job_key(tenant, job_id), self.legacy_job_key(job_id), self.job_tenant_key(job_id))
        pipe.zrem(self.open_key, job_id)
        pipe.zrem(self.tenant_key(tenant, "open"), job_id)
        pipe.zrem(self.tenant_key(tenant, "jobs"), job_id)
        pipe.execute()

    @_wrap_redis_errors
    def update_job(self, job_id: str, change: Callable[[Job], Job | None], *, seen: Job | None = None) -> Job:
        """Apply `change` atomically; it returns the new job, or None to leave the record as it is.

        `seen`: the record as this caller last stored or read it; it is tried first, which saves
        reading the record when nobody changed it since. Returns the record as stored afterwards.
        Raises RecordNotFound.
        """
        raw = seen.to_json() if seen is not None else self._raw_job(job_id, None)
        while True:
            if raw is None:
                raise RecordNotFound(job_id)
            current = Job.from_json(raw)
            changed = change(current)
            if changed is None:
                return current
            # Written only if the record is still what `change` saw; else read it again and retry.
            # A job that finishes here gets its event, and is announced, by the same call.
            ends = changed.finished and not current.finished
            event: list[str | int] = (
                [
                    self.finished_channel,
                    job_id,
                    EVENT_OF_STATUS[changed.status],
                    self.retention_s * 1000,
                    changed.error.code if changed.error else "",
                ]
                if ends
                else []
            )
            # A job's tenant never changes: its key is known from the record (the old key, where
            # the new one does not exist, is taken by the script).
            keys = [self.job_key(current.tenant, job_id), self.open_key, self.events_key,
                    self.tenant_key(changed.tenant, "open"), self.legacy_job_key(job_id)]  # fmt: skip
            if self._swap(keys=keys, args=[raw, changed.to_json(), *event]):
                return changed
            raw = self.redis.get(self.job_key(current.tenant, job_id))
            if raw is None:  # gone, or a record of the layout before (where it stays until it expires)
                raw = self.redis.get(self.legacy_job_key(job_id))

    def start_job(self, job_id: str) -> Job:
        """Mark a job running and count the attempt; a finished job is returned unchanged."""

        def change(job: Job) -> Job | None:
            if job.finished:
                return None
            return dataclasses.replace(
                job, status=RUNNING, attempts=job.attempts + 1, started_at=job.started_at or time.time()
            )

        return self.update_job(job_id, change)

    def requeue_job(self, job_id: str) -> Job:
        """Back to queued while a retry waits; a finished job is returned unchanged."""
        return self.update_job(
            job_id,
            lambda job: (
                None if job.finished else dataclasses.replace(job, status=QUEUED, retries=job.retries + 1)
            ),
        )

    def note_crash(self, job_id: str) -> Job:
        """Count a crash of the process that was running the job; a finished job is unchanged."""
        return self.update_job(
            job_id, lambda job: None if job.finished else dataclasses.replace(job, crashes=job.crashes + 1)
        )

    def sweep_job(self, job_id: str) -> Job:
        """Back to queued after the sweeper found no message behind it; a finished job is unchanged."""
        return self.update_job(
            job_id,
            lambda job: (
                None if job.finished else dataclasses.replace(job, status=QUEUED, sweeps=job.sweeps + 1)
            ),
        )

    def finish_job(
        self,
        job_id: str,
        *,
        outputs: tuple[Output, ...] = (),
        error: JobError | None = None,
        seen: Job | None = None,
    ) -> Job:
        """Succeed (no error) or fail the job, once: the first finish wins and later ones change nothing.

        `seen`: the record start_job returned, as in update_job."""
        return self.finish_job_once(job_id, outputs=outputs, error=error, seen=seen)[0]

    def finish_job_once(
        self,
        job_id: str,
        *,
        outputs: tuple[Output, ...] = (),
        error: JobError | None = None,
        seen: Job | None = None,
        cancel: str | None = None,
    ) -> tuple[Job, bool]:
        """finish_job, also telling whether this call is the one that finished it.

        `cancel`: None ends the job succeeded or failed, unless a cancel was requested meanwhile:
        then it ends canceled, its outputs dropped (a job never succeeds after its cancel).
        CANCEL_NOW ends it canceled (its worker stopped it). CANCEL_REQUEST (DELETE) ends a job
        not running canceled at once, and marks a running one `cancel_requested` for its worker
        to stop; it returns (the marked job, False) then.
        """
        ended = False

        def change(job: Job) -> Job | None:
            nonlocal ended
            ended = False
            if job.finished:
                return None
            if cancel == CANCEL_REQUEST and job.status == RUNNING:
                return None if job.cancel_requested else dataclasses.replace(job, cancel_requested=True)
            ended = True
            if cancel is not None or job.cancel_requested:
                return dataclasses.replace(
                    job,
                    status=CANCELED,
                    finished_at=time.time(),
                    error=None,
                    outputs=(),
                    cancel_requested=True,
                )
            return dataclasses.replace(
                job,
                status=FAILED if error else SUCCEEDED,
                finished_at=time.time(),
                started_at=job.started_at or time.time(),
                error=error,
                outputs=() if error else outputs,
            )

        return self.update_job(job_id, change, seen=seen), ended
