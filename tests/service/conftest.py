"""Fixtures of the API tests."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.helpers import publish_pool


@pytest.fixture(autouse=True)
def live_pool(redis_client: redis.Redis, namespace: str) -> Any:
    """A worker pool published as a pool supervisor publishes one (the in-process workers of these
    tests run its queues): the API offers a conversion only while a live pool can run it."""
    return publish_pool(redis_client, namespace)
