"""POST /v1/uploads: one file, streamed to storage, its type sniffed from its bytes."""

from __future__ import annotations

import logging
import re
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import falcon

from exporters import registry
from exporters.base import UnsupportedInput
from exporters.sniff import OCTET_STREAM, SNIFF_BYTES, needs_whole_file, sniff
from service.errors import BadRequest
from service.idempotency import Idempotency
from storage.base import ObjectTooLarge, Storage
from storage.jobs import Records, Upload, new_id, upload_key
from storage.keys import READ, SUBMIT
from storage.tenants import QuotaExceeded, Tenants

log = logging.getLogger("exportd.api")

MAX_FILENAME_CHARS = 200


def clean_filename(raw: str | None, fallback: str = "upload") -> str:
    """The client's file name without directories or control characters; Unicode letters kept."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip(" .")
    name = re.sub(r"\s+", " ", name)
    return name[:MAX_FILENAME_CHARS] or fallback


class _HeadRecorder:
    """Passes reads through, keeping the first bytes for sniffing."""

    def __init__(self, stream: BinaryIO | Any) -> None:
        self._stream = stream
        self.head = b""
        self.exhausted = False

    def read(self, size: int = -1) -> bytes:
        chunk: bytes = self._stream.read(size)
        if not chunk:
            self.exhausted = True
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        return chunk


class UploadReceiver:
    """Streams one file into storage and records it; refuses what no conversion accepts."""

    def __init__(
        self,
        *,
        storage: Storage,
        records: Records,
        max_bytes: int,
        clock: Callable[[], float],
        tenants: Tenants | None = None,
    ) -> None:
        self.storage = storage
        self.records = records
        self.max_bytes = max_bytes
        self.clock = clock
        self.tenants = tenants  # counts each tenant's bytes per day against its quota

    def receive(self, stream: BinaryIO | Any, filename: str | None, *, tenant: str = "") -> Upload:
        """Raises ObjectTooLarge, UnsupportedInput, QuotaExceeded, StorageUnavailable, RecordsUnavailable."""
        upload_id = new_id()
        recorder = _HeadRecorder(stream)
        stored = self.storage.put_stream(upload_key(tenant, upload_id), recorder, max_bytes=self.max_bytes)
        name = clean_filename(filename)
        content_type = sniff(recorder.head, complete=stored.size <= SNIFF_BYTES, filename=name)
        if content_type == OCTET_STREAM and needs_whole_file(recorder.head):
            content_type = self._sniff_whole(stored.key, recorder.head, name)
        try:
            if stored.size == 0:
                raise UnsupportedInput("the file is empty")
            registry.kind_of(content_type)
            if self.tenants is not None:
                quotas = self.tenants.quotas(tenant)
                self.tenants.add_upload_bytes(tenant, quotas, stored.size, now=self.clock())
        except (UnsupportedInput, QuotaExceeded):
            self.storage.delete(stored.key)
            raise
        upload = Upload(
            id=upload_id,
            filename=name,
            content_type=content_type,
            size=stored.size,
            sha256=stored.sha256,
            created_at=self.clock(),
            tenant=tenant,
            storage_key=stored.key,
        )
        self.records.add_upload(upload)
        return upload

    def _sniff_whole(self, key: str, head: bytes, filename: str) -> str:
        """Sniff a container (DOC, XLS: their directory may lie anywhere) with the whole file at hand."""
        with tempfile.TemporaryDirectory(prefix="exportd-sniff-") as tmp:
            path = Path(tmp, "upload")
            self.storage.fetch(key, path)
            return sniff(head, filename=filename, path=path)

    def discard(self, uploads: list[Upload]) -> None:
        """Best effort: remove files of a refused request (cleanup catches what this misses)."""
        for upload in uploads:
            try:
                self.storage.delete(upload.key)
            except Exception:
                log.warning("could not remove a refused upload", extra={"upload_id": upload.id})


def upload_view(upload: Upload) -> dict[str, Any]:
    view = {
        "id": upload.id,
        "filename": upload.filename,
        "content_type": upload.content_type,
        "size": upload.size,
        "sha256": upload.sha256,
    }
    if upload.url:
        # A URL input: where it came from, without its query (which may hold a signature).
        # content_type, size and sha256 are known once the worker has downloaded it.
        view["url"] = upload.source
    return view


def check_declared_length(req: falcon.Request, max_bytes: int) -> None:
    """Refuse at once a body whose declared length is already too large. Raises ObjectTooLarge."""
    if req.content_length is not None and req.content_length > max_bytes:
        raise ObjectTooLarge(max_bytes)


class Uploads:
    scopes: ClassVar[dict[str, str]] = {"POST": SUBMIT}

    def __init__(self, receiver: UploadReceiver, idempotency: Idempotency) -> None:
        self.receiver = receiver
        self.idempotency = idempotency  # the Idempotency-Key header

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        tenant: str = req.context.tenant
        self.idempotency.handle(
            req, resp, respond=lambda: self._post(req, resp),
            replay=lambda upload_id: upload_view(self.receiver.records.get_uploads([upload_id], tenant=tenant)[0]),
            max_body_bytes=self.receiver.max_bytes + 64 * 1024,
        )  # fmt: skip

    def _post(self, req: falcon.Request, resp: falcon.Response) -> None:
        tenant: str = req.context.tenant
        tenants = self.receiver.tenants
        if tenants is not None and req.content_length:  # refused before a byte is read
            tenants.check_upload_room(
                tenant, tenants.quotas(tenant), req.content_length, now=self.receiver.clock()
            )
        if req.content_type and req.content_type.startswith("multipart/form-data"):
            # Multipart framing adds a few hundred bytes; the file part itself is held to the limit.
            check_declared_length(req, self.receiver.max_bytes + 64 * 1024)
            upload = None
            for part in req.get_media():
                if part.name == "file" and upload is None:
                    upload = self.receiver.receive(part.stream, part.filename, tenant=tenant)
            if upload is None:
                raise BadRequest("the multipart body has no part named 'file'")
        else:
            check_declared_length(req, self.receiver.max_bytes)
            # A chunked body has no Content-Length; the WSGI server's input ends at its last chunk.
            body = req.bounded_stream if req.content_length is not None else req.stream
            upload = self.receiver.receive(body, req.get_param("filename"), tenant=tenant)
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/uploads/{upload.id}"
        resp.media = upload_view(upload)


class UploadItem:
    scopes: ClassVar[dict[str, str]] = {"GET": READ}

    def __init__(self, records: Records) -> None:
        self.records = records

    def on_get(self, req: falcon.Request, resp: falcon.Response, upload_id: str) -> None:
        (upload,) = self.records.get_uploads([upload_id], tenant=req.context.tenant)
        resp.media = upload_view(upload)
