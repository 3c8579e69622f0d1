"""Heavy machinery only where it converts: the light commands import no conversion library.

Counted as modules imported (deterministic), not as seconds: benchmarks/weights.py prints the times
and memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("PIL", "reportlab", "pypdfium2", "pikepdf", "pyvips", "dramatiq", "boto3", "weasyprint")


def _heavy_modules_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return [m for m in json.loads(out.stdout.splitlines()[-1]) if m in HEAVY]


@pytest.mark.parametrize(
    "code",
    [
        "import service.settings",
        "import service.cli",  # what `exportd keygen` and `exportd check-worker` load first
        "from actors.alive import is_alive",  # what check-worker adds
    ],
)
def test_light_entry_points_import_no_conversion_library(code: str) -> None:
    assert _heavy_modules_after(code) == []
