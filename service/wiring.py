"""Builds the real collaborators from Settings: shared by the WSGI app and the worker processes."""

from __future__ import annotations

from typing import Any

from actors.admission import MemoryAdmission, MemoryBudget, container_memory_limit, worker_budget_bytes
from actors.broker import build_broker, build_redis
from actors.export import ExportTask, JobOutcome, declare_export_actor
from service.app import limits_from
from service.settings import Settings
from storage.base import Storage
from storage.jobs import Records
from storage.local import LocalStorage


def build_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        from storage.s3 import S3Storage

        return S3Storage(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region or None,
            addressing_style=settings.s3_addressing_style,
        )
    return LocalStorage(settings.data_dir / "storage")


def build_records(client: Any, settings: Settings) -> Records:
    return Records(client, namespace=settings.redis_namespace, retention_s=settings.retention_s)


def build_worker_broker(settings: Settings) -> Any:
    """The broker of one worker process, with the export actor declared on it."""
    client = build_redis(settings.redis_url)
    records = build_records(client, settings)
    storage, limits = build_storage(settings), limits_from(settings)
    budget = MemoryBudget(
        worker_budget_bytes(
            override_bytes=settings.worker_memory_bytes,
            processes=settings.worker_processes,
            limit_bytes=container_memory_limit(),
        )
    )
    admission = MemoryAdmission(budget, records_for=lambda: records, storage=storage, limits=limits)
    broker = build_broker(
        client,
        namespace=settings.redis_namespace,
        heartbeat_timeout_ms=settings.worker_heartbeat_timeout_ms,
        extra_middleware=[JobOutcome(lambda: records), admission],  # before TimeLimit: waits are not timed
    )
    task = ExportTask(records=records, storage=storage, limits=limits)
    declare_export_actor(
        broker, task, time_limit_s=settings.job_time_limit_s, max_retries=settings.job_max_retries
    )
    return broker
