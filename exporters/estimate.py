"""How much memory a conversion will need at its peak, estimated from the inputs' headers alone.

Nothing here decodes a pixel or renders a page: an image is opened for its size, mode and frame
count, a PDF for its page sizes, other files count by their size. The estimate is what a worker
process must have free for the job on top of its own base (interpreter, libraries), from the
measured factors in FACTORS; actors/admission.py admits jobs against a budget with it.

Every converter handles one input at a time (a page per image, a PDF page rendered, encoded and
dropped before the next), so a job's peak is its largest input's, not their sum.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO

from PIL import Image

MiB = 1024 * 1024

# -- the one table of measured factors ---------------------------------------------------------
#
# Peak bytes a job adds to a worker process, per unit of what its inputs declare. Measured with
# `python benchmarks/memory.py` (each conversion in a fresh process that has loaded what a worker
# loads; its peak RSS during the conversion minus its RSS before, divided by the units), here on
# 2026-11-30:
#
#   family      case                                       added MiB  units            factor
#   image       7000×7000 RGBA PNG (16-bit) → PNG              373.9  196 MB decoded    2.00
#   image       7071×7071 RGB JPEG (50 MP) → JPEG              382.1  150 MB decoded    2.67
#   image       7071×7071 RGB JPEG (50 MP) → JPEG 1600 px      129.9  150 MB decoded    0.91
#   image       5000×5000 I;16 PNG → PNG                        81.7   50 MB decoded    1.71
#   image_pdf   7000×7000 RGBA PNG (16-bit) → PDF              203.9  196 MB decoded    1.09
#   image_pdf   7071×7071 RGB JPEG (50 MP) → PDF (as is)        59.5  150 MB decoded    0.42
#   pdf_render  3 A4 pages at 600 dpi → PNG                    653.2  139 MB bitmap     4.92
#   document    1728 kB CSV → PDF                                2.6  1.7 MB input      1.56
#   document    2324 kB JSON table → PDF                         2.6  2.3 MB input      1.17
#   document    1420 kB text → PDF                               2.8  1.4 MB input      2.03
#   markdown    79 kB Markdown (134 pages) → PDF                27.8   79 kB input    354
#
# Each factor is the largest measured in its family, rounded up: the estimate errs high.
FACTORS: dict[str, float] = {
    # Image to image: × bytes of the decoded frame(s) (width × height × bytes per pixel × frames
    # kept): the decoded frame beside its converted copy and the encoder's buffers.
    "image": 2.8,
    # Image to PDF: × bytes of the decoded picture, flattened and compressed in strips (pdf.py).
    "image_pdf": 1.2,
    # PDF page rendering: × bytes of the largest page's bitmap (4 bytes a pixel at the asked dpi
    # or width): PDFium's bitmap, its RGB copy, the grey test's planes, the encoder.
    "pdf_render": 5.0,
    # Text, tables (CSV, TSV, JSON), PDF to PDF: × the input's bytes; all are streamed.
    "document": 4.0,
    # Markdown to PDF: × the input's bytes (typeset whole), capped by MARKDOWN_PAGE_BYTES × max_pages.
    "markdown": 400.0,
}
#: What one page of typeset Markdown holds until the document is built (27.8 MiB / 134 pages, above).
MARKDOWN_PAGE_BYTES = 256 * 1024
#: Every job, however small: buffers, the converter's objects, the outputs' upload.
JOB_BASE_BYTES = 16 * MiB

_FRAMES_KEPT = {"png", "webp", "gif", "tiff"}  # formats whose output keeps an animation's frames


@dataclass(frozen=True)
class Estimate:
    """A job's estimated peak and what it was derived from (for the messages that quote it)."""

    peak_bytes: int
    basis: str  # e.g. "7000×7000 pixels, RGBA"

    @property
    def peak_mib(self) -> int:
        return math.ceil(self.peak_bytes / MiB)


Opener = Callable[[], AbstractContextManager[BinaryIO]]


@dataclass(frozen=True)
class EstimateInput:
    """An input as the estimate sees it: its media type, its size, and how to open its bytes."""

    content_type: str
    size: int
    open: Opener


def bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow holds per decoded pixel in `mode` (16-bit grey is 2, 32-bit is 4)."""
    if mode.startswith("I;16"):
        return 2
    if mode in ("I", "F", "RGBA", "RGBX", "CMYK", "RGBa", "LA", "La", "PA"):
        return 4 if mode not in ("LA", "La", "PA") else 2
    return len(mode) if mode in ("RGB", "YCbCr", "LAB", "HSV") else 1


def image_bytes(file: BinaryIO, *, kept_frames: bool, max_frames: int) -> tuple[int, str]:
    """(decoded bytes, basis) of the image in `file`, from its header. Raises what Pillow raises."""
    with Image.open(file) as image:
        width, height = image.size
        frames = 1
        if kept_frames:
            frames = max(1, min(getattr(image, "n_frames", 1), max_frames))
        per_pixel = max(bytes_per_pixel(image.mode), 3 if image.mode == "P" else 1)
        mode = image.mode
    frames_text = f" × {frames} frames" if frames > 1 else ""
    return width * height * per_pixel * frames, f"{width}×{height} pixels, {mode}{frames_text}"


def pdf_render_bytes(file: BinaryIO, *, dpi: float, width_px: int | None, pages: int) -> tuple[int, str]:
    """(bytes of the largest page's bitmap, basis) of the PDF in `file`: page sizes only, nothing rendered."""
    import pypdfium2 as pdfium

    from exporters.pdfdocs import PDFIUM_LOCK

    with PDFIUM_LOCK:
        document = pdfium.PdfDocument(file)
        try:
            largest = 0.0
            biggest = (0.0, 0.0)
            for index in range(min(len(document), pages)):
                w_pt, h_pt = document.get_page_size(index)
                scale = width_px / w_pt if width_px else dpi / 72.0
                area = (w_pt * scale) * (h_pt * scale)
                if area > largest:
                    largest, biggest = area, (w_pt * scale, h_pt * scale)
        finally:
            document.close()
    w, h = (math.ceil(v) for v in biggest)
    return w * h * 4, f"largest page {w}×{h} pixels"


def estimate_job(
    kind: str,
    target: str,
    inputs: Sequence[EstimateInput],
    options: Mapping[str, Any],
    *,
    max_frames: int = 100,
    max_pages: int = 500,
) -> Estimate:
    """The peak a job of `kind` inputs converted to `target` is expected to add to a worker process.

    Reads headers only. Raises whatever reading a header raises (a damaged file: the caller lets
    the converter give its own error).
    """
    best = 0
    basis = "nothing to decode"
    for item in inputs:
        peak, why = _input_peak(kind, target, item, options, max_frames=max_frames, max_pages=max_pages)
        if peak > best:
            best, basis = peak, why
    return Estimate(JOB_BASE_BYTES + best, basis)


def _input_peak(
    kind: str,
    target: str,
    item: EstimateInput,
    options: Mapping[str, Any],
    *,
    max_frames: int,
    max_pages: int,
) -> tuple[int, str]:
    if item.content_type.startswith("image/"):
        kept = target in _FRAMES_KEPT and not options.get("first_frame_only")
        with item.open() as file:
            decoded, basis = image_bytes(file, kept_frames=kept, max_frames=max_frames)
        # Pictures of a Markdown file are decoded, then resized to their drawn size.
        family = "image_pdf" if target == "pdf" and kind in ("image", "pdf") else "image"
        return math.ceil(decoded * FACTORS[family]), basis
    if item.content_type == "application/pdf" and target in ("png", "jpeg", "webp"):
        width = options.get("width") or (256 if options.get("thumbnail") else None)
        dpi = float(options.get("dpi") or 150)
        with item.open() as file:
            bitmap, basis = pdf_render_bytes(
                file, dpi=dpi, width_px=width, pages=1 if options.get("thumbnail") else max_pages
            )
        return math.ceil(bitmap * FACTORS["pdf_render"]) + item.size, basis
    if kind == "markdown":
        typeset = min(item.size * FACTORS["markdown"], MARKDOWN_PAGE_BYTES * max_pages)
        return math.ceil(typeset), f"{item.size:,} bytes of Markdown"
    return math.ceil(item.size * FACTORS["document"]), f"{item.size:,} bytes of {item.content_type}"
