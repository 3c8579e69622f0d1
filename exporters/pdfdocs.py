"""PDF inputs: pages to PNG, JPEG or WebP images (optionally in a ZIP), and merging, splitting, rotating.

PDFium is not thread-safe and the worker runs several threads in one process: every call into it
holds `PDFIUM_LOCK`. Encoding the rendered pixels (the slow part) happens outside the lock.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageChops

from exporters import media
from exporters.base import (
    CorruptInput,
    InputFile,
    InputTooLarge,
    InvalidOptions,
    Limits,
    OutputFile,
    UnsupportedConversion,
    describe,
    reading_input,
)
from exporters.base import EncryptedInput as EncryptedInput
from exporters.cancel import checkpoint
from exporters.naming import UniqueNames, safe_stem
from exporters.options import ImagePdfOptions
from exporters.options import PdfEditOptions as PdfEditOptions
from exporters.options import PdfLossyOptions as PdfLossyOptions
from exporters.options import PdfPngOptions as PdfPngOptions
from exporters.options import PdfRenderOptions as PdfRenderOptions
from exporters.options import PdfSplitOptions as PdfSplitOptions
from exporters.pdfactive import document_level_active_content, remove_active_content
from exporters.pdfium import PDFIUM_LOCK as PDFIUM_LOCK
from exporters.pdfpages import write_pages

PDF_TYPE = media.PDF
ZIP_TYPE = media.ZIP
_POINTS_PER_INCH = 72.0
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same pages give the same archive


# PNG: zlib level 1 takes ~45 ms for an A4 page at 150 DPI where Pillow's default (level 6) takes
# ~72 ms, for files ~2% larger; Pillow's per-row filter choice, which no setting skips, is the rest.
_PNG_PARAMS: dict[str, dict[str, Any]] = {
    "fast": {"compress_level": 1},
    "small": {"compress_level": 9},
}


# -- opening ---------------------------------------------------------------------------------


@contextmanager
def open_pdf(source: InputFile, *, password: str | None, limits: Limits) -> Iterator[pdfium.PdfDocument]:
    """The input opened with PDFium, its page count within limits.max_pages. Hold PDFIUM_LOCK while using it.

    Raises EncryptedInput, CorruptInput, InputTooLarge.
    """
    try:
        document = pdfium.PdfDocument(source.path, password=password)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            if password:
                raise EncryptedInput(
                    f"{describe(source)} is encrypted and the password given is wrong"
                ) from None
            raise EncryptedInput(
                f"{describe(source)} is encrypted; give its password with the password option"
            ) from None
        raise CorruptInput(f"{describe(source)} is not a readable PDF") from None
    try:
        with reading_input(source, "PDF"):
            count = len(document)
        if count == 0:
            raise CorruptInput(f"{describe(source)} has no pages")
        if count > limits.max_pages:
            raise InputTooLarge(f"{describe(source)} has {count} pages; the limit is {limits.max_pages}")
        yield document
    finally:
        document.close()


def parse_pages(spec: str, count: int) -> list[int]:
    """Zero-based page indexes from a range list such as "1-3,5,8-" for a document of `count` pages.

    Raises InvalidOptions.
    """
    if not spec.strip():
        return list(range(count))
    indexes: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:(-)\s*(\d*)\s*)?", part)
        if not match:
            raise InvalidOptions(f'pages must be like "1-3,5" or "4-"; cannot read {part.strip()!r}')
        first = int(match.group(1))
        last = (int(match.group(3)) if match.group(3) else count) if match.group(2) else first
        if first < 1 or last < first:
            raise InvalidOptions(f"pages: {part.strip()!r} is not a range of pages numbered from 1")
        if last > count:
            raise InvalidOptions(
                f"pages: the document has {count} page{'s' if count != 1 else ''}; {part.strip()!r} asks for more"
            )
        indexes.extend(range(first - 1, last))
    return indexes


# -- rendering -------------------------------------------------------------------------------


_Format = media.Format  # what a page image is written as: its record

_PNG = media.BY_NAME["png"]
_JPEG = media.BY_NAME["jpeg"]
_WEBP = media.BY_NAME["webp"]


def pdf_to_png(
    inputs: Sequence[InputFile], out_dir: Path, options: PdfPngOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each chosen page of each PDF as a PNG (or all of them in one ZIP).

    Raises EncryptedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    return _render_all(inputs, out_dir, options, _PNG, _PNG_PARAMS[options.compression], limits=limits)


def pdf_to_jpeg(
    inputs: Sequence[InputFile], out_dir: Path, options: PdfLossyOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each chosen page of each PDF as a JPEG (or all of them in one ZIP).

    Raises EncryptedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    params = {"quality": options.quality, "optimize": False}
    return _render_all(inputs, out_dir, options, _JPEG, params, limits=limits)


def pdf_to_webp(
    inputs: Sequence[InputFile], out_dir: Path, options: PdfLossyOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each chosen page of each PDF as a WebP (or all of them in one ZIP).

    Raises EncryptedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    params = {"quality": options.quality, "method": 4}
    return _render_all(inputs, out_dir, options, _WEBP, params, limits=limits)


def _render_all(
    inputs: Sequence[InputFile],
    out_dir: Path,
    options: PdfRenderOptions,
    fmt: _Format,
    params: dict[str, Any],
    *,
    limits: Limits,
) -> list[OutputFile]:
    names = UniqueNames()
    outputs: list[OutputFile] = []
    archive: zipfile.ZipFile | None = None
    archive_name = ""
    if options.zip:
        stem = safe_stem(inputs[0].filename) if len(inputs) == 1 else ""
        archive_name = names.add(f"{stem or 'pages'}.zip", "zip", fallback="pages")
        # Images are compressed already: stored, not deflated again.
        archive = zipfile.ZipFile(out_dir / archive_name, "w", compression=zipfile.ZIP_STORED)
    in_archive: set[str] = set()

    def store(
        source: InputFile, number: int, page_name: str, encoded: Future[tuple[bytes, tuple[int, int]]]
    ) -> None:
        data, size = encoded.result()
        if archive is not None:
            info = zipfile.ZipInfo(_unique_member(page_name, in_archive), date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
            return
        name = names.add(page_name, fmt.extension, fallback="page")
        (out_dir / name).write_bytes(data)
        details = {"source": source.filename, "page": number, "width": size[0], "height": size[1]}
        outputs.append(
            OutputFile(path=out_dir / name, name=name, content_type=fmt.content_type, details=details)
        )

    # Encoding (Pillow releases the GIL while compressing) runs in a helper thread while this one
    # renders the next page: a page per step instead of render + encode. One page waits at most,
    # so memory holds two pages whatever the page count.
    encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exportd-page-encoder")
    try:
        waiting: tuple[InputFile, int, str, Future[tuple[bytes, tuple[int, int]]]] | None = None
        for source in inputs:
            stem = safe_stem(source.filename) or "document"
            for number, image in _rendered_pages(source, options, limits=limits):
                suffix = "thumbnail" if options.thumbnail else str(number)
                encoded = encoder.submit(_encode, image, fmt, params)
                if waiting is not None:
                    store(*waiting)
                waiting = (source, number, f"{stem}-{suffix}.{fmt.extension}", encoded)
        if waiting is not None:
            store(*waiting)
    finally:
        encoder.shutdown(wait=True, cancel_futures=True)
        if archive is not None:
            archive.close()
    if archive is not None:
        path = out_dir / archive_name
        outputs.append(
            OutputFile(
                path=path, name=archive_name, content_type=ZIP_TYPE, details={"files": len(in_archive)}
            )
        )
    return outputs


def _encode(image: Image.Image, fmt: _Format, params: dict[str, Any]) -> tuple[bytes, tuple[int, int]]:
    """(the encoded file, its size in pixels); a page without colour is stored in one channel."""
    if fmt is not _WEBP:  # WebP has no one-channel mode: Pillow would convert back
        image = _grey_if_colourless(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt.pillow, **params)
    size = image.size
    image.close()
    return buffer.getvalue(), size


def _unique_member(name: str, taken: set[str]) -> str:
    stem, _, extension = name.rpartition(".")
    candidate, counter = name, 2
    while candidate.lower() in taken:
        candidate, counter = f"{stem}-{counter}.{extension}", counter + 1
    taken.add(candidate.lower())
    return candidate


def _rendered_pages(
    source: InputFile, options: PdfRenderOptions, *, limits: Limits
) -> Iterator[tuple[int, Image.Image]]:
    """(page number from 1, its RGB image) for each chosen page, rendered one at a time.

    Each page's pixel count is checked from its size before it is rendered. The lock is released
    between pages so that other threads' PDFs progress while this thread encodes.
    Raises EncryptedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    with PDFIUM_LOCK:
        context = open_pdf(source, password=options.password, limits=limits)
        document = context.__enter__()
    try:
        with PDFIUM_LOCK:
            count = len(document)
        indexes = [0] if options.thumbnail else parse_pages(options.pages, count)
        if len(indexes) > limits.max_pages:
            raise InputTooLarge(f"{len(indexes)} pages would be rendered; the limit is {limits.max_pages}")
        width = options.width or (256 if options.thumbnail else None)
        for index in indexes:
            checkpoint()
            with PDFIUM_LOCK:
                with reading_input(source, "PDF"):
                    page = document[index]
                try:
                    with reading_input(source, "PDF"):
                        page_w, page_h = page.get_size()
                        rotation = page.get_rotation()
                    scale = width / page_w if width is not None else options.dpi / _POINTS_PER_INCH
                    # PDFium makes the bitmap ceil(points × scale) pixels: a hair less keeps an exact
                    # size exact (792 pt at 150 DPI is 1650.0000000000002 in floating point).
                    scale *= 1 - 1e-9
                    _check_size(source, index, page_w, page_h, rotation, scale, limits)
                    with reading_input(source, "PDF"):
                        bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255), rev_byteorder=True)
                    # Copied out of PDFium's buffer, which the bitmap's close frees.
                    image = bitmap.to_pil()
                    image = image.copy() if image.mode == "RGB" else image.convert("RGB")
                    bitmap.close()
                finally:
                    page.close()
            yield index + 1, image
    finally:
        with PDFIUM_LOCK:
            context.__exit__(None, None, None)


