"""Markdown to PDF: the text layer has every word, headings make the outline, nothing is markup."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from PIL import Image

from exporters.base import (
    CorruptInput,
    InputFile,
    InputTooLarge,
    Limits,
    UnsupportedConversion,
    parse_options,
)
from exporters.markdown import MARKDOWN_TYPE, PRINT_DPI, MarkdownPdfOptions, markdown_to_pdf
from tests.exporters.samples import RED, Pdf, assert_upright_photo, card, sample, save

A4 = (595.28, 841.89)
MM = 72 / 25.4

A4 = (595.28, 841.89)


def md(path: Path, name: str | None = None) -> InputFile:
    return InputFile(path=path, filename=name or path.name, content_type=MARKDOWN_TYPE)


def write(tmp_path: Path, text: str, name: str = "doc.md") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def squeezed(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_report_in_english_and_russian(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    logo = save(card(200, 100), tmp_path / "logo.png", "PNG")
    inputs = [md(sample("documents/report.md")), InputFile(logo, "logo.png", "image/png")]

    (output,) = markdown_to_pdf(inputs, out_dir, MarkdownPdfOptions(author="Анна"), limits=limits)

    pdf = open_pdf(output.path)
    assert output.name == "report.pdf" and pdf.page_size(0) == A4
    text = squeezed(pdf.all_text())
    for phrase in (
        "Quarterly report",
        "Sales grew in every region.",
        "Продажи выросли во всех регионах. Съешь же ещё этих мягких французских булок, да выпей же чаю.",
        "North Север 1 200",
        "1. First point",
        "a nested bullet",
        "Quoted: «Всё будет хорошо».",
        'code_block(x) -> "<b>kept as text</b>"',
        "The company logo",
    ):
        assert phrase in text, phrase
    toc = [(item.get_title(), item.level) for item in pdf.document.get_toc()]
    assert toc == [("Quarterly report", 0), ("Регионы", 1), ("Notes", 2)]
    metadata = pdf.document.get_metadata_dict()
    assert metadata["Title"] == "Quarterly report" and metadata["Author"] == "Анна"
    assert "images_not_found" not in output.details
    # The picture is drawn: a block of the card's red somewhere on the page.
    page = pdf.render(len(pdf) - 1, scale=1)
    assert any(colour == RED for _count, colour in page.getcolors(1 << 20) or [])


def test_markup_in_the_text_is_shown_not_obeyed(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    hostile = (
        '<font size="60" color="red">big</font> <img src="/etc/passwd"/> '
        '<a href="javascript:alert(1)">x</a> &amp; <b>b</b>\n\n'
        "[click](javascript:alert(1)) and `<para>`\n"
    )
    path = write(tmp_path, hostile)

    (output,) = markdown_to_pdf([md(path)], out_dir, MarkdownPdfOptions(), limits=limits)

    pdf = open_pdf(output.path)
    text = squeezed(pdf.all_text())
    assert '<font size="60" color="red">big</font> <img src="/etc/passwd"/>' in text
    assert "& <b>b</b>" in text  # the entity means "&", as CommonMark says
    assert "[click](javascript:alert(1)) and <para>" in text  # a script link is not a link
    assert b"/URI" not in output.path.read_bytes()


def test_links_become_link_annotations(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    path = write(tmp_path, 'See [the site](https://example.com/a?b=1&c="2").\n')

    (output,) = markdown_to_pdf([md(path)], out_dir, MarkdownPdfOptions(), limits=limits)

    data = output.path.read_bytes()
    assert b'/URI (https://example.com/a?b=1&c="2")' in data or b"https://example.com/a?b=1&c=" in data


def test_missing_and_remote_images_are_listed_not_fetched(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    path = write(tmp_path, "![a chart](chart.png)\n\n![tracker](https://example.com/t.png)\n")

    (output,) = markdown_to_pdf([md(path)], out_dir, MarkdownPdfOptions(), limits=limits)

    assert output.details["images_not_found"] == ["chart.png", "https://example.com/t.png"]
    assert "[a chart]" in open_pdf(output.path).all_text()


def test_header_footer_and_page_n_of_m(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    body = "\n\n".join(f"Paragraph {i}. " + "Lorem ipsum dolor sit amet. " * 12 for i in range(60))
    path = write(tmp_path, body)
    options = parse_options(
        MarkdownPdfOptions,
        {"header": "ACME <b>Confidential</b>", "footer": "Стр. {page} из {pages}", "page_size": "Letter"},
    )

    (output,) = markdown_to_pdf([md(path)], out_dir, options, limits=limits)

    pdf = open_pdf(output.path)
    pages = len(pdf)
    assert pages >= 3 and pdf.page_size(0) == (612.0, 792.0)
    for index in range(pages):
        text = pdf.text(index)
        assert "ACME <b>Confidential</b>" in text
        assert f"Стр. {index + 1} из {pages}" in text
        assert f"page {index + 1} of {pages}" in text


def test_landscape_and_reproducible(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    path = write(tmp_path, "# Title\n\nText.\n")
    options = MarkdownPdfOptions(orientation="landscape", title="Given title")

    (first,) = markdown_to_pdf([md(path)], out_dir, options, limits=limits)
    data = first.path.read_bytes()
    (second,) = markdown_to_pdf([md(path)], out_dir, options, limits=limits)

    assert second.path.read_bytes() == data
    pdf = open_pdf(first.path)
    assert pdf.page_size(0) == (A4[1], A4[0])
    assert pdf.document.get_metadata_dict()["Title"] == "Given title"


def test_page_limit(tmp_path: Path, out_dir: Path) -> None:
    path = write(tmp_path, "\n\n".join("Lorem ipsum dolor sit amet. " * 20 for _ in range(100)))

    with pytest.raises(InputTooLarge, match="more than 2 pages"):
        markdown_to_pdf([md(path)], out_dir, MarkdownPdfOptions(), limits=Limits(max_pages=2))


def test_not_text_is_corrupt(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    path = tmp_path / "bad.md"
    path.write_bytes(b"# Title\n\x00\x01\x02 binary")

    with pytest.raises(CorruptInput, match="not text in any encoding"):
        markdown_to_pdf([md(path)], out_dir, MarkdownPdfOptions(), limits=limits)


def test_images_alone_are_refused(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    logo = save(card(), tmp_path / "logo.png", "PNG")

    with pytest.raises(UnsupportedConversion):
        markdown_to_pdf(
            [InputFile(logo, "logo.png", "image/png")], out_dir, MarkdownPdfOptions(), limits=limits
        )


def test_an_oversized_picture_is_refused_from_its_header(tmp_path: Path, out_dir: Path) -> None:
    big = save(card(400, 300), tmp_path / "big.png", "PNG")
    path = write(tmp_path, "![big](big.png)\n")

    with pytest.raises(InputTooLarge, match=r"400×300 pixels \(120,000\)"):
        markdown_to_pdf(
            [md(path), InputFile(big, "big.png", "image/png")], out_dir, MarkdownPdfOptions(),
            limits=Limits(max_pixels=100_000),
        )  # fmt: skip


def _pictures(path: Path) -> list[tuple[tuple[int, int], list[str], bytes]]:
    """(pixel size, filters, raw stream) of every image object on every page, as PDFium reads them."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    found = []
    document = pdfium.PdfDocument(path)
    for page in document:
        for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]):
            found.append(
                (tuple(obj.get_px_size()), list(obj.get_filters()), bytes(obj.get_data(decode_simple=False)))
            )
    document.close()
    return found  # type: ignore[return-value]


