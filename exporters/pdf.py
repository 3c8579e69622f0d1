"""Images to one PDF, a page per image; and the reportlab canvas every PDF of this package is drawn on."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from reportlab import rl_config
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase.pdfutils import readJPEGInfo
from reportlab.pdfgen.canvas import Canvas

from exporters.base import (
    InputFile,
    InputTooLarge,
    Limits,
    OutputFile,
    UnsupportedConversion,
    option,
)
from exporters.images import (
    UniqueNames,
    decode_upright,
    describe,
    flatten,
    is_srgb,
    metadata_found,
    open_image,
    orientation_of,
    to_srgb,
    to_working_mode,
)
from exporters.jpeg import strip_metadata

# reportlab wraps every stream, images included, in ASCII85 unless told otherwise: a quarter more
# bytes and most of the time spent on a PDF of photos. Version 5.1 has no per-canvas switch (each
# stream reads rl_config.useA85 when it is written), so it is turned off once, here, at import.
rl_config.useA85 = 0

PAGE_SIZES: dict[str, tuple[float, float]] = {"A4": A4, "Letter": LETTER}  # portrait, in points

#: The largest page side PDF viewers accept (Acrobat's implementation limit: 200 inches).
MAX_PAGE_SIDE_PT = 14_400.0

_WHITE = (255, 255, 255)

# How to draw a JPEG stored on its side so that it appears upright: for each EXIF orientation the
# matrix (a, b, c, d) of the PDF `cm` operator that maps the stored picture, centred on the origin
# with y up, onto the upright one (x' = a·x + c·y, y' = b·x + d·y), as Pillow's exif_transpose turns it.
_ORIENTATION_MATRIX: dict[int, tuple[int, int, int, int]] = {
    1: (1, 0, 0, 1),
    2: (-1, 0, 0, 1),  # mirrored left to right
    3: (-1, 0, 0, -1),  # upside down
    4: (1, 0, 0, -1),  # mirrored top to bottom
    5: (0, -1, -1, 0),  # transposed
    6: (0, -1, 1, 0),  # to be turned 90° clockwise
    7: (0, 1, 1, 0),  # transversed
    8: (0, 1, -1, 0),  # to be turned 90° anticlockwise
}


@dataclass(frozen=True)
class ImagePdfOptions:
    page_size: str = option(
        "A4",
        "Paper size: A4, Letter, or fit for a page exactly the size of each image (one point per "
        "pixel, scaled down only beyond 200 inches) without margins.",
        choices=("A4", "Letter", "fit"),
    )
    margin_mm: float = option(
        10.0,
        "White border in millimetres on every side of A4 and Letter pages; the image is scaled to fill "
        "the space within and centred. Not used with page_size fit.",
        minimum=0,
        maximum=100,
    )
    orientation: str = option(
        "auto",
        "Page orientation for A4 and Letter: portrait, landscape, or auto (landscape for an image "
        "wider than tall, each page on its own).",
        choices=("auto", "portrait", "landscape"),
    )


def new_canvas(path: Path, page_size: tuple[float, float], *, initial_font: str | None = None) -> Canvas:
    """A reportlab canvas that writes a compressed, byte-for-byte reproducible PDF to `path`."""
    canvas = Canvas(
        str(path), pagesize=page_size, pageCompression=1, invariant=True, initialFontName=initial_font
    )
    canvas.setCreator("exportd")
    return canvas


def images_to_pdf(
    inputs: Sequence[InputFile], out_dir: Path, options: ImagePdfOptions, *, limits: Limits
) -> list[OutputFile]:
    """All images in one PDF, a page per image in the order given, each upright and centred.

    JPEGs are embedded as they are (turned by the page, not re-encoded) without their metadata;
    JPEGs whose colours must change are re-encoded at quality 95; other images are stored losslessly.
    Raises UnsupportedConversion, UnsupportedInput, CorruptInput, InputTooLarge.
    """
    if not inputs:
        raise UnsupportedConversion("a PDF of images needs at least one image")
    if len(inputs) > limits.max_pages:
        raise InputTooLarge(
            f"{len(inputs)} images would make {len(inputs)} pages; the limit is {limits.max_pages}"
        )
    if len(inputs) == 1:
        name = UniqueNames().add(inputs[0].filename, "pdf", fallback="image")
    else:
        name = "images.pdf"
    path = out_dir / name
    canvas = new_canvas(path, A4)
    removed: set[str] = set()
    for index, source in enumerate(inputs):
        picture, stored_size, orientation, left_out = _embeddable(source, index=index, limits=limits)
        removed |= left_out
        _draw_page(canvas, picture, stored_size, orientation, options)
    canvas.save()
    details = {"metadata": {"removed": sorted(removed), "kept": []}}
    return [OutputFile(path=path, name=name, content_type="application/pdf", details=details)]


def _embeddable(
    source: InputFile, *, index: int, limits: Limits
) -> tuple[Any, tuple[int, int], int, set[str]]:
    """(what reportlab draws, its stored size in pixels, the EXIF orientation still to apply, the
    metadata groups left out).

    Raises UnsupportedInput, CorruptInput, InputTooLarge.
    """
    with open_image(source, limits=limits) as image:
        orientation = orientation_of(image, source)
        icc_profile = image.info.get("icc_profile")
        icc = icc_profile if isinstance(icc_profile, bytes) else None
        if (
            image.format in ("JPEG", "MPO")
            and image.mode in ("RGB", "L")
            and (icc is None or is_srgb(icc) or image.mode == "L")
            and _embeds_as_is(source.path, image)
        ):
            stored_size = image.size
            # The picture's own bytes, without EXIF (GPS), XMP, IPTC or comments: a PDF viewer would
            # not show them, but anyone can extract the stream and read them. Walking the markers to
            # the end-of-image also catches a truncated file without decoding a pixel (as img2pdf).
            stripped = strip_metadata(source.path.read_bytes(), name=describe(source))
            return _JpegAsIs(stripped.data, key=index), stored_size, orientation, stripped.removed
        removed = metadata_found(image)
        decode_upright(image, source)
        pixels = to_working_mode(image, source)
        pixels = to_srgb(pixels, icc)
        pixels = flatten(pixels, _WHITE)
        if pixels is image:
            pixels = image.copy()  # closing the opened image frees its pixels
        if image.format in ("JPEG", "MPO"):
            # A photo whose colours had to change (CMYK, a wide-gamut profile) stays a JPEG: stored
            # losslessly it would be several times the size of the original.
            buffer = io.BytesIO()
            pixels.save(buffer, format="JPEG", quality=95, subsampling=0)
            return _JpegAsIs(buffer.getvalue(), key=index), pixels.size, 1, removed
        return ImageReader(pixels), pixels.size, 1, removed


def _embeds_as_is(path: Path, image: Image.Image) -> bool:
    """Whether reportlab reads this JPEG (8-bit, baseline or progressive) as Pillow does: same size and colours."""
    with path.open("rb") as file:
        try:
            width, height, components, _dpi = readJPEGInfo(file)
        except Exception:  # reportlab raises anything from struct.error to its own PDFError
            return False
    return (width, height) == image.size and components == len(image.getbands())


class _JpegAsIs(ImageReader):  # type: ignore[misc]  # reportlab ships no type hints
    """A JPEG that reportlab embeds as its own bytes (DCTDecode) without decoding it."""

    def __init__(self, data: bytes, *, key: int) -> None:
        super().__init__(io.BytesIO(data))
        self._key = f"exportd-jpeg-{key}".encode()

    def getRGBData(self) -> bytes:
        # drawImage only hashes this to name the image object. The input's position names it:
        # unique in the document, the same on every run, and no hashing of megabytes (or decoding of
        # pixels, which reportlab's own getRGBData would do) for a name.
        self._dataA = None
        return self._key


def _page_size(upright: tuple[int, int], options: ImagePdfOptions) -> tuple[float, float]:
    """The page for an image of `upright` pixels, in points."""
    width, height = upright
    if options.page_size == "fit":
        scale = min(1.0, MAX_PAGE_SIDE_PT / max(width, height))
        return width * scale, height * scale
    short, long = sorted(PAGE_SIZES[options.page_size])
    landscape = options.orientation == "landscape" or (options.orientation == "auto" and width > height)
    return (long, short) if landscape else (short, long)


def _draw_page(
    canvas: Canvas,
    picture: Any,
    stored_size: tuple[int, int],
    orientation: int,
    options: ImagePdfOptions,
) -> None:
    """One page with the picture, turned upright, as large as fits within the margins, centred."""
    a, b, c, d = _ORIENTATION_MATRIX[orientation]
    swapped = a == 0
    upright = (stored_size[1], stored_size[0]) if swapped else stored_size
    page_w, page_h = _page_size(upright, options)
    margin = 0.0 if options.page_size == "fit" else options.margin_mm * mm
    scale = min((page_w - 2 * margin) / upright[0], (page_h - 2 * margin) / upright[1])
    canvas.setPageSize((page_w, page_h))
    canvas.saveState()
    canvas.transform(a, b, c, d, page_w / 2, page_h / 2)
    drawn_w, drawn_h = stored_size[0] * scale, stored_size[1] * scale
    canvas.drawImage(picture, -drawn_w / 2, -drawn_h / 2, drawn_w, drawn_h)
    canvas.restoreState()
    canvas.showPage()
