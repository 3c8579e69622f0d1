"""The export actor: load the job, run its converter, store the outputs, finish the job.

Delivery is at least once, so a job may run twice: a finished job is never run again, outputs are
deterministic and written atomically under fixed keys, and the first finish wins.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq

from actors import metrics, outbound, running
from actors.outcomes import NOT_RETRIED, CrashedTwice, RetriedFault, end_job, job_error
from actors.queues import EXPORT_QUEUE, OFFICE_QUEUE, queue_for
from exporters import registry
from exporters.base import (
    ConversionError,
    InputFile,
    InputTooLarge,
    Limits,
    UnsupportedInput,
    parse_options,
    secret_options,
)
from exporters.cancel import Canceled, cancel_token, checkpoint
from exporters.sniff import SNIFF_BYTES, sniff
from storage.base import ObjectNotFound, Storage
from storage.jobs import (
    CANCEL_NOW,
    CANCELED,
    QUEUED,
    Job,
    JobError,
    Output,
    RecordNotFound,
    Records,
    RecordsUnavailable,
    Upload,
)
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


def output_key(job_id: str, name: str, *, tenant: str = "") -> str:
    """Where an output goes: `tenants/{tenant}/outputs/{job}/{name}` (`outputs/{job}/{name}` for no
    tenant). A job's outputs record their key: outputs stored before keys carried the tenant stay
    reachable."""
    return f"tenants/{tenant}/outputs/{job_id}/{name}" if tenant else f"outputs/{job_id}/{name}"


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
        outbound_policy: outbound.OutboundPolicy | None = None,
        max_download_bytes: int = 25 * 1024 * 1024,
        enqueue: Callable[[str, str], None] | None = None,
    ) -> None:
        # URL inputs are downloaded under this policy (None: URL inputs fail as url_not_allowed),
        # each up to max_download_bytes (EXPORTD_MAX_UPLOAD_BYTES).
        self.outbound_policy = outbound_policy
        self.max_download_bytes = max_download_bytes
        # Queues a job again on a queue (declare_export_actor sets it): a job whose downloaded
        # inputs need another queue (office) goes there.
        self.enqueue = enqueue
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
        if job.cancel_requested:  # canceled while it ran before (its worker died): it stops here
            self._end_canceled(job)
            return
        log.info("job started", extra=ctx)
        try:
            if job.crashes >= MAX_CRASHED_ATTEMPTS:
                raise CrashedTwice()
            with running.marked(job_id), cancel_token(CancelPoll(self.records, job_id)):
                if any(u.to_fetch for u in job.inputs):
                    job = self._fetch_inputs(job)
                    if job.status == QUEUED:
                        return  # queued again where its inputs are converted
                outputs = self._convert(job)
        except Canceled:
            self._end_canceled(job)
            return
        except NOT_RETRIED as exc:
            end_job(
                self.records, job, error=job_error(exc, time_limit_s=self.time_limit_s), release=self.release
            )
            return
        ended = end_job(self.records, job, outputs=outputs, release=self.release)
        if ended.status == CANCELED:  # canceled after its last checkpoint: nothing is published
            self._delete_outputs(job, outputs)

    def _end_canceled(self, job: Job) -> None:
        """The job stopped at a safe point (or never started): it ends canceled, nothing stored.

        Its cancel was requested, so no other delivery can publish outputs under its keys: what
        is there is this job's own, and goes before the record says canceled."""
        self._delete_outputs(job, ())
        end_job(self.records, job, cancel=CANCEL_NOW, release=self.release)

    def _delete_outputs(self, job: Job, outputs: tuple[Output, ...]) -> None:
        """Remove what this job stored under its output keys: a canceled job publishes nothing."""
        keys = {out.key for out in outputs}
        for prefix in {
            output_key(job.id, "", tenant=job.tenant),
            output_key(job.id, ""),
        }:  # and the old layout
            keys |= {o.key for o in self.storage.list_keys(prefix)}
        for key in sorted(keys):
            self.storage.delete(key)

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
            stored: list[Output] = []
            try:
                for out in produced:
                    checkpoint()
                    obj = self.storage.put_file(output_key(job.id, out.name, tenant=job.tenant), out.path)
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
            except Canceled:
                self._delete_outputs(job, tuple(stored))
                raise
            return tuple(stored)

    # -- URL inputs --------------------------------------------------------------------------

    def _fetch_inputs(self, job: Job) -> Job:
        """Download the job's URL inputs into storage, sniff them, and record what they are.

        With an `enqueue`, the job is then queued again (returned `queued`) on the queue its real
        inputs need, so memory admission and the queue see the downloaded files, as for uploads;
        without one it is returned `running`, to be converted now. Raises ConversionError
        (url_not_allowed, input_unreachable, input_too_large, unsupported_input), or RetriedFault
        for transient network faults (retried; after the last retry the job ends
        input_unreachable).
        """
        fetched = tuple(self._fetch(job, upload) if upload.to_fetch else upload for upload in job.inputs)
        conversion = registry.find([u.content_type for u in fetched], job.format)
        queue = queue_for(conversion)
        requeue = self.enqueue is not None

        def change(current: Job) -> Job | None:
            if current.finished:
                return None
            if not requeue:
                return dataclasses.replace(current, inputs=fetched, queue=queue)
            # Queued again for its conversion; downloading was part of this attempt, not one of its own.
            return dataclasses.replace(
                current, inputs=fetched, queue=queue, status=QUEUED, attempts=max(0, current.attempts - 1)
            )

        updated = self.records.update_job(job.id, change, seen=job)
        if updated.finished or not requeue:
            return updated
        assert self.enqueue is not None
        self.enqueue(job.id, queue if queue in ACTOR_OF_QUEUE else EXPORT_QUEUE)
        log.info(
            "URL inputs downloaded; job queued for its conversion", extra={"job_id": job.id, "queue": queue}
        )
        return updated

    def _fetch(self, job: Job, upload: Upload) -> Upload:
        checkpoint()  # between inputs: a canceled job downloads no more
        url = self._url_of(job, upload)
        shown = upload.source or "the input URL"
        ctx = {"job_id": job.id, "upload_id": upload.id, "source": upload.source}
        if self.outbound_policy is None:
            raise InputUrlRefused(shown, "this worker has no outbound policy configured")
        with tempfile.TemporaryDirectory(prefix=f"exportd-{job.id}-", dir=self.work_dir) as tmp:
            path = Path(tmp, "download")
            try:
                got = outbound.download(self.outbound_policy, url, path, max_bytes=self.max_download_bytes)
            except outbound.UrlNotAllowed as exc:
                log.info("input URL refused by the outbound policy", extra={**ctx, "reason": exc.reason})
                raise InputUrlRefused(shown, exc.reason) from None
            except outbound.DownloadTooLarge:
                raise InputTooLarge(
                    f"the input {shown} is larger than the limit of {self.max_download_bytes} bytes "
                    "(EXPORTD_MAX_UPLOAD_BYTES)"
                ) from None
            except outbound.OutboundError as exc:
                log.info(
                    "input URL could not be downloaded", extra={**ctx, "code": exc.code, "error": exc.message}
                )
                error = JobError(
                    "input_unreachable", f"the input {shown} could not be downloaded: {exc.message}"
                )
                if exc.transient:
                    raise RetriedFault(error) from None
                raise InputUnreachable(error.message) from None
            if got.size == 0:
                raise UnsupportedInput(f"the input {shown} is empty")
            with path.open("rb") as fh:
                head = fh.read(SNIFF_BYTES)
            filename = upload.filename or got.filename or "download"
            content_type = sniff(head, complete=got.size <= SNIFF_BYTES, filename=filename, path=path)
            registry.kind_of(content_type)  # UnsupportedInput names what is accepted
            stored = self.storage.put_file(upload.key, path)
        log.info("input URL downloaded", extra={**ctx, "bytes": got.size, "content_type": content_type})
        return dataclasses.replace(
            upload, filename=filename, content_type=content_type, size=stored.size, sha256=stored.sha256
        )

    def _url_of(self, job: Job, upload: Upload) -> str:
        if not is_sealed(upload.url):
            return upload.url
        if self.sealer is None:
            raise InputUrlRefused(upload.source, "this worker has no signing keys to unseal it with")
        try:
            return self.sealer.unseal(upload.url, context=outbound.url_context(upload.id))
        except Unsealable as exc:
            raise InputUrlRefused(
                upload.source, f"it can no longer be read ({exc}); submit it again"
            ) from None

    def _unsealed(self, job: Job, options_type: type) -> dict[str, Any]:
        """The job's options with its secret ones unsealed. Raises SecretLost.

        Every sealed value is unsealed, not only the secret options of `options_type`: a job with
        URL inputs was sealed at submit for the conversion their file names suggested, which the
        downloaded files may have changed.
        """
        raw = dict(job.options)
        for name in {*secret_options(options_type), *(k for k, v in raw.items() if is_sealed(v))}:
            if is_sealed(raw.get(name)):
                if self.sealer is None:
                    raise SecretLost(name, "this worker has no signing keys to unseal it with")
                try:
                    raw[name] = self.sealer.unseal(raw[name], context=f"{job.id}:{name}")
                except Unsealable as exc:
                    raise SecretLost(name, str(exc)) from None
        return raw


