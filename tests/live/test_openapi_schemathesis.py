"""Schemathesis against a live `exportd run`: no server error, no answer outside the document."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.live.conftest import Live

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = ",".join(
    (
        "not_a_server_error",  # no 5xx
        "status_code_conformance",  # no status the operation does not document
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",  # every body matches its schema
    )
)


def test_schemathesis_finds_nothing_on_a_live_service(live: Live, tmp_path: Path) -> None:
    request = urllib.request.Request(
        live.url + "/v1/openapi.json", headers={"Authorization": f"Bearer {live.api_key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        document = json.loads(resp.read())
    operations = sum(len(methods) for methods in document["paths"].values())
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", live.url + "/v1/openapi.json", "--checks", CHECKS,
         "--max-examples", "20", "--workers", "2", "--request-timeout", "40", "--no-color",
         "--header", f"Authorization: Bearer {live.api_key}"],
        capture_output=True, text=True, timeout=240, env=live.env, cwd=tmp_path,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    # Every operation was reached but GET /v1/openapi.json, which Schemathesis leaves out of a run
    # against it (fetched above, and validated by tests/service/test_openapi.py).
    assert re.search(rf"Tested: {operations - 1}\b", out), out[-3000:]
    passed = re.search(r"(\d+) generated, (\d+) passed", out)
    assert passed and passed.group(1) == passed.group(2) and int(passed.group(1)) > 500, out[-3000:]
