"""Speed and memory of the document conversions, each beside a naive baseline measured in the same run.

Not a test: it prints figures. Every case runs in a fresh Python process, so that its peak memory
(its own ru_maxrss) is that case's alone; the inputs are made beforehand by this process.

- CSV -> PDF table (exporters.tables) at 10k and 100k rows, against a Platypus LongTable (on fewer
  rows, since it holds them all; its rate is per row, so the comparison is per row);
- CSV -> XLSX at 10k and 100k rows (xlsxwriter constant-memory), against openpyxl's ordinary workbook;
- 1 MB of text -> PDF (exporters.text), against a Platypus Paragraph per line;
- a 50-page PDF -> PNG at 150 DPI (exporters.pdfdocs, fast compression) against Pillow's default PNG settings;
- 20 pages of Markdown -> PDF (exporters.markdown), against the same text as plain text -> PDF.

    python benchmarks/documents.py [--rows 100000] [--baseline-rows 10000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "Москва",
    "Санкт-Петербург",
    "épée",
    "Ελλάδα",
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
]


# -- inputs (made by the parent) -------------------------------------------------------------


def make_csv(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write("id,name,city,amount,date,comment\r\n")
        for i in range(rows):
            comment = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(i % 9))
            file.write(
                f"{i},Name {i},{WORDS[i % len(WORDS)]},{i * 1.25:.2f},2024-01-{i % 28 + 1:02d},{comment}\r\n"
            )
    return path


def make_text(path: Path, size_bytes: int) -> Path:
    lines = []
    total = 0
    i = 0
    while total < size_bytes:
        line = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(5 + i % 15))
        lines.append(line)
        total += len(line.encode()) + 1
        i += 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_markdown(path: Path, sections: int) -> Path:
    parts = []
    for s in range(sections):
        parts.append(f"## Section {s + 1}: Раздел\n")
        for p in range(3):
            parts.append(
                " ".join(WORDS[(s + p + k) % len(WORDS)] for k in range(60)) + " **bold** *italic*.\n"
            )
        parts.append("- item one\n- item two with `code`\n- item three\n")
        parts.append("| a | b | c |\n|---|---|---|\n| 1 | Москва | 2.5 |\n| 2 | Ελλάδα | 3.5 |\n")
        parts.append("```\nfor i in range(10):\n    print(i)\n```\n")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# -- cases (each run in a child process) -----------------------------------------------------


def case(name: str, work: Path, arg: int) -> dict[str, Any]:
    from exporters.base import InputFile, Limits

    limits = Limits(max_pages=10**6)
    out = work / f"out-{name}-{arg}"
    out.mkdir(exist_ok=True)
    started = time.perf_counter()
    units = 0
    if name == "csv_pdf":
        from exporters.tables import TablePdfOptions, table_to_pdf

        source = work / f"rows-{arg}.csv"
        (output,) = table_to_pdf(
            [InputFile(source, source.name, "text/csv")], out, TablePdfOptions(), limits=limits
        )
        units = output.details["rows"]
    elif name == "csv_pdf_longtable":
        units = _longtable(work / f"rows-{arg}.csv", out / "longtable.pdf")
    elif name == "csv_xlsx":
        from exporters.tables import TableXlsxOptions, table_to_xlsx

        source = work / f"rows-{arg}.csv"
        (output,) = table_to_xlsx(
            [InputFile(source, source.name, "text/csv")], out, TableXlsxOptions(), limits=limits
        )
        units = output.details["rows"]
    elif name == "csv_xlsx_openpyxl":
        units = _openpyxl(work / f"rows-{arg}.csv", out / "openpyxl.xlsx")
    elif name == "text_pdf":
        from exporters.text import TextPdfOptions, text_to_pdf

        source = work / "text.txt"
        (output,) = text_to_pdf(
            [InputFile(source, source.name, "text/plain")], out, TextPdfOptions(), limits=limits
        )
        units = _pages(output.path)
    elif name == "text_pdf_paragraphs":
        units = _paragraphs(work / "text.txt", out / "paragraphs.pdf")
    elif name == "pdf_png":
        from exporters.pdfdocs import PdfPngOptions, pdf_to_png

        source = work / f"pages-{arg}.pdf"
        outputs = pdf_to_png(
            [InputFile(source, source.name, "application/pdf")], out, PdfPngOptions(dpi=150), limits=limits
        )
        units = len(outputs)
    elif name == "pdf_png_default":
        units = _render_naively(work / f"pages-{arg}.pdf", out)
    elif name == "markdown_pdf":
        from exporters.markdown import MarkdownPdfOptions, markdown_to_pdf

        source = work / "doc.md"
        (output,) = markdown_to_pdf(
            [InputFile(source, source.name, "text/markdown")], out, MarkdownPdfOptions(), limits=limits
        )
        units = _pages(output.path)
    elif name == "markdown_as_text":
        from exporters.text import TextPdfOptions, text_to_pdf

        source = work / "doc.md"
        (output,) = text_to_pdf(
            [InputFile(source, "doc.txt", "text/plain")], out, TextPdfOptions(), limits=limits
        )
        units = _pages(output.path)
    else:
        raise SystemExit(f"unknown case {name}")
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "units": units, "peak_mb": peak_mb}


def _pages(path: Path) -> int:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(path)
    try:
        return len(document)
    finally:
        document.close()


def _longtable(source: Path, target: Path) -> int:
    """The naive way: every row in a Platypus LongTable, header repeated, zebra rows."""
    import csv

    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.platypus import LongTable, SimpleDocTemplate, TableStyle

    from exporters.text import FONTS

    with source.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    table = LongTable(rows, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), FONTS["sans"], 8),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.Color(0.95, 0.96, 0.97)]),
                ("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.85, 0.87, 0.9)),
            ]
        )
    )
    SimpleDocTemplate(str(target), pagesize=landscape(A4), invariant=1).build([table])
    return len(rows) - 1


def _render_naively(source: Path, out: Path) -> int:
    """The naive way: render each page with PDFium and save it with Pillow's default PNG settings."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(source)
    try:
        for index in range(len(document)):
            page = document[index]
            page.render(scale=150 / 72).to_pil().save(out / f"page-{index + 1}.png")
            page.close()
        return len(document)
    finally:
        document.close()


