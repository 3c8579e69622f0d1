"""Webhooks with real parts: a real `exportd worker` pool (a conversion process and a webhook
process), real Redis, a real HTTP receiver on 127.0.0.1 (allowed by EXPORTD_OUTBOUND_ALLOW_NETS),
and every delivery verified with the `standardwebhooks` package, an implementation nobody here wrote."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import falcon.testing
import psutil
import pytest
import redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from actors.broker import build_broker
from actors.capabilities import live_pools
from actors.export import enqueue_export
from actors.webhooks import GROUP, Dispatcher, sign
from service.app import create_app
from service.cli import start_local_redis
from service.settings import Settings, parse_signing_keys
from storage.jobs import CANCELED, Job, Records, new_id
from storage.local import LocalStorage
from storage.sealing import Sealer, Unsealable
from storage.webhooks import Webhooks, new_secret, webhook_id
from tests.conftest import AUTH, TEST_API_KEYS, TEST_KEYS
from tests.helpers import free_port, jpeg_bytes, multipart
from tests.receiver import Receiver, receiver

ROOT = Path(__file__).resolve().parent.parent.parent
TENANT = "tests"  # the tenant of TEST_API_KEYS


@dataclass
class Pool:
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    client: Any  # falcon TestClient of an API over the same Redis and storage
    records: Records
    webhooks: Webhooks
    log: Path

    def submit(self, hook: Receiver | str | None, path: str = "/hook", **fields: Any) -> dict[str, Any]:
        """A photo export with webhook_url (multipart), and any other fields given as JSON parts."""
        parts: list[tuple[str, str | tuple[str, bytes]]] = [("file", ("p.jpg", jpeg_bytes(64, 48))),
                                                            ("format", "png")]  # fmt: skip
        if hook is not None:
            parts.append(("webhook_url", hook if isinstance(hook, str) else hook.url + path))
        parts += [(k, v) for k, v in fields.items()]
        body, ctype = multipart(parts)
        result = self.client.simulate_post("/v1/exports", body=body, headers={**AUTH, "Content-Type": ctype})
        assert result.status_code == 202, result.text
        return dict(result.json)

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.client.simulate_get(f"/v1/exports/{job_id}", headers=AUTH).json)

    def deliveries(self, job_id: str, count: int = 1, timeout_s: float = 20) -> list[dict[str, Any]]:
        """The job's delivery log, once it holds `count` attempts."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.client.simulate_get(f"/v1/exports/{job_id}/deliveries", headers=AUTH)
            assert result.status_code == 200, result.text
            got: list[dict[str, Any]] = result.json["deliveries"]
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} attempts logged, not {count}: {got}\n{self.tail()}")
            time.sleep(0.05)

    def secret(self) -> str:
        return self.webhooks.secret(TENANT)

    def tail(self) -> str:
        return self.log.read_text()[-4000:]


