"""Hostile files: limits checked from headers before decoding, bombs refused without the memory
jumping, damaged files refused as corrupt."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from exporters.base import CorruptInput, InputTooLarge, Limits
from exporters.images import ENCODERS, ImageOptions, LossyImageOptions, convert_each, to_gif, to_png
from tests.exporters.samples import as_input, gradient, noise, sample, save

REPO = Path(__file__).resolve().parents[2]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zero_png(path: Path, width: int, height: int) -> Path:
    """A valid RGB PNG of black pixels: a few hundred KB that inflate to width × height × 3 bytes."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


def blinking(path: Path, count: int, size: tuple[int, int] = (40, 30)) -> Path:
    shots = [Image.new("RGB", size, (i * 20 % 256, 0, 0)) for i in range(count)]
    shots[0].save(path, "GIF", save_all=True, append_images=shots[1:], duration=50, loop=0)
    return path


def test_frame_limit(tmp_path: Path, out_dir: Path) -> None:
    source = as_input(blinking(tmp_path / "many.gif", 6))
    with pytest.raises(InputTooLarge, match="6 frames; the limit is 5"):
        to_gif([source], out_dir, ImageOptions(), limits=Limits(max_frames=5))
    # The first frame alone is within every limit.
    (output,) = to_gif([source], out_dir, ImageOptions(first_frame_only=True), limits=Limits(max_frames=5))
    assert output.path.is_file()


def test_total_pixel_limit_counts_every_frame(tmp_path: Path, out_dir: Path) -> None:
    source = as_input(blinking(tmp_path / "big.gif", 4, size=(100, 100)))
    with pytest.raises(InputTooLarge, match="4 frames of 100×100"):
        to_gif([source], out_dir, ImageOptions(), limits=Limits(max_total_pixels=30_000))
    (output,) = to_png(
        [source], out_dir, ImageOptions(first_frame_only=True), limits=Limits(max_total_pixels=30_000)
    )
    assert output.path.is_file()


def test_gif_frame_declaring_huge_extents_is_too_large(out_dir: Path) -> None:
    source = as_input(sample("pillow/decompression_bomb_extents.gif"))
    with pytest.raises(InputTooLarge):
        to_gif([source], out_dir, ImageOptions(), limits=Limits())


def test_png_declaring_too_many_pixels_is_refused_before_decoding(tmp_path: Path, out_dir: Path) -> None:
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
    path = tmp_path / "claims.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)))
    with pytest.raises(InputTooLarge, match="pixels"):
        to_png([as_input(path)], out_dir, ImageOptions(), limits=Limits())


_MEASURE = """
import json, resource, sys
from pathlib import Path
from exporters.base import ConversionError, Limits
from exporters.images import ImageOptions, to_png
from tests.exporters.samples import as_input
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    to_png([as_input(Path(sys.argv[1]))], Path(sys.argv[2]), ImageOptions(), limits=Limits())
    code = "ok"
except ConversionError as exc:
    code = exc.code
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "grew_kb": after - before}))
"""


def test_compression_bomb_fails_without_the_memory_jumping(tmp_path: Path, out_dir: Path) -> None:
    # 60 MP (over the 50 MP default) that would take 180 MB decoded, in a file of a few hundred KB.
    bomb = zero_png(tmp_path / "bomb.png", 7746, 7746)
    assert bomb.stat().st_size < 1_000_000

    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(bomb), str(out_dir)],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip

    measured = json.loads(result.stdout)
    assert measured["code"] == "input_too_large"
    assert measured["grew_kb"] < 20_000, f"peak memory grew by {measured['grew_kb']} KB"


@pytest.mark.parametrize("name", ["heic", "avif", "webp", "gif", "tiff", "jpeg", "png"])
def test_truncated_files_are_corrupt(name: str, tmp_path: Path, out_dir: Path) -> None:
    encoder = ENCODERS[name]
    if name == "heic" and "HEIF" not in Image.SAVE:
        pytest.skip("no HEIC encoder to make the sample")
    whole = save(noise(160, 120), tmp_path / f"whole.{encoder.extension}", encoder.pillow_format)
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{encoder.extension}"
    cut.write_bytes(data[: len(data) * 2 // 3])

    with pytest.raises(CorruptInput):
        convert_each([as_input(cut)], out_dir, LossyImageOptions(), limits=Limits(), encoder=ENCODERS["png"])


def test_output_of_a_large_photo_is_limited_on_every_side(tmp_path: Path, out_dir: Path) -> None:
    source = as_input(save(gradient(900, 600), tmp_path / "g.png", "PNG"))
    with pytest.raises(InputTooLarge, match="no side may exceed 500"):
        to_png([source], out_dir, ImageOptions(rotate=90), limits=Limits(max_output_side_px=500))