def _grey_if_colourless(image: Image.Image) -> Image.Image:
    """The page in one channel when it has no colour (most text pages), else as it is.

    Exact, not approximate: only when red, green and blue are equal in every pixel. A third of the
    data to compress makes PNG encoding, which sets the pace, about twice as fast, for ~6 ms of checking.
    """
    red, green, blue = image.split()
    if ImageChops.difference(red, green).getbbox() or ImageChops.difference(green, blue).getbbox():
        return image
    image.close()
    return red


def _check_size(
    source: InputFile, index: int, page_w: float, page_h: float, rotation: int, scale: float, limits: Limits
) -> None:
    """Refuse a page whose image would exceed the pixel or side limits, before rendering it."""
    if rotation % 180:
        page_w, page_h = page_h, page_w
    width_px, height_px = math.ceil(page_w * scale), math.ceil(page_h * scale)
    if width_px < 1 or height_px < 1:
        raise CorruptInput(f"{describe(source)}: page {index + 1} has no area")
    if width_px * height_px > limits.max_pixels or max(width_px, height_px) > limits.max_output_side_px:
        raise InputTooLarge(
            f"{describe(source)}: page {index + 1} would be {width_px}×{height_px} pixels, more than the "
            f"limit ({limits.max_pixels:,} pixels, {limits.max_output_side_px} per side); a lower dpi or width fits"
        )


