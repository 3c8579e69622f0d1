from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest
import redis

from storage.jobs import (
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    JobError,
    Output,
    RecordNotFound,
    Records,
    RecordsUnavailable,  # fmt: skip
    Upload,
    new_id,
)


def _job() -> Job:
    upload = Upload(id=new_id(), filename="a.jpg", content_type="image/jpeg", size=10, sha256="0" * 64,
                    created_at=time.time())  # fmt: skip
    return Job(
        id=new_id(), format="pdf", inputs=(upload,), options={"page_size": "A4"}, created_at=time.time()
    )


def test_job_round_trips_through_redis_with_its_retention(
    records: Records, redis_client: redis.Redis
) -> None:
    job = _job()
    records.create_job(job)
    assert records.get_job(job.id) == job
    ttl = redis_client.ttl(records.job_key(job.tenant, job.id))
    assert 3500 < ttl <= 3600
    assert 3500 < redis_client.ttl(records.job_tenant_key(job.id)) <= 3600  # the index expires with it


def test_lifecycle_queued_running_succeeded(records: Records) -> None:
    job = _job()
    records.create_job(job)
    assert records.get_job(job.id).status == QUEUED
    started = records.start_job(job.id)
    assert (started.status, started.attempts) == (RUNNING, 1)
    out = Output(
        name="a.pdf", key=f"outputs/{job.id}/a.pdf", content_type="application/pdf", size=5, sha256="1" * 64
    )
    done = records.finish_job(job.id, outputs=(out,))
    assert done.status == SUCCEEDED and done.outputs == (out,) and done.finished_at is not None


def test_finished_job_never_changes_again(records: Records) -> None:
    job = _job()
    records.create_job(job)
    records.start_job(job.id)
    failed = records.finish_job(job.id, error=JobError("corrupt_input", "bad"))
    # A duplicate delivery: starting and finishing again leave the record as it was.
    assert records.start_job(job.id) == failed
    assert records.finish_job(job.id, outputs=()) == failed
    assert records.requeue_job(job.id) == failed
    assert records.get_job(job.id).status == FAILED


