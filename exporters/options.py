"""What each conversion accepts: the options of every family, declared where nothing heavy is loaded.

The API validates a job's options (exporters.base.parse_options) and GET /v1/formats describes them
from these classes without loading Pillow, reportlab or PDFium (as imgproxy validates processing
options without its image engine). Each family module re-exports its own, so
`exporters.images.ImageOptions` and the other old names still work.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporters import media
from exporters.base import InvalidOptions, option
from exporters.fonts import FONTS
from exporters.pages import PAGE_SIZES
from exporters.typeset import PageOptions

# -- pictures (exporters.images, and the pictures other families convert) ----------------------


_FITS = ("inside", "contain", "cover", "fill", "outside")
#: Choices whose meaning lives with the picture engine (exporters.geometry, exporters.metadata),
#: spelled here so that options load without Pillow; a test holds them equal.
GRAVITIES = ("center", "north", "south", "east", "west", "northeast", "northwest", "southeast", "southwest")
FLIPS = ("none", "horizontal", "vertical", "both")
KEEPABLE_GROUPS = ("copyright", "datetime", "camera", "description")


@dataclass(frozen=True)
class ImageOptions:
    width: int | None = option(
        None,
        "Width of the output in pixels. Alone, the height follows the aspect ratio.",
        minimum=1,
        maximum="max_output_side_px",
    )
    height: int | None = option(
        None,
        "Height of the output in pixels. Alone, the width follows the aspect ratio.",
        minimum=1,
        maximum="max_output_side_px",
    )
    fit: str = option(
        "inside",
        "How the image meets a box given by both width and height. "
        "inside: as large as possible within the box, keeping the aspect ratio (output never larger "
        "than the box); "
        "outside: as small as possible while covering the box, keeping the aspect ratio, nothing cropped "
        "(one side may exceed the box); "
        "cover: exactly the box, scaled to cover it and the overflow cropped (see gravity); "
        "contain: exactly the box, the image scaled as for inside and padded with background (placed "
        "by gravity); "
        "fill: exactly the box, stretched, ignoring the aspect ratio. "
        "With only width or only height, every fit behaves as inside.",
        choices=_FITS,
    )
    enlarge: bool = option(
        False,
        "Whether the image may be scaled up. When false, an image smaller than asked keeps its size "
        "(contain pads around it, fill stretches no side beyond its own length, and cover crops the "
        "largest area of the box's shape at the original scale).",
    )
    gravity: str = option(
        "center",
        "Which part of the image cover keeps, and where contain places it: center, or the side or "
        "corner it sticks to (north is the top, east the right).",
        choices=GRAVITIES,
    )
    crop: tuple[int, ...] | None = option(
        None,
        "[left, top, width, height] in pixels of the image as it stands after orientation, rotate and "
        "flip: only that part is used (then resized). A box reaching beyond the image is clipped to it.",
        minimum=0,
        maximum="max_pixels",
        length=4,
    )
    rotate: int = option(
        0,
        "Degrees to turn the upright image clockwise (after its EXIF orientation is applied).",
        choices=(0, 90, 180, 270),
    )
    flip: str = option(
        "none",
        "Mirror the image after rotating it: horizontal (left and right swap), vertical, or both.",
        choices=FLIPS,
    )
    background: str = option(
        "#ffffff",
        "Colour as #rgb or #rrggbb, used to pad contain and to replace transparency in formats without "
        "it (JPEG, BMP).",
        syntax="colour",
    )
    keep_metadata: tuple[str, ...] = option(
        (),
        "EXIF groups to keep: copyright (copyright, artist), datetime (capture dates), camera (make, "
        "model, lens, exposure), description. Everything else (GPS position above all, serial numbers, "
        "maker notes, XMP, IPTC, comments, thumbnails) is always removed. The job's details list what "
        "was removed and kept.",
        choices=KEEPABLE_GROUPS,
    )
    keep_icc: bool = option(
        False,
        "Keep the embedded ICC colour profile (pixels unchanged) instead of converting the colours to "
        "sRGB. CMYK images and formats without profiles (GIF, BMP) are always converted.",
    )
    dpi: int | None = option(
        None,
        "Resolution recorded in the file (JPEG, PNG, TIFF), for printing; the pixels are not changed.",
        minimum=1,
        maximum=10000,
    )
    first_frame_only: bool = option(
        False,
        "For an animation (GIF, APNG, animated WebP) or a multi-page TIFF: output only the first frame. "
        "Otherwise GIF, PNG (as APNG) and WebP outputs stay animated and TIFF outputs keep every page; "
        "other formats always take the first frame.",
    )


@dataclass(frozen=True)
class LossyImageOptions(ImageOptions):
    quality: int = option(
        85,
        "Encoder quality from 1 (smallest file) to 100 (best image).",
        minimum=1,
        maximum=100,
    )


@dataclass(frozen=True)
class JpegOptions(LossyImageOptions):
    progressive: bool = option(
        False, "Write a progressive JPEG (shown blurred first, then sharper, while it downloads)."
    )


@dataclass(frozen=True)
class WebpOptions(LossyImageOptions):
    lossless: bool = option(False, "Lossless WebP (quality then sets how hard the encoder works).")


# -- images to PDF (exporters.pdf) -------------------------------------------------------------


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


# -- contact sheets (exporters.contact) --------------------------------------------------------


@dataclass(frozen=True)
class ContactSheetOptions:
    columns: int = option(4, "Thumbnails per row.", minimum=1, maximum=12)
    rows: int = option(5, "Rows per page (PDF) or per sheet (PNG).", minimum=1, maximum=16)
    page_size: str = option("A4", "Paper size; a PNG sheet has its proportions.", choices=("A4", "Letter"))
    landscape: bool = option(False, "Pages or sheets wider than tall.")
    title: str = option("", "A line printed at the top of every page, e.g. the album's name.")
    sheet_width_px: int = option(2480, "Width of each PNG sheet in pixels (2480 is A4 at 300 dpi).",
                                 minimum=600, maximum="max_output_side_px")  # fmt: skip
    skip_failed: bool = option(
        False,
        "When a photo cannot be read, show a grey cell saying why instead of failing the whole sheet.",
    )


# -- images to ZIP (exporters.archive) ---------------------------------------------------------


#: Every format an image may be written in (HEIC only where a worker can write it: the archive
#: refuses it otherwise).
_IMAGE_FORMATS = tuple(media.IMAGE_OUTPUTS)


@dataclass(frozen=True)
class ZipOptions(JpegOptions):
    image_format: str = option("jpeg", "Format of every image in the ZIP.", choices=_IMAGE_FORMATS)
    lossless: bool = option(False, "Lossless WebP (image_format webp only).")
    skip_failed: bool = option(
        False,
        "When a photo cannot be converted (damaged, too large, not an image), leave it out and say why "
        "in manifest.json instead of failing the whole export. The export still fails if none converts.",
    )


# -- plain text to PDF (exporters.text) --------------------------------------------------------


@dataclass(frozen=True)
class TextPdfOptions:
    page_size: str = option("A4", "Paper size.", choices=tuple(PAGE_SIZES))
    margin_mm: float = option(
        20.0, "White border in millimetres on every side of the page.", minimum=0, maximum=100
    )
    font_size: float = option(
        11.0, "Font size in points; lines are spaced 1.2 times that.", minimum=4, maximum=72
    )
    font: str = option(
        "sans",
        "Typeface: sans (DejaVu Sans, proportional) or mono (DejaVu Sans Mono, for code, logs and tables).",
        choices=tuple(FONTS),
    )
    orientation: str = option("portrait", "Page orientation.", choices=("portrait", "landscape"))
    wrap: str = option(
        "word",
        "How long lines are broken: word (at spaces; a word longer than the line is broken by "
        "characters) or char (at the line's edge whatever the character, as a terminal does: logs, "
        "base64, tables of fixed-width text).",
        choices=("word", "char"),
    )


# -- Markdown to PDF (exporters.markdown) ------------------------------------------------------


@dataclass(frozen=True)
class MarkdownPdfOptions:
    page_size: str = option("A4", "Paper size.", choices=tuple(PAGE_SIZES))
    orientation: str = option("portrait", "Page orientation.", choices=("portrait", "landscape"))
    margin_mm: float = option(
        20.0, "White border in millimetres on every side of the page.", minimum=5, maximum=100
    )
    font_size: float = option(
        10.5, "Font size of body text in points; headings scale with it.", minimum=6, maximum=24
    )
    title: str | None = option(
        None, "Title in the PDF's metadata (and its outline); by default the document's first heading."
    )
    author: str | None = option(None, "Author in the PDF's metadata.")
    header: str | None = option(None, "Text at the top of every page.")
    footer: str | None = option(
        None, 'Text at the bottom of every page; "{page}" and "{pages}" become the page number and count.'
    )
    page_numbers: bool = option(True, 'Print "page N of M" at the bottom right of every page.')
    engine: str = option(
        "reportlab",
        "reportlab: the built-in typesetter. html: Markdown made HTML and typeset with print CSS like "
        "HTML exports, styled further by any .css input of the same export (a user stylesheet).",
        choices=("reportlab", "html"),
    )


# -- HTML to PDF (exporters.html) --------------------------------------------------------------


@dataclass(frozen=True)
class HtmlPdfOptions(PageOptions):
    template: bool = option(
        False,
        "Render the HTML as a Jinja2 template (sandboxed, autoescaped) with the JSON input's data before "
        "typesetting it: a JSON object's keys are its variables, and `data` is the whole input. Without "
        "it the HTML is typeset as it is.",
    )
    strict: bool = option(False, "With template: a variable the data does not have fails the export.")
    per_record: bool = option(
        False,
        "With template and a JSON array: one PDF per record; the record's keys are the variables, with "
        "`record` (the whole record) and `index` (from 1).",
    )
    name_field: str | None = option(
        None, "With per_record: the record field that names each PDF (e.g. invoice_number)."
    )
    zip: bool = option(False, "With per_record: all PDFs in one ZIP with a manifest.json.")
    skip_failed: bool = option(
        False,
        "With per_record: a record that fails (template error, too large) is left out and listed with "
        "its reason (in manifest.json, or in the first PDF's details) instead of failing the export.",
    )

    def __post_init__(self) -> None:
        """Options that only mean something together are refused alone, before the job exists.

        Raises InvalidOptions."""
        if not self.template:
            needs = [n for n in ("per_record", "strict", "zip", "skip_failed") if getattr(self, n)]
            if self.name_field is not None:
                needs.append("name_field")
            if needs:
                raise InvalidOptions(f"{', '.join(needs)} only apply with template: true")
        elif not self.per_record:
            needs = [n for n in ("zip", "skip_failed") if getattr(self, n)]
            if self.name_field is not None:
                needs.append("name_field")
            if needs:
                raise InvalidOptions(f"{', '.join(needs)} only apply with per_record: true")


# -- tables (exporters.tables) -----------------------------------------------------------------


ENCODINGS = ("auto", "utf-8", "cp1251", "cp1252", "latin-1")
DELIMITERS = ("auto", ",", ";", "\t", "|")


@dataclass(frozen=True)
class TableReadOptions:
    encoding: str = option(
        "auto",
        "Text encoding of a CSV or TSV: auto detects it as for every text input (UTF-8 with or without "
        "BOM, else the Windows, KOI8 or CJK code page that reads it best; Latin-1 if none does).",
        choices=ENCODINGS,
    )
    delimiter: str = option(
        "auto",
        "Field separator of a CSV: auto picks the one of , ; tab | that splits the first rows into the "
        "most consistent number of fields (tab for a .tsv).",
        choices=DELIMITERS,
    )
    header: bool = option(
        True, "The first row of a CSV names the columns (JSON objects always name them by their keys)."
    )


@dataclass(frozen=True)
class TablePdfOptions(TableReadOptions):
    page_size: str = option("A4", "Paper size.", choices=tuple(PAGE_SIZES))
    orientation: str = option(
        "auto",
        "Page orientation: portrait, landscape, or auto (landscape when the columns need more room "
        "than a portrait page has).",
        choices=("auto", "portrait", "landscape"),
    )
    margin_mm: float = option(
        12.0, "White border in millimetres on every side of the page.", minimum=0, maximum=100
    )
    font_size: float = option(8.0, "Font size of the cells in points.", minimum=4, maximum=24)
    zebra: bool = option(True, "Shade every other row lightly, to guide the eye across wide tables.")
    max_cell_lines: int = option(
        12,
        "Most lines a long cell wraps to; the rest of its text is cut and marked with …",
        minimum=1,
        maximum=200,
    )


@dataclass(frozen=True)
class TableXlsxOptions(TableReadOptions):
    typed: bool = option(
        True,
        "Store numbers as numbers and ISO 8601 dates (2024-07-14, 2024-07-14T12:34:56) as dates; "
        "false keeps every cell as the text it was. Numbers with leading zeros (zip codes, phone "
        "numbers) or more than 15 digits always stay text.",
    )
    sheet_name: str = option("Sheet1", "Name of the worksheet (at most 31 characters, none of []:*?/\\).",
                             syntax="worksheet_name")  # fmt: skip


@dataclass(frozen=True)
class TableCsvOptions(TableReadOptions):
    output_delimiter: str = option(",", "Field separator of the CSV written.", choices=(",", ";", "\t", "|"))
    bom: bool = option(
        False, "Start the CSV with a UTF-8 byte order mark, which Excel needs to read UTF-8 correctly."
    )
    keep_formulas: bool = option(
        False,
        "Write cells that start with = + - @ (formulas to a spreadsheet: =HYPERLINK(...), =cmd|...) as they "
        "are; by default they are prefixed with ' so that a spreadsheet shows them as text.",
    )


@dataclass(frozen=True)
class TableJsonOptions(TableReadOptions):
    pass


# -- PDF documents (exporters.pdfdocs) ---------------------------------------------------------


@dataclass(frozen=True)
class PdfRenderOptions:
    pages: str = option(
        "",
        'Pages to render, numbered from 1, as ranges: "1-3,5", "4-" (4 to the end); empty for all.',
        syntax="page_ranges",
    )
    dpi: int = option(150, "Resolution of each page image in dots per inch.", minimum=18, maximum=1200)
    width: int | None = option(
        None,
        "Width of each page image in pixels (the height follows the page); replaces dpi when set.",
        minimum=16,
        maximum="max_output_side_px",
    )
    thumbnail: bool = option(
        False, "Only the first page, as a small preview: 256 pixels wide unless width says otherwise."
    )
    zip: bool = option(False, "Bundle all page images in one ZIP archive instead of listing them one by one.")
    password: str | None = option(None, "Password of an encrypted PDF.", secret=True)


@dataclass(frozen=True)
class PdfPngOptions(PdfRenderOptions):
    compression: str = option(
        "fast",
        "PNG compression: fast (zlib level 1: quicker to write, files a few per cent larger) or small (level 9).",
        choices=("fast", "small"),
    )


@dataclass(frozen=True)
class PdfLossyOptions(PdfRenderOptions):
    quality: int = option(85, "Encoder quality, 1 (smallest) to 100 (best).", minimum=1, maximum=100)


@dataclass(frozen=True)
class PdfEditOptions:
    pages: str = option(
        "", 'Pages of each PDF to keep, as ranges ("1-3,5"); empty for all.', syntax="page_ranges"
    )
    rotate: int = option(0, "Turn every page clockwise by this many degrees.", choices=(0, 90, 180, 270))
    title: str | None = option(None, "Title written into the PDF's metadata.")
    author: str | None = option(None, "Author written into the PDF's metadata.")
    password: str | None = option(None, "Password of the encrypted PDFs among the inputs.", secret=True)


@dataclass(frozen=True)
class PdfSplitOptions(PdfEditOptions):
    ranges: str = option(
        "",
        'How to cut each PDF: ranges separated by ";" each becoming one PDF ("1-3;4-6;7-"); empty for a '
        "PDF per page. Replaces pages.",
        syntax="page_range_groups",
    )


# -- Office documents (exporters.office) -------------------------------------------------------


@dataclass(frozen=True)
class OfficePdfOptions:
    pdf_a: bool = option(False, "Write PDF/A-2b (for archiving): every font embedded, no transparency.")
