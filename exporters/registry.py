"""The one table of conversions: (input kind, output format) -> converter and its options type.

A new conversion is one function, one row here and one test with a real input file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exporters import archive, contact, images, pdf, text
from exporters.base import Converter, UnsupportedConversion, UnsupportedInput, describe_options

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
    "contact_sheet_pdf": "application/pdf",
    "contact_sheet_png": "image/png",
}


@dataclass(frozen=True)
class Conversion:
    kind: str  # input kind, a value of KIND_OF_CONTENT_TYPE
    format: str  # output format, a key of FORMATS
    convert: Converter[Any]
    options: type[Any]
    outputs: str  # "one_per_input", "one" or "one_per_page"
    description: str


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
               "UTF-8 plain text as a PDF with an embedded Unicode font (Latin, Cyrillic, Greek)."),
)  # fmt: skip

_BY_KEY = {(c.kind, c.format): c for c in CONVERSIONS}


def kind_of(content_type: str) -> str:
    """The input kind of a sniffed media type. Raises UnsupportedInput."""
    try:
        return KIND_OF_CONTENT_TYPE[content_type]
    except KeyError:
        accepted = ", ".join(sorted(KIND_OF_CONTENT_TYPE))
        raise UnsupportedInput(
            f"files of type {content_type} cannot be converted; accepted types: {accepted}"
        ) from None


def find(content_types: Sequence[str], target: str) -> Conversion:
    """The conversion for these inputs into `target`. Raises UnsupportedInput, UnsupportedConversion."""
    if target not in FORMATS:
        raise UnsupportedConversion(f"unknown format {target!r}; known formats: {', '.join(FORMATS)}")
    if not content_types:
        raise UnsupportedConversion("an export needs at least one input file")
    kinds = {kind_of(ct) for ct in content_types}
    if len(kinds) > 1:
        raise UnsupportedConversion(
            f"all inputs of one export must be of one kind; got {', '.join(sorted(kinds))}"
        )
    (kind,) = kinds
    try:
        return _BY_KEY[(kind, target)]
    except KeyError:
        possible = ", ".join(c.format for c in CONVERSIONS if c.kind == kind)
        raise UnsupportedConversion(
            f"{kind} inputs cannot be converted to {target}; they convert to: {possible}"
        ) from None


def describe() -> dict[str, Any]:
    """The table as GET /v1/formats shows it."""
    return {
        "formats": dict(FORMATS),
        "inputs": dict(KIND_OF_CONTENT_TYPE),
        "conversions": [
            {
                "from": c.kind,
                "to": c.format,
                "description": c.description,
                "outputs": c.outputs,
                "options": describe_options(c.options),
            }
            for c in CONVERSIONS
        ],
    }
