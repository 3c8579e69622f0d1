"""Plain text to PDF: the text layer says exactly what the file said, wrapped, paginated, in an embedded font."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporters.base import (
    CorruptInput,
    InputTooLarge,
    InvalidOptions,
    Limits,
    parse_options,
)
from exporters.text import TextPdfOptions, _decoded_pieces, text_to_pdf
from tests.exporters.samples import FRENCH, GREEK, RUSSIAN, Pdf, as_input

A4 = (595.28, 841.89)
LETTER = (612.0, 792.0)
MM = 72 / 25.4


def write(tmp_path: Path, content: str | bytes, name: str = "notes.txt") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def convert(path: Path, out_dir: Path, options: TextPdfOptions | None = None, **limits: int) -> Path:
    (output,) = text_to_pdf([as_input(path)], out_dir, options or TextPdfOptions(), limits=Limits(**limits))
    assert output.content_type == "application/pdf"
    return output.path


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def baselines(pdf: Pdf, page: int) -> list[float]:
    """Where the lines of a page sit, top to bottom: the bottoms of their characters' font boxes."""
    boxes = pdf.char_boxes(page, loose=True)
    bottoms = sorted((box[1] for char, box in boxes if not char.isspace()), reverse=True)
    lines: list[float] = []
    for bottom in bottoms:
        if not lines or lines[-1] - bottom > 1:  # pdfium's boxes jitter by a fraction of a point
            lines.append(bottom)
    return lines


