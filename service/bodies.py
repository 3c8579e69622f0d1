"""Request bodies read within their limits, and JSON parsed strictly: what the API refuses before it works."""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

import falcon

from service.errors import BadRequest, BodyTooLarge

#: Each read asks for at most this much, so a refused body costs at most its limit plus one read.
_READ_BYTES = 64 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_at_most(stream: Readable, max_bytes: int, *, what: str) -> bytes:
    """All of `stream`, never reading more than max_bytes + 1 bytes of it. Raises BodyTooLarge."""
    chunks: list[bytes] = []
    total = 0
    while total <= max_bytes and (chunk := stream.read(min(_READ_BYTES, max_bytes + 1 - total))):
        chunks.append(chunk)
        total += len(chunk)
    if total > max_bytes:
        raise BodyTooLarge(f"{what} is larger than the limit of {max_bytes} bytes")
    return b"".join(chunks)


def read_body(req: falcon.Request, max_bytes: int, *, what: str = "the body") -> bytes:
    """The request's whole body: refused unread when its Content-Length is over max_bytes, and once
    past max_bytes when it has none (chunked). Raises BodyTooLarge."""
    declared = req.content_length
    if declared is not None and declared > max_bytes:
        raise BodyTooLarge(f"{what} is {declared} bytes, more than the limit of {max_bytes} bytes")
    # A chunked body has no Content-Length; the WSGI server's input ends at its last chunk.
    stream = req.bounded_stream if declared is not None else req.stream
    return read_at_most(stream, max_bytes, what=what)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to infinity
        raise ValueError(f"{text[:40]} is beyond the range of a number")
    return value


def strict_loads(data: str | bytes) -> Any:
    """JSON as RFC 8259 defines it: no NaN or Infinity, no number that overflows to infinity.

    Raises ValueError (json.JSONDecodeError for syntax), also for nesting deeper than Python's
    recursion limit.
    """
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def parse_json(data: bytes, *, what: str) -> Any:
    """Strictly parsed JSON (see strict_loads). Raises BadRequest naming `what` and the fault."""
    try:
        return strict_loads(data)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError as exc:  # also UnicodeDecodeError, and integers of more than 4,300 digits
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
