"""Images to one PDF, a page per image (the pages are written by exporters.pdfpages)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exporters.base import InputFile, InputTooLarge, Limits, OutputFile, UnsupportedConversion
from exporters.canvas import new_canvas as new_canvas
from exporters.naming import UniqueNames
from exporters.options import ImagePdfOptions as ImagePdfOptions
from exporters.pages import PAGE_SIZES as PAGE_SIZES
from exporters.pdfpages import MAX_PAGE_SIDE_PT as MAX_PAGE_SIDE_PT
from exporters.pdfpages import STRIP_BYTES as STRIP_BYTES
from exporters.pdfpages import write_pages


def images_to_pdf(
    inputs: Sequence[InputFile], out_dir: Path, options: ImagePdfOptions, *, limits: Limits
) -> list[OutputFile]:
    """All images in one PDF, a page per image in the order given, each upright and centred.

    JPEGs are embedded as they are (turned by the page, not re-encoded) without their metadata;
    JPEGs whose colours must change are re-encoded at quality 95; other images are stored losslessly.
    Written page by page, so memory holds one picture at a time.
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
    removed = write_pages(inputs, path, options, limits=limits)
    details = {"metadata": {"removed": sorted(removed), "kept": []}}
    return [OutputFile(path=path, name=name, content_type="application/pdf", details=details)]