def start_pool(redis_url: str, data: Path, **overrides: str) -> Pool:
    namespace = f"wh-{free_port()}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "EXPORTD_ENV": "development",  # http:// receivers (production allows https only)
        "EXPORTD_SIGNING_KEYS": TEST_KEYS,
        "EXPORTD_API_KEYS": TEST_API_KEYS,
        "EXPORTD_REDIS_URL": redis_url,
        "EXPORTD_REDIS_NAMESPACE": namespace,
        "EXPORTD_DATA_DIR": str(data),
        "EXPORTD_WORKER_QUEUES": "exports,webhooks",
        "EXPORTD_WORKER_PROCESSES": "1",
        "EXPORTD_WORKER_THREADS": "2",
        "EXPORTD_WEBHOOK_PROCESSES": "1",
        "EXPORTD_WEBHOOK_THREADS": "4",
        "EXPORTD_WEBHOOK_RETRY_SCHEDULE_S": "1,1,1",
        "EXPORTD_WEBHOOK_TIMEOUT_S": "2",
        "EXPORTD_OUTBOUND_ALLOW_NETS": "127.0.0.1/32",
        "EXPORTD_WORKER_HEARTBEAT_TIMEOUT_MS": "2000",
        "EXPORTD_SWEEP_INTERVAL_S": "1",
        "EXPORTD_WORKER_SHUTDOWN_TIMEOUT_S": "5",
        "EXPORTD_WORKER_METRICS_PORT": str(free_port()),
        "EXPORTD_WORKER_ALIVE_FILE": str(data / "worker.alive"),
        **overrides,
    }
    log = data / "worker.log"
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env, cwd=ROOT,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    settings = Settings.from_env(env)
    client = redis.Redis.from_url(redis_url)
    records = Records(client, namespace=namespace, retention_s=settings.retention_s)
    broker = build_broker(client, namespace=namespace, heartbeat_timeout_ms=2000)
    app = create_app(settings, records=records, storage=LocalStorage(data / "storage"),
                     enqueue=lambda job_id, queue: enqueue_export(broker, job_id, queue))  # fmt: skip
    pool = Pool(env, proc, falcon.testing.TestClient(app), records, Webhooks(records, Sealer(settings.signing_keys)),
                log)  # fmt: skip
    deadline = time.monotonic() + 60
    while not live_pools(client, namespace) or len(psutil.Process(proc.pid).children()) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the worker pool did not start:\n" + pool.tail())
        time.sleep(0.1)
    return pool


def stop_pool(pool: Pool) -> None:
    pool.proc.send_signal(signal.SIGTERM)
    try:
        pool.proc.wait(30)
    except subprocess.TimeoutExpired:
        pool.proc.kill()
        pool.proc.wait()