def test_cyrillic_greek_and_accented_latin_are_kept_exactly(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    path = write(tmp_path, f"{RUSSIAN}\n{GREEK}\n{FRENCH}\n")

    pdf = open_pdf(convert(path, out_dir))

    text = pdf.text(0)
    for line in (RUSSIAN, GREEK, FRENCH):
        assert line in text
    assert text.replace("\r\n", "\n").strip() == f"{RUSSIAN}\n{GREEK}\n{FRENCH}"


def test_the_font_is_embedded_as_a_subset(tmp_path: Path, out_dir: Path) -> None:
    path = write(tmp_path, RUSSIAN)

    data = convert(path, out_dir).read_bytes()

    assert re.search(rb"/BaseFont /[A-Z]{6}\+DejaVuSans\b", data)
    assert b"/FontFile2" in data
    assert b"Helvetica" not in data  # no font a viewer would have to substitute


def test_mono_font(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    path = write(tmp_path, "iiii\nMMMM\n")

    output = convert(path, out_dir, TextPdfOptions(font="mono"))

    assert re.search(rb"/BaseFont /[A-Z]{6}\+DejaVuSansMono\b", output.read_bytes())
    boxes = [box for char, box in open_pdf(output).char_boxes(0) if not char.isspace()]
    assert boxes[3][2] == pytest.approx(boxes[7][2], abs=0.5)  # "iiii" as wide as "MMMM"


@pytest.mark.parametrize(("page_size", "size"), [("A4", A4), ("Letter", LETTER)])
def test_page_size_and_margins(
    page_size: str, size: tuple[float, float], tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    path = write(tmp_path, "Top left\n")

    pdf = open_pdf(convert(path, out_dir, TextPdfOptions(page_size=page_size, margin_mm=30)))

    assert pdf.page_size(0) == size
    left, _bottom, _right, top = pdf.char_boxes(0)[0][1]
    assert left == pytest.approx(30 * MM, abs=1.5)
    assert size[1] - top == pytest.approx(30 * MM, abs=4)


def test_a_long_line_wraps_within_the_margins_without_losing_text(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    words = [f"word{i}" for i in range(3000)] + ["x" * 400] + ["end"]
    giant = "y" * 5000
    content = " ".join(words) + "\n" + giant + "\n"
    path = write(tmp_path, content)

    pdf = open_pdf(convert(path, out_dir))

    assert len(pdf) > 1
    assert squeezed(pdf.all_text()) == squeezed(content)
    right_edge = A4[0] - 20 * MM
    for page in range(len(pdf)):
        for _char, box in pdf.char_boxes(page):
            assert box[2] <= right_edge + 0.5
    # Breaks are at spaces: no word is split over two lines.
    first_page_lines = pdf.text(0).split("\r\n")
    assert all(re.fullmatch(r"(word\d+ )*word\d+ ?", line) for line in first_page_lines[:-1])


def test_blank_lines_are_kept(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    path = write(tmp_path, "one\n\n\nfour\nfive")

    pdf = open_pdf(convert(path, out_dir, TextPdfOptions(font_size=10)))

    one, four, five = baselines(pdf, 0)
    assert one - four == pytest.approx(3 * 12, abs=0.1)  # leading is 1.2 x 10 pt
    assert four - five == pytest.approx(12, abs=0.1)


def test_line_ends_of_every_kind(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    path = write(tmp_path, "unix\nwindows\r\nold mac\rlast")

    pdf = open_pdf(convert(path, out_dir))

    assert len(baselines(pdf, 0)) == 4
    assert pdf.text(0).split("\r\n") == ["unix", "windows", "old mac", "last"]


def test_tabs_are_four_spaces(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    path = write(tmp_path, "a\tb\na    b\n")

    boxes = [box for char, box in open_pdf(convert(path, out_dir)).char_boxes(0) if char == "b"]

    assert boxes[0][0] == pytest.approx(boxes[1][0], abs=0.01)


def test_form_feed_starts_a_new_page(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    path = write(tmp_path, "first page\n\fsecond page\fthird page\n")

    pdf = open_pdf(convert(path, out_dir))

    assert [pdf.text(i).strip() for i in range(len(pdf))] == ["first page", "second page", "third page"]


def test_markup_is_shown_not_interpreted(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    content = '<b>bold?</b> <font size="40" color="red">big?</font> &amp; (parens) \\ backslash'
    path = write(tmp_path, content)

    pdf = open_pdf(convert(path, out_dir))

    assert pdf.text(0) == content


def test_control_characters_are_shown_as_replacement(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    path = write(tmp_path, "a" * 5000 + "\n bell\x07 escape\x1b[0m\n")

    pdf = open_pdf(convert(path, out_dir))

    assert "bell\ufffd escape\ufffd[0m" in pdf.all_text()


def test_byte_order_mark_is_dropped(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + GREEK.encode())

    assert open_pdf(convert(path, out_dir)).text(0) == GREEK


def test_empty_file_gives_one_blank_page(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    path = write(tmp_path, b"")

    pdf = open_pdf(convert(path, out_dir))

    assert len(pdf) == 1
    assert pdf.text(0) == ""


def test_full_pages_make_no_empty_page_after_them(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    options = TextPdfOptions(font_size=10)
    probe = open_pdf(convert(write(tmp_path, "x\n" * 200, "probe.txt"), out_dir, options))
    per_page = len(baselines(probe, 0))
    assert len(baselines(probe, 1)) == per_page  # the page is really full

    pdf = open_pdf(convert(write(tmp_path, "x\n" * (2 * per_page)), out_dir, options))

    assert len(pdf) == 2


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "encoding"), [(RUSSIAN, "cp1251"), (RUSSIAN, "koi8_r"), (FRENCH, "cp1252")])
def test_text_in_a_code_page_is_read_in_it(tmp_path: Path, out_dir: Path, text: str, encoding: str) -> None:
    # Detected as CSV files are (exporters.charsets), not refused for not being UTF-8.
    path = write(tmp_path, text.encode(encoding))

    pdf = Pdf(convert(path, out_dir))

    assert squeezed(text) in squeezed(pdf.all_text())


def test_binary_bytes_are_not_text(tmp_path: Path, out_dir: Path) -> None:
    path = write(tmp_path, b"abc\x00\x01\x02def")

    with pytest.raises(CorruptInput, match=r"notes.txt.* is not text in any encoding"):
        convert(path, out_dir)


def test_invalid_utf8_offset_after_the_first_read(tmp_path: Path, out_dir: Path) -> None:
    # A valid two-byte character across the 64 KiB read boundary, then a bad byte far after it.
    data = b"a" * 65_535 + "é".encode() + b"b" * 10_000 + b"\xc3\x28"
    path = write(tmp_path, b"\xef\xbb\xbf" + data)

    with pytest.raises(CorruptInput, match=rf"byte offset {3 + 65_535 + 2 + 10_000}\)"):
        convert(path, out_dir)


def test_truncated_utf8_at_the_end(tmp_path: Path, out_dir: Path) -> None:
    # Past the first read, which decided UTF-8 (a file that short would read as cp1252's "Ã").
    path = write(tmp_path, b"a" * 70_000 + "é".encode()[:1])

    with pytest.raises(CorruptInput, match=r"byte offset 70000\)"):
        convert(path, out_dir)


def test_reading_across_read_boundaries(tmp_path: Path) -> None:
    content = "x" * 65_535 + "\r\n" + "y" * 70_000 + "\r" + "é" * 40_000 + "\n"
    path = write(tmp_path, content)

    assert "".join(_decoded_pieces(as_input(path))) == content.replace("\r\n", "\n").replace("\r", "\n")


def test_page_limit(tmp_path: Path, out_dir: Path) -> None:
    path = write(tmp_path, "line\n" * 10_000)

    with pytest.raises(InputTooLarge, match="more than 3 pages"):
        convert(path, out_dir, max_pages=3)


@pytest.mark.parametrize(
    "raw",
    [
        {"font_size": 3},
        {"font_size": 73},
        {"font_size": "11"},
        {"margin_mm": 150},
        {"page_size": "A5"},
        {"page_size": "fit"},
        {"font": "serif"},
        {"encoding": "latin-1"},
    ],
)
def test_invalid_options_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(InvalidOptions):
        parse_options(TextPdfOptions, raw)


# -- names and determinism -----------------------------------------------------------------


def test_one_pdf_per_input_with_safe_unique_names(tmp_path: Path, out_dir: Path) -> None:
    inputs = [
        as_input(write(tmp_path, "a", "1.txt"), "notes.txt"),
        as_input(write(tmp_path, "b", "2.txt"), "notes.md"),
        as_input(write(tmp_path, "c", "3.txt"), "заметки.txt"),
    ]

    outputs = text_to_pdf(inputs, out_dir, TextPdfOptions(), limits=Limits())

    assert [o.name for o in outputs] == ["notes.pdf", "notes-2.pdf", "document.pdf"]
    assert all(o.path.read_bytes().startswith(b"%PDF-") for o in outputs)


def test_same_text_gives_identical_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, f"{RUSSIAN}\n{GREEK}\n{FRENCH}\n" * 200)
    produced = []
    for run in ("first", "second"):
        out = tmp_path / run
        out.mkdir()
        produced.append(convert(path, out).read_bytes())
    assert produced[0] == produced[1]


def test_landscape_pages_and_wrapping_by_characters(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    text = "ab cd " * 400  # one long line
    source = tmp_path / "log.txt"
    source.write_text(text + "\n")
    options = parse_options(TextPdfOptions, {"orientation": "landscape", "wrap": "char", "font": "mono"})
    (out,) = text_to_pdf([as_input(source)], out_dir, options, limits=Limits())
    pdf = open_pdf(out.path)
    assert pdf.page_size(0) == (841.89, 595.28)
    lines = [ln for ln in pdf.text(0).replace("\r\n", "\n").split("\n") if ln]
    assert len(lines) > 1
    # Fixed-width characters broken at the edge: every full line has the same number of them,
    # spaces included, and nothing is lost.
    assert len({len(ln) for ln in lines[:-1]}) == 1
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
