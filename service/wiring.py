"""Builds the real collaborators from Settings: shared by the WSGI app and the worker processes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from actors.admission import MemoryAdmission, MemoryBudget, container_memory_limit, worker_budget_bytes
from actors.broker import build_broker, build_redis
from actors.capabilities import Availability
from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, releaser
from actors.outbound import OutboundPolicy
from actors.outcomes import JobOutcomes
from actors.queues import WEBHOOK_QUEUE
from service.app import limits_from, quotas_from
from service.settings import Settings
from storage.base import Storage
from storage.jobs import Job, Records
from storage.local import LocalStorage
from storage.sealing import Sealer
from storage.tenants import Tenants


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
    release = _releaser(records, settings, lambda: broker)
    broker = build_broker(
        client,
        namespace=settings.redis_namespace,
        heartbeat_timeout_ms=settings.worker_heartbeat_timeout_ms,
        # JobOutcomes first: its after-hooks run last; admission before TimeLimit: waits are not timed.
        extra_middleware=[
            JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values()), release),
            admission,
        ],
    )
    task = ExportTask(records=records, storage=storage, limits=limits,
                      time_limit_s=settings.job_time_limit_s, sealer=Sealer(settings.signing_keys),
                      release=release, outbound_policy=OutboundPolicy.from_settings(settings),
                      max_download_bytes=settings.max_upload_bytes)  # fmt: skip
    declare_export_actor(
        broker, task, time_limit_s=settings.job_time_limit_s, max_retries=settings.job_max_retries
    )
    return broker


def _releaser(records: Records, settings: Settings, broker_for: Callable[[], Any]) -> Callable[[Job], None]:
    """end_job's hook: queue the held jobs the ended job's slot goes to (fair scheduling)."""
    tenants = build_tenants(records, settings)
    return lambda job: releaser(tenants, broker_for())(job)


def build_tenants(records: Records, settings: Settings) -> Tenants:
    """Quotas and fair dispatch, capped by the slots the live pools publish."""
    return Tenants(
        records, defaults=quotas_from(settings), slots=Availability(records.redis, records.namespace).slots
    )


def build_sweeper(settings: Settings) -> Any:
    """The sweeper a pool supervisor runs (actors/sweeper.py), on a client that gives up quickly."""
    import redis

    from actors.sweeper import Sweeper

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=5)
    broker = build_broker(
        client, namespace=settings.redis_namespace, heartbeat_timeout_ms=settings.worker_heartbeat_timeout_ms
    )
    records = build_records(client, settings)
    return Sweeper(
        records=records,
        broker=broker,
        tenants=build_tenants(records, settings),
        release=_releaser(records, settings, lambda: broker),
        actor_of_queue=ACTOR_OF_QUEUE,
        other_queues=(WEBHOOK_QUEUE,),
        interval_s=settings.sweep_interval_s,
        grace_s=settings.sweep_grace_s,
    )


def build_crash_recorder(settings: Settings) -> Any:
    """What a pool supervisor calls to count a crash against jobs (see actors/running.py)."""
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=5)
    records = build_records(client, settings)

    def note_crash(job_id: str) -> None:
        from storage.jobs import RecordNotFound

        with contextlib.suppress(RecordNotFound):
            records.note_crash(job_id)

    return note_crash


def build_publisher(settings: Settings) -> Any:
    """What a pool supervisor publishes of itself: its queues and what it probed at start-up."""
    import uuid

    import redis

    from actors.capabilities import Publisher
    from exporters.registry import prepare

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=5)
    return Publisher(client, settings.redis_namespace, uuid.uuid4().hex, queues=settings.queues,
                     capabilities=prepare(), ttl_s=3 * settings.sweep_interval_s,
                     seen_ttl_s=settings.retention_s,
                     slots=settings.worker_processes * settings.worker_threads)  # fmt: skip


def build_webhook_broker(settings: Settings) -> Any:
    """The broker of one webhook process: the deliver_webhook actor, and the dispatcher that turns
    job events into its messages (actors/webhooks.py)."""
    from actors.outbound import OutboundPolicy
    from actors.webhooks import (
        Delivery,
        Dispatcher,
        DispatchEvents,
        declare_webhook_actor,
        enqueuer,
        new_consumer_name,
    )
    from storage.signing import Signer
    from storage.webhooks import Webhooks

    client = build_redis(settings.redis_url)
    records = build_records(client, settings)
    webhooks = Webhooks(records, Sealer(settings.signing_keys))

    def dispatcher() -> Dispatcher:
        return Dispatcher(records=records, webhooks=webhooks, enqueue=enqueuer(broker),
                          consumer=new_consumer_name())  # fmt: skip

    broker = build_broker(
        client,
        namespace=settings.redis_namespace,
        heartbeat_timeout_ms=settings.worker_heartbeat_timeout_ms,
        extra_middleware=[DispatchEvents(dispatcher)],
    )
    view = build_job_view(settings, build_storage(settings), Signer(settings.signing_keys))
    delivery = Delivery(records=records, webhooks=webhooks, view=view,
                        policy=OutboundPolicy.from_settings(settings),
                        schedule=settings.webhook_retry_schedule, timeout_s=settings.webhook_timeout_s,
                        enqueue=enqueuer(broker))  # fmt: skip
    declare_webhook_actor(broker, delivery, timeout_s=settings.webhook_timeout_s)
    return broker


def build_job_view(settings: Settings, storage: Storage, signer: Any) -> Any:
    """The job as GET /v1/exports/{id} shows it, for the webhooks (the API builds its own)."""
    import time

    from service.resources.exports import JobView

    return JobView(signer=signer, storage=storage, base_url=settings.base_url, link_ttl_s=settings.link_ttl_s,
                   retention_s=settings.retention_s, clock=time.time)  # fmt: skip
