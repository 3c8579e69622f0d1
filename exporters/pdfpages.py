"""Pictures as PDF pages: the streaming writer behind images to PDF and PDF merges that take images.

A page per picture, written as it comes, so memory holds one picture at a time. JPEGs are embedded as
they are (turned by the page, not re-encoded) without their metadata.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfutils import readJPEGInfo

from exporters.base import (
    InputFile,
    Limits,
)
from exporters.cancel import checkpoint
from exporters.jpeg import passthrough
from exporters.options import ImagePdfOptions
from exporters.pages import PAGE_SIZES
from exporters.pictures import (
    decode_upright,
    flatten,
    is_srgb,
    metadata_found,
    open_image,
    orientation_of,
    to_srgb,
    to_working_mode,
)

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


def write_pages(
    inputs: Sequence[InputFile], path: Path, options: ImagePdfOptions, *, limits: Limits
) -> set[str]:
    """A PDF at `path` of a page per input, each upright and centred; returns the metadata groups left out.

    Raises UnsupportedInput, CorruptInput, InputTooLarge.
    """
    removed: set[str] = set()
    # Written page by page: one picture in memory at a time, however many the album has.
    with _StreamingPdf(path) as document:
        for source in inputs:
            checkpoint()
            picture, orientation, left_out = _embeddable(source, limits=limits)
            removed |= left_out
            _add_page(document, picture, orientation, options)
    return removed


@dataclass(frozen=True)
class _Picture:
    """An image XObject's stream and what the PDF must say about it."""

    data: bytes
    width: int
    height: int
    colour_space: str  # DeviceRGB or DeviceGray
    filter: str  # DCTDecode (a JPEG as it is) or FlateDecode (zlib-compressed pixels)


def _embeddable(source: InputFile, *, limits: Limits) -> tuple[_Picture, int, set[str]]:
    """(the picture as stored, the EXIF orientation still to apply, the metadata groups left out).

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
            # The picture's own bytes, without EXIF (GPS), XMP, IPTC or comments: a PDF viewer would
            # not show them, but anyone can extract the stream and read them. A file whose markers
            # cannot be followed to its end (junk between segments, cut short) is decoded by
            # Pillow and re-encoded below instead: a PDF reader would show nothing for it.
            stripped = passthrough(source.path.read_bytes())
            if stripped is not None:
                colour_space = "DeviceGray" if image.mode == "L" else "DeviceRGB"
                picture = _Picture(stripped.data, *image.size, colour_space, "DCTDecode")
                return picture, orientation, stripped.removed
        removed = metadata_found(image)
        decode_upright(image, source)
        pixels = to_working_mode(image, source)
        pixels = to_srgb(pixels, icc)
        if image.format not in ("JPEG", "MPO"):
            data, colour_space = _flate_in_strips(pixels)
            return _Picture(data, *pixels.size, colour_space, "FlateDecode"), 1, removed
        pixels = flatten(pixels, _WHITE)
        if pixels is image:
            pixels = image.copy()  # closing the opened image frees its pixels
        if image.format in ("JPEG", "MPO"):
            # A photo whose colours had to change (CMYK, a wide-gamut profile) stays a JPEG: stored
            # losslessly it would be several times the size of the original.
            buffer = io.BytesIO()
            pixels.save(buffer, format="JPEG", quality=95, subsampling=0)
            colour_space = "DeviceGray" if pixels.mode == "L" else "DeviceRGB"
            return _Picture(buffer.getvalue(), *pixels.size, colour_space, "DCTDecode"), 1, removed
        raise AssertionError("only JPEGs reach this point")  # the others returned in strips above


#: Bytes of decoded pixels flattened and compressed at a time (see _flate_in_strips).
STRIP_BYTES = 4 * 1024 * 1024


def _flate_in_strips(pixels: Image.Image) -> tuple[bytes, str]:
    """(zlib stream, colour space) of the picture flattened onto white, a strip of rows at a time.

    Whole, a 7000×7000 RGBA picture needed a flattened copy, its RGB conversion and its raw bytes
    beside the decoded pixels (547 MB for a 381 KB PNG); in strips only the decoded pixels are whole.
    """
    width, height = pixels.size
    mode = "L" if pixels.mode in ("L", "LA") else "RGB"  # flatten keeps grey on a white background
    rows = max(1, STRIP_BYTES // (width * 4))
    compressor = zlib.compressobj(6)
    # Grown in place, and getvalue() hands the buffer over: a list of parts joined at the end
    # would hold the whole stream twice.
    data = io.BytesIO()
    for top in range(0, height, rows):
        strip = flatten(pixels.crop((0, top, width, min(height, top + rows))), _WHITE)
        data.write(compressor.compress((strip if strip.mode == mode else strip.convert(mode)).tobytes()))
    data.write(compressor.flush())
    return data.getvalue(), "DeviceGray" if mode == "L" else "DeviceRGB"


def _embeds_as_is(path: Path, image: Image.Image) -> bool:
    """Whether reportlab reads this JPEG (8-bit, baseline or progressive) as Pillow does: same size and colours."""
    with path.open("rb") as file:
        try:
            width, height, components, _dpi = readJPEGInfo(file)
        except Exception:  # reportlab raises anything from struct.error to its own PDFError
            return False
    return (width, height) == image.size and components == len(image.getbands())


def _page_size(upright: tuple[int, int], options: ImagePdfOptions) -> tuple[float, float]:
    """The page for an image of `upright` pixels, in points."""
    width, height = upright
    if options.page_size == "fit":
        scale = min(1.0, MAX_PAGE_SIDE_PT / max(width, height))
        return width * scale, height * scale
    short, long = sorted(PAGE_SIZES[options.page_size])
    landscape = options.orientation == "landscape" or (options.orientation == "auto" and width > height)
    return (long, short) if landscape else (short, long)


def _add_page(document: _StreamingPdf, picture: _Picture, orientation: int, options: ImagePdfOptions) -> None:
    """One page with the picture, turned upright, as large as fits within the margins, centred."""
    a, b, c, d = _ORIENTATION_MATRIX[orientation]
    stored = (picture.width, picture.height)
    upright = (stored[1], stored[0]) if a == 0 else stored
    page_w, page_h = _page_size(upright, options)
    margin = 0.0 if options.page_size == "fit" else options.margin_mm * mm
    scale = min((page_w - 2 * margin) / upright[0], (page_h - 2 * margin) / upright[1])
    drawn_w, drawn_h = stored[0] * scale, stored[1] * scale
    # Turn about the page's centre, then draw the stored picture centred on it: the image's unit
    # square is scaled to its drawn size, moved to be centred on the origin, then turned upright.
    content = (
        f"q {a} {b} {c} {d} {_num(page_w / 2)} {_num(page_h / 2)} cm "
        f"{_num(drawn_w)} 0 0 {_num(drawn_h)} {_num(-drawn_w / 2)} {_num(-drawn_h / 2)} cm /Im0 Do Q"
    )
    document.add_page(page_w, page_h, picture, content.encode())


def _num(value: float) -> str:
    """A PDF number: fixed precision, no exponent, no trailing zeros (the same text on every run)."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


