"""PDF pages to images, merge, split, rotate and metadata: re-opened and measured."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.pdfgen.canvas import Canvas

from exporters.base import CorruptInput, InputFile, InputTooLarge, InvalidOptions, Limits, parse_options
from exporters.pdfdocs import (
    EncryptedInput,
    PdfEditOptions,
    PdfLossyOptions,
    PdfPngOptions,
    PdfSplitOptions,
    merge_pdfs,
    parse_pages,
    pdf_to_jpeg,
    pdf_to_png,
    pdf_to_webp,
    split_pdf,
)
from exporters.text import FONTS
from tests.exporters.samples import RUSSIAN, Pdf, as_input, card, save


def make_pdf(
    path: Path,
    pages: int,
    *,
    size: tuple[float, float] = A4,
    encrypt: str | None = None,
    label: str = "Page",
) -> Path:
    """A PDF whose page N says "<label> N" and a line of Russian, in the embedded DejaVu font."""
    canvas = Canvas(str(path), pagesize=size, invariant=True, encrypt=encrypt)
    for number in range(1, pages + 1):
        canvas.setFont(FONTS["sans"], 24)
        canvas.drawString(72, size[1] - 100, f"{label} {number}")
        canvas.setFont(FONTS["sans"], 12)
        canvas.drawString(72, size[1] - 140, RUSSIAN)
        canvas.rect(36, 36, size[0] - 72, size[1] - 72)
        canvas.showPage()
    canvas.save()
    return path


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


# -- page ranges -----------------------------------------------------------------------------


def test_parse_pages() -> None:
    assert parse_pages("", 3) == [0, 1, 2]
    assert parse_pages("1-3,5", 6) == [0, 1, 2, 4]
    assert parse_pages(" 4- ", 6) == [3, 4, 5]
    for bad in ("0", "3-1", "a", "1-3-5", "7"):
        with pytest.raises(InvalidOptions):
            parse_pages(bad, 6)


# -- rendering -------------------------------------------------------------------------------


def test_every_page_as_png_at_the_dpi(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    source = as_input(make_pdf(tmp_path / "doc.pdf", 3))

    outputs = pdf_to_png([source], out_dir, PdfPngOptions(dpi=72), limits=limits)

    assert [o.name for o in outputs] == ["doc-1.png", "doc-2.png", "doc-3.png"]
    for output in outputs:
        with Image.open(output.path) as image:
            assert image.format == "PNG" and image.mode == "L"  # black on white: one channel is exact
            assert image.size == (596, 842)  # A4 (595.28 × 841.89 pt) at 72 DPI, a partial pixel counts
    assert outputs[1].details["page"] == 2


def test_dpi_width_and_page_range(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    source = as_input(make_pdf(tmp_path / "doc.pdf", 6, size=LETTER))

    at_150 = pdf_to_png([source], out_dir, parse_options(PdfPngOptions, {"pages": "2-3,6"}), limits=limits)
    wide = pdf_to_jpeg([source], out_dir, PdfLossyOptions(pages="1", width=400), limits=limits)

    assert [o.details["page"] for o in at_150] == [2, 3, 6]
    assert png_size(at_150[0].path.read_bytes()) == (1275, 1650)  # 8.5 × 11 in at 150 DPI
    (jpeg,) = wide
    with Image.open(jpeg.path) as image:
        assert image.format == "JPEG" and image.size == (400, 518)


def test_rendered_pixels_show_the_page(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    source = as_input(make_pdf(tmp_path / "doc.pdf", 1))

    (output,) = pdf_to_webp([source], out_dir, PdfLossyOptions(dpi=50), limits=limits)

    with Image.open(output.path) as image:
        assert image.format == "WEBP"
        rgb = image.convert("L")
        assert rgb.getpixel((5, 5)) == 255  # white paper, not transparent black
        assert rgb.getextrema()[0] < 100  # the frame and the text are drawn


def test_thumbnail_is_the_first_page_small(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    source = as_input(make_pdf(tmp_path / "report.pdf", 4))

    (output,) = pdf_to_png([source], out_dir, PdfPngOptions(thumbnail=True), limits=limits)

    assert output.name == "report-thumbnail.png"
    assert png_size(output.path.read_bytes()) == (256, 363)


def test_zip_bundles_every_page_of_every_input(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    first = as_input(make_pdf(tmp_path / "a.pdf", 2))
    second = as_input(make_pdf(tmp_path / "b.pdf", 3))
    options = PdfPngOptions(zip=True, dpi=36)

    (output,) = pdf_to_png([first, second], out_dir, options, limits=limits)
    again = out_dir / "again"
    again.mkdir()
    (repeat,) = pdf_to_png([first, second], again, options, limits=limits)

    assert output.content_type == "application/zip" and output.name == "pages.zip"
    with zipfile.ZipFile(output.path) as archive:
        assert archive.namelist() == ["a-1.png", "a-2.png", "b-1.png", "b-2.png", "b-3.png"]
        assert png_size(archive.read("b-3.png")) == (298, 421)
    assert repeat.path.read_bytes() == output.path.read_bytes()


def test_coloured_pages_stay_in_colour(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    path = tmp_path / "colour.pdf"
    canvas = Canvas(str(path), pagesize=(200, 100), invariant=True)
    canvas.setFillColorRGB(0.9, 0.1, 0.1)
    canvas.rect(0, 0, 100, 100, stroke=0, fill=1)
    canvas.save()

    (output,) = pdf_to_png([as_input(path)], out_dir, PdfPngOptions(dpi=72), limits=limits)

    with Image.open(output.path) as image:
        assert image.mode == "RGB"
        assert image.getpixel((10, 50)) == (230, 26, 26) and image.getpixel((150, 50)) == (255, 255, 255)


def test_fast_png_is_larger_but_the_same_pixels(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    source = as_input(make_pdf(tmp_path / "doc.pdf", 1))
    small_dir = out_dir / "small"
    small_dir.mkdir()

    (fast,) = pdf_to_png([source], out_dir, PdfPngOptions(), limits=limits)
    (small,) = pdf_to_png([source], small_dir, PdfPngOptions(compression="small"), limits=limits)

    assert small.path.stat().st_size < fast.path.stat().st_size
    with Image.open(fast.path) as a, Image.open(small.path) as b:
        assert a.tobytes() == b.tobytes()


def test_page_pixels_are_checked_before_rendering(tmp_path: Path, out_dir: Path) -> None:
    source = as_input(make_pdf(tmp_path / "poster.pdf", 1, size=(14_400, 14_400)))

    with pytest.raises(InputTooLarge, match="page 1 would be 6000×6000 pixels"):
        pdf_to_png([source], out_dir, PdfPngOptions(dpi=30), limits=Limits(max_pixels=10_000_000))


def test_page_count_limit(tmp_path: Path, out_dir: Path) -> None:
    source = as_input(make_pdf(tmp_path / "long.pdf", 6))

    with pytest.raises(InputTooLarge, match="has 6 pages; the limit is 5"):
        pdf_to_png([source], out_dir, PdfPngOptions(dpi=18), limits=Limits(max_pages=5))


def test_encrypted_pdf_needs_its_password(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    source = as_input(make_pdf(tmp_path / "secret.pdf", 2, encrypt="s3cret"))

    with pytest.raises(EncryptedInput, match="give its password") as refused:
        pdf_to_png([source], out_dir, PdfPngOptions(dpi=36), limits=limits)
    with pytest.raises(EncryptedInput, match="password given is wrong"):
        pdf_to_png([source], out_dir, PdfPngOptions(dpi=36, password="nope"), limits=limits)
    outputs = pdf_to_png([source], out_dir, PdfPngOptions(dpi=36, password="s3cret"), limits=limits)

    assert refused.value.code == "encrypted_input"
    assert len(outputs) == 2


def test_malformed_pdf_is_corrupt_input(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    good = make_pdf(tmp_path / "good.pdf", 1).read_bytes()
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(good[:40] + b"\x00garbage" * 50)

    with pytest.raises(CorruptInput, match="not a readable PDF"):
        pdf_to_png([as_input(broken)], out_dir, PdfPngOptions(), limits=limits)


def test_pdfium_is_used_by_one_thread_at_a_time(tmp_path: Path, limits: Limits) -> None:
    sources = [as_input(make_pdf(tmp_path / f"doc{i}.pdf", 3)) for i in range(4)]
    errors: list[BaseException] = []
    results: list[int] = []

    def work(index: int) -> None:
        out = tmp_path / f"out{index}"
        out.mkdir()
        try:
            results.append(len(pdf_to_png([sources[index]], out, PdfPngOptions(dpi=60), limits=limits)))
        except BaseException as exc:  # any crash fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors and results == [3, 3, 3, 3]


# -- merge and split -------------------------------------------------------------------------


def test_merge_pdfs_and_images_in_order_with_metadata(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    first = as_input(make_pdf(tmp_path / "a.pdf", 2, label="Alpha"))
    photo = as_input(save(card(300, 200), tmp_path / "card.png", "PNG"))
    second = as_input(make_pdf(tmp_path / "b.pdf", 1, size=LETTER, label="Beta"))
    options = PdfEditOptions(title="Отчёт за июль", author="Ann <Example> (QA)")

    (output,) = merge_pdfs([first, photo, second], out_dir, options, limits=limits)

    pdf = open_pdf(output.path)
    assert len(pdf) == 4 and output.name == "merged.pdf"
    assert "Alpha 1" in pdf.text(0) and "Alpha 2" in pdf.text(1) and "Beta 1" in pdf.text(3)
    assert RUSSIAN in pdf.text(3)
    assert pdf.page_size(2) == (841.89, 595.28)  # the landscape image on a landscape A4 page
    assert pdf.page_size(3) == (612.0, 792.0)
    assert pdf.document.get_metadata_dict()["Title"] == "Отчёт за июль"
    assert pdf.document.get_metadata_dict()["Author"] == "Ann <Example> (QA)"
    assert not list(out_dir.glob(".merge*"))  # no work files left beside the output


def test_merge_with_page_range_and_rotation(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    source = as_input(make_pdf(tmp_path / "a.pdf", 5))

    (output,) = merge_pdfs([source], out_dir, PdfEditOptions(pages="2,4-5", rotate=90), limits=limits)

    pdf = open_pdf(output.path)
    assert ["Page 2" in pdf.text(0), "Page 4" in pdf.text(1), "Page 5" in pdf.text(2)] == [True] * 3
    assert pdf.document[0].get_rotation() == 90
    assert pdf.render(0, scale=0.2).size[0] > pdf.render(0, scale=0.2).size[1]  # shown landscape


def test_merge_of_an_encrypted_pdf_with_its_password(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    source = as_input(make_pdf(tmp_path / "s.pdf", 2, encrypt="pw"))

    (output,) = merge_pdfs([source], out_dir, PdfEditOptions(password="pw"), limits=limits)

    assert len(open_pdf(output.path)) == 2  # and the result opens without a password


def test_merge_refuses_more_pages_than_the_limit(tmp_path: Path, out_dir: Path) -> None:
    sources = [as_input(make_pdf(tmp_path / f"{i}.pdf", 3)) for i in range(3)]

    with pytest.raises(InputTooLarge, match="more than 8 pages"):
        merge_pdfs(sources, out_dir, PdfEditOptions(), limits=Limits(max_pages=8))


def test_split_per_page_and_by_ranges(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    source = as_input(make_pdf(tmp_path / "book.pdf", 5))
    ranges_dir = out_dir / "ranges"
    ranges_dir.mkdir()

    per_page = split_pdf([source], out_dir, PdfSplitOptions(), limits=limits)
    by_range = split_pdf([source], ranges_dir, PdfSplitOptions(ranges="1-2; 3-", title="Part"), limits=limits)

    assert [o.name for o in per_page] == [f"book-{i}.pdf" for i in range(1, 6)]
    assert "Page 4" in open_pdf(per_page[3].path).text(0)
    assert [o.name for o in by_range] == ["book-1-2.pdf", "book-3-5.pdf"]
    second = open_pdf(by_range[1].path)
    assert len(second) == 3 and "Page 3" in second.text(0)
    assert second.document.get_metadata_dict()["Title"] == "Part"


def test_set_info_keeps_the_pdf_valid_for_pdfium(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    source = as_input(make_pdf(tmp_path / "a.pdf", 1))

    (output,) = merge_pdfs([source], out_dir, PdfEditOptions(title="T"), limits=limits)

    document = pdfium.PdfDocument(output.path)
    try:
        assert document.get_metadata_value("Title") == "T" and len(document) == 1
    finally:
        document.close()


def test_only_pdfs_and_images_merge(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    text = tmp_path / "n.txt"
    text.write_text("hi")

    with pytest.raises(Exception, match="only PDFs and images"):
        merge_pdfs([InputFile(text, "n.txt", "text/plain")], out_dir, PdfEditOptions(), limits=limits)
