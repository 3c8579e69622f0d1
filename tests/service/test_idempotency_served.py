"""Idempotent submits racing each other on the real server: `exportd serve`, several gunicorn processes."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.helpers import png_bytes
from tests.service.test_tenants_served import KEY_A, PROCESSES, Served, served  # noqa: F401  (the fixture)

RACERS = 4 * PROCESSES


def _race(
    server: Served, path: str, body: bytes, ctype: str, key: str
) -> list[tuple[int, dict[str, str], Any]]:
    def send(_: int) -> tuple[int, dict[str, str], Any]:
        return server.call("POST", path, KEY_A, body, ctype, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(send, range(RACERS)))


def test_identical_exports_racing_create_one_job(served: Served) -> None:  # noqa: F811
    status, _, upload = served.call("POST", "/v1/uploads", KEY_A, png_bytes(), "application/octet-stream")
    assert status == 201
    body = json.dumps({"inputs": [upload["id"]], "format": "jpeg"}).encode()
    answers = _race(served, "/v1/exports", body, "application/json", "race-export-1")
    assert [a[0] for a in answers] == [202] * RACERS, answers
    assert len({a[2]["id"] for a in answers}) == 1
    replayed = [a for a in answers if a[1].get("idempotent-replayed") == "true"]
    assert len(replayed) == RACERS - 1  # one created it, every other one replayed it
    _, _, listing = served.call("GET", "/v1/exports?limit=100", KEY_A)
    assert [j["id"] for j in listing["exports"]] == [answers[0][2]["id"]]


def test_identical_uploads_racing_store_one_file(served: Served) -> None:  # noqa: F811
    answers = _race(
        served, "/v1/uploads?filename=a.png", png_bytes(), "application/octet-stream", "race-up-1"
    )
    assert [a[0] for a in answers] == [201] * RACERS, answers
    assert len({a[2]["id"] for a in answers}) == 1
    upload_keys = list(served.records.redis.scan_iter(f"{served.records.namespace}:tenant:*:upload:*"))
    assert len(upload_keys) == 1