# -- merge, split, rotate --------------------------------------------------------------------


def merge_pdfs(
    inputs: Sequence[InputFile], out_dir: Path, options: PdfEditOptions, *, limits: Limits
) -> list[OutputFile]:
    """All inputs in one PDF in the order given: the chosen pages of each PDF, a page per image.

    Raises EncryptedInput, CorruptInput, InputTooLarge, InvalidOptions, UnsupportedConversion.
    """
    if not inputs:
        raise UnsupportedConversion("merging needs at least one input")
    name = UniqueNames().add(
        inputs[0].filename if len(inputs) == 1 else "merged.pdf", "pdf", fallback="merged"
    )
    path = out_dir / name
    parts = _as_pdfs(inputs, out_dir, limits=limits)
    total = 0
    removed: Counter[str] = Counter()
    with PDFIUM_LOCK:
        merged = pdfium.PdfDocument.new()
    try:
        for source, part in parts:
            password = options.password if part is source else None
            with PDFIUM_LOCK, open_pdf(part, password=password, limits=limits) as document:
                indexes = parse_pages(options.pages if part is source else "", len(document))
                total += len(indexes)
                if total > limits.max_pages:
                    raise InputTooLarge(
                        f"the merged PDF would have more than {limits.max_pages} pages, the limit"
                    )
                with reading_input(part, "PDF"):
                    merged.import_pages(document, indexes, index=len(merged))
            if part is source:
                removed.update(document_level_active_content(source.path, password=password))
        with PDFIUM_LOCK:
            _rotate_all(merged, options.rotate)
            merged.save(path)
    finally:
        with PDFIUM_LOCK:
            merged.close()
        for source, part in parts:
            if part is not source:
                part.path.unlink(missing_ok=True)
    removed.update(remove_active_content(path))
    set_info(path, title=options.title, author=options.author)
    details: dict[str, Any] = {"pages": total}
    if removed:
        details["active_content_removed"] = dict(sorted(removed.items()))
    return [OutputFile(path=path, name=name, content_type=PDF_TYPE, details=details)]


