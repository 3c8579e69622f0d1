"""GET /v1/files/tenants/{tenant}/outputs/{job_id}/{name}: the signed download link (and
/v1/files/outputs/{job_id}/{name}, the links of outputs stored before keys carried the tenant)."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable
from typing import Any, BinaryIO

import falcon

from exporters.media import media_type_of_name
from storage.base import Storage, content_disposition
from storage.signing import Signer

# ASCII digits only: \d would also match other scripts' digits, and int() of thousands of digits raises.
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
#: A byte position with more digits than this lies past the end of any file.
_MAX_POSITION_DIGITS = 18


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_POSITION_DIGITS else 10**_MAX_POSITION_DIGITS


def content_type_of(name: str) -> str:
    """The Content-Type of a stored output, from its extension: the format records first (exporters.media)."""
    return media_type_of_name(name) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for one satisfiable byte range; None to serve the whole file.

    Raises falcon.HTTPRangeNotSatisfiable.
    """
    match = _RANGE.match(header.strip())
    if not match:
        return None  # several ranges or another unit: the whole file is a valid answer
    first_s, last_s = match.groups()
    if not first_s and not last_s:
        return None
    if not first_s:  # the last N bytes
        n = _position(last_s)
        if n == 0:
            raise falcon.HTTPRangeNotSatisfiable(size)
        return max(0, size - n), size - 1
    first = _position(first_s)
    last = min(_position(last_s), size - 1) if last_s else size - 1
    if first >= size or first > last:
        raise falcon.HTTPRangeNotSatisfiable(size)
    return first, last


class _Slice:
    """A reader of `length` bytes of an open file, for a 206 response."""

    def __init__(self, fh: BinaryIO, length: int) -> None:
        self._fh = fh
        self._left = length

    def read(self, size: int | None = -1, /) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        chunk = self._fh.read(want)
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        self._fh.close()


class _SignedFile:
    """What both signed-link routes do once they know the object's key."""

    signed_link = True  # the signature is the authorisation: no API key (service/auth.py)

    def __init__(self, *, storage: Storage, signer: Signer, clock: Callable[[], float]) -> None:
        self.storage = storage
        self.signer = signer
        self.clock = clock

    def _authorise(self, req: falcon.Request, key: str) -> int:
        exp, kid, sig = req.get_param("exp"), req.get_param("kid"), req.get_param("sig")
        return self.signer.verify(key, exp=exp, kid=kid, sig=sig, now=self.clock())

    def _serve(self, req: falcon.Request, resp: falcon.Response, key: str, name: str, *, body: bool) -> None:
        expires = self._authorise(req, key)
        stat = self.storage.stat(key)
        headers: dict[str, Any] = {
            "ETag": stat.etag,
            "Accept-Ranges": "bytes",
            "Content-Disposition": content_disposition(name),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": f"private, max-age={max(0, expires - int(self.clock()))}",
        }
        resp.set_headers(headers)
        if stat.etag in [t.strip() for t in (req.get_header("If-None-Match") or "").split(",")]:
            resp.status = falcon.HTTP_304  # no body, so no Content-Type either
            return
        resp.content_type = content_type_of(name)
        span = None
        range_header = req.get_header("Range")
        if_range = req.get_header("If-Range")
        if range_header and (not if_range or if_range == stat.etag):
            span = parse_range(range_header, stat.size)
        if span is None:
            resp.content_length = stat.size
            if body:
                resp.stream = self.storage.open(key)
            return
        first, last = span
        resp.status = falcon.HTTP_206
        resp.content_range = (first, last, stat.size)
        resp.content_length = last - first + 1
        if body:
            fh = self.storage.open(key)
            fh.seek(first)
            resp.stream = _Slice(fh, last - first + 1)


class Files(_SignedFile):
    """The signed link of an output stored before keys carried the tenant (`outputs/{job}/{name}`)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str, name: str) -> None:
        self._serve(req, resp, f"outputs/{job_id}/{name}", name, body=True)

    def on_head(self, req: falcon.Request, resp: falcon.Response, job_id: str, name: str) -> None:
        self._serve(req, resp, f"outputs/{job_id}/{name}", name, body=False)


class TenantFiles(_SignedFile):
    """The signed link of an output stored under its tenant (`tenants/{tenant}/outputs/{job}/{name}`):
    the signature covers the whole key, so the link stays bound to that one file."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant: str, job_id: str, name: str) -> None:
        self._serve(req, resp, f"tenants/{tenant}/outputs/{job_id}/{name}", name, body=True)

    def on_head(
        self, req: falcon.Request, resp: falcon.Response, tenant: str, job_id: str, name: str
    ) -> None:
        self._serve(req, resp, f"tenants/{tenant}/outputs/{job_id}/{name}", name, body=False)
