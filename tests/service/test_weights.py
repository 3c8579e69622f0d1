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


#: What `python -X importtime` of the API's WSGI module must not list (its own top-level names).
CONVERSION_LIBRARIES = ("PIL", "reportlab", "pypdfium2", "weasyprint", "pillow_heif", "pikepdf")
_API_ENV = {
    "EXPORTD_SIGNING_KEYS": "test:" + "a" * 43,
    "EXPORTD_REDIS_URL": "redis://127.0.0.1:9/0",  # never dialled at import
}


def _run_api_probe(
    code: str, tmp_path: Path, *, importtime: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "EXPORTD_DATA_DIR": str(tmp_path), **_API_ENV}
    argv = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True)


def imported_by_importtime(stderr: str) -> list[str]:
    """The module names of `python -X importtime` output, in import order."""
    return [
        line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")
    ][1:]


def test_the_api_loads_no_image_or_pdf_library(tmp_path: Path) -> None:
    """`python -X importtime -c 'import service.wsgi'`: what an API process loads, module by module."""
    modules = imported_by_importtime(_run_api_probe("import service.wsgi", tmp_path, importtime=True).stderr)
    assert "service.wsgi" in modules and "exporters.registry" in modules and "exporters.sniff" in modules
    loaded = [m for m in modules if m.split(".")[0] in CONVERSION_LIBRARIES]
    assert loaded == []


def test_the_importtime_check_sees_a_conversion_library(tmp_path: Path) -> None:
    """The check above can fail: the same reading of a process that converts lists Pillow and reportlab."""
    code = "import service.wsgi\nfrom exporters import registry\nregistry.prepare()"
    modules = imported_by_importtime(_run_api_probe(code, tmp_path, importtime=True).stderr)
    assert {"PIL", "reportlab", "pypdfium2"} <= {m.split(".")[0] for m in modules}


_RSS = "\nprint(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')))"


def test_an_api_process_is_35_mb_lighter_than_one_that_loads_the_conversions(tmp_path: Path) -> None:
    """Resident memory after import, against what it was when every process loaded the whole stack
    (the baseline: the same import, then every family and the fonts, measured in the same run)."""
    api_kib = int(_run_api_probe(f"import service.wsgi{_RSS}", tmp_path).stdout.split()[-1])
    baseline_code = f"import service.wsgi\nfrom exporters import registry\nregistry.prepare(){_RSS}"
    baseline_kib = int(_run_api_probe(baseline_code, tmp_path).stdout.split()[-1])
    print(
        f"API after import: {api_kib / 1024:.1f} MiB RSS; with the conversions loaded: {baseline_kib / 1024:.1f} MiB"
    )
    assert baseline_kib - api_kib >= 35 * 1024


def test_the_gunicorn_arbiter_imports_no_redis_client_before_gevent_patches_its_workers() -> None:
    """The arbiter loads the config and the worker class; a Redis client imported there keeps
    unpatched names in every worker (gevent's MonkeyPatchWarning, on stderr that holds JSON lines)."""
    probe = (
        "import sys, gunicorn.config, service.gunicorn_config, service.server; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'falcon', 'storage', 'actors', "
        "'exporters', 'httpx')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
