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

from exporters import media

MiB = 1024 * 1024

# -- the one table of measured factors ---------------------------------------------------------
#
# Peak bytes a job adds to a worker process, per unit of what its inputs declare. Measured with
# `python benchmarks/memory.py` (each conversion in a fresh process that has loaded what a worker
# loads: its peak RSS during the conversion minus its RSS before, divided by the units). Its run
# of 2026-11-30 on this project's (shared, 2-core) machine, as it printed:
#
#   factor              case                                     added MiB  per unit of
#   image               7000×7000 RGBA PNG (16-bit) → PNG         186.9      1.00 decoded
#                       7071×7071 RGB JPEG (50 MP) → JPEG         191.1      1.34 decoded
#                       5000×5000 I;16 PNG → PNG                   81.6      1.71 decoded
#                       3464×3464 JPEG → PNG                       46.4      1.35 decoded
#                       3464×3464 JPEG → TIFF                      48.6      1.42 decoded
#   image_resized       3464×3464 JPEG → JPEG 2000 px             122.6      3.57 decoded
#                       7071×7071 JPEG (50 MP) → JPEG 1600 px     127.3      0.89 decoded (3.57 of the 1/2-scale decode)
#                       7000×7000 RGBA PNG → JPEG 4000 px         755.6      4.04 decoded
#   encoder_avif        3464×3464 JPEG → AVIF                     334.4      9.74 decoded (8.39 over "image")
#   encoder_webp        3464×3464 JPEG → WebP                     250.8      7.31 decoded (5.96 over "image")
#   encoder_gif         3464×3464 JPEG → GIF                      138.4      4.03 decoded (2.68 over "image")
#   image_pdf           7000×7000 RGBA PNG (16-bit) → PDF         203.6      1.09 decoded
#                       3464×3464 RGB PNG of noise → PDF           71.7      2.09 decoded (the file is 0.77 of it)
#   jpeg_pdf_reencoded  3464×3464 CMYK JPEG → PDF                 102.0      2.23 decoded
#   jpeg_pdf_as_is      7071×7071 RGB JPEG (50 MP) → PDF           59.5      1.98 file
#   pdf_render          3 A4 pages at 600 dpi → PNG               505.4      3.81 bitmap (4.92 before one malloc arena)
#   document            CSV → PDF                                   2.6      1.58 file
#                       JSON table → PDF                            2.7      1.24 file
#                       text → PDF                                  2.8      2.05 file
#   markdown            Markdown (134 pages) → PDF                 27.7    369.99 file
#
# Each factor is the largest measured for it, rounded up: the estimate errs high.
FACTORS: dict[str, float] = {
    # Image to image at its own size: × decoded bytes (width × height × bytes per pixel × frames
    # kept): the decoded pixels, the encoder's buffers and its output.
    "image": 1.8,
    # Image to image resized or cropped (and pictures of a Markdown file): × decoded bytes; the
    # resampler holds its own copies of the input and the output.
    "image_resized": 4.1,
    # Encoders that hold far more than their output: × the output's bytes (decoded × scale²), on
    # top of the above.
    "encoder_avif": 8.5,
    "encoder_webp": 6.2,
    "encoder_gif": 2.8,
    # Image (not JPEG) into a PDF: × decoded bytes, flattened and compressed in strips (pdf.py) ...
    "image_pdf": 1.2,
    # ... plus × the input file's bytes for the compressed stream (as large as the pixels are random).
    "image_pdf_stream": 1.3,
    # A JPEG into a PDF whose colours must change (CMYK, a wide-gamut profile): × decoded bytes.
    "jpeg_pdf_reencoded": 2.4,
    # A JPEG carried into a PDF as it is: × the file's bytes (read, stripped of metadata, written).
    "jpeg_pdf_as_is": 2.5,
    # PDF page rendering: × bytes of the largest page's bitmap (4 bytes a pixel at the asked dpi
    # or width): PDFium's bitmap, its RGB copy, the grey test's planes, the encoder.
    "pdf_render": 5.0,
    # Text, tables (CSV, TSV, JSON), PDF to PDF: × the input's bytes; all are streamed.
    "document": 4.0,
    # Markdown to PDF: × the input's bytes (typeset whole), capped by MARKDOWN_PAGE_BYTES × max_pages.
    "markdown": 400.0,
    # HTML to PDF (WeasyPrint): bytes per element of one document (its start tags, counted), its box
    # tree while it lays out; measured with exporters.typeset on tables: 20,000 elements, 96 pages,
    # 305 MiB added (16,000 bytes each). Capped at typeset.MAX_ELEMENTS, which it refuses past.
    "html_element": 16_500.0,
    # A template's JSON data, parsed whole for the run: × its bytes (16 MiB of invoice records
    # parsed to 78 MiB: 4.8).
    "html_data": 5.0,
}
#: What one page of typeset Markdown holds until the document is built (27.7 MiB for 134 pages, above).
MARKDOWN_PAGE_BYTES = 256 * 1024
#: Every job, however small: buffers, the converter's objects, the outputs' upload.
JOB_BASE_BYTES = 16 * MiB

