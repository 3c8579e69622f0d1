"""Peak estimates from headers, and the peaks of real conversions measured against them."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from benchmarks.memory import run_case, write_pdf, write_photo, write_png16
from exporters.estimate import FACTORS, JOB_BASE_BYTES, EstimateInput, MiB, estimate_job

linux_only = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="peak RSS is read from /proc (Linux)"
)


def _input(path: Path, content_type: str) -> EstimateInput:
    def opener() -> Any:
        return path.open("rb")

    return EstimateInput(content_type, path.stat().st_size, opener)


def test_an_image_is_estimated_from_its_header_by_decoded_bytes(tmp_path: Path) -> None:
    deep = tmp_path / "deep.png"
    write_png16(deep, 3000, 2000, channels=4)
    assert deep.stat().st_size < 200_000  # tiny file, big picture: only the header tells
    estimate = estimate_job("image", "pdf", [_input(deep, "image/png")], {})
    decoded = 3000 * 2000 * 4  # Pillow decodes 16-bit RGBA to 8 bits per channel
    stream = deep.stat().st_size * FACTORS["image_pdf_stream"]
    assert estimate.peak_bytes == JOB_BASE_BYTES + math.ceil(decoded * FACTORS["image_pdf"] + stream)
    assert estimate.basis == "3000×2000 pixels, RGBA"


def test_resizing_and_heavy_encoders_raise_the_estimate(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (4000, 3000)).save(photo)

    def peak(target: str, options: dict[str, Any]) -> int:
        return (
            estimate_job("image", target, [_input(photo, "image/jpeg")], options).peak_bytes - JOB_BASE_BYTES
        )

    decoded = 4000 * 3000 * 3
    assert peak("jpeg", {}) == math.ceil(decoded * FACTORS["image"])
    assert peak("avif", {}) == math.ceil(decoded * (FACTORS["image"] + FACTORS["encoder_avif"]))
    assert peak("jpeg", {"crop": [0, 0, 2000, 2000]}) == math.ceil(decoded * FACTORS["image_resized"])
    # 1000 px wide (counted as if the photo might turn upright: 1000 of 3000 px) lets libjpeg
    # decode at half size; the encoder then works on the output's pixels, (1000 / 3000)² of them.
    half = decoded / 4
    assert peak("jpeg", {"width": 1000}) == pytest.approx(half * FACTORS["image_resized"], abs=1)
    assert peak("avif", {"width": 1000}) == pytest.approx(
        half * FACTORS["image_resized"] + decoded * (1000 / 3000) ** 2 * FACTORS["encoder_avif"], abs=1
    )
    assert peak("jpeg", {"width": 256}) == pytest.approx(decoded / 64 * FACTORS["image_resized"], abs=1)
    # Carried into a PDF as it is, a JPEG is never decoded: its file is what counts.
    assert peak("pdf", {}) == math.ceil(photo.stat().st_size * FACTORS["jpeg_pdf_as_is"])


def test_an_animation_kept_whole_counts_every_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (400, 300), (i * 20, 0, 0)) for i in range(5)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    kept = estimate_job("image", "webp", [_input(path, "image/gif")], {})
    first = estimate_job("image", "webp", [_input(path, "image/gif")], {"first_frame_only": True})
    assert kept.basis.endswith("× 5 frames")
    assert kept.peak_bytes - JOB_BASE_BYTES == pytest.approx(
        5 * (first.peak_bytes - JOB_BASE_BYTES), rel=0.01
    )


def test_a_pdf_is_estimated_by_its_largest_page_at_the_asked_resolution(tmp_path: Path) -> None:
    document = tmp_path / "doc.pdf"
    write_pdf(document, 2)
    at_150 = estimate_job("pdf", "png", [_input(document, "application/pdf")], {"dpi": 150})
    at_600 = estimate_job("pdf", "png", [_input(document, "application/pdf")], {"dpi": 600})
    assert at_150.basis == "largest page 1241×1754 pixels"  # A4
    assert (at_600.peak_bytes - JOB_BASE_BYTES) > 15 * (at_150.peak_bytes - JOB_BASE_BYTES)


def test_a_job_is_estimated_by_its_largest_input_not_their_sum() -> None:
    small = io.BytesIO()
    Image.new("RGB", (100, 100)).save(small, format="PNG")
    big = io.BytesIO()
    Image.new("RGB", (2000, 1000)).save(big, format="PNG")

    def item(buffer: io.BytesIO) -> EstimateInput:
        return EstimateInput("image/png", len(buffer.getvalue()), lambda: io.BytesIO(buffer.getvalue()))

    both = estimate_job("image", "png", [item(small), item(big)], {})
    alone = estimate_job("image", "png", [item(big)], {})
    assert (both.peak_bytes, both.basis) == (alone.peak_bytes, alone.basis)
    assert both.pixels == 100 * 100 + 2000 * 1000  # what the inputs decode to, all of them (a metric)


@linux_only
def test_16_bit_grey_is_reduced_without_32_bit_copies_of_the_whole_picture(tmp_path: Path) -> None:
    grey = tmp_path / "grey16.png"
    write_png16(grey, 4000, 4000, channels=1)
    added = run_case("image/png", "png", {}, grey)
    # Decoded it is 2 bytes a pixel (32 MB); the 8-bit result 1 byte. Scaled whole in mode I it
    # took 4 + 4 bytes a pixel more (measured 238 MiB for 5000×5000 against 82 MiB in strips).
    assert added < 4000 * 4000 * 5, f"{added / MiB:.0f} MiB"
    assert added < estimate_job("image", "png", [_input(grey, "image/png")], {}).peak_bytes


@linux_only
def test_an_rgba_picture_goes_into_a_pdf_without_whole_copies(tmp_path: Path) -> None:
    deep = tmp_path / "deep.png"
    write_png16(deep, 5000, 5000, channels=4)
    added = run_case("image/png", "pdf", {}, deep)
    decoded = 5000 * 5000 * 4
    # Flattened and compressed whole, it took a flattened copy, its RGB conversion and its raw
    # bytes beside the decoded pixels: 3.3 × decoded (654 MiB for 7000×7000 against 204 MiB now).
    assert added < 1.3 * decoded, f"{added / MiB:.0f} MiB"
    assert added < estimate_job("image", "pdf", [_input(deep, "image/png")], {}).peak_bytes


@linux_only
def test_a_photo_converted_at_full_size_is_not_copied_whole(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    write_photo(photo, 4000)
    added = run_case("image/jpeg", "jpeg", {}, photo)
    decoded = 4000 * 4000 * 3
    # With a copy of the decoded pixels handed to the encoder it took 2.7 × decoded (382 MiB for
    # a 50 MP photo); sharing them, 1.35 ×.
    assert added < 1.8 * decoded, f"{added / MiB:.0f} MiB"
    assert added < estimate_job("image", "jpeg", [_input(photo, "image/jpeg")], {}).peak_bytes
