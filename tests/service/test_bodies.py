"""Large request bodies reach Falcon through a buffered reader, whole and unchanged."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import falcon
import falcon.testing
import pytest

from service.app import LARGE_BODY_BYTES, LargeBodies
from service.bodies import read_at_most, strict_loads
from service.errors import BodyTooLarge
from tests.helpers import multipart


class _Echo:
    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.seen["reader"] = type(req.bounded_stream.stream)
        if req.content_type and req.content_type.startswith("multipart/form-data"):
            for part in req.get_media():
                self.seen[part.name] = hashlib.sha256(part.stream.read()).hexdigest()
        else:
            digest = hashlib.sha256()
            while chunk := req.bounded_stream.read(32 * 1024):
                digest.update(chunk)
            self.seen["raw"] = digest.hexdigest()


def _app() -> tuple[falcon.App[falcon.Request, falcon.Response], _Echo]:
    echo = _Echo()
    app = falcon.App(middleware=[LargeBodies()])
    app.add_route("/", echo)
    return app, echo


def test_a_large_multipart_body_is_read_through_a_buffer_and_arrives_whole() -> None:
    app, echo = _app()
    data = os.urandom(3 * 1024 * 1024 + 17)
    body, ctype = multipart([("file", ("a.bin", data)), ("note", "after the file")])
    result = falcon.testing.simulate_post(app, "/", body=body, headers={"Content-Type": ctype})
    assert result.status_code == 200
    assert echo.seen["reader"] is io.BufferedReader
    assert echo.seen["file"] == hashlib.sha256(data).hexdigest()
    assert echo.seen["note"] == hashlib.sha256(b"after the file").hexdigest()


def test_a_large_raw_body_arrives_whole() -> None:
    app, echo = _app()
    data = os.urandom(2 * 1024 * 1024 + 5)
    falcon.testing.simulate_post(app, "/", body=data, headers={"Content-Type": "image/jpeg"})
    assert echo.seen["reader"] is io.BufferedReader
    assert echo.seen["raw"] == hashlib.sha256(data).hexdigest()


def test_small_bodies_are_left_as_the_server_gives_them() -> None:
    app, echo = _app()
    data = b"x" * LARGE_BODY_BYTES
    falcon.testing.simulate_post(app, "/", body=data, headers={"Content-Type": "text/plain"})
    assert echo.seen["reader"] is not io.BufferedReader
    assert echo.seen["raw"] == hashlib.sha256(data).hexdigest()


# -- limits and strict JSON (service.bodies) -------------------------------------------------------------


class _Counting(io.RawIOBase):
    """An endless body that counts what was read of it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        buffer[:] = b"x" * len(buffer)
        self.read_bytes += len(buffer)
        return len(buffer)


def test_a_body_past_its_limit_is_refused_after_reading_at_most_one_byte_more() -> None:
    stream = _Counting()
    with pytest.raises(BodyTooLarge, match="the 'options' part is larger than the limit of 100000 bytes"):
        read_at_most(stream, 100_000, what="the 'options' part")
    assert stream.read_bytes == 100_001


def test_a_body_within_its_limit_arrives_whole() -> None:
    data = os.urandom(200_000)
    assert read_at_most(io.BytesIO(data), 200_000, what="x") == data


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NaN", "NaN is not a JSON number"),
        ('{"a": [Infinity]}', "Infinity is not a JSON number"),
        ("-Infinity", "-Infinity is not a JSON number"),
        ("1e400", "beyond the range of a number"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("9" * 5000, "4300 digits"),
    ],
)
def test_strict_json_refuses_what_rfc_8259_does_not_allow(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        strict_loads(text)
    assert strict_loads('{"a": [1.5, -2e10, 1e-400]}') == {"a": [1.5, -2e10, 0.0]}