def split_pdf(
    inputs: Sequence[InputFile], out_dir: Path, options: PdfSplitOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each PDF cut into several: one per range of `ranges`, or one per page.

    Raises EncryptedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in inputs:
        stem = safe_stem(source.filename) or "document"
        document_level = document_level_active_content(source.path, password=options.password)
        with PDFIUM_LOCK, open_pdf(source, password=options.password, limits=limits) as document:
            count = len(document)
            if options.ranges.strip():
                groups = [parse_pages(part, count) for part in options.ranges.split(";") if part.strip()]
            else:
                groups = [[i] for i in parse_pages(options.pages, count)]
            if len(outputs) + len(groups) > limits.max_pages:
                raise InputTooLarge(f"splitting would make more than {limits.max_pages} files, the limit")
            for group in groups:
                label = f"{group[0] + 1}" if len(group) == 1 else f"{group[0] + 1}-{group[-1] + 1}"
                name = names.add(f"{stem}-{label}.pdf", "pdf", fallback="part")
                part = pdfium.PdfDocument.new()
                try:
                    with reading_input(source, "PDF"):
                        part.import_pages(document, group)
                    _rotate_all(part, options.rotate)
                    part.save(out_dir / name)
                finally:
                    part.close()
                details: dict[str, Any] = {"source": source.filename, "pages": [i + 1 for i in group]}
                removed = Counter(document_level) + Counter(remove_active_content(out_dir / name))
                if removed:
                    details["active_content_removed"] = dict(sorted(removed.items()))
                outputs.append(
                    OutputFile(path=out_dir / name, name=name, content_type=PDF_TYPE, details=details)
                )
        for output in outputs[-len(groups) :]:
            set_info(output.path, title=options.title, author=options.author)
    return outputs


def _rotate_all(document: pdfium.PdfDocument, degrees: int) -> None:
    if not degrees:
        return
    for index in range(len(document)):
        page = document[index]
        page.set_rotation((page.get_rotation() + degrees) % 360)
        page.close()


def _as_pdfs(
    inputs: Sequence[InputFile], out_dir: Path, *, limits: Limits
) -> list[tuple[InputFile, InputFile]]:
    """(input, the input as a PDF): PDFs as they are, each image made a one-page PDF beside the outputs."""
    parts: list[tuple[InputFile, InputFile]] = []
    try:
        for number, source in enumerate(inputs):
            if source.content_type == PDF_TYPE:
                parts.append((source, source))
                continue
            if not source.content_type.startswith("image/"):
                raise UnsupportedConversion(
                    f"{describe(source)} is {source.content_type}; only PDFs and images can be merged"
                )
            moved = out_dir / f".merge-{number}.pdf"
            write_pages([source], moved, ImagePdfOptions(), limits=limits)
            parts.append((source, InputFile(path=moved, filename=source.filename, content_type=PDF_TYPE)))
    except BaseException:
        for source, part in parts:
            if part is not source:
                part.path.unlink(missing_ok=True)
        raise
    return parts


# -- metadata --------------------------------------------------------------------------------


def _pdf_text(value: str) -> bytes:
    """A PDF text string: UTF-16BE with a byte order mark, as hex (no escaping to get wrong)."""
    return b"<FEFF" + value.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def set_info(path: Path, *, title: str | None, author: str | None) -> None:
    """Write a title and author into a PDF saved by PDFium, as an incremental update appended to it.

    PDFium reads metadata but cannot write it; a PDF may be updated by appending new objects and a
    trailer that points back to the previous cross-reference table, which every reader follows.
    Raises CorruptInput when the file does not end with a trailer this function can follow.
    """
    entries = [(b"/Title", title), (b"/Author", author), (b"/Producer", "exportd")]
    if not title and not author:
        return
    data = path.read_bytes()
    tail = data[-4096:]
    startxref = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", tail)
    if not startxref:
        raise CorruptInput("the PDF written has no trailer to update")
    trailer_at = data.rfind(b"trailer")
    trailer = data[trailer_at:] if trailer_at != -1 else b""
    root = re.search(rb"/Root\s+(\d+\s+\d+)\s+R", trailer)
    size = re.search(rb"/Size\s+(\d+)", trailer)
    if not root or not size:
        # PDFium writes a classic trailer; anything else is not what this function was made for.
        raise CorruptInput("the PDF written has a cross-reference stream, not a trailer to update")
    number = int(size.group(1))
    info = b"<<" + b"".join(key + b" " + _pdf_text(value) for key, value in entries if value) + b">>"
    body = b"\n" if not data.endswith(b"\n") else b""
    offset = len(data) + len(body)
    body += f"{number} 0 obj\n".encode() + info + b"\nendobj\n"
    xref_at = len(data) + len(body)
    body += f"xref\n{number} 1\n{offset:010d} 00000 n \n".encode()
    body += (
        f"trailer\n<< /Size {number + 1} /Root ".encode()
        + root.group(1)
        + f" R /Info {number} 0 R /Prev {int(startxref.group(1))} >>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    )
    with path.open("ab") as file:
        file.write(body)
