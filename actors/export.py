"""The export actor: load the job, run its converter, store the outputs, finish the job.

Delivery is at least once, so a job may run twice: a finished job is never run again, outputs are
deterministic and written atomically under fixed keys, and the first finish wins.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq

from actors import metrics, running
from actors.outcomes import NOT_RETRIED, CrashedTwice, end_job, job_error
from actors.queues import EXPORT_QUEUE, OFFICE_QUEUE
from exporters import registry
from exporters.base import ConversionError, InputFile, Limits, parse_options, secret_options
from storage.base import ObjectNotFound, Storage
from storage.jobs import Job, Output, RecordNotFound, Records
from storage.sealing import Sealer, Unsealable, is_sealed
from storage.tenants import Tenants

EXPORT_ACTOR = "export"
#: One actor per queue, all running ExportTask: a queue's workers, concurrency and time limit are
#: its own (LibreOffice conversions must not hold up photos).
ACTOR_OF_QUEUE = {EXPORT_QUEUE: EXPORT_ACTOR, OFFICE_QUEUE: "export_office"}

#: A job that crashed its process this many times (a decoder that segfaults, an OOM kill while it
#: held most of the memory) is failed instead of being run again: a crash must not loop forever or
#: take more of the pool down. Processes killed from outside do not count (actors/running.py).
MAX_CRASHED_ATTEMPTS = 2

log = logging.getLogger("exportd.export")


def output_key(job_id: str, name: str) -> str:
    return f"outputs/{job_id}/{name}"


class ExportTask:
    """What the actor runs for one job id."""

    def __init__(
        self,
        *,
        records: Records,
        storage: Storage,
        limits: Limits,
        work_dir: Path | None = None,
        time_limit_s: int | None = None,
        sealer: Sealer | None = None,
        release: Callable[[Job], None] | None = None,
    ) -> None:
        self.records = records
        self.storage = storage
        self.limits = limits
        self.work_dir = work_dir
        self.time_limit_s = time_limit_s  # named in time_limit_exceeded messages
        self.sealer = sealer  # unseals secret options (storage/sealing.py)
        self.release = release  # queues the tenant's held jobs when one ends (storage/tenants.py)

    def __call__(self, job_id: str) -> None:
        ctx = {"job_id": job_id}
        try:
            job = self.records.start_job(job_id)
        except RecordNotFound:
            log.warning("job record is gone (past its retention); nothing to do", extra=ctx)
            return
        if job.finished:
            log.info("job already finished; this delivery is a duplicate", extra=ctx)
            return
        ctx["attempt"] = str(job.attempts)
        log.info("job started", extra=ctx)
        try:
            if job.crashes >= MAX_CRASHED_ATTEMPTS:
                raise CrashedTwice()
            with running.marked(job_id):
                outputs = self._convert(job)
        except NOT_RETRIED as exc:
            end_job(
                self.records, job, error=job_error(exc, time_limit_s=self.time_limit_s), release=self.release
            )
            return
        end_job(self.records, job, outputs=outputs, release=self.release)

    def _convert(self, job: Job) -> tuple[Output, ...]:
        conversion = registry.find([u.content_type for u in job.inputs], job.format)
        with metrics.Attempt(
            metrics.conversion_label(conversion.kind, conversion.format), sum(u.size for u in job.inputs)
        ):
            return self._convert_as(job, conversion)

    def _convert_as(self, job: Job, conversion: Any) -> tuple[Output, ...]:
        options: Any = parse_options(
            conversion.options, self._unsealed(job, conversion.options), limits=self.limits
        )
        with tempfile.TemporaryDirectory(prefix=f"exportd-{job.id}-", dir=self.work_dir) as tmp:
            out_dir = Path(tmp, "out")  # the inputs lie beside it
            out_dir.mkdir()
            inputs = []
            for index, upload in enumerate(job.inputs):
                path = Path(tmp, f"in-{index}")
                try:
                    self.storage.fetch(upload.key, path)
                except ObjectNotFound:
                    log.warning(
                        "input not in storage; if this happens to fresh uploads, the API and the workers "
                        "do not share one storage (use S3 or a shared volume)",
                        extra={"job_id": job.id, "upload_id": upload.id},
                    )
                    raise InputGone(upload.filename) from None
                inputs.append(
                    InputFile(path=path, filename=upload.filename, content_type=upload.content_type)
                )
            produced = conversion.convert(inputs, out_dir, options, limits=self.limits)
            stored = []
            for out in produced:
                obj = self.storage.put_file(output_key(job.id, out.name), out.path)
                stored.append(
                    Output(
                        name=out.name,
                        key=obj.key,
                        content_type=out.content_type,
                        details=dict(out.details),
                        size=obj.size,
                        sha256=obj.sha256,
                    )
                )
            return tuple(stored)

    def _unsealed(self, job: Job, options_type: type) -> dict[str, Any]:
        """The job's options with its secret ones unsealed. Raises SecretLost."""
        raw = dict(job.options)
        for name in secret_options(options_type):
            if is_sealed(raw.get(name)):
                if self.sealer is None:
                    raise SecretLost(name, "this worker has no signing keys to unseal it with")
                try:
                    raw[name] = self.sealer.unseal(raw[name], context=f"{job.id}:{name}")
                except Unsealable as exc:
                    raise SecretLost(name, str(exc)) from None
        return raw


class SecretLost(ConversionError):
    code = "invalid_options"

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"the {name} given with this export can no longer be read ({why}); submit it again")


class InputGone(ConversionError):
    code = "input_missing"

    def __init__(self, filename: str) -> None:
        super().__init__(f"the input {filename!r} is no longer in storage; upload it again")


def declare_export_actor(broker: Any, task: ExportTask, *, time_limit_s: int, max_retries: int) -> None:
    """Register the export actors (one per queue) on `broker`."""
    for queue, actor_name in ACTOR_OF_QUEUE.items():
        dramatiq.Actor(
            task,
            broker=broker,
            actor_name=actor_name,
            queue_name=queue,
            priority=0,
            options={
                # Errors that are the input's fault, or would happen again: the job ends, no retry.
                "throws": NOT_RETRIED,
                "time_limit": time_limit_s * 1000,
                "max_retries": max_retries,
                "min_backoff": 1000,
                "max_backoff": 60_000,
            },
        )


def enqueue_export(broker: Any, job_id: str, queue: str = EXPORT_QUEUE) -> None:
    """Queue the job's message on `queue`. The job record must exist before this is called."""
    message: Any = dramatiq.Message(
        queue_name=queue, actor_name=ACTOR_OF_QUEUE[queue], args=(job_id,), kwargs={}, options={}
    )
    broker.enqueue(message)


def releaser(tenants: Tenants, broker: Any) -> Callable[[Job], None]:
    """What end_job calls when a job ends: its tenant's held jobs, released, get their messages."""

    def release(ended: Job) -> None:
        freed = [ended.id]
        while freed:
            for job_id in tenants.release(ended.tenant, freed.pop()):
                try:
                    queue = tenants.records.get_job(job_id).queue
                except RecordNotFound:  # held past its retention: its slot goes to the next one
                    freed.append(job_id)
                    continue
                enqueue_export(broker, job_id, queue if queue in ACTOR_OF_QUEUE else EXPORT_QUEUE)

    return release
