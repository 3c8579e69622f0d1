"""Idempotent submits: the `Idempotency-Key` request header (IETF draft "The Idempotency-Key HTTP
Header Field") on POST /v1/exports and POST /v1/uploads.

Per tenant, a key is claimed in Redis (`{ns}:tenant:{t}:idem:{key}`, SET NX) before the request
does anything, so of two identical requests racing each other only one creates a job: the other
waits for the first's answer and replays it. The request's fingerprint (SHA-256 of its method,
path, query without `wait`, media type and body, hashed while the body streams through) is stored
with the answer once the first request succeeded; the key is kept 24 hours. Then:

- the same key with the same request answers the same status, Location and resource (the job or
  upload as it is now, with fresh links), with `Idempotent-Replayed: true`;
- the same key with a different request: 409 `idempotency_key_reused`;
- while the first request is still being processed (past WAIT_S), or if it was refused meanwhile:
  409 `idempotency_key_in_progress`, with Retry-After;
- a refused first request (any 4xx or 5xx) releases its key, so the client can send it again.

Multipart bodies are fingerprinted without their boundary: two clients (or two runs of curl)
sending the same form with different boundaries send the same request.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import falcon
import redis

from service.errors import BadRequest, BodyTooLarge, IdempotencyKeyInProgress, IdempotencyKeyReused

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: How long a key and its answer are kept.
KEEP_S = 24 * 3600
#: How long a claim lasts without an answer: a request whose process died frees its key then.
CLAIM_S = 600
#: How long a second request with a key in progress waits for the first one's answer.
WAIT_S = 10.0
POLL_S = 0.05
MAX_KEY_CHARS = 255
_READ_BYTES = 64 * 1024

#: Replaces KEYS[1] with ARGV[2] (kept ARGV[3] s), or deletes it when ARGV[2] is empty, only while
#: it still holds this request's claim ARGV[1].
_SETTLE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""


def parse_key(raw: str) -> str:
    """The key of an Idempotency-Key header: a Structured Field string ("..."), or the bare text
    many clients send. Raises BadRequest for an empty key, or one over 255 characters or with
    characters outside printable ASCII."""
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= MAX_KEY_CHARS or any(not " " <= ch <= "~" for ch in key):
        raise BadRequest(f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters (a UUID, say)")
    return key


class _HashingInput:
    """The request's input stream, hashed as it is read (by the route, then by `finish`)."""

    def __init__(self, stream: Any, boundary: bytes | None) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self._delimiter = b"--" + boundary if boundary else None
        self._pending = b""
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk: bytes = self._stream.read(-1 if size is None else size)
        self._feed(chunk)
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        line: bytes = self._stream.readline(-1 if size is None else size)
        self._feed(line)
        return line

    def _feed(self, chunk: bytes) -> None:
        self.bytes_read += len(chunk)
        if self._delimiter is None:
            self._hash.update(chunk)
            return
        # The boundary is replaced wherever it occurs; the last bytes wait for the next chunk,
        # which may complete a boundary they begin.
        data = (self._pending + chunk).replace(self._delimiter, b"--\0")
        keep = len(self._delimiter) - 1
        self._hash.update(data[:-keep])
        self._pending = data[-keep:]

    def finish(self, declared: int | None, max_bytes: int, *, refuse: bool = True) -> str:
        """Read the rest of the body (a route may stop before its end) and return its hash.
        Past max_bytes: raises BodyTooLarge, or (`refuse` False: the route has answered) stops."""
        while True:
            size = _READ_BYTES if declared is None else min(_READ_BYTES, declared - self.bytes_read)
            if size <= 0 or not self.read(size):
                break
            if self.bytes_read > max_bytes:
                if refuse:
                    raise BodyTooLarge(f"the body is larger than the limit of {max_bytes} bytes")
                break
        self._hash.update(self._pending)
        self._pending = b""
        return self._hash.hexdigest()