@pytest.fixture(scope="module")
def pool(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    started = start_pool(redis_url, tmp_path_factory.mktemp("webhooks"))
    yield started
    stop_pool(started)


@pytest.fixture
def hook() -> Iterator[Receiver]:
    yield from receiver()


def verified(pool: Pool, request: Any, secret: str | None = None) -> dict[str, Any]:
    """The delivery's payload, verified by standardwebhooks with the tenant's secret."""
    payload: dict[str, Any] = Webhook(secret or pool.secret()).verify(request.body, request.headers)
    return payload


def _without_links(job: dict[str, Any]) -> dict[str, Any]:
    return {
        **job,
        "outputs": [{k: v for k, v in o.items() if k not in ("url", "expires_at")} for o in job["outputs"]],
    }


# -- the signature, against the reference implementation -------------------------------------------------


def test_signature_is_the_standard_webhooks_one() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    body = json.dumps({"type": "export.succeeded", "data": {"id": "é"}}, ensure_ascii=False).encode()
    now = str(int(time.time()))
    headers = {
        "webhook-id": "msg_x",
        "webhook-timestamp": now,
        "webhook-signature": sign(secret, "msg_x", now, body),
    }
    assert Webhook(secret).verify(body, headers)["data"]["id"] == "é"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


# -- deliveries through a real pool ---------------------------------------------------------------------


def test_a_finished_job_is_posted_signed_with_the_job_as_get_shows_it(pool: Pool, hook: Receiver) -> None:
    job = pool.submit(hook)
    (request,) = hook.wait_for(1)
    payload = verified(pool, request)
    assert request.path == "/hook"
    assert payload["type"] == "export.succeeded"
    assert payload["data"]["id"] == job["id"]
    shown = pool.job(job["id"])
    assert shown["status"] == "succeeded"
    assert _without_links(payload["data"]) == _without_links(shown)
    assert payload["data"]["outputs"][0]["url"].startswith("http")
    assert payload["timestamp"] == shown["finished_at"]
    ended = datetime.fromisoformat(shown["finished_at"].replace("Z", "+00:00")).timestamp()
    print(
        f"posted {request.at - ended:.3f} s after the job ended"
    )  # the dispatcher's latency, for the report
    assert request.at - ended < 3
    assert request.headers["webhook-id"] == webhook_id(job["id"], "export.succeeded")
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 30
    assert request.headers["content-type"] == "application/json"
    (attempt,) = pool.deliveries(job["id"])
    assert attempt["webhook_id"] == request.headers["webhook-id"]
    assert attempt["event"] == "export.succeeded"
    assert attempt["attempt"] == 1 and attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["next_retry_at"] is None and attempt["duration_ms"] >= 0 and attempt["at"].endswith("Z")
    time.sleep(1.5)  # and it is sent once
    assert len(hook.requests) == 1


def test_a_failed_job_is_posted_and_events_not_asked_for_are_not(pool: Pool, hook: Receiver) -> None:
    broken = jpeg_bytes(640, 480)[:300]  # a JPEG's head: sniffed as one, fails to decode in the worker
    body, ctype = multipart(
        [("file", ("cut.jpg", broken)), ("format", "png"), ("webhook_url", hook.url + "/failed")]
    )
    result = pool.client.simulate_post("/v1/exports", body=body, headers={**AUTH, "Content-Type": ctype})
    assert result.status_code == 202, result.text
    only_failed = pool.submit(hook, "/only-failed", webhook_events="export.failed")
    (request,) = hook.wait_for(1, path="/failed")
    payload = verified(pool, request)
    assert payload["type"] == "export.failed"
    assert payload["data"]["status"] == "failed" and payload["data"]["error"]["code"]
    assert request.headers["webhook-id"] == webhook_id(result.json["id"], "export.failed")
    deadline = time.monotonic() + 10
    while pool.job(only_failed["id"])["status"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.job(only_failed["id"])["status"] == "succeeded"
    time.sleep(2)  # the dispatcher has read its event by now
    assert not [r for r in hook.requests if r.path == "/only-failed"]
    assert pool.deliveries(only_failed["id"], count=0) == []


def test_a_500_is_retried_on_the_schedule_with_the_same_webhook_id(pool: Pool, hook: Receiver) -> None:
    hook.script = [(500, 0.0), (503, 0.0)]
    job = pool.submit(hook)
    requests = hook.wait_for(3)
    ids = {r.headers["webhook-id"] for r in requests}
    assert ids == {webhook_id(job["id"], "export.succeeded")}
    for request in requests:
        verified(pool, request)
    # Schedule 1,1,1 with ±20 % jitter: about a second between attempts.
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert all(0.7 < gap < 5 for gap in gaps), gaps
    log = pool.deliveries(job["id"], count=3)
    assert [(a["attempt"], a["status_code"]) for a in log] == [(1, 500), (2, 503), (3, 200)]
    assert log[0]["error"].startswith("unexpected_status") and log[0]["next_retry_at"] is not None
    assert log[2]["error"] is None and log[2]["next_retry_at"] is None


def _scrape(pool: Pool) -> dict[str, float]:
    url = f"http://127.0.0.1:{pool.env['EXPORTD_WORKER_METRICS_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("exportd_webhook_"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_deliveries_are_counted_by_outcome_with_their_duration(pool: Pool, hook: Receiver) -> None:
    before = _scrape(pool)
    hook.script = [(500, 0.0)]
    job = pool.submit(hook)
    pool.deliveries(job["id"], count=2)
    after = _scrape(pool)

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert moved('exportd_webhook_deliveries_total{outcome="retrying"}') == 1
    assert moved('exportd_webhook_deliveries_total{outcome="delivered"}') == 1
    assert moved("exportd_webhook_delivery_duration_seconds_count") == 2


def test_the_schedule_ends_and_the_last_attempt_says_so(pool: Pool, hook: Receiver) -> None:
    hook.default = (500, 0.0)
    job = pool.submit(hook)
    hook.wait_for(4)  # the first attempt and three retries
    log = pool.deliveries(job["id"], count=4)
    assert [a["attempt"] for a in log] == [1, 2, 3, 4]
    assert log[-1]["next_retry_at"] is None and log[-1]["status_code"] == 500
    time.sleep(2)
    assert len(hook.requests) == 4


def test_410_gone_stops_deliveries_to_that_endpoint(pool: Pool, hook: Receiver) -> None:
    hook.script = [(410, 0.0)]
    first = pool.submit(hook, "/gone")
    hook.wait_for(1)
    (attempt,) = pool.deliveries(first["id"])
    assert attempt["status_code"] == 410 and attempt["error"].startswith("endpoint_gone")
    assert attempt["next_retry_at"] is None
    second = pool.submit(hook, "/gone")
    (skipped,) = pool.deliveries(second["id"])
    assert skipped["status_code"] is None and skipped["error"].startswith("endpoint_gone")
    other = pool.submit(hook, "/elsewhere")  # another endpoint is not affected
    hook.wait_for(1, path="/elsewhere")
    assert pool.deliveries(other["id"])[0]["status_code"] == 200
    assert len([r for r in hook.requests if r.path == "/gone"]) == 1


def test_a_receiver_slower_than_the_timeout_is_retried(pool: Pool, hook: Receiver) -> None:
    hook.script = [(200, 3.5)]  # EXPORTD_WEBHOOK_TIMEOUT_S=2
    job = pool.submit(hook)
    log = pool.deliveries(job["id"], count=2, timeout_s=30)
    assert log[0]["status_code"] is None and log[0]["error"].startswith("timeout")
    assert 1500 <= log[0]["duration_ms"] < 3400
    assert log[1]["status_code"] == 200
    first, second = hook.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


def test_slow_receivers_never_hold_a_conversion(pool: Pool, hook: Receiver) -> None:
    hook.default = (200, 1.9)  # just under EXPORTD_WEBHOOK_TIMEOUT_S: every webhook thread busy
    for _ in range(4):  # EXPORTD_WEBHOOK_THREADS=4
        pool.submit(hook)
    hook.wait_for(4)
    started = time.monotonic()
    jobs = [pool.submit(None)["id"] for _ in range(2)]
    while {pool.job(j)["status"] for j in jobs} != {"succeeded"}:
        assert time.monotonic() - started < 1.5, "conversions waited for the webhook deliveries"
        time.sleep(0.02)


def test_rotation_sends_both_signatures_and_each_verifies(pool: Pool, hook: Receiver) -> None:
    cli = [sys.executable, "-m", "service.cli", "webhooks"]
    shown = subprocess.run([*cli, "secret", "--tenant", TENANT], env=pool.env, cwd=ROOT, capture_output=True,
                           text=True, check=True)  # fmt: skip
    old = shown.stdout.strip().splitlines()[-1]
    assert old == pool.secret() and old.startswith("whsec_")
    rotated = subprocess.run([*cli, "rotate-secret", "--tenant", TENANT], env=pool.env, cwd=ROOT,
                             capture_output=True, text=True, check=True)  # fmt: skip
    new = rotated.stdout.strip().splitlines()[-1]
    assert new.startswith("whsec_") and new != old
    job = pool.submit(hook)
    (request,) = hook.wait_for(1)
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert verified(pool, request, old)["data"]["id"] == job["id"]
    assert verified(pool, request, new)["data"]["id"] == job["id"]
    # Each secret verifies its own signature: with only one of them, the other is not accepted.
    for secret, signature in zip((new, old), signatures, strict=True):
        alone = {**request.headers, "webhook-signature": signature}
        Webhook(secret).verify(request.body, alone)
        with pytest.raises(WebhookVerificationError):
            Webhook(old if secret == new else new).verify(request.body, alone)
    # Once the window has passed, only the new secret signs.
    pool.records.redis.hset(pool.records.tenant_key(TENANT, "webhook:secrets"), "previous_until", "0")
    pool.submit(hook)
    _, later = hook.wait_for(2)
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    verified(pool, later, new)
    with pytest.raises(WebhookVerificationError):
        verified(pool, later, old)


def test_resend_posts_the_event_again_now(pool: Pool, hook: Receiver) -> None:
    job = pool.submit(hook)
    (first,) = hook.wait_for(1)
    result = pool.client.simulate_post(f"/v1/exports/{job['id']}/deliveries", headers=AUTH)
    assert result.status_code == 202, result.text
    assert result.json == {"webhook_id": first.headers["webhook-id"], "event": "export.succeeded"}
    _, again = hook.wait_for(2)
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert verified(pool, again)["data"]["id"] == job["id"]
    log = pool.deliveries(job["id"], count=2)
    assert [(a["attempt"], a["status_code"]) for a in log] == [(1, 200), (2, 200)]


def test_resend_refuses_an_unfinished_job_and_one_without_endpoint(pool: Pool) -> None:
    job = pool.submit(None)
    deadline = time.monotonic() + 10
    while pool.job(job["id"])["status"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.05)
    result = pool.client.simulate_post(f"/v1/exports/{job['id']}/deliveries", headers=AUTH)
    assert result.status_code == 409 and result.json["code"] == "no_webhook_endpoint"


def test_the_tenant_default_endpoint_is_used_by_jobs_without_one(pool: Pool, hook: Receiver) -> None:
    cli = [sys.executable, "-m", "service.cli", "webhooks"]
    subprocess.run([*cli, "set-endpoint", hook.url + "/default", "--tenant", TENANT], env=pool.env, cwd=ROOT,
                   check=True, capture_output=True)  # fmt: skip
    try:
        job = pool.submit(None)
        (request,) = hook.wait_for(1, path="/default")
        assert verified(pool, request)["data"]["id"] == job["id"]
    finally:
        pool.webhooks.set_endpoint(TENANT, None)


def test_a_webhook_process_killed_mid_delivery_redelivers_with_the_same_id(
    pool: Pool, hook: Receiver
) -> None:
    hook.script = [(200, 30.0)]  # holds the first request while its sender is killed
    job = pool.submit(hook)
    (held,) = hook.wait_for(1)
    port = hook.server.server_address[1]
    senders = [c for c in psutil.Process(pool.proc.pid).children()
               if any(conn.raddr and conn.raddr.port == port for conn in c.net_connections("tcp"))]  # fmt: skip
    assert len(senders) == 1
    senders[0].send_signal(signal.SIGKILL)
    killed_at = time.time()
    _, again = hook.wait_for(2, timeout_s=45)
    # The heartbeat timeout (2 s here) and a sweep (every 1 s) return its message; printed for the report.
    print(f"redelivered {again.at - killed_at:.1f} s after the kill")
    assert again.at - killed_at < 10
    assert (
        again.headers["webhook-id"] == held.headers["webhook-id"] == webhook_id(job["id"], "export.succeeded")
    )
    assert verified(pool, again)["data"]["id"] == job["id"]
    log = pool.deliveries(job["id"])
    assert log[-1]["status_code"] == 200
    assert pool.proc.poll() is None  # the pool replaced its process


def test_a_delivery_survives_a_redis_restart(
    tmp_path_factory: pytest.TempPathFactory, hook: Receiver
) -> None:
    redis_dir = Path(tmp_path_factory.mktemp("whredis", numbered=True))
    redis_proc, url = start_local_redis(redis_dir)
    pool = start_pool(url, tmp_path_factory.mktemp("webhooks-outage"), EXPORTD_WEBHOOK_RETRY_SCHEDULE_S="4,4")
    try:
        hook.script = [(500, 0.5), (500, 0.0)]
        job = pool.submit(hook)
        # 1. Redis dies while the first attempt is being answered: the attempt is recorded, and its
        #    retry queued, once Redis is back.
        (first,) = hook.wait_for(1)
        redis_proc.kill()
        redis_proc.wait(10)
        time.sleep(2)
        redis_proc, _ = start_local_redis(redis_dir)  # the same AOF and socket
        hook.wait_for(2, timeout_s=60)
        # 2. Redis dies while the next retry waits for its time (a delayed message, in Redis only).
        log = pool.deliveries(job["id"], count=2)
        assert log[1]["next_retry_at"] is not None
        redis_proc.kill()
        redis_proc.wait(10)
        time.sleep(1)
        redis_proc, _ = start_local_redis(redis_dir)
        *_, third = hook.wait_for(3, timeout_s=60)
        assert (
            first.headers["webhook-id"]
            == third.headers["webhook-id"]
            == webhook_id(job["id"], "export.succeeded")
        )
        assert verified(pool, third)["data"]["id"] == job["id"]
        log = pool.deliveries(job["id"], count=3)
        assert [(a["attempt"], a["status_code"]) for a in log] == [(1, 500), (2, 500), (3, 200)]
        # And an event of a job that ends after the restart is delivered too.
        later = pool.submit(hook, "/after")
        (after,) = hook.wait_for(1, path="/after", timeout_s=30)
        assert verified(pool, after)["data"]["id"] == later["id"]
    finally:
        stop_pool(pool)
        redis_proc.terminate()
        redis_proc.wait(10)


# -- the dispatcher: no event lost between the stream and the queue ----------------------------------------


def _ended_job(records: Records, url: str = "", events: tuple[str, ...] = ()) -> Job:
    job = Job(id=new_id(), format="png", inputs=(), options={}, created_at=time.time(), tenant="t",
              webhook_url=url, webhook_events=events)  # fmt: skip
    records.create_job(job)
    records.finish_job(job.id)
    return job


def test_an_event_left_pending_by_a_dead_process_is_claimed_and_queued(records: Records) -> None:
    webhooks = Webhooks(records, Sealer(parse_signing_keys(TEST_KEYS)))
    queued: list[tuple[Any, ...]] = []
    first = _ended_job(records, "http://127.0.0.1:9/a")  # ended before any dispatcher: read from the start
    alive = Dispatcher(records=records, webhooks=webhooks, enqueue=lambda *a: queued.append(a), consumer="alive",
                       claim_idle_ms=300, block_ms=50)  # fmt: skip
    alive.ensure_group()
    # A process reads the next events and dies before queuing them: they stay pending, unacknowledged.
    second = _ended_job(records, "http://127.0.0.1:9/b")
    ignored = _ended_job(records)  # no endpoint: acknowledged, nothing queued
    unwanted = _ended_job(records, "http://127.0.0.1:9/c", ("export.failed",))
    read: Any = records.redis.xreadgroup(GROUP, "dead", {records.events_key: ">"}, count=10)
    assert len(read[0][1]) == 4
    assert alive.step() == 0  # too recent to claim, and nothing new
    time.sleep(0.4)
    assert alive.step() == 4
    assert queued == [(first.id, "export.succeeded", "http://127.0.0.1:9/a", 0, False),
                      (second.id, "export.succeeded", "http://127.0.0.1:9/b", 0, False)]  # fmt: skip
    assert ignored.id not in str(queued) and unwanted.id not in str(queued)
    assert records.redis.xpending(records.events_key, GROUP)["pending"] == 0
    # The dead consumer, now holding nothing, is pruned; a stopping one leaves.
    alive.prune(idle_ms=0)
    alive.leave()
    assert records.redis.xinfo_consumers(records.events_key, GROUP) == []


def test_a_canceled_job_dispatches_export_canceled(records: Records) -> None:
    webhooks = Webhooks(records, Sealer(parse_signing_keys(TEST_KEYS)))
    queued: list[tuple[Any, ...]] = []
    dispatcher = Dispatcher(records=records, webhooks=webhooks, enqueue=lambda *a: queued.append(a),
                            consumer="c", block_ms=50)  # fmt: skip
    job = Job(id=new_id(), format="png", inputs=(), options={}, created_at=time.time(), tenant="t",
              webhook_url="http://127.0.0.1:9/x")  # fmt: skip
    records.create_job(job)
    records.update_job(job.id, lambda j: dataclasses.replace(j, status=CANCELED, finished_at=time.time()))
    assert dispatcher.step() == 1
    assert queued == [(job.id, "export.canceled", "http://127.0.0.1:9/x", 0, False)]
    assert webhook_id(job.id, "export.canceled") == f"msg_{job.id}_canceled"


def test_a_secret_sealed_under_a_key_gone_from_the_settings_can_be_replaced(records: Records) -> None:
    before = Webhooks(records, Sealer(parse_signing_keys("old:" + "o" * 40)))
    before.secret("t")
    after = Webhooks(records, Sealer(parse_signing_keys(TEST_KEYS)))
    with pytest.raises(Unsealable):
        after.signing_secrets("t")
    new = after.rotate_secret("t", window_s=3600)
    assert after.signing_secrets("t") == [new]
