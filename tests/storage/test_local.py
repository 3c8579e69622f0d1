from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from storage.base import ObjectNotFound, ObjectTooLarge, check_key
from storage.local import LocalStorage


def test_put_stream_stores_bytes_and_reports_size_and_sha256(storage: LocalStorage) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    stored = storage.put_stream("uploads/a", io.BytesIO(data))
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    with storage.open("uploads/a") as fh:
        assert fh.read() == data


def test_over_limit_write_leaves_nothing_behind(storage: LocalStorage) -> None:
    with pytest.raises(ObjectTooLarge):
        storage.put_stream("uploads/big", io.BytesIO(b"x" * 5000), max_bytes=4096)
    assert not storage.exists("uploads/big")
    assert list((storage.root / ".tmp").iterdir()) == []


class _SlowStream:
    """Yields chunks only when allowed, so a test can look at storage mid-write."""

    def __init__(self, chunks: list[bytes], gate: threading.Event) -> None:
        self.chunks = chunks
        self.gate = gate

    def read(self, size: int = -1) -> bytes:
        if len(self.chunks) == 1:
            self.gate.wait(5)
        return self.chunks.pop(0) if self.chunks else b""


def test_half_written_object_is_never_visible(storage: LocalStorage) -> None:
    gate = threading.Event()
    writer = threading.Thread(
        target=storage.put_stream, args=("outputs/j/out.pdf", _SlowStream([b"a" * 1000, b"b" * 1000], gate))
    )
    writer.start()
    try:
        # The first chunk is on disk in .tmp; the object itself does not exist yet.
        for _ in range(100):
            if any((storage.root / ".tmp").iterdir()):
                break
            threading.Event().wait(0.01)
        assert not storage.exists("outputs/j/out.pdf")
        with pytest.raises(ObjectNotFound):
            storage.stat("outputs/j/out.pdf")
    finally:
        gate.set()
        writer.join()
    assert storage.stat("outputs/j/out.pdf").size == 2000


def test_fetch_delete_and_missing_objects(storage: LocalStorage, tmp_path: Path) -> None:
    storage.put_stream("uploads/x", io.BytesIO(b"hello"))
    dest = tmp_path / "copy"
    storage.fetch("uploads/x", dest)
    assert dest.read_bytes() == b"hello"
    storage.delete("uploads/x")
    storage.delete("uploads/x")  # deleting twice is fine
    with pytest.raises(ObjectNotFound):
        storage.open("uploads/x")
    with pytest.raises(ObjectNotFound):
        storage.fetch("uploads/x", tmp_path / "again")


def test_etag_changes_when_content_is_replaced(storage: LocalStorage) -> None:
    storage.put_stream("k", io.BytesIO(b"one"))
    first = storage.stat("k").etag
    storage.put_stream("k", io.BytesIO(b"three"))
    assert storage.stat("k").etag != first


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../b", "a//b", "", "a/.hidden"])
def test_keys_cannot_escape_the_root(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


def test_put_file_on_the_same_disk_links_instead_of_copying(storage: LocalStorage, tmp_path: Path) -> None:
    src = tmp_path / "out.jpg"
    data = os.urandom(700_000)
    src.write_bytes(data)
    if os.stat(src).st_dev != os.stat(storage.root).st_dev:
        pytest.skip("the test's temporary directory is on another disk than the storage")
    stored = storage.put_file("outputs/j/out.jpg", src)
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert os.stat(storage.root / "outputs/j/out.jpg").st_ino == os.stat(src).st_ino  # shared, not copied
    src.unlink()  # the worker removes its work directory: the stored object stays whole
    with storage.open("outputs/j/out.jpg") as fh:
        assert fh.read() == data
    assert list((storage.root / ".tmp").iterdir()) == []


def test_put_file_from_another_disk_is_copied(storage: LocalStorage) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(storage.root).st_dev:
        pytest.skip("no second filesystem (/dev/shm) on this machine")
    data = os.urandom(300_000)
    src = shm / f"exportd-test-{os.getpid()}"
    src.write_bytes(data)
    try:
        stored = storage.put_file("outputs/j/other.jpg", src)  # os.link fails with EXDEV here
        assert os.stat(storage.root / "outputs/j/other.jpg").st_ino != os.stat(src).st_ino
    finally:
        src.unlink()
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    with storage.open("outputs/j/other.jpg") as fh:
        assert fh.read() == data
    assert list((storage.root / ".tmp").iterdir()) == []
