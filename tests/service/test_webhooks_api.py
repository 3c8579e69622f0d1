"""The webhook fields of POST /v1/exports (checked at submit, nothing stored when refused), the
deliveries routes on a job that has not ended, `exportd webhooks`, and the webhook settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from service.app import create_app
from service.settings import ConfigError, Settings, parse_signing_keys
from storage.jobs import Records
from storage.local import LocalStorage
from storage.sealing import Sealer
from storage.webhooks import Webhooks, secret_bytes
from tests.conftest import AUTH, TEST_API_KEYS, TEST_KEYS
from tests.helpers import jpeg_bytes, multipart

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(signing_keys=parse_signing_keys(TEST_KEYS), data_dir=tmp_path, api_keys=TEST_API_KEYS,
                    env="development", outbound_allow_nets="127.0.0.1/32")  # fmt: skip


@pytest.fixture
def queued() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def client(settings: Settings, records: Records, storage: LocalStorage, queued: list[tuple[str, str]]) -> Any:
    app = create_app(settings, records=records, storage=storage, enqueue=lambda j, q: queued.append((j, q)))
    return falcon.testing.TestClient(app)


def _upload(client: Any) -> str:
    result = client.simulate_post("/v1/uploads", body=jpeg_bytes(64, 48), headers=AUTH)
    assert result.status_code == 201, result.text
    return str(result.json["id"])


def _submit_json(client: Any, **fields: Any) -> Any:
    body = json.dumps({"inputs": [_upload(client)], "format": "png", **fields})
    return client.simulate_post(
        "/v1/exports", body=body, headers={**AUTH, "Content-Type": "application/json"}
    )


def test_json_webhook_fields_are_stored_on_the_job(client: Any, records: Records) -> None:
    result = _submit_json(client, webhook_url="http://127.0.0.1:9/hook", webhook_events=["export.failed"])
    assert result.status_code == 202, result.text
    job = records.get_job(result.json["id"])
    assert job.webhook_url == "http://127.0.0.1:9/hook"
    assert job.webhook_events == ("export.failed",)


def test_multipart_webhook_fields_are_stored_on_the_job(client: Any, records: Records) -> None:
    body, ctype = multipart([("file", ("p.jpg", jpeg_bytes(64, 48))), ("format", "png"),
                             ("webhook_url", "http://127.0.0.1:9/x"),
                             ("webhook_events", "export.succeeded, export.canceled")])  # fmt: skip
    result = client.simulate_post("/v1/exports", body=body, headers={**AUTH, "Content-Type": ctype})
    assert result.status_code == 202, result.text
    job = records.get_job(result.json["id"])
    assert job.webhook_url == "http://127.0.0.1:9/x"
    assert job.webhook_events == ("export.succeeded", "export.canceled")


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"webhook_url": "not a url"}, 400, "invalid_request"),
        ({"webhook_url": "/relative/path"}, 400, "invalid_request"),
        ({"webhook_url": "ftp://127.0.0.1/x"}, 400, "invalid_request"),
        ({"webhook_url": 42}, 400, "invalid_request"),
        ({"webhook_url": "http://127.0.0.1/" + "a" * 3000}, 400, "invalid_request"),
        (
            {"webhook_url": "http://127.0.0.1/x", "webhook_events": ["export.exploded"]},
            400,
            "invalid_request",
        ),
        ({"webhook_url": "http://127.0.0.1/x", "webhook_events": []}, 400, "invalid_request"),
        ({"webhook_url": "http://127.0.0.1/x", "webhook_events": "export.failed"}, 400, "invalid_request"),
        # The outbound policy, at submit: loopback outside the allow-list, metadata, private.
        ({"webhook_url": "http://127.0.0.2/x"}, 422, "url_not_allowed"),
        ({"webhook_url": "http://[::1]/x"}, 422, "url_not_allowed"),
        ({"webhook_url": "http://2130706434/x"}, 422, "url_not_allowed"),
        ({"webhook_url": "http://169.254.169.254/latest"}, 422, "url_not_allowed"),
        ({"webhook_url": "http://10.0.0.1/x"}, 422, "url_not_allowed"),
    ],
)
def test_bad_webhook_fields_are_refused_and_nothing_is_queued(
    client: Any,
    queued: list[tuple[str, str]],
    records: Records,
    fields: dict[str, Any],
    status: int,
    code: str,
) -> None:
    result = _submit_json(client, **fields)
    assert result.status_code == status, result.text
    assert result.json["code"] == code
    if code == "url_not_allowed":
        assert "not allowed" in result.json["detail"]
    assert queued == []
    assert records.list_jobs("tests")[0] == []


def test_production_allows_https_webhooks_only(
    settings: Settings, records: Records, storage: LocalStorage
) -> None:
    app = create_app(replace(settings, env="production"), records=records, storage=storage,
                     enqueue=lambda j, q: None)  # fmt: skip
    client = falcon.testing.TestClient(app)
    result = _submit_json(client, webhook_url="http://127.0.0.1:9/hook")
    assert result.status_code == 422 and result.json["code"] == "url_not_allowed"


def test_deliveries_of_a_job_that_has_not_ended(client: Any) -> None:
    job_id = _submit_json(client, webhook_url="http://127.0.0.1:9/hook").json["id"]
    assert client.simulate_get(f"/v1/exports/{job_id}/deliveries", headers=AUTH).json == {"deliveries": []}
    result = client.simulate_post(f"/v1/exports/{job_id}/deliveries", headers=AUTH)
    assert result.status_code == 409 and result.json["code"] == "job_not_finished"


def _exportd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_webhooks_cli_secret_is_made_once_stored_sealed_and_rotated(
    tmp_path: Path, redis_url: str, namespace: str, records: Records
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPORTD_REDIS_URL": redis_url,
           "EXPORTD_REDIS_NAMESPACE": namespace, "EXPORTD_SIGNING_KEYS": TEST_KEYS,
           "EXPORTD_DATA_DIR": str(tmp_path)}  # fmt: skip
    first = _exportd(env, "webhooks", "secret", "--tenant", "shop")
    assert first.returncode == 0, first.stderr
    secret = first.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_") and 24 <= len(secret_bytes(secret)) <= 64
    assert _exportd(env, "webhooks", "secret", "--tenant", "shop").stdout.strip().splitlines()[-1] == secret
    assert _exportd(env, "webhooks", "secret", "--tenant", "other").stdout.strip().splitlines()[-1] != secret
    # Never readable in Redis.
    for key in records.redis.scan_iter(f"{namespace}:*"):
        assert secret[6:].encode() not in records.redis.dump(key)
    rotated = _exportd(env, "webhooks", "rotate-secret", "--tenant", "shop")
    new = rotated.stdout.strip().splitlines()[-1]
    assert new.startswith("whsec_") and new != secret
    assert Webhooks(records, Sealer(parse_signing_keys(TEST_KEYS))).signing_secrets("shop") == [new, secret]
    # Without --tenant and keys in use, it asks for one.
    assert _exportd(env, "webhooks", "secret").returncode == 2
    endpoint = _exportd(env, "webhooks", "set-endpoint", "https://hooks.example/x", "--tenant", "shop")
    assert endpoint.returncode == 0, endpoint.stderr
    assert json.loads(_exportd(env, "webhooks", "show", "--tenant", "shop").stdout)["endpoint"] == (
        "https://hooks.example/x"
    )
    assert _exportd(env, "webhooks", "set-endpoint", "not-a-url", "--tenant", "shop").returncode == 2
    refused = _exportd(env, "webhooks", "set-endpoint", "https://169.254.169.254/x", "--tenant", "shop")
    assert refused.returncode == 2 and "not allowed" in refused.stderr


@pytest.mark.parametrize("schedule", ["", "5,x", "0", "5,-1", " , "])
def test_a_bad_retry_schedule_is_refused(schedule: str) -> None:
    env = {"EXPORTD_SIGNING_KEYS": TEST_KEYS, "EXPORTD_WEBHOOK_RETRY_SCHEDULE_S": schedule}
    if schedule == "":  # unset: the default, which spans more than 24 hours
        assert sum(Settings.from_env(env).webhook_retry_schedule) >= 24 * 3600
        return
    with pytest.raises(ConfigError, match="EXPORTD_WEBHOOK_RETRY_SCHEDULE_S"):
        Settings.from_env(env)