class Idempotency:
    """Claims, answers and replays of Idempotency-Keys, in Redis, shared by every API process."""

    def __init__(self, client: redis.Redis, namespace: str, *, wait_s: float | None = None,
                 claim_s: int = CLAIM_S, keep_s: int = KEEP_S) -> None:  # fmt: skip
        self.redis = client
        self.namespace = namespace
        self.wait_s = wait_s
        self.claim_s = claim_s
        self.keep_s = keep_s
        self._settle = client.register_script(_SETTLE)

    def handle(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        *,
        respond: Callable[[], None],
        replay: Callable[[str], Any],
        max_body_bytes: int,
    ) -> None:
        """Run `respond` (the route) once per key and request; `replay(id)` renders the resource a
        stored answer names. Raises BadRequest, IdempotencyKeyReused, IdempotencyKeyInProgress,
        BodyTooLarge, and whatever `respond` raises."""
        raw = req.get_header(HEADER)
        if raw is None:
            respond()
            return
        key = f"{self.namespace}:tenant:{req.context.tenant}:idem:{parse_key(raw)}"
        media_type, _, params = (req.content_type or "").partition(";")
        boundary = None
        if media_type.strip().lower() == "multipart/form-data":
            for param in params.split(";"):
                name, _, value = param.strip().partition("=")
                if name.lower() == "boundary" and value.strip('"'):
                    boundary = value.strip('"').encode("latin-1", "replace")
        body = _HashingInput(req.stream, boundary)
        req.env["wsgi.input"] = req.stream = body  # Falcon reads bodies (and forms) from wsgi.input
        claim = json.dumps({"state": "in_progress", "claim": uuid.uuid4().hex})
        if not self.redis.set(key, claim, nx=True, ex=self.claim_s):
            fingerprint = self._fingerprint(req, media_type, body.finish(req.content_length, max_body_bytes))
            self._replay(key, fingerprint, resp, replay)
            return
        try:
            respond()
            status = resp.status_code
            # What follows the part the route read (a multipart epilogue) is hashed, not refused:
            # the job or upload exists by now.
            rest = body.finish(req.content_length, max_body_bytes, refuse=False)
            fingerprint = self._fingerprint(req, media_type, rest)
        except BaseException:
            self._settle(keys=[key], args=[claim, "", 0])
            raise
        if status >= 400:
            self._settle(keys=[key], args=[claim, "", 0])
            return
        answer = {"state": "done", "fingerprint": fingerprint, "status": status,
                  "id": (resp.media or {}).get("id"), "location": resp.location}  # fmt: skip
        self._settle(keys=[key], args=[claim, json.dumps(answer), self.keep_s])

    @staticmethod
    def _fingerprint(req: falcon.Request, media_type: str, body_sha256: str) -> str:
        query = sorted((k, v) for k, v in parse_qsl(req.query_string, keep_blank_values=True) if k != "wait")
        head = json.dumps([req.method, req.path, query, media_type.strip().lower(), body_sha256])
        return hashlib.sha256(head.encode()).hexdigest()

    def _replay(
        self, key: str, fingerprint: str, resp: falcon.Response, replay: Callable[[str], Any]
    ) -> None:
        deadline = time.monotonic() + (WAIT_S if self.wait_s is None else self.wait_s)
        while True:
            raw = self.redis.get(key)
            if raw is None:  # the first request was refused and let the key go: send this one again
                raise IdempotencyKeyInProgress()
            answer = json.loads(raw)
            if answer["state"] == "done":
                break
            if time.monotonic() >= deadline:
                raise IdempotencyKeyInProgress()
            time.sleep(POLL_S)
        if answer["fingerprint"] != fingerprint:
            raise IdempotencyKeyReused()
        resp.status = answer["status"]
        if answer.get("location"):
            resp.location = answer["location"]
        resp.media = replay(answer["id"])
        resp.set_header(REPLAYED_HEADER, "true")
