"""Speed and memory of the document conversions, each beside a naive baseline measured in the same run.

Not a test: it prints figures. Every case runs in a fresh Python process, so that its peak memory
(its own ru_maxrss) is that case's alone; the inputs are made beforehand by this process.

- CSV -> PDF table (exporters.tables) at 10k and 100k rows, against a Platypus LongTable (on fewer
  rows, since it holds them all; its rate is per row, so the comparison is per row);
- CSV -> XLSX at 10k and 100k rows (xlsxwriter constant-memory), against openpyxl's ordinary workbook;
- 1 MB of text -> PDF (exporters.text), against a Platypus Paragraph per line;
- a 50-page PDF -> PNG at 150 DPI (exporters.pdfdocs, fast compression) against Pillow's default PNG settings;
- 20 pages of Markdown -> PDF (exporters.markdown), against the same text as plain text -> PDF;
- HTML -> PDF (exporters.html): a 2-page invoice, a 50-page report with tables and images, and
  1,000 invoices from one template and a JSON array, against headless Chromium's --print-to-pdf
  (Debian's `chromium`, as Gotenberg runs it) on the same HTML, one document per run. Memory here
  is the peak of the summed PSS of the case's whole process tree (Chromium runs several processes;
  PSS counts a shared page once), sampled every 50 ms. Chromium is sealed too: a dead proxy and a
  resolver that finds nothing, so it reaches nothing off this machine.

    python benchmarks/documents.py [--rows 100000] [--baseline-rows 10000] [--only html]
        [--invoices 1000] [--chromium-invoices 1000]
"""

from __future__ import annotations

import argparse
import contextlib
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


INVOICE_TEMPLATE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Invoice {{ number }}</title>
<style>
@page { size: A4; margin: 18mm 15mm;
  @bottom-right { content: "page " counter(page) " of " counter(pages); font: 8pt sans-serif } }
