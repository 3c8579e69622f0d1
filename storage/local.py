"""Local-disk storage: one directory, atomic writes by rename, hard links where the disk allows."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from storage.base import (
    ListedObject,
    ObjectNotFound,
    ObjectStat,
    ObjectTooLarge,
    Readable,
    StorageUnavailable,
    StoredObject,
    check_key,
)

CHUNK_BYTES = 1024 * 1024


class LocalStorage:
    """Objects are files under `root`; a write goes to `root/.tmp` and is renamed into place complete."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextlib.contextmanager
    def _placing(self, tmp_path: str, key: str) -> Iterator[None]:
        """The block writes `tmp_path` complete; then it is renamed to `key`. The temporary file
        never stays behind, and a disk error becomes StorageUnavailable."""
        try:
            yield
            final = self._path(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_path, final)
        except OSError as exc:
            raise StorageUnavailable(f"local storage write failed: {exc.strerror}") from exc
        finally:
            if os.path.exists(tmp_path):
                os.unlink(tmp_path)

    def put_stream(self, key: str, stream: Readable, *, max_bytes: int | None = None) -> StoredObject:
        digest = hashlib.sha256()
        size = 0
        fd, tmp_path = tempfile.mkstemp(dir=self._tmp)
        with self._placing(tmp_path, key), os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK_BYTES):
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise ObjectTooLarge(max_bytes)
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def put_file(self, key: str, path: Path) -> StoredObject:
        """Hard-links the file into place when it is on the same disk, so its bytes are not
        copied (a worker's outputs are written once, then only read); copies it otherwise."""
        tmp_path = os.path.join(self._tmp, f"link-{uuid.uuid4().hex}")
        try:
            os.link(path, tmp_path)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise StorageUnavailable(f"local storage write failed: {exc.strerror}") from exc
            with path.open("rb") as fh:
                return self.put_stream(key, fh)
        with self._placing(tmp_path, key), open(tmp_path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256")
            size = os.fstat(fh.fileno()).st_size
            os.fsync(fh.fileno())  # the link is durable only once the data is
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def stat(self, key: str) -> ObjectStat:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        return ObjectStat(size=st.st_size, etag=f'"{st.st_size:x}-{st.st_mtime_ns:x}"', modified=st.st_mtime)

    def fetch(self, key: str, dest: Path) -> None:
        src = self._path(key)
        try:
            os.link(src, dest)  # objects are never modified in place, so sharing the inode is safe
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise StorageUnavailable(f"local storage read failed: {exc.strerror}") from exc
            try:
                shutil.copyfile(src, dest)
            except FileNotFoundError:
                raise ObjectNotFound(key) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> Iterator[ListedObject]:
        base = self.root / check_key(prefix.rstrip("/"))
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                path = Path(dirpath, name)
                try:
                    st = path.stat()
                except FileNotFoundError:  # deleted while we walked
                    continue
                yield ListedObject(
                    key=path.relative_to(self.root).as_posix(), size=st.st_size, modified=st.st_mtime
                )

    def remove_stale_temp_files(self, *, older_than_s: float, now: float) -> int:
        """Delete what crashed writes left in .tmp; returns how many."""
        removed = 0
        for path in self._tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > older_than_s:
                    path.unlink()
                    removed += 1
        return removed

    def presigned_url(
        self, key: str, *, expires_at: int, filename: str, content_type: str
    ) -> tuple[str, int] | None:
        return None  # the API serves local files itself, behind its own signed links

    def check(self) -> None:
        try:
            fd, tmp_path = tempfile.mkstemp(dir=self._tmp)
            os.close(fd)
            os.unlink(tmp_path)
        except OSError as exc:
            raise StorageUnavailable(f"local storage at {self.root} is not writable: {exc.strerror}") from exc
