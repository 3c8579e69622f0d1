"""The one table of conversions: (input kind, output format) -> converter and its options type.

A new conversion is one function, one row here and one test with a real input file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exporters import archive, contact, html, images, markdown, office, pdf, pdfdocs, tables, text, typeset
from exporters.base import Converter, Limits, UnsupportedConversion, UnsupportedInput, describe_options

#: What each accepted media type is, for choosing a conversion.
KIND_OF_CONTENT_TYPE: dict[str, str] = {
    "image/jpeg": "image",
    "image/png": "image",
    "image/gif": "image",
    "image/webp": "image",
    "image/tiff": "image",
    "image/bmp": "image",
    "image/avif": "image",
    **({"image/heic": "image"} if images.HEIF_READS else {}),
    "text/plain": "text",
    "text/markdown": "markdown",
    tables.CSV_TYPE: "table",
    tables.TSV_TYPE: "table",
    tables.JSON_TYPE: "table",
    "application/pdf": "pdf",
    # HTML pages, and what they link to: stylesheets and fonts join them (or Markdown) as companions.
    typeset.HTML_TYPE: "html",
    typeset.CSS_TYPE: "stylesheet",
    **{content_type: "font" for content_type in sorted(set(typeset.FONT_TYPES.values()))},
    # Office documents: converted only by worker pools that have LibreOffice (their capabilities).
    **{content_type: "office" for content_type in office.OFFICE_TYPES},
}

#: Output formats: name in the API -> media type of the files produced.
FORMATS: dict[str, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "avif": "image/avif",
    "tiff": "image/tiff",
    "gif": "image/gif",
    "bmp": "image/bmp",
    **({"heic": "image/heic"} if images.HEIF_WRITES else {}),
    "pdf": "application/pdf",
    "zip": "application/zip",
    "pdf_pages": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv",
    "json": "application/json",
    "contact_sheet_pdf": "application/pdf",
    "contact_sheet_png": "image/png",
}


@dataclass(frozen=True)
class Conversion:
    kind: str  # input kind, a value of KIND_OF_CONTENT_TYPE
    format: str  # output format, a key of FORMATS
    convert: Converter[Any]
    options: type[Any]
    outputs: str  # "one_per_input", "one", "one_per_page" or "one_per_range"
    description: str
    companions: tuple[str, ...] = ()  # other input kinds the conversion takes beside its own (pictures)
    # What a worker pool must have to run it (see probe_capabilities); the API offers it only
    # while a live pool serving its queue has all of them (actors/queues.py picks the queue).
    needs: tuple[str, ...] = ()


CONVERSIONS: tuple[Conversion, ...] = (
    Conversion("image", "png", images.to_png, images.ImageOptions, "one_per_input",
               "Each image as a PNG (an APNG for an animation), upright, optionally resized."),
    Conversion("image", "jpeg", images.to_jpeg, images.JpegOptions, "one_per_input",
               "Each image as a JPEG, upright, optionally resized; transparency is flattened onto the background."),
    Conversion("image", "webp", images.to_webp, images.WebpOptions, "one_per_input",
               "Each image as a WebP (animated for an animation), upright, optionally resized."),
    Conversion("image", "avif", images.to_avif, images.LossyImageOptions, "one_per_input",
               "Each image as an AVIF, upright, optionally resized."),
    Conversion("image", "tiff", images.to_tiff, images.ImageOptions, "one_per_input",
               "Each image as a losslessly compressed TIFF (every page of a multi-page TIFF)."),
    Conversion("image", "gif", images.to_gif, images.ImageOptions, "one_per_input",
               "Each image as a GIF of at most 256 colours (animated for an animation)."),
    Conversion("image", "bmp", images.to_bmp, images.ImageOptions, "one_per_input",
               "Each image as a BMP; transparency is flattened onto the background."),
    *([Conversion("image", "heic", images.to_heic, images.LossyImageOptions, "one_per_input",
                  "Each image as an HEIC, upright, optionally resized.")] if images.HEIF_WRITES else []),
    Conversion("image", "pdf", pdf.images_to_pdf, pdf.ImagePdfOptions, "one",
               "All images in one PDF, a page per image, in the order given."),
    Conversion("image", "contact_sheet_pdf", contact.contact_sheet_pdf, contact.ContactSheetOptions, "one",
               "A contact sheet: all images as a grid of captioned thumbnails (file names), columns × rows "
               "a page, numbered \"page N of M\"."),
    Conversion("image", "contact_sheet_png", contact.contact_sheet_png, contact.ContactSheetOptions,
               "one_per_page",
               "The contact sheet as PNG images, one per page of columns × rows thumbnails."),
    Conversion("image", "zip", archive.images_to_zip, archive.ZipOptions, "one",
               "All images converted (image_format, resizing and the other image options) in one ZIP, "
               "under their own names made safe and unique, with a manifest.json (name, size, sha256, "
               "status and what metadata was removed, per input)."),
    Conversion("text", "pdf", text.text_to_pdf, text.TextPdfOptions, "one_per_input",
               "Plain text (UTF-8, or the code page it is written in) as a PDF with an embedded Unicode font "
               "(Latin, Cyrillic, Greek)."),
    Conversion("markdown", "pdf", markdown.markdown_to_pdf, markdown.MarkdownPdfOptions, "one_per_input",
               "Markdown (.md) as a typeset PDF: headings with bookmarks, lists, tables, code, quotes, and "
               "pictures that are other inputs of the same export.", companions=("image", "stylesheet", "font")),
    Conversion("html", "pdf", html.html_to_pdf, html.HtmlPdfOptions, "one_per_input",
               "HTML and CSS typeset as a PDF with print CSS (@page size, margins, running headers and footers, "
               "page counters, page breaks, repeated table headers). Relative URLs (images, stylesheets, fonts) "
               "name other inputs of the same export by file name; nothing else is fetched (no network, no "
               "file://), and references left unresolved are listed in the output's details. Scripts are not "
               "run. With template: true, the HTML is a Jinja2 template filled with a JSON input (one PDF, or "
               "one per record).", companions=("image", "stylesheet", "font", "table", "text"), needs=("pango",)),
    Conversion("table", "pdf", tables.table_to_pdf, tables.TablePdfOptions, "one_per_input",
               "Each CSV, TSV or JSON table as a PDF table: header on every page, columns fitted, long "
               "cells wrapped."),
    Conversion("table", "xlsx", tables.table_to_xlsx, tables.TableXlsxOptions, "one_per_input",
               "Each table as a spreadsheet with real numbers and dates."),
    Conversion("table", "csv", tables.table_to_csv, tables.TableCsvOptions, "one_per_input",
               "Each table (JSON, or CSV in any encoding) as a UTF-8 CSV."),
    Conversion("table", "json", tables.table_to_json, tables.TableJsonOptions, "one_per_input",
               "Each table as a JSON array of objects."),
    Conversion("pdf", "png", pdfdocs.pdf_to_png, pdfdocs.PdfPngOptions, "one_per_page",
               "Each page of each PDF as a PNG (or all of them in one ZIP)."),
    Conversion("pdf", "jpeg", pdfdocs.pdf_to_jpeg, pdfdocs.PdfLossyOptions, "one_per_page",
               "Each page of each PDF as a JPEG (or all of them in one ZIP)."),
    Conversion("pdf", "webp", pdfdocs.pdf_to_webp, pdfdocs.PdfLossyOptions, "one_per_page",
               "Each page of each PDF as a WebP (or all of them in one ZIP)."),
    Conversion("pdf", "pdf", pdfdocs.merge_pdfs, pdfdocs.PdfEditOptions, "one",
               "PDFs (and images) merged into one PDF in the order given; page ranges, rotation, title "
               "and author.", companions=("image",)),
    Conversion("pdf", "pdf_pages", pdfdocs.split_pdf, pdfdocs.PdfSplitOptions, "one_per_range",
               "Each PDF split into several: one per page, or one per range given."),
    Conversion("office", "pdf", office.office_to_pdf, office.OfficePdfOptions, "one_per_input",
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
        "photos (JPEG, PNG, GIF, WebP, TIFF, BMP, AVIF" + (", HEIC" if images.HEIF_READS else "") + ")",
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
    """What this process can run, probed now (a worker pool publishes it; the API never probes)."""
    import ctypes.util

    return {
        "office": office.find_soffice() is not None,
        # WeasyPrint lays HTML out with Pango, a system library (libpango-1.0-0).
        "pango": ctypes.util.find_library("pango-1.0") is not None,
    }


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