def _openpyxl(source: Path, target: Path) -> int:
    import csv

    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    count = 0
    with source.open(encoding="utf-8", newline="") as file:
        for row in csv.reader(file):
            sheet.append(row)
            count += 1
    workbook.save(target)
    return count - 1


def _paragraphs(source: Path, target: Path) -> int:
    """The naive way: one Platypus Paragraph per line of text."""
    from xml.sax.saxutils import escape

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    from exporters.text import FONTS

    style = ParagraphStyle("body", fontName=FONTS["sans"], fontSize=11, leading=13.2)
    story = [
        Paragraph(escape(line) or "&nbsp;", style) for line in source.read_text(encoding="utf-8").splitlines()
    ]
    pages = []
    document = SimpleDocTemplate(str(target), pagesize=A4, invariant=1)
    document.build(story, onLaterPages=lambda c, d: pages.append(1), onFirstPage=lambda c, d: pages.append(1))
    return len(pages)


# -- driver ----------------------------------------------------------------------------------


def run(name: str, work: Path, arg: int = 0) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--case", name, "--work", str(work), "--arg", str(arg)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"case {name} failed:\n{result.stderr}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=10_000)
    parser.add_argument("--case")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--arg", type=int, default=0)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(args.case, args.work, args.arg)))
        return

    with tempfile.TemporaryDirectory(prefix="exportd-bench-docs-") as tmp:
        work = Path(tmp)
        small = args.baseline_rows
        for rows in sorted({small, args.rows}):
            make_csv(work / f"rows-{rows}.csv", rows)
        make_text(work / "text.txt", 1 << 20)
        make_markdown(work / "doc.md", sections=26)
        # The 50-page PDFs to render: black text pages (exporters.text, a form feed between pages)
        # and coloured table pages (exporters.tables: header fill and zebra rows).
        from exporters.base import InputFile, Limits
        from exporters.tables import TablePdfOptions, table_to_pdf
        from exporters.text import TextPdfOptions, text_to_pdf

        page_text = "\n".join(" ".join(WORDS[(i + k) % len(WORDS)] for k in range(12)) for i in range(45))
        (work / "pages.txt").write_text("\f".join([page_text] * 50), encoding="utf-8")
        made_dir = work / "made"
        made_dir.mkdir()
        source = work / "pages.txt"
        (made,) = text_to_pdf(
            [InputFile(source, source.name, "text/plain")], made_dir, TextPdfOptions(), limits=Limits()
        )
        made.path.rename(work / "pages-0.pdf")
        make_csv(work / "table-2300.csv", 2300)
        source = work / "table-2300.csv"
        (made,) = table_to_pdf(
            [InputFile(source, source.name, "text/csv")], made_dir, TablePdfOptions(), limits=Limits()
        )
        made.path.rename(work / "pages-1.pdf")

        def line(label: str, figures: dict[str, Any], unit: str) -> float:
            rate = figures["units"] / figures["seconds"]
            print(f"  {label:<44} {figures['units']:>7} {unit:<5} {figures['seconds']:7.2f} s "
                  f"{rate:10.1f} {unit}/s  peak {figures['peak_mb']:6.1f} MB")  # fmt: skip
            return rate

        print("CSV -> PDF table")
        ours_small = run("csv_pdf", work, small)
        ours = run("csv_pdf", work, args.rows)
        base = run("csv_pdf_longtable", work, small)
        line(f"exportd row by row, {small:,} rows", ours_small, "rows")
        rate = line(f"exportd row by row, {args.rows:,} rows", ours, "rows")
        base_rate = line(f"baseline LongTable, {small:,} rows", base, "rows")
        print(f"  -> {rate / base_rate:.1f}x the rows per second of LongTable; peak memory "
              f"{ours_small['peak_mb']:.0f} MB at {small:,} rows, {ours['peak_mb']:.0f} MB at {args.rows:,}")  # fmt: skip

        print("CSV -> XLSX")
        ours_small = run("csv_xlsx", work, small)
        ours = run("csv_xlsx", work, args.rows)
        base = run("csv_xlsx_openpyxl", work, small)
        line(f"exportd constant memory, {small:,} rows", ours_small, "rows")
        rate = line(f"exportd constant memory, {args.rows:,} rows", ours, "rows")
        base_rate = line(f"baseline openpyxl workbook, {small:,} rows", base, "rows")
        print(f"  -> {rate / base_rate:.1f}x the rows per second of openpyxl")

        print("1 MB of text -> PDF")
        rate = line("exportd.text (canvas)", run("text_pdf", work), "pages")
        base_rate = line("baseline Platypus Paragraph per line", run("text_pdf_paragraphs", work), "pages")
        print(f"  -> {rate / base_rate:.1f}x the pages per second")

        print("50-page PDF -> PNG at 150 DPI")
        for arg, kind in ((0, "black text pages"), (1, "coloured table pages")):
            rate = line(f"exportd, {kind}", run("pdf_png", work, arg), "pages")
            base_rate = line(
                f"baseline Pillow default PNG, {kind}", run("pdf_png_default", work, arg), "pages"
            )
            print(f"  -> {rate / base_rate:.1f}x the pages per second")

        print("Markdown -> PDF")
        rate = line("exportd.markdown (Platypus)", run("markdown_pdf", work), "pages")
        base_rate = line("same file as plain text (exportd.text)", run("markdown_as_text", work), "pages")
        print(f"  -> {rate / base_rate:.2f}x the pages per second of plain text")


if __name__ == "__main__":
    main()