body { font: 10pt sans-serif } h1 { font-size: 18pt; margin: 0 }
header { display: flex; justify-content: space-between; align-items: center; border-bottom: 1pt solid #333 }
table { width: 100%; border-collapse: collapse; margin-top: 8mm } thead { display: table-header-group }
th { background: #e4e8ee; text-align: left } th, td { padding: 3pt 5pt; border-bottom: 0.5pt solid #ccc }
td.n { text-align: right } .total { font-weight: bold; text-align: right; margin-top: 4mm }
</style></head><body>
<header><img src="logo.png" style="width: 40mm"><div><h1>Invoice {{ number }}</h1>{{ date }}</div></header>
<p>Bill to: <b>{{ customer }}</b><br>{{ address }}</p>
<table><thead><tr><th>#</th><th>Article</th><th>Qty</th><th>Price</th><th>Amount</th></tr></thead><tbody>
{% for line in lines %}<tr><td>{{ loop.index }}</td><td>{{ line.item }}</td><td class="n">{{ line.qty }}</td>
<td class="n">{{ "%.2f"|format(line.price) }}</td><td class="n">{{ "%.2f"|format(line.qty * line.price) }}</td></tr>
{% endfor %}</tbody></table>
<p class="total">Total: {{ "%.2f"|format(total) }} EUR</p>
</body></html>
"""


def invoice_record(n: int, lines: int) -> dict[str, Any]:
    items = [
        {
            "item": f"{WORDS[(n + k) % len(WORDS)]} widget {k}",
            "qty": 1 + (n + k) % 5,
            "price": 3.5 + (k * 7 % 40),
        }
        for k in range(lines)
    ]
    return {
        "number": f"INV-{n:05d}",
        "date": f"2026-11-{n % 28 + 1:02d}",
        "customer": f"Customer {n} — {WORDS[n % len(WORDS)]}",
        "address": f"{n} Main Street, {WORDS[(n + 3) % len(WORDS)]}",
        "lines": items,
        "total": sum(i["qty"] * i["price"] for i in items),
    }


def make_html_inputs(work: Path, invoices: int) -> None:
    """The HTML cases' inputs: logo and chart images, the invoices, the report, the JSON records."""
    import jinja2
    from PIL import Image, ImageDraw

    html_dir = work / "html"
    html_dir.mkdir()
    logo = Image.new("RGB", (600, 200), (30, 60, 120))
    ImageDraw.Draw(logo).text((40, 80), "ACME", fill="white")
    logo.save(html_dir / "logo.png")
    template = jinja2.Environment(autoescape=True).from_string(INVOICE_TEMPLATE)
    (html_dir / "invoice.html").write_text(template.render(invoice_record(1, 60)), encoding="utf-8")
    (html_dir / "template.html").write_text(INVOICE_TEMPLATE, encoding="utf-8")
    records = [invoice_record(n, 6 + n % 10) for n in range(1, invoices + 1)]
    (html_dir / "records.json").write_text(json.dumps(records), encoding="utf-8")
    one_by_one = work / "html-each"
    one_by_one.mkdir()
    (one_by_one / "logo.png").write_bytes((html_dir / "logo.png").read_bytes())
    for n, record in enumerate(records, start=1):
        (one_by_one / f"invoice-{n}.html").write_text(template.render(record), encoding="utf-8")
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Annual report</title><style>'
        '@page { size: A4; margin: 20mm; @top-center { content: "ACME annual report"; font: 8pt sans-serif }'
        ' @bottom-right { content: "page " counter(page) " of " counter(pages); font: 8pt sans-serif } }'
        "body { font: 10pt/1.4 serif } h2 { break-before: page } table { width: 100%; border-collapse: collapse }"
        "thead { display: table-header-group } th { background: #dde } td, th { border: 0.5pt solid #aaa; padding: 2pt }"
        "img { width: 120mm; display: block; margin: 4mm auto }</style></head><body><h1>Annual report</h1>"
    ]
    for chapter in range(1, 26):
        chart = Image.new("RGB", (800, 400), "white")
        draw = ImageDraw.Draw(chart)
        for bar in range(12):
            height = 40 + (chapter * 37 + bar * 53) % 320
            draw.rectangle((30 + bar * 62, 380 - height, 70 + bar * 62, 380), fill=(40 + bar * 15, 90, 160))
        chart.save(html_dir / f"chart-{chapter}.png")
        parts.append(f"<h2>Chapter {chapter}: {WORDS[chapter % len(WORDS)]}</h2>")
        for p in range(3):
            parts.append("<p>" + " ".join(WORDS[(chapter + p + k) % len(WORDS)] for k in range(80)) + "</p>")
        parts.append(f'<img src="chart-{chapter}.png" alt="Chart {chapter}">')
        parts.append(
            "<table><thead><tr><th>Region</th><th>Q1</th><th>Q2</th><th>Q3</th><th>Q4</th></tr></thead><tbody>"
        )
        for row in range(30):
            cells = "".join(f"<td>{(chapter * row * q) % 997}.{q}0</td>" for q in range(1, 5))
            parts.append(f"<tr><td>{WORDS[(row + chapter) % len(WORDS)]} {row}</td>{cells}</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    (html_dir / "report.html").write_text("".join(parts), encoding="utf-8")
    for name in ("invoice.html", "report.html"):
        (one_by_one / name).write_text((html_dir / name).read_text(encoding="utf-8"), encoding="utf-8")
    for chart in html_dir.glob("chart-*.png"):
        (one_by_one / chart.name).write_bytes(chart.read_bytes())


#: Chromium as Gotenberg runs it (headless, no sandbox as root, no header or footer), and sealed:
#: every host name resolves to nothing and any connection would go to a dead local proxy.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-pdf-header-footer",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-breakpad",
    "--proxy-server=127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def _chromium(sources: list[Path], out: Path) -> int:
    """Each HTML file through a fresh headless Chromium with --print-to-pdf, one after another."""
    import shutil

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("chromium is not installed (Debian: apt-get install chromium)")
    pages = 0
    for source in sources:
        target = out / (source.stem + ".pdf")
        profile = out / "profile"
        subprocess.run(
            [
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--print-to-pdf={target}",
                source.as_uri(),
            ],
            capture_output=True,
            check=True,
            timeout=120,
        )
        pages += _pages(target)
    return pages


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
    elif name in ("html_invoice", "html_report"):
        from exporters.html import HtmlPdfOptions, html_to_pdf

        html_dir = work / "html"
        source = html_dir / ("invoice.html" if name == "html_invoice" else "report.html")
        companions = [InputFile(p, p.name, "image/png") for p in sorted(html_dir.glob("*.png"))]
        (output,) = html_to_pdf(
            [InputFile(source, source.name, "text/html"), *companions], out, HtmlPdfOptions(), limits=limits
        )
        units = output.details["pages"]
    elif name == "html_invoices":
        from exporters.html import HtmlPdfOptions, html_to_pdf

        html_dir = work / "html"
        inputs = [
            InputFile(html_dir / "template.html", "invoice.html", "text/html"),
            InputFile(html_dir / "records.json", "records.json", "application/json"),
            InputFile(html_dir / "logo.png", "logo.png", "image/png"),
        ]
        options = HtmlPdfOptions(template=True, per_record=True, name_field="number")
        outputs = html_to_pdf(inputs, out, options, limits=limits)
        units = sum(o.details["pages"] for o in outputs)
    elif name in ("chromium_invoice", "chromium_report"):
        source = work / "html-each" / ("invoice.html" if name == "chromium_invoice" else "report.html")
        units = _chromium([source], out)
    elif name == "chromium_invoices":
        units = _chromium([work / "html-each" / f"invoice-{n}.html" for n in range(1, arg + 1)], out)
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


def run_sampled(name: str, work: Path, arg: int = 0) -> dict[str, Any]:
    """run(), with the peak of the summed PSS of the case's process tree, sampled every 50 ms."""
    import psutil

    process = subprocess.Popen(
        [sys.executable, __file__, "--case", name, "--work", str(work), "--arg", str(arg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    root = psutil.Process(process.pid)
    while process.poll() is None:
        total = 0
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += member.memory_full_info().pss
        peak = max(peak, total)
        time.sleep(0.05)
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"case {name} failed:\n{stderr}")
    figures: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    figures["peak_mb"] = peak / 2**20
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
    parser.add_argument("--only", choices=("html",), help="run only the HTML cases")
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument(
        "--chromium-invoices",
        type=int,
        default=None,
        help="how many of them Chromium renders (all by default)",
    )
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(args.case, args.work, args.arg)))
        return
    if args.only == "html":
        with tempfile.TemporaryDirectory(prefix="exportd-bench-html-") as tmp:
            html_cases(Path(tmp), args.invoices, args.chromium_invoices or args.invoices)
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

        html_cases(work, args.invoices, args.chromium_invoices or args.invoices)


def html_cases(work: Path, invoices: int, chromium_invoices: int) -> None:
    """HTML -> PDF beside Chromium's --print-to-pdf on the same HTML, in this run."""
    make_html_inputs(work, invoices)

    def line(label: str, figures: dict[str, Any], documents: int) -> float:
        rate = figures["units"] / figures["seconds"]
        print(f"  {label:<44} {documents:>5} docs {figures['units']:>6} pages {figures['seconds']:8.2f} s "
              f"{rate:7.1f} pages/s  peak {figures['peak_mb']:7.1f} MB")  # fmt: skip
        return rate

    for title, ours_case, theirs_case in (
        ("HTML -> PDF: a 2-page invoice", "html_invoice", "chromium_invoice"),
        ("HTML -> PDF: a 50-page report with tables and images", "html_report", "chromium_report"),
    ):
        print(title)
        ours = run_sampled(ours_case, work)
        theirs = run_sampled(theirs_case, work)
        line("exportd (WeasyPrint)", ours, 1)
        line("Chromium --print-to-pdf", theirs, 1)
        print(f"  -> {theirs['seconds'] / ours['seconds']:.2f}x Chromium's speed, "
              f"{ours['peak_mb'] / theirs['peak_mb']:.2f}x its peak memory")  # fmt: skip

    print(f"HTML -> PDF: {invoices:,} invoices from one template and a JSON array")
    ours = run_sampled("html_invoices", work)
    theirs = run_sampled("chromium_invoices", work, chromium_invoices)
    line("exportd, one export (template, per_record)", ours, invoices)
    line("Chromium, one --print-to-pdf per invoice", theirs, chromium_invoices)
    per_doc_ours = ours["seconds"] / invoices
    per_doc_theirs = theirs["seconds"] / chromium_invoices
    speed = per_doc_theirs / per_doc_ours
    memory = ours["peak_mb"] / theirs["peak_mb"]
    scope = (
        "" if chromium_invoices == invoices else f" (Chromium timed on {chromium_invoices:,}, per document)"
    )
    print(f"  -> {speed:.2f}x Chromium's documents per second{scope}, {memory:.2f}x its peak memory")
    print(f"  goal (at least as fast, at most 0.20x the memory): speed {'met' if speed >= 1 else 'NOT met'}, "
          f"memory {'met' if memory <= 0.2 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
