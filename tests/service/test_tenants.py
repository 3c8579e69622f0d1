"""Tenants: API keys on every route, isolation, listing, quotas; on a real Redis and real storage."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import falcon
import falcon.inspect
import falcon.testing
import pytest
from dramatiq import Worker

from actors.broker import QUEUES, build_broker
from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, enqueue_export, releaser
from actors.outcomes import JobOutcomes
from actors.sweeper import Sweeper
from service.app import create_app, limits_from, quotas_from
from service.settings import Settings, parse_signing_keys
from storage.jobs import RecordNotFound, Records
from storage.keys import KeyStore, hash_key, parse_configured_keys
from storage.local import LocalStorage
from storage.retention import cleanup
from storage.tenants import Tenants
from tests.conftest import TEST_KEYS
from tests.helpers import expire_job_record, jpeg_bytes, multipart, png_bytes, problem_body

KEY_A = "exk_" + "a" * 43
KEY_B = "exk_" + "b" * 43
KEY_A_READ = "exk_" + "r" * 43
KEY_A_SUBMIT = "exk_" + "s" * 43
# Tenant b's key comes in hashed form, as a GitOps Secret may hold it.
CONFIGURED = ",".join(
    [f"a:submit+read:{KEY_A}", f"b:submit+read:sha256:{hash_key(KEY_B)}", f"a:read:{KEY_A_READ}",
     f"a:submit:{KEY_A_SUBMIT}"]
)  # fmt: skip


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(signing_keys=parse_signing_keys(TEST_KEYS), data_dir=tmp_path, api_keys=CONFIGURED,
                    max_upload_bytes=300_000, public_url="http://exportd.test")  # fmt: skip


@pytest.fixture
def queued() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def client(settings: Settings, records: Records, storage: LocalStorage, queued: list[tuple[str, str]]) -> Any:
    app = create_app(settings, records=records, storage=storage, enqueue=lambda j, q: queued.append((j, q)))
    return falcon.testing.TestClient(app)


def _upload(client: Any, key: str, data: bytes | None = None) -> str:
    result = client.simulate_post("/v1/uploads", body=data or png_bytes(), headers=bearer(key))
    assert result.status_code == 201, result.text
    return str(result.json["id"])


def _export(client: Any, key: str, upload_id: str, fmt: str = "jpeg") -> falcon.testing.Result:
    body = json.dumps({"inputs": [upload_id], "format": fmt})
    return client.simulate_post(
        "/v1/exports", body=body, headers={**bearer(key), "Content-Type": "application/json"}
    )


# -- API keys on every route ---------------------------------------------------------------------------


def _routes(app: Any) -> list[tuple[str, str, str]]:
    """(method, path with ids filled in, responder class) of every route of the app."""
    out = []
    for route in falcon.inspect.inspect_routes(app):
        for method in route.methods:
            if not method.internal:
                path = re.sub(r"\{[^}]+\}", "0" * 32, route.path)
                out.append((method.method, path, route.class_name))
    return out


def test_every_v1_route_but_the_signed_links_needs_a_key(client: Any) -> None:
    routes = _routes(client.app)
    assert len(routes) >= 10
    checked = 0
    for method, path, class_name in routes:
        answers = [
            client.simulate_request(method, path),
            client.simulate_request(method, path, headers=bearer("exk_" + "z" * 43)),  # unknown
            client.simulate_request(
                method, path, headers={"Authorization": "Basic " + KEY_A}
            ),  # wrong scheme
        ]
        if path.startswith("/v1/") and class_name not in ("Files", "TenantFiles"):
            for result in answers:
                problem_body(result, 401, "unauthorized")
                assert result.headers["www-authenticate"].startswith("Bearer")
            checked += 1
        else:  # /healthz, /readyz, the page, and the signed links (which answer on their signature)
            for result in answers:
                assert result.status_code != 401, (method, path)
    assert checked >= 7


def test_a_key_without_the_scope_is_forbidden(client: Any) -> None:
    upload_id = _upload(client, KEY_A)
    problem_body(
        client.simulate_post("/v1/uploads", body=png_bytes(), headers=bearer(KEY_A_READ)), 403, "forbidden"
    )
    problem_body(_export(client, KEY_A_READ, upload_id), 403, "forbidden")
    problem_body(
        client.simulate_get(f"/v1/uploads/{upload_id}", headers=bearer(KEY_A_SUBMIT)), 403, "forbidden"
    )
    problem_body(client.simulate_get("/v1/exports", headers=bearer(KEY_A_SUBMIT)), 403, "forbidden")
    assert client.simulate_get(f"/v1/uploads/{upload_id}", headers=bearer(KEY_A_READ)).status_code == 200
    assert client.simulate_get("/v1/formats", headers=bearer(KEY_A_SUBMIT)).status_code == 200


def test_signed_links_health_and_page_need_no_key(client: Any) -> None:
    assert client.simulate_get("/healthz").status_code == 200
    assert client.simulate_get("/readyz").status_code == 200
    assert client.simulate_get("/").status_code == 200
    problem_body(client.simulate_get(f"/v1/files/outputs/{'0' * 32}/x.png"), 403, "invalid_signature")


def test_revoked_key_is_refused_on_the_next_request(client: Any, records: Records) -> None:
    store = KeyStore(records.redis, namespace=records.namespace)
    record, key = store.create("c", ("read",))
    assert key.startswith("exk_") and len(key) >= 40
    assert client.simulate_get("/v1/exports", headers=bearer(key)).status_code == 200
    # Only the hash is stored.
    assert not [
        k for k in records.redis.scan_iter(f"{records.namespace}:*") if key.encode() in records.redis.dump(k)
    ]
    assert store.revoke(record.id)
    problem_body(client.simulate_get("/v1/exports", headers=bearer(key)), 401, "unauthorized")
    assert [k.id for k in store.list()] == []


def test_keys_are_never_in_the_logs(client: Any, records: Records, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = KeyStore(records.redis, namespace=records.namespace)
    _, key = store.create("c", ("submit", "read"))
    upload_id = _upload(client, key)
    _export(client, key, upload_id)
    client.simulate_get("/v1/exports", headers=bearer(key))
    client.simulate_get("/v1/exports", headers=bearer(key[:-1] + "x"))  # a bad key
    client.simulate_get("/v1/exports", headers=bearer(KEY_A_SUBMIT))  # a forbidden one
    assert caplog.records
    logged = "\n".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
    for secret in (key, key[4:], key[:-1] + "x", KEY_A_SUBMIT):
        assert secret not in logged


def test_configured_keys_accept_the_hashed_form_and_refuse_garbage() -> None:
    (key,) = parse_configured_keys(f"t:read:sha256:{hash_key(KEY_B)}")
    assert key.tenant == "t" and key.scopes == ("read",) and key.hash == hash_key(KEY_B)
    for bad in ("t:read:plain-password", "t:write:" + KEY_A, "t:read:sha256:abc", "bad tenant:read:" + KEY_A):
        with pytest.raises(Exception) as caught:
            parse_configured_keys(bad)
        assert KEY_A not in str(caught.value)


# -- isolation ------------------------------------------------------------------------------------------------


def _sameproblem(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    drop = ("instance", "request_id")
    assert {k: v for k, v in mine.items() if k not in drop} == {
        k: v for k, v in theirs.items() if k not in drop
    }


def test_a_routes_read_cannot_reach_another_tenants_record_even_with_its_tenant_field_wrong(
    client: Any, records: Records, redis_client: Any
) -> None:
    # The record keys carry the tenant: a route reads `{ns}:tenant:{caller}:job:{id}`, so B's read of
    # A's id finds no key at all. Here A's records are rewritten to claim B as their tenant (as if the
    # tenant check on the record were missing): B still gets 404 / unknown_upload.
    upload_id = _upload(client, KEY_A)
    job_id = _export(client, KEY_A, upload_id).json["id"]
    a = records.get_job(job_id).tenant
    b_tenant = records.get_job(_export(client, KEY_B, _upload(client, KEY_B)).json["id"]).tenant
    assert a != b_tenant
    job_key, upload_key = records.job_key(a, job_id), records.upload_record_key(a, upload_id)
    assert redis_client.get(records.job_tenant_key(job_id)) == a.encode()
    assert not redis_client.exists(records.job_key(b_tenant, job_id), records.legacy_job_key(job_id))
    assert not redis_client.exists(
        records.upload_record_key(b_tenant, upload_id), records.legacy_upload_key(upload_id)
    )
    for key in (job_key, upload_key):
        record = json.loads(redis_client.get(key))
        record["tenant"] = b_tenant
        redis_client.set(key, json.dumps(record), keepttl=True)
    problem_body(client.simulate_get(f"/v1/exports/{job_id}", headers=bearer(KEY_B)), 404, "not_found")
    problem_body(client.simulate_get(f"/v1/uploads/{upload_id}", headers=bearer(KEY_B)), 404, "not_found")
    problem_body(_export(client, KEY_B, upload_id), 422, "unknown_upload")
    with pytest.raises(RecordNotFound):
        records.get_job(job_id, tenant=b_tenant)
    with pytest.raises(RecordNotFound):
        records.get_uploads([upload_id], tenant=b_tenant)


def test_another_tenants_ids_answer_exactly_as_unknown_ones(client: Any) -> None:
    upload_id = _upload(client, KEY_A)
    job = _export(client, KEY_A, upload_id)
    assert job.status_code == 202, job.text
    job_id = job.json["id"]
    unknown = "f" * 32
    for template in ("/v1/uploads/{}", "/v1/exports/{}"):
        for params in ({}, {"wait": "0.2"}):
            theirs = problem_body(client.simulate_get(template.format(upload_id if "uploads" in template else job_id),
                                                  headers=bearer(KEY_B), params=params), 404, "not_found")  # fmt: skip
            never = problem_body(client.simulate_get(template.format(unknown), headers=bearer(KEY_B), params=params),
                             404, "not_found")  # fmt: skip
            _sameproblem(theirs, never)
    # A job's webhook deliveries: their log and a re-send, as an unknown job.
    for method in ("GET", "POST"):
        theirs = problem_body(client.simulate_request(method, f"/v1/exports/{job_id}/deliveries", headers=bearer(KEY_B)),
                          404, "not_found")  # fmt: skip
        never = problem_body(client.simulate_request(method, f"/v1/exports/{unknown}/deliveries", headers=bearer(KEY_B)),
                         404, "not_found")  # fmt: skip
        _sameproblem(theirs, never)
    assert client.simulate_get(f"/v1/exports/{job_id}/deliveries", headers=bearer(KEY_A)).json == {
        "deliveries": []
    }
    # Its owner sees both.
    assert client.simulate_get(f"/v1/exports/{job_id}", headers=bearer(KEY_A)).status_code == 200
    assert client.simulate_get(f"/v1/uploads/{upload_id}", headers=bearer(KEY_A)).status_code == 200
    # Using another tenant's upload is as using none.
    theirs = problem_body(_export(client, KEY_B, upload_id), 422, "unknown_upload")
    never = problem_body(_export(client, KEY_B, unknown), 422, "unknown_upload")
    assert theirs["detail"].replace(upload_id, unknown) == never["detail"]
    # A listing never shows another tenant's jobs.
    assert client.simulate_get("/v1/exports", headers=bearer(KEY_B)).json == {
        "exports": [],
        "next_cursor": None,
    }


def test_listing_is_newest_first_filtered_and_paged(client: Any, records: Records) -> None:
    upload_id = _upload(client, KEY_A)
    ids = [_export(client, KEY_A, upload_id).json["id"] for _ in range(5)]
    records.finish_job(ids[1])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.simulate_get("/v1/exports", headers=bearer(KEY_A), params=params).json
        assert len(page["exports"]) <= 2
        seen += [job["id"] for job in page["exports"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    done = client.simulate_get("/v1/exports", headers=bearer(KEY_A), params={"status": "succeeded"}).json
    assert [j["id"] for j in done["exports"]] == [ids[1]] and done["exports"][0]["status"] == "succeeded"
    assert done["exports"][0] == client.simulate_get(f"/v1/exports/{ids[1]}", headers=bearer(KEY_A)).json | {
        "outputs": done["exports"][0]["outputs"]
    }
    for bad in ({"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"status": "lost"}, {"cursor": "nonsense"}):
        problem_body(
            client.simulate_get("/v1/exports", headers=bearer(KEY_A), params=bad), 400, "invalid_request"
        )


# -- quotas -------------------------------------------------------------------------------------------------


def _tenants(records: Records, settings: Settings) -> Tenants:
    return Tenants(records, defaults=quotas_from(settings))


def test_requests_past_the_rate_are_refused_with_429_and_ratelimit_headers(
    client: Any, records: Records, settings: Settings, storage: LocalStorage
) -> None:
    _tenants(records, settings).set_quotas("a", requests_per_second=3)
    answers = [client.simulate_post("/v1/uploads", body=png_bytes(), headers=bearer(KEY_A)) for _ in range(6)]
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 3 and statuses.count(429) == 3, statuses
    refused = answers[-1]
    problem_body(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-limit"] == "3" and refused.headers["ratelimit-remaining"] == "0"
    assert int(refused.headers["ratelimit-reset"]) >= 1
    assert answers[0].headers["ratelimit-limit"] == "3"
    # Nothing stored for a refused request: three uploads, no more.
    assert len(list(storage.root.rglob("uploads/*"))) == 3
    # Another tenant has its own bucket.
    assert client.simulate_get("/v1/exports", headers=bearer(KEY_B)).status_code == 200


def test_a_tenant_past_its_open_jobs_quota_gets_429_and_nothing_is_stored(
    client: Any, records: Records, settings: Settings, storage: LocalStorage, queued: list[tuple[str, str]]
) -> None:
    _tenants(records, settings).set_quotas("a", max_queued=2)
    upload_id = _upload(client, KEY_A)
    assert [_export(client, KEY_A, upload_id).status_code for _ in range(2)] == [202, 202]
    files_before = sorted(storage.root.rglob("*"))
    refused = _export(client, KEY_A, upload_id)
    problem_body(refused, 429, "quota_exceeded")
    assert refused.headers["retry-after"] and refused.headers["ratelimit-limit"] == "2"
    body, ctype = multipart([("file", ("a.jpg", jpeg_bytes())), ("format", "png")])
    refused = client.simulate_post("/v1/exports", body=body, headers={**bearer(KEY_A), "Content-Type": ctype})
    problem_body(refused, 429, "quota_exceeded")
    assert sorted(storage.root.rglob("*")) == files_before
    assert len(client.simulate_get("/v1/exports", headers=bearer(KEY_A)).json["exports"]) == 2
    # Tenant b is not held back by a's quota.
    assert _export(client, KEY_B, _upload(client, KEY_B)).status_code == 202


def test_upload_bytes_per_day_are_counted_and_refused_past_the_quota(
    client: Any, records: Records, settings: Settings, storage: LocalStorage
) -> None:
    data = png_bytes()
    _tenants(records, settings).set_quotas("a", upload_bytes_per_day=len(data) * 2 + 10)
    _upload(client, KEY_A, data)
    _upload(client, KEY_A, data)
    refused = client.simulate_post("/v1/uploads", body=data, headers=bearer(KEY_A))
    problem_body(refused, 429, "quota_exceeded")
    assert 0 < int(refused.headers["retry-after"]) <= 86400 + 1
    assert len(list(storage.root.rglob("uploads/*"))) == 2


# -- fair scheduling ---------------------------------------------------------------------------------------


@pytest.fixture
def workers(settings: Settings, records: Records, storage: LocalStorage, redis_client: Any,
            namespace: str) -> Iterator[tuple[Any, Any]]:  # fmt: skip
    """An app on real Dramatiq workers (one thread: a saturated pool), with fair release wired in."""
    broker: Any = None
    tenants = _tenants(records, settings)

    def release_job(job: Any) -> None:  # the broker is built below, with the middleware that calls this
        releaser(tenants, broker)(job)

    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000,
                          extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values()),
                                                        release_job)])  # fmt: skip
    task = ExportTask(records=records, storage=storage, limits=limits_from(settings), release=release_job)
    declare_export_actor(broker, task, time_limit_s=60, max_retries=1)
    app = create_app(replace(settings, tenant_max_running=1), records=records, storage=storage,
                     enqueue=lambda j, q: enqueue_export(broker, j, q))  # fmt: skip
    worker = Worker(broker, queues=set(QUEUES), worker_threads=1, worker_timeout=20)
    yield falcon.testing.TestClient(app), worker
    worker.stop()
    broker.close()


def test_a_small_tenant_is_not_queued_behind_a_large_ones_batch(
    workers: tuple[Any, Any], records: Records
) -> None:
    client, worker = workers
    photo = jpeg_bytes(1600, 1200)
    a_upload, b_upload = _upload(client, KEY_A, photo), _upload(client, KEY_B, photo)
    a_jobs = [_export(client, KEY_A, a_upload, "png").json["id"] for _ in range(12)]
    b_job = _export(client, KEY_B, b_upload, "png").json["id"]
    worker.start()
    deadline = time.monotonic() + 120
    while not all(records.get_job(j).finished for j in [*a_jobs, b_job]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    finished = sorted([*a_jobs, b_job], key=lambda j: records.get_job(j).finished_at or 0)
    # FIFO would run b's job 13th; with one of a's jobs dispatched at a time, it runs second or third.
    assert finished.index(b_job) <= 2, finished.index(b_job)
    assert all(records.get_job(j).status == "succeeded" for j in [*a_jobs, b_job])
    assert [records.get_job(j).attempts for j in a_jobs] == [1] * 12


def test_the_sweeper_leaves_held_jobs_alone_and_releases_a_stalled_backlog(
    client: Any, records: Records, settings: Settings, redis_client: Any, namespace: str,
    queued: list[tuple[str, str]],
) -> None:  # fmt: skip
    tenants = _tenants(records, settings)
    tenants.set_quotas("a", max_running=1)
    upload_id = _upload(client, KEY_A)
    first, held = (_export(client, KEY_A, upload_id).json["id"] for _ in range(2))
    assert [j for j, _ in queued] == [first]  # the second is held in a's backlog
    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000)
    sweeper = Sweeper(records=records, broker=broker, actor_of_queue=ACTOR_OF_QUEUE, interval_s=0.01, grace_s=0,
                      tenants=tenants)  # fmt: skip
    later = time.time() + 5
    sweeper.sweep(now=later)
    # The first had no message (the test's enqueue kept it): queued again; the held one was left.
    assert records.get_job(held).sweeps == 0 and records.get_job(first).sweeps == 1
    assert tenants.held_job_ids() == {held}
    # The first ends without its release (a worker died in between): the next sweep releases the held one.
    records.finish_job(first)
    redis_client.delete(f"{namespace}:sweeper")
    sweeper.sweep(now=later + 1)
    assert tenants.held_job_ids() == set()
    assert redis_client.hlen(f"{namespace}:dramatiq:exports.msgs") == 2  # first's sweep, then held's release


def test_a_held_job_past_its_retention_passes_its_turn_to_the_next(
    client: Any, records: Records, settings: Settings, redis_client: Any, namespace: str
) -> None:
    tenants = _tenants(records, settings)
    tenants.set_quotas("a", max_running=1)
    upload_id = _upload(client, KEY_A)
    first, expired, third = (_export(client, KEY_A, upload_id).json["id"] for _ in range(3))
    expire_job_record(redis_client, namespace, expired)
    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000)
    releaser(tenants, broker)(records.finish_job(first))
    queued = [m.decode() for m in redis_client.lrange(f"{namespace}:dramatiq:exports", 0, -1)]
    messages = [json.loads(redis_client.hget(f"{namespace}:dramatiq:exports.msgs", m)) for m in queued]
    assert [m["args"] for m in messages] == [[third]]
    assert tenants.counts("a") == {"open": 2, "dispatched": 1, "held": 0}


def test_a_job_released_while_the_sweeper_looks_is_not_queued_twice(
    client: Any, records: Records, settings: Settings, redis_client: Any, namespace: str
) -> None:
    tenants = _tenants(records, settings)
    tenants.set_quotas("a", max_running=1)
    upload_id = _upload(client, KEY_A)
    first, held = (_export(client, KEY_A, upload_id).json["id"] for _ in range(2))
    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000)
    enqueue_export(broker, first)  # the test app's enqueue kept the first's message: queue it for real

    class Racing(Sweeper):
        def _jobs_with_messages(self) -> set[str]:
            seen = super()._jobs_with_messages()
            # Right after the scan, the first ends and the held one is released with its message.
            releaser(tenants, broker)(records.finish_job(first))
            return seen

    sweeper = Racing(records=records, broker=broker, actor_of_queue=ACTOR_OF_QUEUE, interval_s=0.01, grace_s=0,
                     tenants=tenants)  # fmt: skip
    sweeper.sweep(now=time.time() + 5)
    assert records.get_job(held).sweeps == 0  # seen as held: not judged lost, not queued a second time
    assert redis_client.llen(f"{namespace}:dramatiq:exports") == 2  # first's message, held's release


def test_revoking_a_tenants_keys_leaves_no_file_behind_cleanup(
    client: Any, records: Records, storage: LocalStorage
) -> None:
    store = KeyStore(records.redis, namespace=records.namespace)
    record, key = store.create("gone", ("submit", "read"))
    upload_id = _upload(client, key)
    assert _export(client, key, upload_id).status_code == 202
    store.revoke(record.id)
    assert storage.exists(f"tenants/gone/uploads/{upload_id}")  # under its tenant
    # The job is open: its upload is kept. Once past the retention with the job ended, it goes.
    (job,) = [j for j in records.list_jobs("gone")[0]]
    records.finish_job(job.id)
    report = cleanup(storage, records, retention_s=3600, now=time.time() + 3601)
    assert report.deleted >= 1 and not storage.exists(f"tenants/gone/uploads/{upload_id}")
