from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import ConfigError, Settings


def test_production_refuses_to_start_without_a_signing_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EXPORTD_SIGNING_KEYS is not set"):
        Settings.from_env({"EXPORTD_DATA_DIR": str(tmp_path)})
    assert not (tmp_path / "dev-signing-key").exists()


def test_development_generates_one_key_and_keeps_it(tmp_path: Path) -> None:
    env = {"EXPORTD_ENV": "development", "EXPORTD_DATA_DIR": str(tmp_path)}
    first = Settings.from_env(env)
    second = Settings.from_env(env)
    assert first.signing_keys == second.signing_keys
    kid, secret = first.signing_keys[0]
    assert kid == "dev" and len(secret) >= 32
    assert (tmp_path / "dev-signing-key").stat().st_mode & 0o077 == 0


def test_values_are_parsed_and_secrets_kept_out_of_repr(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "EXPORTD_PORT": "9000",
            "EXPORTD_SIGNING_KEYS": "new:" + "n" * 40 + ",old:" + "o" * 40,
            "EXPORTD_DATA_DIR": str(tmp_path),
            "EXPORTD_MAX_UPLOAD_BYTES": "1_000",
        }
    )
    assert s.port == 9000 and s.max_upload_bytes == 1000
    assert [kid for kid, _ in s.signing_keys] == ["new", "old"]
    assert "n" * 40 not in repr(s)
    assert s.base_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EXPORTD_PORT": "eighty"}, "EXPORTD_PORT"),
        ({"EXPORTD_SIGNING_KEYS": "nocolon"}, "kid:secret"),
        ({"EXPORTD_SIGNING_KEYS": "k:short"}, "too short"),
        ({"EXPORTD_ENV": "staging"}, "EXPORTD_ENV"),
        ({"EXPORTD_JOB_TIME_LIMIT_S": "900"}, "SHUTDOWN_TIMEOUT"),
        ({"EXPORTD_MAX_JSON_BYTES": "0"}, "EXPORTD_MAX_JSON_BYTES must be positive"),
        ({"EXPORTD_MAX_OUTPUT_SIDE_PX": "0"}, "EXPORTD_MAX_OUTPUT_SIDE_PX must be positive"),
    ],
)
def test_bad_values_fail_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"EXPORTD_SIGNING_KEYS": "k:" + "s" * 40, **env})


def test_json_bodies_are_limited_to_one_mebibyte_unless_set(tmp_path: Path) -> None:
    env = {"EXPORTD_SIGNING_KEYS": "k:" + "s" * 40, "EXPORTD_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env).max_json_bytes == 1024 * 1024
    assert Settings.from_env({**env, "EXPORTD_MAX_JSON_BYTES": "65536"}).max_json_bytes == 65536


@pytest.mark.parametrize(
    ("name", "value"),
    [("MAX_PIXELS", "-1"), ("MAX_PAGES", "0"), ("WORKER_POLL_MS", "0"), ("PORT", "70000"),
     ("WORKER_METRICS_PORT", "-1"), ("STORAGE", "ftp"), ("LOG_LEVEL", "LOUD")],
)  # fmt: skip
def test_settings_out_of_their_declared_domain_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"EXPORTD_{name}"):
        Settings.from_env(
            {"EXPORTD_ENV": "development", "EXPORTD_DATA_DIR": "/tmp/x", f"EXPORTD_{name}": value}
        )


def test_every_whole_number_setting_is_checked_without_a_list_to_keep() -> None:
    """A whole-number setting is at least 1 unless its declaration says otherwise: none can drift."""
    import dataclasses

    for f in dataclasses.fields(Settings):
        if f.type in ("int", int):
            low = f.metadata.get("minimum", 1)
            with pytest.raises(ConfigError, match=f"EXPORTD_{f.name.upper()}"):
                dataclasses.replace(Settings(), **{f.name: low - 1}).validate()


def test_limit_defaults_have_one_source() -> None:
    from exporters.base import Limits

    settings, limits = Settings(), Limits()
    for name in ("max_pixels", "max_output_side_px", "max_pages", "max_table_pages", "max_frames",
                 "max_total_pixels"):  # fmt: skip
        assert getattr(settings, name) == getattr(limits, name)