def test_a_picture_is_stored_at_print_resolution_of_its_drawn_size(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    photo = sample("orientation/Landscape_3.jpg")  # a real 1800×1200 photo, stored upside down
    with Image.open(photo) as opened:
        assert opened.size == (1800, 1200)
    path = write(tmp_path, "![photo](Landscape_3.jpg)\n")
    options = parse_options(MarkdownPdfOptions, {"margin_mm": 60})  # a 255 pt (3.54 in) wide frame

    (output,) = markdown_to_pdf(
        [md(path), InputFile(photo, photo.name, "image/jpeg")], out_dir, options, limits=limits
    )

    ((size, filters, _stream),) = _pictures(output.path)
    frame_in = (A4[0] - 2 * 60 * MM) / 72
    # The frame's width at 300 dpi (less reportlab's few points of frame padding), the aspect kept.
    assert 0.97 * frame_in * PRINT_DPI <= size[0] <= math.ceil(frame_in * PRINT_DPI)
    assert size[1] == round(1200 * size[0] / 1800)
    assert filters == ["DCTDecode"]  # a photo stays a JPEG, not deflated pixels
    # Upright: the photo's sky (top left) is at the top of the drawn picture.
    document = Pdf(output.path)
    left, bottom, right, top = document.document[0].get_objects().__next__().get_bounds()
    page = document.render(0, scale=2)
    height = page.size[1]
    assert_upright_photo(
        page.crop((round(left * 2), round(height - top * 2), round(right * 2), round(height - bottom * 2)))
    )


def test_a_big_photo_makes_a_pdf_smaller_than_itself(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    # A 12-megapixel phone-sized photo made from the real one (the corpus has none that large).
    with Image.open(sample("orientation/Landscape_1.jpg")) as opened:
        big = opened.convert("RGB").resize((4032, 2688), Image.Resampling.LANCZOS)
    photo = save(big, tmp_path / "big.jpg", "JPEG", quality=95)
    photo_bytes = photo.stat().st_size
    path = write(tmp_path, "# Trip\n\n![big](big.jpg)\n")

    (output,) = markdown_to_pdf(
        [md(path), InputFile(photo, photo.name, "image/jpeg")], out_dir, MarkdownPdfOptions(), limits=limits
    )

    ((size, filters, stream),) = _pictures(output.path)
    frame_in = (A4[0] - 2 * 20 * MM) / 72
    assert 0.97 * frame_in * PRINT_DPI <= size[0] <= math.ceil(frame_in * PRINT_DPI)  # about 2000 px on A4
    assert filters == ["DCTDecode"]
    assert len(stream) < photo_bytes / 2
    assert output.path.stat().st_size < photo_bytes


def test_a_jpeg_that_needs_no_change_goes_in_as_it_is(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    photo = sample("orientation/Landscape_1.jpg")  # upright, drawn larger than it is at 300 dpi
    path = write(tmp_path, "![photo](Landscape_1.jpg)\n")

    (output,) = markdown_to_pdf(
        [md(path), InputFile(photo, photo.name, "image/jpeg")], out_dir, MarkdownPdfOptions(), limits=limits
    )

    ((size, filters, stream),) = _pictures(output.path)
    original = photo.read_bytes()
    with Image.open(photo) as opened:
        assert size == opened.size
    assert filters == ["DCTDecode"]
    assert stream.endswith(original[original.index(b"\xff\xda") :])  # the coded picture, untouched
    assert b"Exif" not in stream  # without its metadata


def test_markdown_in_a_code_page_is_read_in_it(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    # The sniffer takes a cp1251 .md as Markdown (exporters.charsets); the reader decodes it alike.
    path = tmp_path / "notes.md"
    path.write_bytes("# Заметки\n\nСъешь же ещё этих мягких французских булок.\n".encode("cp1251"))

    (output,) = markdown_to_pdf([md(path)], out_dir, MarkdownPdfOptions(), limits=limits)

    assert "Съешь же ещё этих мягких французских булок" in Pdf(output.path).all_text()
