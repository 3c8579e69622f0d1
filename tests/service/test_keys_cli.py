"""`exportd keys` and `exportd tenants` against a real Redis, and how `exportd serve` starts with and without keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import ConfigError, Settings
from storage.jobs import Records
from storage.keys import KeyStore
from tests.conftest import TEST_KEYS

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    return {**env, "PYTHONPATH": str(ROOT), "EXPORTD_DATA_DIR": str(tmp_path / "var"), **extra}


def _exportd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_keys_create_list_revoke(tmp_path: Path, redis_url: str, namespace: str, records: Records) -> None:
    env = _env(tmp_path, EXPORTD_REDIS_URL=redis_url, EXPORTD_REDIS_NAMESPACE=namespace)
    created = _exportd(env, "keys", "create", "--tenant", "shop", "--scope", "submit", "--scope", "read")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("exk_") and len(key) >= 40
    store = KeyStore(records.redis, namespace=namespace)
    found = store.authenticate(key)
    assert found is not None and found.tenant == "shop" and found.scopes == ("submit", "read")
    listed = _exportd(env, "keys", "list")
    (line,) = listed.stdout.strip().splitlines()
    key_id, tenant, scopes, created_at = line.split("\t")
    assert (key_id, tenant, scopes) == (found.id, "shop", "submit+read") and created_at.endswith("Z")
    assert key not in listed.stdout and key[4:] not in listed.stdout
    assert _exportd(env, "keys", "revoke", key_id).returncode == 0
    assert store.authenticate(key) is None
    assert _exportd(env, "keys", "revoke", key_id).returncode == 1
    bad = _exportd(env, "keys", "create", "--tenant", "no spaces")
    assert bad.returncode == 2 and "tenant names" in bad.stderr


def test_keys_without_a_redis_url_or_a_running_run_say_what_to_do(tmp_path: Path) -> None:
    result = _exportd(_env(tmp_path), "keys", "list")
    assert result.returncode == 2 and "EXPORTD_REDIS_URL" in result.stderr and "make run" in result.stderr


def test_tenants_set_and_show(tmp_path: Path, redis_url: str, namespace: str) -> None:
    env = _env(tmp_path, EXPORTD_REDIS_URL=redis_url, EXPORTD_REDIS_NAMESPACE=namespace)
    result = _exportd(env, "tenants", "set", "shop", "--requests-per-second", "7", "--max-queued", "9",
                      "--max-running", "2", "--upload-bytes-per-day", "1000")  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = json.loads(_exportd(env, "tenants", "show", "shop").stdout)
    assert shown == {"tenant": "shop", "requests_per_second": 7, "max_queued": 9, "max_running": 2,
                     "upload_bytes_per_day": 1000, "weight": 1, "open": 0, "dispatched": 0, "held": 0}  # fmt: skip
    other = json.loads(_exportd(env, "tenants", "show", "other").stdout)
    assert other["max_running"] == Settings().tenant_max_running  # the default
    assert _exportd(env, "tenants", "set", "shop", "--max-queued", "0").returncode == 2
    # Its share of the pool's slots against other busy tenants (storage/tenants.py).
    assert json.loads(_exportd(env, "tenants", "set", "shop", "--weight", "3").stdout)["weight"] == 3
    assert _exportd(env, "tenants", "set", "shop", "--weight", "0").returncode == 2


def test_production_refuses_to_serve_without_any_key(tmp_path: Path, redis_url: str, namespace: str) -> None:
    env = _env(tmp_path, EXPORTD_REDIS_URL=redis_url, EXPORTD_REDIS_NAMESPACE=namespace,
               EXPORTD_SIGNING_KEYS=TEST_KEYS, EXPORTD_PORT="1")  # fmt: skip
    result = _exportd(env, "serve")
    assert (
        result.returncode == 2
        and "no API key exists" in result.stderr
        and "EXPORTD_AUTH=disabled" in result.stderr
    )


def test_auth_disabled_in_production_warns_at_start(tmp_path: Path) -> None:
    # serve execs gunicorn after the warning: an unusable bind makes it stop right there.
    env = _env(tmp_path, EXPORTD_REDIS_URL="redis://127.0.0.1:1/0", EXPORTD_SIGNING_KEYS=TEST_KEYS,
               EXPORTD_AUTH="disabled", EXPORTD_HOST="256.0.0.1")  # fmt: skip
    result = _exportd(env, "serve")
    assert "EXPORTD_AUTH=disabled" in result.stderr and '"level": "WARNING"' in result.stderr


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EXPORTD_AUTH": "off"}, "EXPORTD_AUTH must be keys or disabled"),
        ({"EXPORTD_API_KEYS": "shop:read:password"}, "EXPORTD_API_KEYS"),
        ({"EXPORTD_TENANT_MAX_RUNNING": "0"}, "EXPORTD_TENANT_MAX_RUNNING must be positive"),
    ],
)
def test_bad_tenant_settings_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Settings.from_env({"EXPORTD_SIGNING_KEYS": TEST_KEYS, **environ})
    assert "password" not in str(caught.value)


def test_the_api_keys_setting_is_not_in_the_repr() -> None:
    settings = Settings.from_env(
        {"EXPORTD_SIGNING_KEYS": TEST_KEYS, "EXPORTD_API_KEYS": "t:read:exk_" + "q" * 40}
    )
    assert "q" * 40 not in repr(settings)
