"""Worker processes reuse large freed buffers instead of having the kernel map fresh pages per job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from actors.memory import keep_large_buffers

# Converts a 12 MP JPEG to 1600 px six times in a process that has loaded what a worker loads, and
# prints the page faults of the last five: a count of pages the kernel zero-filled, not a time.
_PROBE = """
import json, resource, sys, tempfile
from pathlib import Path
import actors.export, service.wiring  # noqa: F401  what a worker process has loaded
from actors.memory import keep_large_buffers
from exporters.base import InputFile, Limits, parse_options
from exporters.images import JpegOptions, to_jpeg
from exporters.registry import prepare
prepare()  # every family loaded and the fonts registered, as a worker does at start-up
applied = keep_large_buffers() if sys.argv[2] == "tuned" else False
options = parse_options(JpegOptions, {"width": 1600, "quality": 85})
def convert():
    with tempfile.TemporaryDirectory() as out:
        to_jpeg([InputFile(Path(sys.argv[1]), "photo.jpg", "image/jpeg")], Path(out), options, limits=Limits())
convert()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    convert()
print(json.dumps({"applied": applied, "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5}))
"""


def _faults_per_job(photo: Path, how: str) -> dict[str, object]:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(photo), how], capture_output=True, text=True, check=True, cwd=root
    )
    measured: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_thresholds_apply_under_glibc() -> None:
    assert keep_large_buffers() is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_tuned_worker_process_stops_mapping_fresh_pages_for_every_photo(tmp_path: Path) -> None:
    from PIL import Image

    photo = tmp_path / "photo.jpg"
    Image.effect_noise((4032, 3024), 30).convert("RGB").save(photo, quality=90)
    untuned = _faults_per_job(photo, "untuned")
    tuned = _faults_per_job(photo, "tuned")
    assert tuned["applied"] is True
    # Decoded at half size for a 1600 px output, the photo's pixels are 2016 x 1512 x 4 bytes: about
    # 3,000 pages of 4 KiB. How many an untuned process maps afresh per photo depends on what it
    # loaded and in which order (1,300 to 9,200 seen here); a tuned one maps few, whatever it loaded.
    decoded_pages = 2016 * 1512 * 4 / 4096
    assert float(tuned["faults"]) < decoded_pages / 4, (tuned, untuned)  # type: ignore[arg-type]
    assert float(untuned["faults"]) > 2 * float(tuned["faults"]), (tuned, untuned)  # type: ignore[arg-type]
