"""The README documents every setting, and only settings that exist."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from service.settings import PREFIX, Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    documented = set(re.findall(r"^\| `(EXPORTD_[A-Z0-9_]+)` \|", README.read_text(), re.M))
    defined = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    assert documented == defined


def test_the_readme_flask_receiver_verifies_a_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver the README shows, run as it is: a signed delivery is taken, a forged one refused."""
    import json
    import time

    from actors.webhooks import sign
    from storage.webhooks import new_secret

    section = README.read_text().split("## Webhooks (Standard Webhooks)", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    secret = new_secret()
    monkeypatch.setenv("EXPORTD_WEBHOOK_SECRET", secret)
    namespace: dict[str, object] = {"__name__": "readme_receiver"}
    exec(compile(code, "README.md", "exec"), namespace)
    client = namespace["app"].test_client()  # type: ignore[attr-defined]
    body = json.dumps({"type": "export.succeeded", "timestamp": "2026-11-30T06:10:00.123Z",
                       "data": {"id": "j1", "outputs": [{"url": "https://x/y"}]}}).encode()  # fmt: skip
    now = str(int(time.time()))
    headers = {"webhook-id": "msg_j1_succeeded", "webhook-timestamp": now,
               "webhook-signature": sign(secret, "msg_j1_succeeded", now, body),
               "content-type": "application/json"}  # fmt: skip
    assert client.post("/hooks/exportd", data=body, headers=headers).status_code == 204
    assert namespace["handled"] == {"msg_j1_succeeded"}
    assert client.post("/hooks/exportd", data=body, headers=headers).status_code == 204  # a retry: once
    forged = {**headers, "webhook-signature": sign(new_secret(), "msg_j1_succeeded", now, body)}
    assert client.post("/hooks/exportd", data=body, headers=forged).status_code == 400
    assert client.post("/hooks/exportd", data=body + b" ", headers=headers).status_code == 400
