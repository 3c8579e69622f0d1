"""The Storage protocol every backend implements, and its errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote


class StorageError(Exception):
    """Base of storage errors."""


class ObjectNotFound(StorageError):
    """No object under that key (never written, or already deleted)."""


class ObjectTooLarge(StorageError):
    """A streamed write went past its byte limit; nothing was stored."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"larger than the limit of {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


class StorageUnavailable(StorageError):
    """The backend cannot be reached or written right now: transient, worth a retry."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str  # hex


@dataclass(frozen=True)
class ObjectStat:
    size: int
    etag: str  # changes whenever the bytes may have changed
    modified: float  # epoch seconds


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    modified: float  # epoch seconds


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name in RFC 8187 form."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


def check_key(key: str) -> str:
    """Keys are relative paths of safe segments. Raises ValueError."""
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class Storage(Protocol):
    def put_stream(self, key: str, stream: Readable, *, max_bytes: int | None = None) -> StoredObject:
        """Store everything `stream.read()` yields, atomically. Raises ObjectTooLarge, StorageUnavailable."""
        ...

    def put_file(self, key: str, path: Path) -> StoredObject:
        """Store a local file, atomically; the file must not change afterwards (a store may share
        it instead of copying it). Raises StorageUnavailable."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A binary reader of the object. Raises ObjectNotFound."""
        ...

    def stat(self, key: str) -> ObjectStat:
        """Raises ObjectNotFound."""
        ...

    def fetch(self, key: str, dest: Path) -> None:
        """Copy the object to a local file. Raises ObjectNotFound, StorageUnavailable."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; no error when it is already gone."""
        ...

    def exists(self, key: str) -> bool: ...

    def check(self) -> None:
        """Raises StorageUnavailable unless the backend can be written now (readiness)."""
        ...

    def list_keys(self, prefix: str) -> Iterator[ListedObject]:
        """Every complete object whose key starts with `prefix`. Raises StorageUnavailable."""
        ...

    def remove_stale_temp_files(self, *, older_than_s: float, now: float) -> int:
        """Remove what writes that crashed left behind (partial files, unfinished multipart
        uploads) older than `older_than_s`; returns how many. Raises StorageUnavailable."""
        ...

    def presigned_url(
        self, key: str, *, expires_at: int, filename: str, content_type: str
    ) -> tuple[str, int] | None:
        """A direct download link from the store itself and its true expiry, or None when the
        store cannot sign links (then the API signs its own)."""
        ...
