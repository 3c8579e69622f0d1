"""The Idempotency-Key header on POST /v1/exports and POST /v1/uploads, on a real Redis and storage."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
import redis

from service import idempotency
from service.app import create_app
from service.settings import Settings, parse_signing_keys
from storage.jobs import Records
from storage.local import LocalStorage
from tests.conftest import AUTH, TEST_API_KEYS, TEST_KEYS
from tests.helpers import jpeg_bytes, multipart, png_bytes, problem_body

OTHER_KEY = "exk_" + "other-tenant-key-" + "o" * 30
JSON = {"Content-Type": "application/json"}


@dataclass
class Api:
    client: falcon.testing.TestClient
    records: Records
    storage: LocalStorage
    redis: redis.Redis
    enqueued: list[str]

    def post(self, path: str, body: bytes | str, key: str | None, headers: dict[str, str] | None = None,
             **kwargs: Any) -> falcon.testing.Result:  # fmt: skip
        sent = {**(headers or {}), **({"Idempotency-Key": key} if key is not None else {})}
        return self.client.simulate_post(path, body=body, headers=sent, **kwargs)

    def upload(self, data: bytes) -> str:
        result = self.client.simulate_post("/v1/uploads", body=data, params={"filename": "a.jpg"})
        assert result.status_code == 201
        return str(result.json["id"])

    def jobs(self, key: dict[str, str] | None = None) -> list[str]:
        listing = self.client.simulate_get("/v1/exports", params={"limit": "100"}, headers=key).json
        return [j["id"] for j in listing["exports"]]

    def stored_uploads(self) -> list[Path]:
        # Under each tenant (tenants/{tenant}/uploads/), and where uploads were kept before.
        folders = [self.storage.root / "uploads", *(self.storage.root / "tenants").glob("*/uploads")]
        return [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()]


@pytest.fixture
def api(
    tmp_path: Path, records: Records, storage: LocalStorage, redis_client: redis.Redis, live_pool: Any
) -> Iterator[Api]:
    settings = Settings(api_keys=f"{TEST_API_KEYS},other:submit+read:{OTHER_KEY}",
                        signing_keys=parse_signing_keys(TEST_KEYS), data_dir=tmp_path, max_upload_bytes=300_000,
                        public_url="http://exportd.test")  # fmt: skip
    enqueued: list[str] = []
    app = create_app(
        settings, records=records, storage=storage, enqueue=lambda job_id, queue: enqueued.append(job_id)
    )
    yield Api(falcon.testing.TestClient(app, headers=AUTH), records, storage, redis_client, enqueued)


def test_the_same_export_sent_again_answers_the_same_job(api: Api) -> None:
    body = json.dumps({"inputs": [api.upload(jpeg_bytes())], "format": "png"})
    first = api.post("/v1/exports", body, "order-1234", JSON)
    again = api.post("/v1/exports", body, "order-1234", JSON, params={"wait": "0"})  # wait is not the request
    assert first.status_code == again.status_code == 202
    assert again.json["id"] == first.json["id"] and again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert api.jobs() == [first.json["id"]] and api.enqueued == [first.json["id"]]
    # A Structured Field string is the same key as the bare text.
    quoted = api.post("/v1/exports", body, '"order-1234"', JSON)
    assert quoted.json["id"] == first.json["id"] and quoted.headers["idempotent-replayed"] == "true"


def test_the_same_key_with_another_request_is_refused(api: Api) -> None:
    upload = api.upload(jpeg_bytes())
    first = api.post("/v1/exports", json.dumps({"inputs": [upload], "format": "png"}), "k1", JSON)
    assert first.status_code == 202
    other = api.post("/v1/exports", json.dumps({"inputs": [upload], "format": "webp"}), "k1", JSON)
    problem_body(other, 409, "idempotency_key_reused")
    problem_body(api.post("/v1/uploads", png_bytes(), "k1"), 409, "idempotency_key_reused")  # another route
    assert api.jobs() == [first.json["id"]]


def test_keys_are_per_tenant(api: Api) -> None:
    body = json.dumps({"inputs": [api.upload(jpeg_bytes())], "format": "png"})
    mine = api.post("/v1/exports", body, "shared-key", JSON)
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    theirs = api.post("/v1/exports", body, "shared-key", {**JSON, **other})
    problem_body(theirs, 422, "unknown_upload")  # their own request, run as theirs: my upload is not theirs
    assert api.jobs() == [mine.json["id"]] and api.jobs(other) == []


def test_a_refused_request_frees_its_key_for_the_retry(api: Api) -> None:
    refused = api.post("/v1/exports", json.dumps({"inputs": ["0" * 32], "format": "png"}), "retry-me", JSON)
    problem_body(refused, 422, "unknown_upload")
    body = json.dumps({"inputs": [api.upload(jpeg_bytes())], "format": "png"})
    accepted = api.post("/v1/exports", body, "retry-me", JSON)
    assert accepted.status_code == 202 and "idempotent-replayed" not in accepted.headers


@pytest.mark.parametrize("key", ["", '""', "x" * 256, "naïve", "tab\there"])
def test_malformed_keys_are_refused(api: Api, key: str) -> None:
    problem_body(api.post("/v1/uploads", png_bytes(), key), 400, "invalid_request")
    assert api.stored_uploads() == []


def test_a_key_of_255_characters_is_taken(api: Api) -> None:
    first = api.post("/v1/uploads", png_bytes(), "k" * 255)
    again = api.post("/v1/uploads", png_bytes(), "k" * 255)
    assert first.status_code == again.status_code == 201 and first.json["id"] == again.json["id"]


def test_uploads_sent_again_answer_the_same_upload_and_store_one_file(api: Api) -> None:
    raw = api.post("/v1/uploads", png_bytes(), "up-1", params={"filename": "a.png"})
    raw_again = api.post("/v1/uploads", png_bytes(), "up-1", params={"filename": "a.png"})
    assert raw.status_code == raw_again.status_code == 201 and raw.json == raw_again.json
    assert raw_again.headers["idempotent-replayed"] == "true"
    problem_body(
        api.post("/v1/uploads", png_bytes(), "up-1", params={"filename": "b.png"}),
        409,
        "idempotency_key_reused",
    )
    # Multipart: each send has a boundary of its own, and is still the same request.
    body, ctype = multipart([("file", ("photo.jpg", jpeg_bytes()))])
    body2, ctype2 = multipart([("file", ("photo.jpg", jpeg_bytes()))])
    assert ctype != ctype2
    form = api.post("/v1/uploads", body, "up-2", {"Content-Type": ctype})
    form_again = api.post("/v1/uploads", body2, "up-2", {"Content-Type": ctype2})
    assert form.status_code == form_again.status_code == 201 and form.json["id"] == form_again.json["id"]
    body3, ctype3 = multipart([("file", ("photo.jpg", jpeg_bytes(quality=80)))])
    problem_body(
        api.post("/v1/uploads", body3, "up-2", {"Content-Type": ctype3}), 409, "idempotency_key_reused"
    )
    assert len(api.stored_uploads()) == 2


def test_a_multipart_export_sent_again_answers_the_same_job(api: Api) -> None:
    fields: list[tuple[str, str | tuple[str, bytes]]] = [("file", ("a.jpg", jpeg_bytes())), ("format", "png")]
    body, ctype = multipart(fields)
    first = api.post("/v1/exports", body, "mp-1", {"Content-Type": ctype})
    body, ctype = multipart(fields)
    again = api.post("/v1/exports", body, "mp-1", {"Content-Type": ctype})
    assert first.status_code == again.status_code == 202 and first.json["id"] == again.json["id"]
    assert len(api.stored_uploads()) == 1 and api.jobs() == [first.json["id"]]


def test_a_second_request_waits_for_the_first_or_answers_in_progress(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request's claim is held: the second waits for its answer, then replays it; past
    the wait, 409 idempotency_key_in_progress with Retry-After."""
    monkeypatch.setattr(idempotency, "WAIT_S", 0.5)
    key = f"{api.records.namespace}:tenant:tests:idem:slow"
    api.redis.set(key, json.dumps({"state": "in_progress", "claim": "someone"}), ex=60)
    started = time.monotonic()
    busy = api.post("/v1/uploads", png_bytes(), "slow")
    problem_body(busy, 409, "idempotency_key_in_progress")
    assert busy.headers["retry-after"] == "1" and 0.5 <= time.monotonic() - started < 3
    assert api.stored_uploads() == []  # the waiting request stored nothing
    # The first request answers while the second waits: the second replays that answer.
    monkeypatch.setattr(idempotency, "WAIT_S", 5.0)
    upload = api.upload(png_bytes())
    fingerprint: dict[str, str] = {}

    def answer_later() -> None:
        time.sleep(0.5)
        api.redis.set(key, json.dumps({"state": "done", "fingerprint": fingerprint["value"], "status": 201,
                                       "id": upload, "location": f"/v1/uploads/{upload}"}))  # fmt: skip

    # The fingerprint of this very request, as the first one would have stored it.
    probe = api.post("/v1/uploads", png_bytes(), "probe")
    probe_answer = json.loads(api.redis.get(f"{api.records.namespace}:tenant:tests:idem:probe") or b"{}")
    assert probe.status_code == 201
    fingerprint["value"] = probe_answer["fingerprint"]
    thread = threading.Thread(target=answer_later)
    thread.start()
    replayed = api.post("/v1/uploads", png_bytes(), "slow")
    thread.join()
    assert replayed.status_code == 201 and replayed.json["id"] == upload
    assert replayed.headers["idempotent-replayed"] == "true"


def test_the_key_is_kept_a_day(api: Api) -> None:
    api.post("/v1/uploads", png_bytes(), "ttl")
    ttl = api.redis.ttl(f"{api.records.namespace}:tenant:tests:idem:ttl")
    assert 24 * 3600 - 60 < int(ttl) <= 24 * 3600