#: Formats whose output keeps an animation's frames (or a TIFF's pages): their records say so.
_FRAMES_KEPT = {name for name, record in media.IMAGE_OUTPUTS.items() if record.animation}


@dataclass(frozen=True)
class Estimate:
    """A job's estimated peak and what it was derived from (for the messages that quote it)."""

    peak_bytes: int
    basis: str  # e.g. "7000×7000 pixels, RGBA"
    pixels: int = 0  # decoded picture pixels across the inputs (width × height × frames), when known

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


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says: enough to size its decoding."""

    width: int
    height: int
    mode: str
    frames: int  # frames that will be decoded and kept
    format: str
    icc_profile: bytes | None

    @property
    def decoded_bytes(self) -> int:
        per_pixel = max(bytes_per_pixel(self.mode), 4 if self.mode in ("P", "PA") else 1)  # to RGB(A)
        return self.width * self.height * per_pixel * self.frames

    @property
    def basis(self) -> str:
        frames = f" × {self.frames} frames" if self.frames > 1 else ""
        return f"{self.width}×{self.height} pixels, {self.mode}{frames}"


def image_header(file: BinaryIO, *, kept_frames: bool, max_frames: int) -> ImageHeader:
    """The header of the image in `file` (nothing decoded). Raises what Pillow raises."""
    from PIL import Image

    import exporters.pictures  # noqa: F401  # Pillow as the picture engine sets it up (the HEIF opener)

    with Image.open(file) as image:
        frames = max(1, min(getattr(image, "n_frames", 1), max_frames)) if kept_frames else 1
        icc = image.info.get("icc_profile")
        return ImageHeader(
            *image.size,
            image.mode,
            frames,
            image.format or "",
            icc if isinstance(icc, bytes) and icc else None,
        )


def output_scale(header: ImageHeader, options: Mapping[str, Any]) -> float:
    """The most an output can be scaled from the input by width/height (either orientation)."""
    box_w, box_h = options.get("width"), options.get("height")
    if not box_w and not box_h:
        return 1.0
    scales = []
    for w, h in ((header.width, header.height), (header.height, header.width)):
        scales += [box_w / w] if box_w else []
        scales += [box_h / h] if box_h else []
    scale: float = max(scales)
    return scale if options.get("enlarge") else min(scale, 1.0)


def pdf_render_bytes(file: BinaryIO, *, dpi: float, width_px: int | None, pages: int) -> tuple[int, str]:
    """(bytes of the largest page's bitmap, basis) of the PDF in `file`: page sizes only, nothing rendered."""
    import pypdfium2 as pdfium

    from exporters.pdfium import PDFIUM_LOCK

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
    if kind == "html":
        return _html_estimate(inputs, options, max_frames=max_frames)
    best = pixels = 0
    basis = "nothing to decode"
    for item in inputs:
        peak, why, item_pixels = _input_peak(
            kind, target, item, options, max_frames=max_frames, max_pages=max_pages
        )
        pixels += item_pixels
        if peak > best:
            best, basis = peak, why
    return Estimate(JOB_BASE_BYTES + best, basis, pixels)


#: A template's data that one document of a per_record run shows, assumed (the records are not
#: counted, which would mean parsing the data): a generous invoice.
HTML_RECORD_BYTES = 64 * 1024
#: Bytes of template data that make one element when rendered, assumed generously (`<td>{{ v }}</td>`).
HTML_DATA_BYTES_PER_ELEMENT = 16
#: WeasyPrint, Pango and the fonts' configuration, loaded by a process's first HTML job (measured:
#: 30 MiB for the import alone; a 12,000-element table added 206 MiB in all, 17 MiB above its elements).
HTML_ENGINE_BYTES = 40 * MiB


def _html_estimate(
    inputs: Sequence[EstimateInput], options: Mapping[str, Any], *, max_frames: int
) -> Estimate:
    """HTML to PDF: one document's box tree, the pictures it shows and the template's data, all at once."""
    from exporters.typeset import CSS_TYPE, HTML_TYPE, MAX_ELEMENTS, count_elements

    elements = 0
    pictures = 0
    data_bytes = 0
    for item in inputs:
        if item.content_type == HTML_TYPE:
            with item.open() as file:
                elements = max(elements, count_elements(file.read().decode("latin-1")))
        elif item.content_type.startswith("image/"):
            with item.open() as file:
                header = image_header(file, kept_frames=False, max_frames=max_frames)
            pictures += math.ceil(header.decoded_bytes * FACTORS["image"])
        elif item.content_type != CSS_TYPE and not item.content_type.startswith("font/"):
            data_bytes += item.size
    if options.get("template"):
        shown = min(data_bytes, HTML_RECORD_BYTES) if options.get("per_record") else data_bytes
        elements += shown // HTML_DATA_BYTES_PER_ELEMENT
    elements = min(elements, MAX_ELEMENTS)  # the typesetter refuses a document past it
    data = data_bytes * FACTORS["html_data"] if options.get("template") else 0
    peak = math.ceil(HTML_ENGINE_BYTES + elements * FACTORS["html_element"] + pictures + data)
    return Estimate(JOB_BASE_BYTES + peak, f"{elements:,} HTML elements")


def _input_peak(
    kind: str,
    target: str,
    item: EstimateInput,
    options: Mapping[str, Any],
    *,
    max_frames: int,
    max_pages: int,
) -> tuple[int, str, int]:
    """(peak bytes, what it rests on, decoded picture pixels) of one input."""
    if item.content_type.startswith("image/"):
        kept = target in _FRAMES_KEPT and not options.get("first_frame_only")
        with item.open() as file:
            header = image_header(file, kept_frames=kept, max_frames=max_frames)
        pixels = header.width * header.height * header.frames
        return _image_peak(header, kind, target, item.size, options), header.basis, pixels
    if item.content_type == "application/pdf" and target in ("png", "jpeg", "webp"):
        width = options.get("width") or (256 if options.get("thumbnail") else None)
        dpi = float(options.get("dpi") or 150)
        with item.open() as file:
            bitmap, basis = pdf_render_bytes(
                file, dpi=dpi, width_px=width, pages=1 if options.get("thumbnail") else max_pages
            )
        return math.ceil(bitmap * FACTORS["pdf_render"]) + item.size, basis, 0
    if kind == "markdown":
        typeset = min(item.size * FACTORS["markdown"], MARKDOWN_PAGE_BYTES * max_pages)
        return math.ceil(typeset), f"{item.size:,} bytes of Markdown", 0
    return math.ceil(item.size * FACTORS["document"]), f"{item.size:,} bytes of {item.content_type}", 0


def _image_peak(
    header: ImageHeader, kind: str, target: str, file_bytes: int, options: Mapping[str, Any]
) -> int:
    decoded = header.decoded_bytes
    if target == "pdf" and kind in ("image", "pdf"):  # a page per picture (images_to_pdf)
        if header.format in ("JPEG", "MPO"):
            from exporters.pictures import is_srgb

            as_is = header.mode == "L" or (
                header.mode == "RGB" and (header.icc_profile is None or is_srgb(header.icc_profile))
            )
            if as_is:
                return math.ceil(file_bytes * FACTORS["jpeg_pdf_as_is"])
            return math.ceil(decoded * FACTORS["jpeg_pdf_reencoded"])
        return math.ceil(decoded * FACTORS["image_pdf"] + file_bytes * FACTORS["image_pdf_stream"])
    scale = output_scale(header, options)
    resized = kind == "markdown" or scale != 1.0 or bool(options.get("crop"))
    if header.format in ("JPEG", "MPO") and header.frames == 1 and scale < 1.0 and not options.get("crop"):
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale when the output is that much smaller (pictures._draft).
        from exporters.resample import REDUCE_MARGIN

        reduction = 1
        while reduction < 8 and 1 / (2 * reduction) >= REDUCE_MARGIN * scale:
            reduction *= 2
        decoded //= reduction * reduction
        scale *= reduction
    peak = decoded * FACTORS["image_resized" if resized else "image"]
    encoder = FACTORS.get(f"encoder_{target}", 0.0)
    return math.ceil(peak + decoded * scale * scale * encoder)
