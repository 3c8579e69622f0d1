"""HTML and templates to PDF: real documents typeset by WeasyPrint, read back with pdfium and pikepdf."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from PIL import Image

from exporters import registry
from exporters.base import CorruptInput, InputFile, InputTooLarge, InvalidOptions, Limits, parse_options
from exporters.html import HtmlPdfOptions, html_to_pdf
from exporters.sniff import sniff
from exporters.templates import InvalidTemplate
from exporters.typeset import CSS_TYPE, HTML_TYPE, MAX_DEPTH, MAX_ELEMENTS, load_weasyprint
from tests.exporters.samples import Pdf, card, save
from tests.service.conftest import live_pool  # noqa: F401  (fixture)
from tests.service.test_api import Api, _export_files, api, settings, worker  # noqa: F401  (fixtures)

FONTS = Path(__file__).parents[2] / "exporters" / "fonts"
A4 = (595.28, 841.89)
A5 = (419.53, 595.28)
LETTER = (612.0, 792.0)


def squeezed(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def page(tmp_path: Path, html: str, name: str = "page.html") -> InputFile:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return InputFile(path, name, HTML_TYPE)


def companion(tmp_path: Path, name: str, data: bytes | str, content_type: str) -> InputFile:
    path = tmp_path / f"in-{name}"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return InputFile(path, name, content_type)


def options(**raw: Any) -> HtmlPdfOptions:
    return parse_options(HtmlPdfOptions, raw, limits=Limits())


def red_share(pdf: Pdf, index: int = 0) -> float:
    image = pdf.render(index, scale=0.5)
    data = image.tobytes()  # RGB
    red = sum(1 for i in range(0, len(data), 3) if data[i] > 200 and data[i + 1] < 60 and data[i + 2] < 60)
    return red / (image.width * image.height)


# -- sniffing ------------------------------------------------------------------------------------


def test_html_css_and_fonts_are_sniffed_from_bytes_and_names() -> None:
    assert sniff(b"<!DOCTYPE html><p>hi", filename="export.txt") == HTML_TYPE
    assert sniff(b"\xef\xbb\xbf<html><body>", filename="x") == HTML_TYPE
    assert sniff(b"<p>a fragment</p>", filename="invoice.htm") == HTML_TYPE
    assert sniff(b"body { color: red }", filename="style.css") == CSS_TYPE
    assert sniff((FONTS / "DejaVuSans.ttf").read_bytes()[:64], filename="f.bin") == "font/ttf"
    assert sniff(b"wOF2\x00\x01\x00\x00rest", filename="f") == "font/woff2"
    # Plain text stays text, and binary bytes named .html are not HTML.
    assert sniff(b"just notes < and >", filename="notes.txt") == "text/plain"
    assert sniff(b"\x00\x01\x02<html>", filename="x.html") == "application/octet-stream"
    assert registry.kind_of(HTML_TYPE) == "html"


def test_formats_say_scripts_are_not_run_and_nothing_is_fetched() -> None:
    (entry,) = [c for c in registry.describe(limits=Limits())["conversions"] if c["from"] == "html"]
    assert "Scripts are not run" in entry["description"]
    assert "no network" in entry["description"]
    assert entry["options"]["pdf_variant"]["enum"] == ["pdf/a-3b", "pdf/ua-1"]
    mixed = registry.find([HTML_TYPE, "image/png", CSS_TYPE, "font/ttf", "application/json"], "pdf")
    assert mixed.kind == "html"


# -- HTML to PDF ---------------------------------------------------------------------------------


def test_companions_resolve_by_file_name(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    logo = save(card(200, 100).convert("RGB"), tmp_path / "upload-7", "PNG")
    red = save(Image.new("RGB", (50, 50), "red"), tmp_path / "upload-8", "PNG")
    css = companion(
        tmp_path,
        "style.css",
        "@font-face { font-family: Brand; src: url(brand.ttf) }\n"
        "h1 { font-family: Brand } .box { width: 10cm; height: 10cm; background: url('images/red.png') }",
        CSS_TYPE,
    )
    font = companion(tmp_path, "brand.ttf", (FONTS / "DejaVuSansMono.ttf").read_bytes(), "font/ttf")
    doc = page(
        tmp_path,
        '<html><head><link rel="stylesheet" href="style.css"></head><body>'
        '<h1>Invoice 2024-17</h1><img src="logo.png" alt="logo"><div class="box"></div></body></html>',
        name="invoice.html",
    )
    inputs = [
        doc,
        css,
        font,
        InputFile(logo, "logo.png", "image/png"),
        InputFile(red, "red.png", "image/png"),
    ]

    (output,) = html_to_pdf(inputs, out_dir, options(), limits=Limits())

    assert output.name == "invoice.pdf" and output.content_type == "application/pdf"
    assert "unresolved_references" not in output.details, output.details
    pdf = open_pdf(output.path)
    assert len(pdf) == 1 and pdf.page_size(0) == A4
    assert "Invoice 2024-17" in pdf.all_text()
    assert red_share(pdf) > 0.1  # the background image from the stylesheet, 10 × 10 cm of red
    with pikepdf.open(output.path) as reader:
        fonts = {str(f.get("/BaseFont")) for p in reader.pages for f in p.Resources.Font.values()}
    assert any("+Brand" in name for name in fonts), fonts  # the @font-face font, embedded


def test_unresolved_references_are_listed_not_left_blank(tmp_path: Path, out_dir: Path) -> None:
    doc = page(
        tmp_path,
        '<p>Hello</p><img src="missing.png"><img src="/etc/hostname"><img src="file:///etc/passwd">'
        '<link rel="stylesheet" href="https://cdn.example.com/site.css">',
    )
    (output,) = html_to_pdf([doc], out_dir, options(), limits=Limits())
    listed = {item["reference"]: item["reason"] for item in output.details["unresolved_references"]}
    assert set(listed) == {
        "missing.png",
        "hostname",
        "file:///etc/passwd",
        "https://cdn.example.com/site.css",
    }
    assert "no input of this export" in listed["missing.png"]
    assert "no network" in listed["file:///etc/passwd"]


def test_print_css_page_size_running_footer_page_counter_breaks_and_repeated_headers(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    rows = "".join(f"<tr><td>Item {i}</td><td>{i * 3}.00</td></tr>" for i in range(1, 121))
    doc = page(
        tmp_path,
        "<style>@page { size: A5; margin: 15mm;"
        ' @top-center { content: "ACME Ltd report" }'
        ' @bottom-right { content: "page " counter(page) " of " counter(pages) } }'
        " h2 { break-before: page }</style>"
        "<h1>Report</h1><p>Intro.</p><h2>Chapter two</h2>"
        f"<table><thead><tr><th>Article</th><th>Amount</th></tr></thead><tbody>{rows}</tbody></table>",
    )
    (output,) = html_to_pdf([doc], out_dir, options(), limits=Limits())
    pdf = open_pdf(output.path)
    total = len(pdf)
    assert total >= 4 and output.details["pages"] == total
    assert pdf.page_size(0) == A5
    assert "Chapter two" not in pdf.text(0) and "Chapter two" in pdf.text(1)  # the page break
    for index in range(total):
        text = squeezed(pdf.text(index))
        assert f"page {index + 1} of {total}" in text
        assert "ACME Ltd report" in text
        if index >= 1:
            assert "Article Amount" in text, f"table header missing on page {index + 1}"


def test_options_page_size_landscape_margin_and_title_win_over_the_document(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    doc = page(
        tmp_path,
        "<title>Own title</title><style>@page { size: A5; margin: 0 } body { margin: 0 }</style><p>Margins</p>",
    )
    (plain,) = html_to_pdf([doc], out_dir, options(), limits=Limits())
    assert open_pdf(plain.path).page_size(0) == A5
    with pikepdf.open(plain.path) as reader:
        assert str(reader.docinfo["/Title"]) == "Own title"

    out2 = out_dir / "2"
    out2.mkdir()
    chosen = options(page_size="Letter", landscape=True, margin_mm=30, title="Quarterly report")
    (output,) = html_to_pdf([doc], out2, chosen, limits=Limits())
    pdf = open_pdf(output.path)
    assert pdf.page_size(0) == (LETTER[1], LETTER[0])
    left = min(box[0] for char, box in pdf.char_boxes(0) if char.strip())
    assert 30 * 72 / 25.4 - 1 < left < 30 * 72 / 25.4 + 3  # the text starts at the 30 mm margin
    with pikepdf.open(output.path) as reader:
        assert str(reader.docinfo["/Title"]) == "Quarterly report"


def test_pdf_a_3b_is_structurally_conformant(tmp_path: Path, out_dir: Path) -> None:
    """Checked with pikepdf/qpdf (veraPDF is not installable here): the parts PDF/A-3b requires."""
    logo = save(card(120, 80), tmp_path / "logo", "PNG")
    doc = page(tmp_path, '<h1>Archive copy</h1><p>Signed contract.</p><img src="logo.png">')
    inputs = [doc, InputFile(logo, "logo.png", "image/png")]
    (output,) = html_to_pdf(inputs, out_dir, options(pdf_variant="pdf/a-3b"), limits=Limits())
    with pikepdf.open(output.path) as reader:
        assert reader.check_pdf_syntax() == []  # qpdf's structural check: xref, streams, objects
        assert not reader.is_encrypted
        meta = reader.open_metadata()
        assert (meta.get("pdfaid:part"), meta.get("pdfaid:conformance")) == ("3", "B")
        (intent,) = reader.Root.OutputIntents
        assert intent.S == "/GTS_PDFA1" and "/DestOutputProfile" in intent
        assert reader.pdf_version >= "1.4"
        for page_ in reader.pages:
            for font in page_.Resources.Font.values():
                descendants = font.get("/DescendantFonts")
                descriptor = (descendants[0] if descendants else font).FontDescriptor
                assert any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")), font.BaseFont
        assert "/JavaScript" not in reader.Root.get("/Names", {})
        assert reader.trailer.get("/ID") is not None


def test_pdf_ua_1_is_tagged_titled_and_declares_itself(tmp_path: Path, out_dir: Path) -> None:
    """Checked with pikepdf/qpdf (veraPDF is not installable here): the parts PDF/UA-1 requires."""
    doc = page(
        tmp_path, '<html lang="en"><h1>Accessible letter</h1><p>Dear reader,</p></html>', "letter.html"
    )
    (output,) = html_to_pdf([doc], out_dir, options(pdf_variant="pdf/ua-1"), limits=Limits())
    with pikepdf.open(output.path) as reader:
        assert reader.check_pdf_syntax() == []
        root = reader.Root
        assert bool(root.MarkInfo.Marked)
        assert "/StructTreeRoot" in root and len(root.StructTreeRoot.K) > 0
        assert bool(root.ViewerPreferences.DisplayDocTitle)
        assert str(root.Lang) == "en"
        assert str(reader.docinfo["/Title"]) == "letter.html"  # a document without <title> gets its name
        assert reader.open_metadata().get("pdfuaid:part") == "1"
        tags = {str(e.get("/S")) for e in _struct_elements(root.StructTreeRoot)}
        assert {"/H1", "/P"} <= tags, tags


def _struct_elements(node: Any) -> Iterator[Any]:
    kids = node.get("/K")
    if kids is None:
        return
    for kid in kids if isinstance(kids, pikepdf.Array) else [kids]:
        if isinstance(kid, pikepdf.Dictionary):
            yield kid
            yield from _struct_elements(kid)


def test_html_in_a_code_page_is_read_and_binary_is_corrupt_input(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    path = tmp_path / "x.html"
    path.write_bytes("<p>Счёт за услуги связи, оплатить до пятницы</p>".encode("cp1251"))
    (output,) = html_to_pdf([InputFile(path, "x.html", HTML_TYPE)], out_dir, options(), limits=Limits())
    assert "Счёт за услуги связи" in open_pdf(output.path).all_text()
    path.write_bytes(b"<p>\x00\x01\x02</p>")
    with pytest.raises(CorruptInput, match="not text"):
        html_to_pdf([InputFile(path, "x.html", HTML_TYPE)], out_dir, options(), limits=Limits())


def test_an_html_export_leaves_truncated_photos_refused_in_the_same_process(tmp_path: Path) -> None:
    """WeasyPrint's import flips Pillow's LOAD_TRUNCATED_IMAGES for the whole process: put back."""
    script = (
        "import io, sys\n"
        "from pathlib import Path\n"
        "from PIL import Image, ImageFile\n"
        "from exporters.base import InputFile, Limits\n"
        "from exporters.html import HtmlPdfOptions, html_to_pdf\n"
        "tmp = Path(sys.argv[1]); (tmp / 'out').mkdir()\n"
        "(tmp / 'a.html').write_text('<p>hello</p>')\n"
        "html_to_pdf([InputFile(tmp / 'a.html', 'a.html', 'text/html')], tmp / 'out', HtmlPdfOptions(), limits=Limits())\n"
        "buffer = io.BytesIO(); Image.new('RGB', (300, 300), 'red').save(buffer, 'JPEG')\n"
        "try:\n"
        "    Image.open(io.BytesIO(buffer.getvalue()[:2000])).load(); print('truncated photo accepted')\n"
        "except OSError:\n"
        "    print('truncated photo refused')\n"
        "print('flag', ImageFile.LOAD_TRUNCATED_IMAGES)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120, check=True
    )
    assert "truncated photo refused" in result.stdout and "flag False" in result.stdout, result.stdout


# -- limits --------------------------------------------------------------------------------------


def test_more_pages_than_the_limit_is_input_too_large(
    tmp_path: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = page(tmp_path, "".join(f'<p style="break-after: page">page {i}</p>' for i in range(40)))
    with pytest.raises(InputTooLarge, match="more than 10 pages"):
        html_to_pdf([doc], out_dir, options(), limits=Limits(max_pages=10))
    # Layout stops at the first page past the limit: the pages after it are never laid out.
    load_weasyprint()  # not a bare import: that would change a Pillow global for the later tests
    import weasyprint.layout.page as pages_module

    made: list[int] = []
    original = pages_module.make_page

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pages_module, "make_page", counting)
    many = page(tmp_path, "<style>p { break-after: page }</style>" + "<p>x</p>" * 3000, "many.html")
    with pytest.raises(InputTooLarge, match="more than 10 pages"):
        html_to_pdf([many], out_dir, options(), limits=Limits(max_pages=10))
    assert len(made) <= 11


def test_deep_nesting_is_input_too_large(tmp_path: Path, out_dir: Path) -> None:
    depth = MAX_DEPTH + 50
    doc = page(tmp_path, "<div>" * depth + "deep" + "</div>" * depth)
    with pytest.raises(InputTooLarge, match="deep"):
        html_to_pdf([doc], out_dir, options(), limits=Limits())
    # 5,000 levels would exhaust Python's stack in the layout: refused the same way, never a crash.
    doc = page(tmp_path, "<span>" * 5000 + "deeper", "deeper.html")
    with pytest.raises(InputTooLarge):
        html_to_pdf([doc], out_dir, options(), limits=Limits())


def test_ten_million_cell_table_fails_fast_without_taking_the_memory(tmp_path: Path) -> None:
    """Refused from a count of its tags: the converter's process stays far below what laying it out takes."""
    path = tmp_path / "huge.html"
    with path.open("w") as file:
        file.write("<table>")
        row = "<tr>" + "<td>1" * 100 + "\n"
        for _ in range(100_000):  # 10,000,000 cells
            file.write(row)
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from exporters.base import InputFile, InputTooLarge, Limits\n"
        "from exporters.html import HtmlPdfOptions, html_to_pdf\n"
        "out = Path(sys.argv[2]); out.mkdir()\n"
        "try:\n"
        "    html_to_pdf([InputFile(Path(sys.argv[1]), 'huge.html', 'text/html')], out, HtmlPdfOptions(), limits=Limits())\n"
        "except InputTooLarge as exc:\n"
        "    print('refused:', exc.message)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of a large
        # pytest process would report the parent's size.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print('peak_mb', int(hwm) // 1024)\n"
    )
    size_mb = path.stat().st_size / 1e6
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert f"the limit is {MAX_ELEMENTS:,}" in result.stdout, result.stdout + result.stderr
    peak = int(result.stdout.split("peak_mb")[1])
    # The text once as bytes and once decoded, plus the interpreter and WeasyPrint's modules.
    assert peak < 3 * size_mb + 150, (peak, size_mb)


