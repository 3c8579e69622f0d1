"""The ground floor: one record per format, the facts every other part reads.

The registry (what converts to what), the encoders (how an image is written), the sniffers (what
a file is) and the download route (which Content-Type a stored output gets) all read these
records instead of keeping tables of their own. Imports nothing but the standard library: the
API process reads it without loading any conversion library.

A new image output format is one row here (with its encoder parameters) and one test.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: Whether HEIC/HEIF pictures can be read: pillow-heif is installed. Looked up, not imported (the
#: API decides from this which uploads to accept; the workers import it when they decode).
HEIF_READS = importlib.util.find_spec("pillow_heif") is not None


@dataclass(frozen=True)
class Format:
    """Every fact about one format.

    An image format written by Pillow (`writes == "pillow"`) is an output of the image family; its
    fields from `grey` on are its encoder parameters.
    """

    name: str  # the format's name in the API (an output format's `format`), or a short name
    media_type: str
    extensions: tuple[str, ...]  # lower case, without the dot; outputs are named with the first
    kind: str | None = None  # the input kind it is read as (see the registry), None when never an input
    reads: str = ""  # what decodes it: "pillow", "pdfium", "libreoffice", "text", "weasyprint", "reportlab"
    writes: str = ""  # what encodes it: "pillow", "reportlab", "zipfile", "xlsxwriter", "text"
    pillow: str = ""  # Pillow's name for the format, its only decoder (and encoder) for this type
    animation: str = ""  # "animation" (frames over time), "pages" (a multi-page file) or "" (one picture)
    alpha: bool = False  # keeps transparency (else it is flattened onto the background)
    lossy: bool = False  # written with a quality setting
    compressible: bool = False  # its files still shrink in a ZIP (the others are stored as they are)
    # -- encoder parameters (Pillow writers) --
    grey: bool = False  # stores L and LA as they are (else they become RGB)
    icc: bool = False  # can embed an ICC profile
    exif: bool = False  # can embed an EXIF block
    dpi: bool = False  # records a resolution
    save_params: Mapping[str, Any] = field(default_factory=dict, compare=False)  # fixed arguments of save()
    animation_params: Mapping[str, Any] = field(default_factory=dict, compare=False)  # when several frames
    needs: tuple[str, ...] = ()  # worker capabilities writing it takes (see registry.probe_capabilities)
    description: str = ""  # the image conversion to this format, as GET /v1/formats shows it

    # The names the image encoders have always used for some of these facts.
    @property
    def pillow_format(self) -> str:
        return self.pillow

    @property
    def extension(self) -> str:
        return self.extensions[0]

    @property
    def content_type(self) -> str:
        return self.media_type

    @property
    def frames(self) -> str:
        return self.animation


# -- media types named in more than one place ----------------------------------------------------

PDF = "application/pdf"
ZIP = "application/zip"
JSON = "application/json"
CSV = "text/csv"
TSV = "text/tab-separated-values"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
CSS = "text/css"
OCTET_STREAM = "application/octet-stream"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
ODT = "application/vnd.oasis.opendocument.text"
ODS = "application/vnd.oasis.opendocument.spreadsheet"
ODP = "application/vnd.oasis.opendocument.presentation"
RTF = "application/rtf"
DOC = "application/msword"
XLS = "application/vnd.ms-excel"
PPT = "application/vnd.ms-powerpoint"


FORMATS: tuple[Format, ...] = (
    # Pictures: read and written by Pillow. The order is the order of the image conversions.
    Format("png", "image/png", ("png",), kind="image", reads="pillow", writes="pillow", pillow="PNG",
           animation="animation", alpha=True, grey=True, icc=True, exif=True, dpi=True,
           save_params={"compress_level": 6},
           description="Each image as a PNG (an APNG for an animation), upright, optionally resized."),
    # JPEG is also read as MPO: Pillow's JPEG reader opens the first picture of a dual camera.
    Format("jpeg", "image/jpeg", ("jpg", "jpeg"), kind="image", reads="pillow", writes="pillow", pillow="JPEG",
           lossy=True, grey=True, icc=True, exif=True, dpi=True,
           description="Each image as a JPEG, upright, optionally resized; transparency is flattened onto "
                       "the background."),
    Format("webp", "image/webp", ("webp",), kind="image", reads="pillow", writes="pillow", pillow="WEBP",
           animation="animation", alpha=True, lossy=True, icc=True, exif=True,
           save_params={"method": 4},
           description="Each image as a WebP (animated for an animation), upright, optionally resized."),
    Format("avif", "image/avif", ("avif",), kind="image", reads="pillow", writes="pillow", pillow="AVIF",
           alpha=True, lossy=True, icc=True, exif=True,
           save_params={"speed": 6, "max_threads": 1},  # one thread: reproducible bytes
           description="Each image as an AVIF, upright, optionally resized."),
    Format("tiff", "image/tiff", ("tif", "tiff"), kind="image", reads="pillow", writes="pillow", pillow="TIFF",
           animation="pages", alpha=True, compressible=True, grey=True, icc=True, exif=True, dpi=True,
           save_params={"compression": "tiff_adobe_deflate"},
           description="Each image as a losslessly compressed TIFF (every page of a multi-page TIFF)."),
    Format("gif", "image/gif", ("gif",), kind="image", reads="pillow", writes="pillow", pillow="GIF",
           animation="animation", alpha=True, grey=True,
           animation_params={"disposal": 2},
           description="Each image as a GIF of at most 256 colours (animated for an animation)."),
    Format("bmp", "image/bmp", ("bmp",), kind="image", reads="pillow", writes="pillow", pillow="BMP",
           compressible=True, grey=True, dpi=True,
           description="Each image as a BMP; transparency is flattened onto the background."),
    # Read only with pillow-heif; written only where libheif has an HEVC encoder (a worker capability).
    Format("heic", "image/heic", ("heic", "heif"), kind="image" if HEIF_READS else None,
           reads="pillow" if HEIF_READS else "", writes="pillow", pillow="HEIF", alpha=True, lossy=True,
           icc=True, exif=True, needs=("heic_write",),
           description="Each image as an HEIC, upright, optionally resized."),
    # Documents.
    Format("text", TEXT, ("txt",), kind="text", reads="text"),
    Format("markdown", MARKDOWN, ("md", "markdown", "mdown", "mkd"), kind="markdown", reads="text"),
    Format("csv", CSV, ("csv",), kind="table", reads="text", writes="text"),
    Format("tsv", TSV, ("tsv", "tab"), kind="table", reads="text"),
    Format("json", JSON, ("json",), kind="table", reads="text", writes="text"),
    Format("pdf", PDF, ("pdf",), kind="pdf", reads="pdfium", writes="reportlab"),
    # HTML pages, and what they link to: stylesheets and fonts join them (or Markdown) as companions.
    Format("html", HTML, ("html", "htm"), kind="html", reads="weasyprint"),
    Format("css", CSS, ("css",), kind="stylesheet", reads="weasyprint"),
    Format("otf", "font/otf", ("otf",), kind="font", reads="weasyprint"),
    Format("ttf", "font/ttf", ("ttf",), kind="font", reads="weasyprint"),
    Format("woff", "font/woff", ("woff",), kind="font", reads="weasyprint"),
    Format("woff2", "font/woff2", ("woff2",), kind="font", reads="weasyprint"),
    # Office documents: converted only by worker pools that have LibreOffice (their capabilities).
    # The first extension is the one LibreOffice is given the file under (it picks its filter by it).
    Format("docx", DOCX, ("docx",), kind="office", reads="libreoffice"),
    Format("xlsx", XLSX, ("xlsx",), kind="office", reads="libreoffice", writes="xlsxwriter"),
    Format("pptx", PPTX, ("pptx",), kind="office", reads="libreoffice"),
    Format("odt", ODT, ("odt",), kind="office", reads="libreoffice"),
    Format("ods", ODS, ("ods",), kind="office", reads="libreoffice"),
    Format("odp", ODP, ("odp",), kind="office", reads="libreoffice"),
    Format("rtf", RTF, ("rtf",), kind="office", reads="libreoffice"),
    Format("doc", DOC, ("doc",), kind="office", reads="libreoffice"),
    Format("xls", XLS, ("xls",), kind="office", reads="libreoffice"),
    Format("ppt", PPT, ("ppt",), kind="office", reads="libreoffice"),
    # Archives: written only.
    Format("zip", ZIP, ("zip",), writes="zipfile"),
)  # fmt: skip

BY_NAME: Mapping[str, Format] = MappingProxyType({f.name: f for f in FORMATS})
BY_MEDIA_TYPE: Mapping[str, Format] = MappingProxyType({f.media_type: f for f in FORMATS})
BY_EXTENSION: Mapping[str, Format] = MappingProxyType(
    {extension: f for f in FORMATS for extension in f.extensions}
)

#: The image outputs (written by Pillow), by name, in the order of their conversions.
IMAGE_OUTPUTS: Mapping[str, Format] = MappingProxyType({f.name: f for f in FORMATS if f.writes == "pillow"})

#: Media type -> Pillow decoder of every picture this service reads. An input is only ever opened
#: with the one decoder its sniffed type names, so no other plugin (EPS via Ghostscript, PSD, ...)
#: sees its bytes.
PILLOW_DECODERS: Mapping[str, str] = MappingProxyType(
    {f.media_type: f.pillow for f in FORMATS if f.reads == "pillow"}
)

#: What each accepted media type is, for choosing a conversion.
KIND_OF_MEDIA_TYPE: Mapping[str, str] = MappingProxyType({f.media_type: f.kind for f in FORMATS if f.kind})

#: Office media type -> the extension LibreOffice is given the file under.
OFFICE_TYPES: Mapping[str, str] = MappingProxyType(
    {f.media_type: f.extensions[0] for f in FORMATS if f.kind == "office"}
)

#: Font media types by the four bytes a font file starts with.
FONT_MAGIC: Mapping[bytes, str] = MappingProxyType(
    {b"wOFF": "font/woff", b"wOF2": "font/woff2", b"OTTO": "font/otf", b"\x00\x01\x00\x00": "font/ttf"}
)


def media_type_of_name(name: str) -> str | None:
    """The media type of a file named `name`, from its extension; None when no record has it."""
    dot = name.rfind(".")
    record = BY_EXTENSION.get(name[dot + 1 :].lower()) if dot >= 0 else None
    return record.media_type if record else None