def test_concurrent_starts_count_every_attempt(records: Records) -> None:
    job = _job()
    records.create_job(job)
    threads = [threading.Thread(target=records.start_job, args=(job.id,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert records.get_job(job.id).attempts == 8


def test_missing_records(records: Records) -> None:
    with pytest.raises(RecordNotFound):
        records.get_job("nope")
    with pytest.raises(RecordNotFound):
        records.start_job("nope")
    with pytest.raises(RecordNotFound):
        records.get_uploads(["nope"], tenant="")


def test_unreachable_redis_is_reported_as_transient() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with pytest.raises(RecordsUnavailable):
        Records(client, namespace="x", retention_s=10).get_job("a")


def test_a_write_in_between_is_not_lost_the_change_is_computed_again(
    records: Records, redis_client: redis.Redis
) -> None:
    job = _job()
    records.create_job(job)
    seen: list[int] = []

    def change(current: Job) -> Job:
        seen.append(current.attempts)
        if len(seen) == 1:  # another worker starts the job between this read and this write
            records.start_job(job.id)
        return dataclasses.replace(current, attempts=current.attempts + 10)

    stored = records.update_job(job.id, change)
    assert seen == [0, 1]  # the first write was refused; the change saw the other worker's
    assert stored.attempts == 11 and records.get_job(job.id) == stored
    assert 3500 < redis_client.ttl(records.job_key(job.tenant, job.id)) <= 3600  # expiry kept


def test_a_record_that_expires_in_between_is_not_written_again(
    records: Records, redis_client: redis.Redis
) -> None:
    job = _job()
    records.create_job(job)

    def change(current: Job) -> Job:
        redis_client.delete(records.job_key(job.tenant, job.id))
        return dataclasses.replace(current, status=RUNNING)

    with pytest.raises(RecordNotFound):
        records.update_job(job.id, change)
    assert redis_client.exists(records.job_key(job.tenant, job.id), records.legacy_job_key(job.id)) == 0


def test_a_job_that_finishes_is_announced_once_on_the_namespace_channel(
    records: Records, redis_client: redis.Redis
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(records.finished_channel)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    job = _job()
    records.create_job(job)
    records.start_job(job.id)
    records.requeue_job(job.id)
    records.start_job(job.id)
    records.finish_job(job.id, error=JobError("corrupt_input", "broken"))
    records.finish_job(job.id)  # a late duplicate: changes nothing, announces nothing
    messages = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        messages.append(message)
    pubsub.close()
    assert [(m["type"], m["data"]) for m in messages] == [("message", job.id.encode())]


def test_finishing_from_the_started_record_skips_the_read_and_still_sees_later_writes(
    records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job()
    records.create_job(job)
    started = records.start_job(job.id)
    reads: list[object] = []
    real_get = records.redis.get
    monkeypatch.setattr(records.redis, "get", lambda key: reads.append(key) or real_get(key))
    finished = records.finish_job(job.id, seen=started)
    assert finished.status == "succeeded" and reads == []
    assert records.get_job(job.id).status == "succeeded"

    # A record changed since (here a second delivery started it again) is read and changed anew.
    other = _job()
    records.create_job(other)
    first = records.start_job(other.id)
    records.start_job(other.id)
    reads.clear()
    finished = records.finish_job(other.id, seen=first)
    assert len(reads) == 1
    assert finished.status == "succeeded" and finished.attempts == 2
    assert records.get_job(other.id) == finished


def test_a_record_is_written_as_dataclasses_asdict_would_write_it() -> None:
    import json

    out = Output(name="a.jpg", key="outputs/x/a.jpg", content_type="image/jpeg", size=5, sha256="1" * 64,
                 details={"metadata": {"removed": ["GPS"], "kept": []}, "size": [3, 2]})  # fmt: skip
    job = dataclasses.replace(
        _job(), status=SUCCEEDED, attempts=2, outputs=(out,), error=JobError("corrupt_input", "bad"),
        options={"width": 1600, "keep_metadata": ["copyright"], "background": None},
    )  # fmt: skip
    assert job.to_json() == json.dumps(dataclasses.asdict(job), separators=(",", ":"))
    assert Job.from_json(job.to_json()) == job


def test_ping_fails_when_new_connections_fail_though_pooled_ones_work(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """What /readyz relies on: a second `exportd run` once deleted the Redis socket, and pooled
    connections kept answering while every new one failed."""
    from pathlib import Path

    from service.cli import start_local_redis

    proc, url = start_local_redis(Path(tmp_path_factory.mktemp("ping", numbered=True)))
    try:
        client = redis.Redis.from_url(url)
        records = Records(client, namespace="ping", retention_s=60)
        records.ping()
        client.set("pooled", "1")  # a connection now sits in the pool
        Path(url.removeprefix("unix://")).unlink()  # the socket file is gone; the server runs on
        assert client.get("pooled") == b"1"  # the pooled connection still works
        with pytest.raises(RecordsUnavailable):
            records.ping()
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)


def _tenants_job(tenant: str) -> Job:
    return dataclasses.replace(_job(), tenant=tenant)


def _as_stored_before(records: Records, job: Job) -> None:
    """Move a job's record to the layout of before record keys carried the tenant: `{ns}:job:{id}`,
    no index entry (its expiry goes with it)."""
    records.redis.rename(records.job_key(job.tenant, job.id), records.legacy_job_key(job.id))
    records.redis.delete(records.job_tenant_key(job.id))


def test_record_keys_carry_the_tenant_and_a_read_for_another_tenant_finds_no_key(
    records: Records, redis_client: redis.Redis
) -> None:
    job = _tenants_job("a")
    records.create_job(job)
    upload = dataclasses.replace(job.inputs[0], tenant="a")
    records.add_upload(upload)
    ns = records.namespace
    assert redis_client.get(f"{ns}:tenant:a:job:{job.id}") == job.to_json().encode()
    assert redis_client.exists(f"{ns}:tenant:a:upload:{upload.id}") == 1
    assert redis_client.get(f"{ns}:job-tenant:{job.id}") == b"a"
    assert (
        redis_client.exists(f"{ns}:job:{job.id}", f"{ns}:upload:{upload.id}") == 0
    )  # nothing in the old layout
    # Even if the records claimed tenant b (a missing check on the field would then let b read them),
    # b's read builds b's key, which does not exist.
    for key in (f"{ns}:tenant:a:job:{job.id}", f"{ns}:tenant:a:upload:{upload.id}"):
        record = json.loads(redis_client.get(key) or b"")
        record["tenant"] = "b"
        redis_client.set(key, json.dumps(record), keepttl=True)
    with pytest.raises(RecordNotFound):
        records.get_job(job.id, tenant="b")
    with pytest.raises(RecordNotFound):
        records.get_uploads([upload.id], tenant="b")
    assert records.list_jobs("b") == ([], None)
    # The worker side, knowing the id alone, finds it through the index.
    assert records.get_job(job.id).id == job.id


def test_a_second_job_under_a_known_id_is_refused_in_either_layout(records: Records) -> None:
    job = _tenants_job("a")
    records.create_job(job)
    with pytest.raises(ValueError, match="exists already"):
        records.create_job(dataclasses.replace(job, tenant="b"))  # another tenant, the same id
    old = _tenants_job("a")
    records.create_job(old)
    _as_stored_before(records, old)
    with pytest.raises(ValueError, match="exists already"):
        records.create_job(old)


def test_records_stored_before_keys_carried_the_tenant_still_load_start_and_finish(
    records: Records, redis_client: redis.Redis
) -> None:
    job = _tenants_job("a")
    records.create_job(job)
    _as_stored_before(records, job)
    legacy = records.legacy_job_key(job.id)
    assert records.get_job(job.id) == job  # by id alone (the worker side)
    assert records.get_job(job.id, tenant="a") == job  # by its tenant (a route)
    with pytest.raises(RecordNotFound):
        records.get_job(job.id, tenant="b")  # its tenant field is checked, as before
    assert records.list_jobs("a")[0] == [job]
    started = records.start_job(job.id)
    assert (started.status, started.attempts) == (RUNNING, 1)
    assert not records.cancel_requested(job.id)
    records.note_crash(job.id)  # a change without `seen`: read and written where it is
    finished = records.finish_job(job.id, seen=started)  # `seen` is stale: read again, then written
    assert finished.status == SUCCEEDED and finished.crashes == 1
    assert records.get_job(job.id, tenant="a") == finished
    assert [(e.type, e.job_id) for e in records.events()] == [("export.succeeded", job.id)]
    assert records.open_job_ids(created_before=time.time() + 1) == []
    # Still in the old place, with its expiry; nothing was written under the new layout.
    assert 3500 < redis_client.ttl(legacy) <= 3600
    assert redis_client.exists(records.job_key("a", job.id), records.job_tenant_key(job.id)) == 0
    # An old upload record: read for its own tenant only.
    upload = dataclasses.replace(job.inputs[0], tenant="a")
    redis_client.set(records.legacy_upload_key(upload.id), json.dumps(dataclasses.asdict(upload)))
    assert records.get_uploads([upload.id], tenant="a") == [upload]
    with pytest.raises(RecordNotFound):
        records.get_uploads([upload.id], tenant="b")
    records.delete_job(job.id, tenant="a")
    assert redis_client.exists(legacy) == 0
