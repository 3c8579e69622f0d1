"""Deleting what is past its retention, never what a live job still needs."""

from __future__ import annotations

from dataclasses import dataclass

from storage.base import Storage
from storage.jobs import RecordNotFound, Records

#: Partial files of writes that crashed are removed after this long (no write takes an hour).
STALE_TEMP_S = 3600


@dataclass
class CleanupReport:
    deleted: int = 0
    deleted_bytes: int = 0
    kept_for_live_jobs: int = 0
    stale_temp_files: int = 0
    dry_run: bool = False


def cleanup(
    storage: Storage, records: Records, *, retention_s: int, now: float, dry_run: bool = False
) -> CleanupReport:
    """Delete uploads and outputs older than `retention_s`, except those a queued or running job uses.

    Job and upload records expire in Redis by themselves; download links never outlive their
    job record, so an output older than the retention can no longer be reached. Raises
    RecordsUnavailable or StorageUnavailable (then nothing more is deleted).
    """
    report = CleanupReport(dry_run=dry_run)
    # Read the live jobs before listing files: a job created after this scan only uses uploads
    # whose records still exist, and those are younger than the retention.
    live_keys: set[str] = set()
    live_jobs: set[str] = set()
    for open_id in records.open_job_ids(created_before=now + retention_s):
        try:
            job = records.get_job(open_id)
        except RecordNotFound:
            continue  # expired meanwhile
        if not job.finished:
            live_jobs.add(job.id)
            live_keys.update(upload.key for upload in job.inputs)
    for prefix in ("uploads/", "outputs/", "tenants/"):
        for obj in storage.list_keys(prefix):
            if now - obj.modified < retention_s:
                continue
            job_id = _job_of_output(obj.key)
            if obj.key in live_keys or job_id in live_jobs:
                report.kept_for_live_jobs += 1
                continue
            if not dry_run:
                storage.delete(obj.key)
            report.deleted += 1
            report.deleted_bytes += obj.size
    if not dry_run:
        report.stale_temp_files = storage.remove_stale_temp_files(older_than_s=STALE_TEMP_S, now=now)
    return report


def _job_of_output(key: str) -> str | None:
    """The job of an output key, `tenants/{tenant}/outputs/{job}/{name}` or, as outputs were stored
    before keys carried the tenant, `outputs/{job}/{name}`; None for an upload's key."""
    parts = key.split("/")
    if parts[0] == "tenants" and len(parts) >= 5 and parts[2] == "outputs":
        return parts[3]
    return parts[1] if parts[0] == "outputs" and len(parts) >= 3 else None
