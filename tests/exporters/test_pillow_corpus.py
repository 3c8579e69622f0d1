"""Every sample of tests/fixtures/pillow (a subset of Pillow's Tests/images) answered right, to PNG and to PDF.

Each file goes through scripts/pillow-corpus's outcome_of, as the whole folder does by hand (see
tests/fixtures/README.md): sniffed as an upload is, converted with default options and limits. An
answer is right when the conversion succeeds, the upload is refused, or the job fails with a user
error code; anything else (an exception that would be retried as internal_error) is a defect.
"""

from __future__ import annotations

import errno
import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from exporters.base import CorruptInput, InputFile, Limits, reading_input
from exporters.images import ImageOptions, to_png

ROOT = Path(__file__).parent.parent.parent
PILLOW = ROOT / "tests" / "fixtures" / "pillow"
SAMPLES = sorted(p.name for p in PILLOW.iterdir() if p.is_file() and p.name not in ("LICENSE", "README.md"))


def _load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("pillow_corpus", str(ROOT / "scripts" / "pillow-corpus"))
    spec = importlib.util.spec_from_loader("pillow_corpus", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


CORPUS = _load_script()

#: What the notable samples must come to (the others: any right answer).
EXPECTED = {
    # Pillow raises TypeError("Missing dimensions") while counting their frames.
    ("crash-2020-10-test.tif", "png"): "failed:corrupt_input",
    ("crash-63b1dffefc8c075ddc606c0a2f5fdc15ece78863.tif", "png"): "failed:corrupt_input",
    ("crash-2020-10-test.tif", "pdf"): "failed:corrupt_input",
    ("crash-63b1dffefc8c075ddc606c0a2f5fdc15ece78863.tif", "pdf"): "failed:corrupt_input",
    # Decoded by Pillow, but their bytes would be broken in a PDF: re-encoded, not failed.
    ("photoshop-200dpi-broken.jpg", "pdf"): "succeeded",
    ("junk_jpeg_header.jpg", "pdf"): "succeeded",
    ("truncated_app14.jpg", "pdf"): "succeeded",
    # Pictures written in ASCII: refused, not printed as text.
    ("zero_bb.eps", "pdf"): "refused:unsupported_input",
    ("hopper.xpm", "pdf"): "refused:unsupported_input",
    ("hopper.xbm", "pdf"): "refused:unsupported_input",
    ("hopper_1bit_plain.pbm", "pdf"): "refused:unsupported_input",
    ("hopper.psd", "pdf"): "refused:unsupported_input",
    # A header declaring 3,158,064 × 48 pixels: refused before decoding.
    ("l2rgb_read.bmp", "png"): "failed:input_too_large",
    ("decompression_bomb.gif", "png"): "failed:input_too_large",
    # A valid BMP variant Pillow does not decode, a TIFF compressed with WebP: not our bug, not retried.
    ("rgb32bf.bmp", "png"): "failed:corrupt_input",
    ("hopper_webp.tif", "png"): "failed:corrupt_input",
    ("libtiff_segfault.tif", "png"): "failed:corrupt_input",
}


@pytest.mark.parametrize("target", ["png", "pdf"])
@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_is_answered_right(name: str, target: str, tmp_path: Path) -> None:
    outcome = CORPUS.outcome_of(PILLOW / name, target, tmp_path)

    assert outcome.startswith(CORPUS.GOOD), f"{name} -> {target}: {outcome}"
    if (name, target) in EXPECTED:
        assert outcome == EXPECTED[(name, target)]


def test_the_subset_keeps_the_notable_samples() -> None:
    assert {name for name, _target in EXPECTED} <= set(SAMPLES)


def test_an_error_of_any_type_from_a_decoder_is_corrupt_input(out_dir: Path) -> None:
    source = InputFile(PILLOW / "crash-2020-10-test.tif", "scan.tif", "image/tiff")

    with pytest.raises(CorruptInput) as caught:
        to_png([source], out_dir, ImageOptions(), limits=Limits())

    assert caught.value.message == (
        '"scan.tif" cannot be read as a TIFF image: it is damaged or incomplete, or a variant of the '
        "format this service does not decode"
    )
    assert isinstance(caught.value.__cause__, TypeError)  # not in any list of decode errors


def test_our_own_disk_failing_is_not_blamed_on_the_input(tmp_path: Path, out_dir: Path) -> None:
    # The input file gone from the worker's disk: an OSError with an errno, ours to retry.
    source = InputFile(tmp_path / "gone.jpg", "photo.jpg", "image/jpeg")

    with pytest.raises(FileNotFoundError):
        to_png([source], out_dir, ImageOptions(), limits=Limits())


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_the_boundary_lets_operating_system_errors_through(code: int, tmp_path: Path) -> None:
    source = InputFile(tmp_path / "x.png", "x.png", "image/png")

    with pytest.raises(OSError) as caught, reading_input(source, "PNG image"):
        raise OSError(code, "from the disk")
    assert not isinstance(caught.value, CorruptInput)
    assert caught.value.errno == code


def test_the_boundary_lets_memory_errors_through(tmp_path: Path) -> None:
    source = InputFile(tmp_path / "x.png", "x.png", "image/png")

    with pytest.raises(MemoryError), reading_input(source, "PNG image"):
        raise MemoryError
