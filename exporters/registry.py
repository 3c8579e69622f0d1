"""The one table of conversions: (input kind, output format) -> converter and its options type.

A new conversion is one function, one row here and one test with a real input file; a new image
output format is one row in exporters.media (its rows make the image conversions here).

Importing this module loads no conversion library: each row names its converter through a small
function that imports the family's module when the conversion first runs, and its options type
lives in exporters.options. Workers call `prepare()` once at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from exporters import media
from exporters import options as opt
from exporters.base import Converter, Limits, UnsupportedConversion, UnsupportedInput, describe_options

#: What each accepted media type is, for choosing a conversion (from the records of exporters.media).
KIND_OF_CONTENT_TYPE: dict[str, str] = dict(media.KIND_OF_MEDIA_TYPE)

#: Output formats: name in the API -> media type of the files produced.
FORMATS: dict[str, str] = {
    **{name: record.media_type for name, record in media.IMAGE_OUTPUTS.items()},
    "pdf": media.PDF,
    "zip": media.ZIP,
    "pdf_pages": media.PDF,
    "xlsx": media.XLSX,
    "csv": media.CSV,
    "json": media.JSON,
    "contact_sheet_pdf": media.PDF,
    "contact_sheet_png": media.BY_NAME["png"].media_type,
}


@dataclass(frozen=True)
class Conversion:
    kind: str  # input kind, a value of KIND_OF_CONTENT_TYPE
    format: str  # output format, a key of FORMATS
    # The converter, imported when first asked for (see `convert`): the API, which only validates
    # and describes, never loads a conversion library.
    load: Callable[[], Converter[Any]]
    options: type[Any]  # light (exporters.options): the API checks a job's options with it
    outputs: str  # "one_per_input", "one", "one_per_page" or "one_per_range"
    description: str
    companions: tuple[str, ...] = ()  # other input kinds the conversion takes beside its own (pictures)
    # What a worker pool must have to run it (see probe_capabilities); the API offers it only
    # while a live pool serving its queue has all of them (actors/queues.py picks the queue).
    needs: tuple[str, ...] = ()

    @property
    def convert(self) -> Converter[Any]:
        """The converter itself (its family's module is imported the first time)."""
        return self.load()


# -- the families, imported when a conversion first runs ------------------------------------------
#
# One function per family: a plain import, no dotted strings. Nothing here runs at import.


def _images() -> Any:
    from exporters import images

    return images


def _pdf() -> Any:
    from exporters import pdf

    return pdf


def _contact() -> Any:
    from exporters import contact

    return contact


def _archive() -> Any:
    from exporters import archive

    return archive


def _text() -> Any:
    from exporters import text

    return text


def _markdown() -> Any:
    from exporters import markdown

    return markdown


def _html() -> Any:
    from exporters import html

    return html


def _tables() -> Any:
    from exporters import tables

    return tables


def _pdfdocs() -> Any:
    from exporters import pdfdocs

    return pdfdocs


def _office() -> Any:
    from exporters import office

    return office


def _image_options(record: media.Format) -> type[opt.ImageOptions]:
    """The options of an image output: the lossy ones take a quality; JPEG and WebP have their own."""
    special: dict[str, type[opt.ImageOptions]] = {"jpeg": opt.JpegOptions, "webp": opt.WebpOptions}
    return special.get(record.name, opt.LossyImageOptions if record.lossy else opt.ImageOptions)


def _image_conversion(record: media.Format) -> Conversion:
    """The conversion of images to one image output format: its row in exporters.media says it all."""
    return Conversion("image", record.name, lambda: _images().converter_for(record), _image_options(record),
                      "one_per_input", record.description, needs=record.needs)  # fmt: skip


CONVERSIONS: tuple[Conversion, ...] = (
    *(_image_conversion(record) for record in media.IMAGE_OUTPUTS.values()),
    Conversion("image", "pdf", lambda: _pdf().images_to_pdf, opt.ImagePdfOptions, "one",
               "All images in one PDF, a page per image, in the order given."),
    Conversion("image", "contact_sheet_pdf", lambda: _contact().contact_sheet_pdf, opt.ContactSheetOptions, "one",
               "A contact sheet: all images as a grid of captioned thumbnails (file names), columns × rows "
               "a page, numbered \"page N of M\"."),
    Conversion("image", "contact_sheet_png", lambda: _contact().contact_sheet_png, opt.ContactSheetOptions,
               "one_per_page",
               "The contact sheet as PNG images, one per page of columns × rows thumbnails."),
    Conversion("image", "zip", lambda: _archive().images_to_zip, opt.ZipOptions, "one",
               "All images converted (image_format, resizing and the other image options) in one ZIP, "
               "under their own names made safe and unique, with a manifest.json (name, size, sha256, "
               "status and what metadata was removed, per input)."),
    Conversion("text", "pdf", lambda: _text().text_to_pdf, opt.TextPdfOptions, "one_per_input",
               "Plain text (UTF-8, or the code page it is written in) as a PDF with an embedded Unicode font "
               "(Latin, Cyrillic, Greek)."),
    Conversion("markdown", "pdf", lambda: _markdown().markdown_to_pdf, opt.MarkdownPdfOptions, "one_per_input",
               "Markdown (.md) as a typeset PDF: headings with bookmarks, lists, tables, code, quotes, and "
               "pictures that are other inputs of the same export.", companions=("image", "stylesheet", "font")),
    Conversion("html", "pdf", lambda: _html().html_to_pdf, opt.HtmlPdfOptions, "one_per_input",
               "HTML and CSS typeset as a PDF with print CSS (@page size, margins, running headers and footers, "
               "page counters, page breaks, repeated table headers). Relative URLs (images, stylesheets, fonts) "
               "name other inputs of the same export by file name; nothing else is fetched (no network, no "
               "file://), and references left unresolved are listed in the output's details. Scripts are not "
               "run. With template: true, the HTML is a Jinja2 template filled with a JSON input (one PDF, or "
               "one per record).", companions=("image", "stylesheet", "font", "table", "text"), needs=("pango",)),
    Conversion("table", "pdf", lambda: _tables().table_to_pdf, opt.TablePdfOptions, "one_per_input",
               "Each CSV, TSV or JSON table as a PDF table: header on every page, columns fitted, long "
               "cells wrapped."),
    Conversion("table", "xlsx", lambda: _tables().table_to_xlsx, opt.TableXlsxOptions, "one_per_input",
               "Each table as a spreadsheet with real numbers and dates."),
    Conversion("table", "csv", lambda: _tables().table_to_csv, opt.TableCsvOptions, "one_per_input",
               "Each table (JSON, or CSV in any encoding) as a UTF-8 CSV."),
    Conversion("table", "json", lambda: _tables().table_to_json, opt.TableJsonOptions, "one_per_input",
               "Each table as a JSON array of objects."),
    Conversion("pdf", "png", lambda: _pdfdocs().pdf_to_png, opt.PdfPngOptions, "one_per_page",
               "Each page of each PDF as a PNG (or all of them in one ZIP)."),
    Conversion("pdf", "jpeg", lambda: _pdfdocs().pdf_to_jpeg, opt.PdfLossyOptions, "one_per_page",
               "Each page of each PDF as a JPEG (or all of them in one ZIP)."),
    Conversion("pdf", "webp", lambda: _pdfdocs().pdf_to_webp, opt.PdfLossyOptions, "one_per_page",
               "Each page of each PDF as a WebP (or all of them in one ZIP)."),
    Conversion("pdf", "pdf", lambda: _pdfdocs().merge_pdfs, opt.PdfEditOptions, "one",
               "PDFs (and images) merged into one PDF in the order given; page ranges, rotation, title "
               "and author.", companions=("image",)),
    Conversion("pdf", "pdf_pages", lambda: _pdfdocs().split_pdf, opt.PdfSplitOptions, "one_per_range",
               "Each PDF split into several: one per page, or one per range given."),
    Conversion("office", "pdf", lambda: _office().office_to_pdf, opt.OfficePdfOptions, "one_per_input",
               "Office documents (DOCX, XLSX, PPTX, ODT, ODS, ODP, RTF, DOC, XLS, PPT) as PDF, made by "
               "LibreOffice.", needs=("office",)),
)  # fmt: skip

_BY_KEY = {(c.kind, c.format): c for c in CONVERSIONS}


def kind_of(content_type: str) -> str:
    """The input kind of a sniffed media type. Raises UnsupportedInput."""
    try:
        return KIND_OF_CONTENT_TYPE[content_type]
    except KeyError:
        what = (
            "this file's type is not recognised"
            if content_type == "application/octet-stream"
            else (f"files of type {content_type} cannot be converted")
        )
        raise UnsupportedInput(f"{what}; accepted: {_ACCEPTED}") from None


#: What kind_of's refusal lists, in words a person reads (GET /v1/formats has the media types).
_ACCEPTED = "; ".join(
    part
    for part in (
        "photos (JPEG, PNG, GIF, WebP, TIFF, BMP, AVIF" + (", HEIC" if media.HEIF_READS else "") + ")",
        "text (UTF-8 or a common code page)",
        "Markdown (.md)",
        "HTML (.html, with its stylesheets and fonts)",
        "tables (.csv, .tsv, JSON arrays of objects)",
        "PDF",
        "Office documents (DOCX, XLSX, PPTX, ODT, ODS, ODP, RTF, DOC, XLS, PPT)",
    )
    if part
)


def find(content_types: Sequence[str], target: str) -> Conversion:
    """The conversion for these inputs into `target`. Raises UnsupportedInput, UnsupportedConversion."""
    if target not in FORMATS:
        raise UnsupportedConversion(f"unknown format {target!r}; known formats: {', '.join(FORMATS)}")
    if not content_types:
        raise UnsupportedConversion("an export needs at least one input file")
    kinds = {kind_of(ct) for ct in content_types}
    if len(kinds) > 1:
        # Mixed inputs: one kind leads, the others must be its companions (a Markdown file and
        # its pictures, PDFs and images to merge).
        for conversion in CONVERSIONS:
            if (
                conversion.format == target
                and conversion.kind in kinds
                and kinds - {conversion.kind} <= set(conversion.companions)
            ):
                return conversion
        raise UnsupportedConversion(
            f"these inputs ({', '.join(sorted(kinds))}) cannot be converted together to {target}; "
            "only pictures may join a Markdown file or PDFs, otherwise all inputs must be of one kind"
        )
    (kind,) = kinds
    try:
        return _BY_KEY[(kind, target)]
    except KeyError:
        possible = ", ".join(c.format for c in CONVERSIONS if c.kind == kind)
        raise UnsupportedConversion(
            f"{kind} inputs cannot be converted to {target}; they convert to: {possible}"
        ) from None


def probe_capabilities() -> dict[str, bool]:
    """What this process can run, probed now (a worker pool publishes it; the API never probes).

    Imports the families it asks (Office, the picture engine): call it where conversions run.
    """
    import ctypes.util

    from exporters import office, pictures

    return {
        "office": office.find_soffice() is not None,
        # WeasyPrint lays HTML out with Pango, a system library (libpango-1.0-0).
        "pango": ctypes.util.find_library("pango-1.0") is not None,
        # libheif with an HEVC encoder (pillow-heif may read HEIC without being able to write it).
        "heic_write": all(
            pictures.can_write(r) for r in media.IMAGE_OUTPUTS.values() if "heic_write" in r.needs
        ),
    }


def prepare() -> dict[str, bool]:
    """Load and set up every conversion once, at worker start-up; returns the capabilities probed.

    The one explicit call that does what importing used to do as a side effect: import each family
    (before the pool forks, so its processes share the pages), register the bundled fonts with
    reportlab, and probe what this installation can run. Nothing else calls it: the API never does.
    """
    from exporters import fonts

    for family in (_images, _pdf, _contact, _archive, _text, _markdown, _html, _tables, _pdfdocs, _office):
        family()
    fonts.register()
    return probe_capabilities()


def describe(*, limits: Limits) -> dict[str, Any]:
    """The table as GET /v1/formats shows it, option bounds that name a limit read from `limits`."""
    return {
        "formats": dict(FORMATS),
        "inputs": dict(KIND_OF_CONTENT_TYPE),
        "conversions": [
            {
                "from": c.kind,
                "to": c.format,
                "description": c.description,
                "outputs": c.outputs,
                **({"also_takes": list(c.companions)} if c.companions else {}),
                "options": describe_options(c.options, limits=limits),
            }
            for c in CONVERSIONS
        ],
    }
