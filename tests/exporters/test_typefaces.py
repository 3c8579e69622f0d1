"""CJK text in PDFs: drawn in an installed fallback font, kept in the text layer.

The fallback is a system font (Debian's fonts-droid-fallback; `.ci/run` installs it). Without one,
these tests are skipped with that reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters import typefaces
from exporters.base import Limits, parse_options
from exporters.markdown import MarkdownPdfOptions, markdown_to_pdf
from exporters.tables import TablePdfOptions, table_to_pdf
from exporters.text import FONTS, TextPdfOptions, text_to_pdf
from tests.exporters.samples import Pdf, as_input

CHINESE = "中文测试：你好，世界。"
JAPANESE = "日本語のテキストです。"

pytestmark = pytest.mark.skipif(
    not typefaces.available(), reason="no CJK TrueType font installed (Debian: fonts-droid-fallback)"
)


def _fonts_used(pdf: Pdf) -> set[str]:
    """Base font names of the page's text objects, as pdfium reports them."""
    import pypdfium2.raw as raw

    page = pdf.document[0]
    names = set()
    for obj in page.get_objects():
        if obj.type == raw.FPDF_PAGEOBJ_TEXT:
            font = raw.FPDFTextObj_GetFont(obj.raw)
            buffer = bytes(256)
            length = raw.FPDFFont_GetBaseFontName(font, buffer, len(buffer))
            names.add(buffer[: max(0, length - 1)].decode("latin-1"))
    return names


def test_runs_split_where_dejavu_has_no_glyph() -> None:
    assert typefaces.runs("abc", FONTS["sans"]) == [(FONTS["sans"], "abc")]
    assert typefaces.runs("Hi 你好 мир", FONTS["sans"]) == [
        (FONTS["sans"], "Hi "), (typefaces.FALLBACK, "你好"), (FONTS["sans"], " мир"),
    ]  # fmt: skip


def test_text_pdf_keeps_chinese_and_japanese(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    source = tmp_path / "cjk.txt"
    source.write_text(f"{CHINESE} Hello, мир!\n{JAPANESE}\n")
    (out,) = text_to_pdf([as_input(source)], out_dir, TextPdfOptions(), limits=Limits())
    pdf = open_pdf(out.path)
    text = pdf.text(0)
    assert CHINESE in text and JAPANESE in text and "Hello, мир!" in text
    fonts = _fonts_used(pdf)
    assert "DejaVuSans" in fonts and len(fonts) == 2, fonts  # DejaVu and the installed fallback


def test_table_and_markdown_pdfs_keep_chinese(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    table = tmp_path / "cities.csv"
    table.write_text("城市,人口\n北京,21893095\n上海,24870895\n")
    (out,) = table_to_pdf([as_input(table)], out_dir, parse_options(TablePdfOptions, {}), limits=Limits())
    assert "北京" in open_pdf(out.path).text(0) and "城市" in open_pdf(out.path).text(0)
    doc = tmp_path / "notes.md"
    doc.write_text(f"# 报告\n\n{CHINESE} **{JAPANESE}**\n")
    (md,) = markdown_to_pdf([as_input(doc)], out_dir, parse_options(MarkdownPdfOptions, {}), limits=Limits())
    text = open_pdf(md.path).text(0)
    assert "报告" in text and CHINESE in text and JAPANESE in text