# -- templates -----------------------------------------------------------------------------------

INVOICE = """<html><head><title>Invoice {{ number }}</title>
<style>@page { size: A5 } td { padding: 2px 6px }</style></head><body>
<h1>Invoice {{ number }}</h1>
<p>Customer: {{ customer }}</p>
<table>{% for line in lines %}<tr><td>{{ line.item }}</td><td>{{ "%.2f"|format(line.price) }}</td></tr>{% endfor %}</table>
<p>Total: {{ "%.2f"|format(lines|sum(attribute="price")) }}</p>
</body></html>
"""


def invoices(count: int) -> list[dict[str, Any]]:
    return [
        {
            "number": f"INV-{n:04d}",
            "customer": f"Customer {n}",
            "lines": [{"item": f"Widget {k}", "price": 10.0 * k + n} for k in range(1, 4)],
        }
        for n in range(1, count + 1)
    ]


def data_input(tmp_path: Path, data: Any, name: str = "data.json") -> InputFile:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    content_type = sniff(path.read_bytes()[:1024], complete=True, filename=name)
    return InputFile(path, name, content_type)


def test_template_with_an_object_makes_one_document_with_escaped_values(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    record = invoices(1)[0] | {"customer": "<b>Bobby</b> <script>alert(1)</script>"}
    inputs = [page(tmp_path, INVOICE, "invoice.html"), data_input(tmp_path, record)]
    (output,) = html_to_pdf(inputs, out_dir, options(template=True), limits=Limits())
    text = squeezed(open_pdf(output.path).all_text())
    assert "Invoice INV-0001" in text and "Widget 2 21.00" in text and "Total: 63.00" in text
    # Autoescaped: the markup in the data is shown as text, not obeyed.
    assert "Customer: <b>Bobby</b> <script>alert(1)</" in text


def test_without_template_the_html_is_typeset_as_it_is(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    inputs = [page(tmp_path, INVOICE, "invoice.html"), data_input(tmp_path, invoices(1)[0])]
    (output,) = html_to_pdf(inputs, out_dir, options(), limits=Limits())
    assert "Invoice {{ number }}" in open_pdf(output.path).all_text()


def test_per_record_makes_one_pdf_per_record_named_from_a_field(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    inputs = [page(tmp_path, INVOICE, "invoice.html"), data_input(tmp_path, invoices(3))]
    outputs = html_to_pdf(
        inputs, out_dir, options(template=True, per_record=True, name_field="number"), limits=Limits()
    )
    assert [o.name for o in outputs] == ["INV-0001.pdf", "INV-0002.pdf", "INV-0003.pdf"]
    for index, output in enumerate(outputs, start=1):
        pdf = open_pdf(output.path)
        assert pdf.page_size(0) == A5 and output.details["record"] == index
        assert f"Customer {index}" in pdf.all_text()


def test_per_record_zip_has_a_manifest_and_skip_failed_fails_only_the_bad_record(
    tmp_path: Path, out_dir: Path
) -> None:
    records = invoices(4)
    del records[2]["customer"]  # record 3 lacks a field the strict template needs
    inputs = [page(tmp_path, INVOICE, "invoice.html"), data_input(tmp_path, records)]
    strict_run = options(template=True, per_record=True, name_field="number", zip=True, strict=True)
    with pytest.raises(InvalidTemplate, match=r"\(record 3\) failed at line 4: 'customer' is undefined"):
        html_to_pdf(inputs, out_dir, strict_run, limits=Limits())

    skipping = options(
        template=True, per_record=True, name_field="number", zip=True, strict=True, skip_failed=True
    )
    (output,) = html_to_pdf(inputs, out_dir, skipping, limits=Limits())
    assert output.name == "invoice.zip" and output.content_type == "application/zip"
    assert output.details == {"items": 4, "failed": 1}
    with zipfile.ZipFile(output.path) as archive:
        assert sorted(archive.namelist()) == ["INV-0001.pdf", "INV-0002.pdf", "INV-0004.pdf", "manifest.json"]
        manifest = json.loads(archive.read("manifest.json"))["items"]
        assert "Customer 2" in pdf_text(archive.read("INV-0002.pdf"), tmp=out_dir)
    assert [e["status"] for e in manifest] == ["ok", "ok", "failed", "ok"]
    assert manifest[2]["error"]["code"] == "invalid_template" and "line 4" in manifest[2]["error"]["message"]
    assert manifest[0]["pages"] == 1 and len(manifest[0]["sha256"]) == 64


def test_skip_failed_without_zip_lists_the_failures_on_the_first_pdf(tmp_path: Path, out_dir: Path) -> None:
    records = invoices(3)
    records[0]["lines"] = 5  # not a list: the loop fails for record 1
    inputs = [page(tmp_path, INVOICE, "invoice.html"), data_input(tmp_path, records)]
    outputs = html_to_pdf(
        inputs, out_dir, options(template=True, per_record=True, skip_failed=True), limits=Limits()
    )
    assert [o.name for o in outputs] == ["invoice-2.pdf", "invoice-3.pdf"]
    (failure,) = outputs[0].details["failed_records"]
    assert failure["record"] == 1 and failure["error"]["code"] == "invalid_template"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("<p>ok</p>\n<p>{% for x in %}</p>", "line 2"),
        ("<p>\n\n{{ number | nosuchfilter }}</p>", "line 3"),
        ("<p>{% if number %}</p>", "line 1"),
        ("<p>a</p>\n<p>b</p>\n<p>{{ 1 / 0 }}</p>", "line 3: ZeroDivisionError"),
        ("<p>{% include 'invoice.html' %}</p>", "cannot include, import or extend"),
        ("\n{% import 'os' as os %}", "line 2: templates cannot include"),
        ("{% if 1 %}" * 3000 + "x" + "{% endif %}" * 3000, "nests its blocks deeper"),
        ("{% for a in number %}" * 25 + "x" + "{% endfor %}" * 25, "nests its blocks deeper"),
    ],
)
def test_template_errors_fail_as_invalid_template_with_the_line(
    tmp_path: Path, out_dir: Path, source: str, expected: str
) -> None:
    inputs = [page(tmp_path, source, "t.html"), data_input(tmp_path, {"number": 1})]
    with pytest.raises(InvalidTemplate) as caught:
        html_to_pdf(inputs, out_dir, options(template=True), limits=Limits())
    assert caught.value.code == "invalid_template"
    assert expected in caught.value.message and "Traceback" not in caught.value.message


def test_undefined_variables_render_empty_unless_strict(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    inputs = [
        page(tmp_path, "<p>Dear {{ name }}!</p>\n<p>Total {{ total }}</p>", "t.html"),
        data_input(tmp_path, {"name": "Ann"}),
    ]
    (output,) = html_to_pdf(inputs, out_dir, options(template=True), limits=Limits())
    assert "Total" in open_pdf(output.path).all_text()
    with pytest.raises(InvalidTemplate, match="line 2: 'total' is undefined"):
        html_to_pdf(inputs, out_dir, options(template=True, strict=True), limits=Limits())


def test_template_options_are_checked(tmp_path: Path, out_dir: Path) -> None:
    doc = page(tmp_path, INVOICE)
    # Options that only work together are refused when parsed: a 422 before the job exists.
    with pytest.raises(InvalidOptions, match="per_record, zip only apply with template: true"):
        parse_options(HtmlPdfOptions, {"per_record": True, "zip": True})
    with pytest.raises(InvalidOptions, match="name_field only apply with per_record: true"):
        parse_options(HtmlPdfOptions, {"template": True, "name_field": "number"})
    with pytest.raises(InvalidOptions, match="one JSON input"):
        html_to_pdf([doc], out_dir, options(template=True), limits=Limits())
    with pytest.raises(InvalidOptions, match="JSON array"):
        html_to_pdf(
            [doc, data_input(tmp_path, {"a": 1})],
            out_dir,
            options(template=True, per_record=True),
            limits=Limits(),
        )
    deep = companion(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000, "text/plain")
    with pytest.raises(InputTooLarge, match="nests"):
        html_to_pdf([doc, deep], out_dir, options(template=True), limits=Limits())
    broken = companion(tmp_path, "data.json", "{not json", "text/plain")
    with pytest.raises(CorruptInput, match="not valid JSON"):
        html_to_pdf([doc, broken], out_dir, options(template=True), limits=Limits())


# -- hostile documents ---------------------------------------------------------------------------


class Listener:
    """A TCP server on 127.0.0.1 that records every connection it accepts (and answers nothing)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.connections.append(conn.recv(4096))
                except OSError:
                    self.connections.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()


_connects: list[Any] = []
_watching = threading.Event()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _watching.is_set() or event not in (
        "socket.connect",
        "socket.getaddrinfo",
        "urllib.Request",
        "open",
    ):
        return
    if event != "open" or str(args[0]).startswith(("/etc/passwd", "/etc/hostname")):
        _connects.append((event, args))


sys.addaudithook(_audit)  # hooks cannot be removed: this one records only while a test watches


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    _connects.clear()
    _watching.set()
    yield server
    _watching.clear()
    server.close()


def assert_nothing_reached(listener: Listener) -> None:
    time.sleep(0.3)  # a connection made at the very end would have been accepted by now
    assert listener.connections == []
    assert _connects == [], _connects  # no connect, no DNS lookup, no urllib request, no local file opened


def convert_hostile(tmp_path: Path, out_dir: Path, html: str, *extra: InputFile) -> tuple[Any, str]:
    (output,) = html_to_pdf(
        [page(tmp_path, html, "hostile.html"), *extra], out_dir, options(), limits=Limits()
    )
    pdf = Pdf(output.path)
    text = pdf.all_text()
    pdf.close()
    return output, text


def test_img_of_file_etc_passwd_is_not_read(tmp_path: Path, out_dir: Path, listener: Listener) -> None:
    output, text = convert_hostile(
        tmp_path, out_dir,
        '<p>x</p><img src="file:///etc/passwd"><img src="/etc/passwd"><img src="../../../../etc/passwd">'
        '<div style="background: url(file:///etc/shadow)">y</div>'
        '<object data="file:///etc/passwd" type="text/plain"></object>',
    )  # fmt: skip
    assert "root:" not in text
    refs = {i["reference"] for i in output.details["unresolved_references"]}
    assert refs == {"file:///etc/passwd", "passwd", "file:///etc/shadow"}
    assert_nothing_reached(listener)
    # A <base> pointing at the disk moves nothing: the URLs it makes are refused like any other.
    output, text = convert_hostile(tmp_path, out_dir, '<base href="file:///etc/"><p>x</p><img src="passwd">')
    assert "root:" not in text
    assert {i["reference"] for i in output.details["unresolved_references"]} <= {
        "file:///etc/passwd",
        "passwd",
    }
    assert_nothing_reached(listener)


def test_link_and_import_of_a_local_listener_reach_nothing(
    tmp_path: Path, out_dir: Path, listener: Listener
) -> None:
    base = f"http://127.0.0.1:{listener.port}"
    css = companion(
        tmp_path, "site.css", f'@import url("{base}/from-companion.css");\nbody {{ color: black }}', CSS_TYPE
    )
    output, _ = convert_hostile(
        tmp_path, out_dir,
        f'<link rel="stylesheet" href="{base}/"><link rel="stylesheet" href="site.css">'
        f'<style>@import "{base}/imported.css"; @import url({base}/u.css);</style>'
        f'<link rel="attachment" href="{base}/attach"><a rel="attachment" href="{base}/a2">x</a>',
        css,
    )  # fmt: skip
    refs = {i["reference"] for i in output.details["unresolved_references"]}
    assert {f"{base}/", f"{base}/imported.css", f"{base}/u.css", f"{base}/from-companion.css"} <= refs
    assert_nothing_reached(listener)


def test_iframe_object_and_embed_reach_nothing(tmp_path: Path, out_dir: Path, listener: Listener) -> None:
    base = f"http://127.0.0.1:{listener.port}"
    output, text = convert_hostile(
        tmp_path, out_dir,
        f'<p>visible</p><iframe src="{base}/frame"></iframe><iframe srcdoc="<p>inner</p>"></iframe>'
        f'<object data="{base}/obj.svg" type="image/svg+xml">fallback text</object>'
        f'<embed src="{base}/embed.png"><script>document.write("scripted")</script>',
    )  # fmt: skip
    assert "visible" in text and "scripted" not in text
    assert {f"{base}/obj.svg", f"{base}/embed.png"} <= {
        i["reference"] for i in output.details["unresolved_references"]
    }
    assert_nothing_reached(listener)


def test_svg_with_external_references_and_xml_entities_reaches_nothing(
    tmp_path: Path, out_dir: Path, listener: Listener
) -> None:
    base = f"http://127.0.0.1:{listener.port}"
    svg = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd"><!ENTITY net SYSTEM "{base}/entity">'
        '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
        '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">'
        '<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;"><!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">]>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="200" height="100">'
        f'<image xlink:href="{base}/svg-image.png" width="50" height="50"/>'
        f'<use href="file:///etc/passwd#x"/><text x="5" y="20">&xxe;&net;&g;</text>'
        f"<style>@import url({base}/svg-style.css);</style></svg>"
    )
    drawing = companion(tmp_path, "drawing.svg", svg, "image/svg+xml")
    inline = f'<svg width="100" height="100"><image href="{base}/inline.png" width="10" height="10"/></svg>'
    began = time.perf_counter()
    output, text = convert_hostile(
        tmp_path, out_dir, f'<p>picture</p><img src="drawing.svg">{inline}', drawing
    )
    assert time.perf_counter() - began < 60  # the entity bomb was not expanded
    assert "root:" not in text and "aaaaaaaaaa" not in text
    assert_nothing_reached(listener)
    assert output.details  # what the SVG asked for is listed


def test_css_url_to_the_metadata_address_is_refused(
    tmp_path: Path, out_dir: Path, listener: Listener
) -> None:
    output, _ = convert_hostile(
        tmp_path, out_dir,
        "<style>body { background: url(http://169.254.169.254/latest/meta-data/iam/) }"
        '@font-face { font-family: X; src: url("http://[fd00:ec2::254]/f.ttf") } p { font-family: X }</style>'
        f'<p style="background-image: url(http://127.0.0.1:{listener.port}/bg.png)">x</p>',
    )  # fmt: skip
    refs = {i["reference"] for i in output.details["unresolved_references"]}
    assert "http://169.254.169.254/latest/meta-data/iam/" in refs
    assert_nothing_reached(listener)


def test_data_urls_are_read_within_their_cap(tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]) -> None:
    import base64

    red = base64.b64encode(_png_bytes(Image.new("RGB", (40, 40), "red"))).decode()
    big = "A" * (3 * 1024 * 1024)
    doc = page(
        tmp_path,
        f'<img style="width:10cm" src="data:image/png;base64,{red}"><img src="data:image/png;base64,{big}">',
    )
    (output,) = html_to_pdf([doc], out_dir, options(), limits=Limits())
    assert red_share(open_pdf(output.path)) > 0.1
    (refused,) = output.details["unresolved_references"]
    assert "data: URL over" in refused["reason"]


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__.__mro__[1].__subclasses__()",
        "cycler.__init__.__globals__.os.popen('touch MARKER').read()",
        "lipsum.__globals__['os'].system('touch MARKER')",
        "self.__init__.__globals__.__builtins__.open('/etc/passwd').read()",
        "number.__class__.__base__.__subclasses__()",
    ],
)
def test_template_reaching_for_python_internals_is_refused(
    tmp_path: Path, out_dir: Path, expression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    inputs = [
        page(tmp_path, "<p>hi</p>\n<p>{{ " + expression + " }}</p>", "t.html"),
        data_input(tmp_path, {"number": 1}),
    ]
    with pytest.raises(InvalidTemplate, match="line 2") as caught:
        html_to_pdf(inputs, out_dir, options(template=True), limits=Limits())
    assert "unsafe" in caught.value.message or "undefined" in caught.value.message
    assert not (tmp_path / "MARKER").exists()


def test_a_bare_reach_for_an_internal_attribute_prints_nothing(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    source = "<p>[{{ (1).__class__ }}][{{ number.__globals__ }}][{{ number.real }}]</p>"
    inputs = [page(tmp_path, source, "t.html"), data_input(tmp_path, {"number": 7})]
    (output,) = html_to_pdf(inputs, out_dir, options(template=True), limits=Limits())
    assert "[][][7]" in open_pdf(output.path).all_text()


def test_a_template_writing_forever_is_stopped_at_its_size(tmp_path: Path, out_dir: Path) -> None:
    source = "{% for a in range(100000) %}{% for b in range(100000) %}<p>{{ a }} {{ b }}</p>{% endfor %}{% endfor %}"
    inputs = [page(tmp_path, source, "t.html"), data_input(tmp_path, {})]
    with pytest.raises(InputTooLarge, match="writes more than"):
        html_to_pdf(inputs, out_dir, options(template=True), limits=Limits())


def test_a_template_loop_that_never_ends_is_stopped_by_the_time_limit_and_the_worker_goes_on(
    records: Any, storage: Any, redis_client: Any, namespace: str
) -> None:
    """A real worker (Redis, Dramatiq's time limit): the loop fails as time_limit_exceeded, then the
    same worker thread converts the next export."""
    from dramatiq import Worker

    from actors.broker import EXPORT_QUEUE, build_broker
    from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, enqueue_export
    from actors.outcomes import JobOutcomes
    from storage.jobs import Job, Upload, new_id

    def job_of(files: list[tuple[str, bytes]]) -> Job:
        uploads = []
        for name, data in files:
            upload_id = new_id()
            stored = storage.put_stream(f"uploads/{upload_id}", io.BytesIO(data))
            content_type = sniff(data[:4096], complete=True, filename=name)
            uploads.append(Upload(id=upload_id, filename=name, content_type=content_type, size=stored.size,
                                  sha256=stored.sha256, created_at=time.time()))  # fmt: skip
        job = Job(
            id=new_id(),
            format="pdf",
            inputs=tuple(uploads),
            options={"template": True},
            created_at=time.time(),
        )
        records.create_job(job)
        return job

    def wait(job_id: str) -> Job:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            job: Job = records.get_job(job_id)
            if job.finished:
                return job
            time.sleep(0.05)
        raise AssertionError("job stuck")

    broker = build_broker(redis_client, namespace=namespace, heartbeat_timeout_ms=30_000,
                          extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values()))])  # fmt: skip
    declare_export_actor(broker, ExportTask(records=records, storage=storage, limits=Limits(), time_limit_s=2),
                         time_limit_s=2, max_retries=3)  # fmt: skip
    broker.emit_after("process_boot")  # as actors/pool.py does: starts the time limit's watchdog
    pool = Worker(broker, queues={EXPORT_QUEUE}, worker_threads=1, worker_timeout=50)
    pool.start()
    try:
        endless = (
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}<p>done</p>"
        )
        looping = job_of([("loop.html", endless.encode()), ("data.json", b"{}")])
        enqueue_export(broker, looping.id)
        failed = wait(looping.id)
        assert failed.status == "failed" and failed.error is not None
        assert failed.error.code == "time_limit_exceeded" and failed.attempts == 1
        fine = job_of([("hello.html", b"<p>Hello {{ name }}</p>"), ("data.json", b'{"name": "Ann"}')])
        enqueue_export(broker, fine.id)
        done = wait(fine.id)
        assert done.status == "succeeded", done.error
        assert "Hello Ann" in pdf_text(storage.open(done.outputs[0].key).read(), tmp=storage.root)
    finally:
        pool.stop()
        broker.close()


def pdf_text(data: bytes, *, tmp: Path) -> str:
    path = tmp / "read-back.pdf"
    path.write_bytes(data)
    pdf = Pdf(path)
    try:
        return pdf.all_text()
    finally:
        pdf.close()


# -- Markdown through the same engine -------------------------------------------------------------


def test_markdown_engine_html_uses_print_css_and_a_user_stylesheet(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    from exporters.markdown import MARKDOWN_TYPE, MarkdownPdfOptions, markdown_to_pdf
    from tests.exporters.samples import sample

    report = InputFile(sample("documents/report.md"), "report.md", MARKDOWN_TYPE)
    logo = save(card(200, 100), tmp_path / "logo.png", "PNG")
    css = companion(
        tmp_path, "print.css", "@page { size: A5 } h1 { color: rgb(255, 0, 0); font-size: 60pt }", CSS_TYPE
    )
    md_options = parse_options(
        MarkdownPdfOptions, {"engine": "html", "footer": 'Quarterly "Q3" — {page}/{pages}', "author": "Анна"}
    )
    (output,) = markdown_to_pdf(
        [report, InputFile(logo, "logo.png", "image/png"), css], out_dir, md_options, limits=Limits()
    )
    pdf = open_pdf(output.path)
    assert pdf.page_size(0) == A5  # the user stylesheet's @page wins over the option's A4
    text = squeezed(pdf.all_text())
    for phrase in (
        "Quarterly report",
        "Продажи выросли во всех регионах",
        'Quarterly "Q3" — 1/',
        "page 1 of",
    ):
        assert phrase in text, phrase
    assert red_share(pdf) > 0.005  # the heading in the stylesheet's red
    with pikepdf.open(output.path) as reader:
        assert str(reader.docinfo["/Title"]) == "Quarterly report"  # the first heading
        assert str(reader.docinfo["/Author"]) == "Анна"
        assert len(reader.open_outline().root) >= 1  # headings make bookmarks
        fonts = {str(f.get("/BaseFont")) for p in reader.pages for f in p.Resources.Font.values()}
    assert any(name.endswith("+exportd-sans") for name in fonts), fonts  # the bundled DejaVu Sans
    # Without engine "html" a stylesheet has nothing to style: refused rather than ignored.
    with pytest.raises(InvalidOptions, match="engine"):
        markdown_to_pdf([report, css], out_dir, MarkdownPdfOptions(), limits=Limits())


def test_markdown_engine_html_shows_raw_html_as_text(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf]
) -> None:
    from exporters.markdown import MARKDOWN_TYPE, MarkdownPdfOptions, markdown_to_pdf

    path = tmp_path / "x.md"
    path.write_text('# Title\n\n<img src="file:///etc/passwd"> <b>bold?</b>\n', encoding="utf-8")
    options_ = MarkdownPdfOptions(engine="html")
    (output,) = markdown_to_pdf([InputFile(path, "x.md", MARKDOWN_TYPE)], out_dir, options_, limits=Limits())
    assert '<img src="file:///etc/passwd"> <b>bold?</b>' in squeezed(open_pdf(output.path).all_text())
    assert "unresolved_references" not in output.details  # nothing was even asked for


# -- through the API -----------------------------------------------------------------------------


def test_an_invoice_run_through_the_api_and_a_broken_template_fails_with_its_line(
    request: pytest.FixtureRequest,
) -> None:
    client: Api = request.getfixturevalue("api")  # tests/service/test_api.py's API, with a worker
    request.getfixturevalue("worker")
    logo = _png_bytes(Image.new("RGB", (80, 40), "navy"))
    template = INVOICE.replace("<h1>", '<img src="logo.png"><h1>').encode()
    data = json.dumps(invoices(3)).encode()
    job = _export_files(
        client,
        [("invoice.html", template), ("records.json", data), ("logo.png", logo)],
        "pdf",
        {
            "template": True,
            "per_record": True,
            "name_field": "number",
            "zip": True,
            "pdf_variant": "pdf/a-3b",
        },
    )
    assert [i["content_type"] for i in job["inputs"]] == [HTML_TYPE, "application/json", "image/png"]
    done = client.wait_for(job["id"], timeout_s=60)
    assert done["status"] == "succeeded", done
    (output,) = done["outputs"]
    assert output["name"] == "invoice.zip" and output["details"] == {"items": 3, "failed": 0}
    with zipfile.ZipFile(io.BytesIO(client.download(output["url"]).content)) as archive:
        assert sorted(archive.namelist()) == ["INV-0001.pdf", "INV-0002.pdf", "INV-0003.pdf", "manifest.json"]

    broken = _export_files(
        client,
        [("t.html", b"<p>ok</p>\n<p>{{ number + }}</p>"), ("d.json", b"{}")],
        "pdf",
        {"template": True},
    )
    failed = client.wait_for(broken["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_template"
    assert "line 2" in failed["error"]["message"] and "Traceback" not in failed["error"]["message"]


def test_a_picture_declaring_too_many_pixels_is_refused_from_its_header(
    tmp_path: Path, out_dir: Path
) -> None:
    import base64

    big = save(Image.new("1", (12_000, 10_000)), tmp_path / "big", "PNG")  # 120 MP in a few KB
    small = save(Image.new("RGB", (40, 40), "red"), tmp_path / "small", "PNG")
    inline = base64.b64encode(big.read_bytes()).decode()
    doc = page(
        tmp_path, f'<img src="big.png"><img src="small.png"><img src="data:image/png;base64,{inline}">'
    )
    inputs = [doc, InputFile(big, "big.png", "image/png"), InputFile(small, "small.png", "image/png")]
    (output,) = html_to_pdf(inputs, out_dir, options(), limits=Limits(max_pixels=50_000_000))
    reasons = [item["reason"] for item in output.details["unresolved_references"]]
    assert len(reasons) == 2 and all("12000 × 10000 pixels, over the limit" in r for r in reasons), reasons


# -- memory admission ----------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS is read from /proc (Linux)")
def test_the_memory_estimate_covers_a_real_html_conversion(tmp_path: Path) -> None:
    from benchmarks.memory import run_case
    from exporters.estimate import EstimateInput, estimate_job

    path = tmp_path / "table.html"
    rows = "".join(f"<tr><td>{i}</td><td>name {i}</td><td>{i * 3}</td><td>x</td></tr>" for i in range(2400))
    path.write_text(f"<table>{rows}</table>", encoding="utf-8")  # 12,000 elements, about 58 pages
    added = run_case(HTML_TYPE, "pdf", {}, path)
    estimate = estimate_job(
        "html", "pdf", [EstimateInput(HTML_TYPE, path.stat().st_size, lambda: path.open("rb"))], {}
    )
    assert added < estimate.peak_bytes < 3 * added, (added >> 20, estimate.peak_mib)
    # A template's loops make elements its text does not have: its data counts too.
    data = EstimateInput("application/json", 200_000, lambda: io.BytesIO(b"[]"))
    small = (tmp_path / "t.html").write_text("<p>{{ x }}</p>") and tmp_path / "t.html"
    template = EstimateInput(HTML_TYPE, small.stat().st_size, lambda: small.open("rb"))
    filled = estimate_job("html", "pdf", [template, data], {"template": True})
    assert filled.peak_bytes > estimate_job("html", "pdf", [template, data], {}).peak_bytes
