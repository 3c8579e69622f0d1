from __future__ import annotations

import io
import os
import time

from storage.jobs import Job, Records, Upload
from storage.local import LocalStorage
from storage.retention import STALE_TEMP_S, cleanup

DAY = 86400


def _age(storage: LocalStorage, key: str, seconds: float) -> None:
    path = storage.root / key
    old = time.time() - seconds
    os.utime(path, (old, old))


def _put(storage: LocalStorage, key: str, age_s: float) -> None:
    storage.put_stream(key, io.BytesIO(b"data"))
    _age(storage, key, age_s)


def _upload(key: str) -> Upload:
    return Upload(id=key.split("/")[1], filename="a.jpg", content_type="image/jpeg", size=4, sha256="0" * 64,
                  created_at=time.time())  # fmt: skip


def test_cleanup_deletes_only_what_is_past_retention_and_unused(
    storage: LocalStorage, records: Records
) -> None:
    _put(storage, "uploads/old", 8 * DAY)
    _put(storage, "uploads/young", 1 * DAY)
    _put(storage, "uploads/old-but-queued", 8 * DAY)
    _put(storage, "outputs/donejob/a.pdf", 8 * DAY)
    _put(storage, "outputs/livejob/a.pdf", 8 * DAY)
    _put(storage, "outputs/newjob/a.pdf", 60)
    # A job still queued (e.g. retrying) that reads an old upload and is rewriting its outputs.
    records.create_job(Job(id="livejob", format="pdf", inputs=(_upload("uploads/old-but-queued"),), options={},
                           created_at=time.time()))  # fmt: skip
    stale_tmp = storage.root / ".tmp" / "crashed-write"
    stale_tmp.write_bytes(b"partial")
    os.utime(stale_tmp, (time.time() - STALE_TEMP_S - 5,) * 2)

    dry = cleanup(storage, records, retention_s=7 * DAY, now=time.time(), dry_run=True)
    assert (dry.deleted, dry.kept_for_live_jobs) == (2, 2)
    assert storage.exists("uploads/old")  # a dry run deletes nothing

    report = cleanup(storage, records, retention_s=7 * DAY, now=time.time())
    assert (report.deleted, report.deleted_bytes, report.kept_for_live_jobs) == (2, 8, 2)
    assert report.stale_temp_files == 1 and not stale_tmp.exists()
    remaining = sorted(o.key for p in ("uploads/", "outputs/") for o in storage.list_keys(p))
    assert remaining == [
        "outputs/livejob/a.pdf",
        "outputs/newjob/a.pdf",
        "uploads/old-but-queued",
        "uploads/young",
    ]


def test_cleanup_of_an_empty_store(storage: LocalStorage, records: Records) -> None:
    assert cleanup(storage, records, retention_s=DAY, now=time.time()).deleted == 0