class _StreamingPdf:
    """A minimal PDF writer for one image per page, writing each page as it comes.

    reportlab builds the whole document in memory before writing it, which for an album of photos
    means every JPEG at once (and several copies while it is assembled). Here each page's picture
    is written and forgotten; only the objects' offsets are kept. Nothing varies between runs (no
    dates, no random IDs), so the same album gives the same bytes.
    """

    _CATALOG, _PAGES, _INFO = 1, 2, 3

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")
        self._offsets: dict[int, int] = {}
        self._pages: list[int] = []
        self._next = 4
        self._file.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")

    def __enter__(self) -> _StreamingPdf:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if kind is None:
            self._finish()
        self._file.close()

    def _object(self, number: int, body: bytes, stream: bytes | None = None) -> None:
        self._offsets[number] = self._file.tell()
        self._file.write(b"%d 0 obj\n" % number + body)
        if stream is not None:
            self._file.write(b"\nstream\n")
            self._file.write(stream)
            self._file.write(b"\nendstream")
        self._file.write(b"\nendobj\n")

    def add_page(self, width: float, height: float, picture: _Picture, content: bytes) -> None:
        image, contents, page = self._next, self._next + 1, self._next + 2
        self._next += 3
        self._object(
            image,
            (
                f"<< /Type /XObject /Subtype /Image /Width {picture.width} /Height {picture.height} "
                f"/ColorSpace /{picture.colour_space} /BitsPerComponent 8 /Filter /{picture.filter} "
                f"/Length {len(picture.data)} >>"
            ).encode(),
            picture.data,
        )
        self._object(contents, b"<< /Length %d >>" % len(content), content)
        self._object(
            page,
            (
                f"<< /Type /Page /Parent {self._PAGES} 0 R /MediaBox [0 0 {_num(width)} {_num(height)}] "
                f"/Resources << /XObject << /Im0 {image} 0 R >> >> /Contents {contents} 0 R >>"
            ).encode(),
        )
        self._pages.append(page)

    def _finish(self) -> None:
        kids = " ".join(f"{page} 0 R" for page in self._pages)
        self._object(self._PAGES, f"<< /Type /Pages /Kids [{kids}] /Count {len(self._pages)} >>".encode())
        self._object(self._CATALOG, f"<< /Type /Catalog /Pages {self._PAGES} 0 R >>".encode())
        self._object(self._INFO, b"<< /Producer (exportd) /Creator (exportd) >>")
        xref = self._file.tell()
        count = self._next
        lines = [b"xref\n0 %d\n" % count, b"0000000000 65535 f \n"]
        lines += [b"%010d 00000 n \n" % self._offsets[number] for number in range(1, count)]
        self._file.write(b"".join(lines))
        self._file.write(
            b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (count, self._CATALOG, self._INFO, xref)
        )
