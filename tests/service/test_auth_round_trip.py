"""A /v1/ request's key, its tenant's quotas and a token of its request rate are one Redis round
trip (service/auth.py, Tenants.authorize), with the same answers as before: 401, 403 without taking
a token, 429 with the RateLimit fields. On a real Redis; the client's commands are counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from service.app import create_app
from service.settings import Settings, parse_signing_keys
from storage.jobs import Records
from storage.keys import KeyStore
from storage.local import LocalStorage
from storage.tenants import Quotas, Tenants
from tests.conftest import TEST_KEYS

CONFIGURED = "exk_" + "c" * 43


@pytest.fixture
def client(tmp_path: Path, records: Records, storage: LocalStorage) -> Any:
    settings = Settings(signing_keys=parse_signing_keys(TEST_KEYS), data_dir=tmp_path,
                        api_keys=f"cfg:read:{CONFIGURED}", public_url="http://exportd.test")  # fmt: skip
    return falcon.testing.TestClient(
        create_app(settings, records=records, storage=storage, enqueue=lambda *_: None)
    )


@pytest.fixture
def sent(records: Records, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commands the app sends to Redis (a script is one EVALSHA), in order."""
    commands: list[str] = []
    real = records.redis.execute_command

    def counting(*args: Any, **options: Any) -> Any:
        commands.append(str(args[0]))
        return real(*args, **options)

    monkeypatch.setattr(records.redis, "execute_command", counting)
    return commands


def _round_trips(client: Any, sent: list[str], key: str) -> list[str]:
    """The Redis commands of one request for an unknown job (the route's own GET left out)."""
    sent.clear()
    result = client.simulate_get("/v1/exports/" + "0" * 32, headers={"Authorization": f"Bearer {key}"})
    assert result.status_code in (401, 404), result.text
    return sent[:-1] if result.status_code == 404 else list(sent)


def test_a_stored_key_its_quotas_and_its_rate_are_one_round_trip(
    client: Any, records: Records, sent: list[str]
) -> None:
    _, key = KeyStore(records.redis, namespace=records.namespace).create("shop", ("read",))
    _round_trips(client, sent, key)  # the script is loaded once per process
    assert _round_trips(client, sent, key) == ["EVALSHA"]  # it was GET, HGETALL, EVALSHA
    assert _round_trips(client, sent, CONFIGURED) == ["EVALSHA"]  # a configured key: quotas and rate
    assert _round_trips(client, sent, "exk_" + "z" * 43) == ["EVALSHA"]  # unknown: 401, no token taken


def test_a_key_without_the_scope_takes_no_token_and_the_rate_still_holds(
    client: Any, records: Records
) -> None:
    store = KeyStore(records.redis, namespace=records.namespace)
    _, submit_only = store.create("shop", ("submit",))
    tenants = Tenants(records, defaults=Quotas(1000, 1000, 8, 1 << 40))
    tenants.set_quotas("shop", requests_per_second=2)
    auth = {"Authorization": f"Bearer {submit_only}"}
    for _ in range(5):  # GET needs `read`: 403, and the bucket is untouched
        assert client.simulate_get("/v1/exports", headers=auth).status_code == 403
    assert not records.redis.exists(records.tenant_key("shop", "bucket"))
    _, reader = store.create("shop", ("read",))
    answers = [
        client.simulate_get("/v1/exports", headers={"Authorization": f"Bearer {reader}"}) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["ratelimit-limit"] == "2" and answers[1].headers["ratelimit-remaining"] == "0"
    assert answers[2].json["code"] == "rate_limited" and int(answers[2].headers["retry-after"]) >= 1