class CancelPoll:
    """The cancel token of one running job: asks Redis whether its cancel was requested, at most
    every POLL_S (a checkpoint between frames may come thousands of times a second). Redis
    unreachable reads as "not canceled": the job goes on, and its end will tell."""

    POLL_S = 0.2

    def __init__(self, records: Records, job_id: str) -> None:
        self.records = records
        self.job_id = job_id
        self._next = 0.0
        self._canceled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._canceled and now >= self._next:
            self._next = now + self.POLL_S
            try:
                self._canceled = self.records.cancel_requested(self.job_id)
            except RecordsUnavailable:
                log.warning("cannot read whether the job was canceled: Redis is unreachable",
                            extra={"job_id": self.job_id})  # fmt: skip
            if self._canceled:
                log.info("job canceled; stopping at a safe point", extra={"job_id": self.job_id})
        return self._canceled


class SecretLost(ConversionError):
    code = "invalid_options"

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"the {name} given with this export can no longer be read ({why}); submit it again")


class InputUrlRefused(ConversionError):
    code = "url_not_allowed"

    def __init__(self, shown: str, reason: str) -> None:
        super().__init__(f"the input {shown} was not downloaded: {reason}")


class InputUnreachable(ConversionError):
    code = "input_unreachable"


class InputGone(ConversionError):
    code = "input_missing"

    def __init__(self, filename: str) -> None:
        super().__init__(f"the input {filename!r} is no longer in storage; upload it again")


def declare_export_actor(broker: Any, task: ExportTask, *, time_limit_s: int, max_retries: int) -> None:
    """Register the export actors (one per queue) on `broker`; the task queues jobs again on it."""
    if task.enqueue is None:
        task.enqueue = lambda job_id, queue: enqueue_export(broker, job_id, queue)
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
    """What end_job calls when a job ends: the held jobs its slot goes to (any tenant's) get their messages."""
    return release_with(tenants, lambda job_id, queue: enqueue_export(broker, job_id, queue))


def release_with(tenants: Tenants, enqueue: Callable[[str, str], None]) -> Callable[[Job], None]:
    """releaser, queuing the messages with `enqueue(job_id, queue)` (the API's, when it cancels)."""

    def release(ended: Job) -> None:
        for _, job_id, queue in tenants.release(ended.tenant, ended.id):
            enqueue(job_id, queue if queue in ACTOR_OF_QUEUE else EXPORT_QUEUE)

    return release
