"""PDF to PDF (merge, split): scripts, launches and javascript: links never reach the output.

The input is built with pikepdf (qpdf) carrying every kind of active content; the output is read
back by qpdf, every object of it, and rendered by PDFium.
"""

from __future__ import annotations

from pathlib import Path

import pikepdf
import pypdfium2 as pdfium
import pytest

from exporters.base import InputFile, Limits, parse_options
from exporters.pdfdocs import PdfEditOptions, PdfSplitOptions, merge_pdfs, split_pdf

SAFE_LINK = "https://example.com/report"


def _link(pdf: pikepdf.Pdf, action: pikepdf.Dictionary) -> pikepdf.Object:
    return pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Annot,
            Subtype=pikepdf.Name.Link,
            Rect=[10, 10, 100, 30],
            Border=[0, 0, 0],
            A=action,
        )
    )


def _js(code: str) -> pikepdf.Dictionary:
    return pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String(code))


def active_pdf(path: Path, *, pages: int = 2) -> Path:
    """A PDF with document- and page-level JavaScript, a launch, javascript: links and one safe link."""
    pdf = pikepdf.new()
    for _ in range(pages):
        pdf.add_blank_page(page_size=(200, 200))
    pdf.Root.OpenAction = _js("app.alert('open')")
    pdf.Root.AA = pikepdf.Dictionary(WC=_js("app.alert('close')"))
    pdf.Root.Names = pikepdf.Dictionary(
        JavaScript=pikepdf.Dictionary(
            Names=[pikepdf.String("init"), pdf.make_indirect(_js("app.alert('init')"))]
        )
    )
    fields = pikepdf.Array()
    for page in pdf.pages:
        page.obj.AA = pikepdf.Dictionary(O=_js("app.alert('page')"))
        launch = pikepdf.Dictionary(S=pikepdf.Name.Launch, F=pikepdf.String("calc.exe"))
        chained = pikepdf.Dictionary(
            S=pikepdf.Name.URI, URI=pikepdf.String(SAFE_LINK + "?chained"), Next=_js("x()")
        )
        widget = pdf.make_indirect(
            pikepdf.Dictionary(
                Type=pikepdf.Name.Annot,
                Subtype=pikepdf.Name.Widget,
                Rect=[10, 150, 100, 170],
                FT=pikepdf.Name.Tx,
                T=pikepdf.String("field"),
                AA=pikepdf.Dictionary(K=_js("event.rc = true")),
            )
        )
        fields.append(widget)
        page.obj.Annots = pdf.make_indirect(
            pikepdf.Array(
                [
                    _link(pdf, _js("app.launchURL('https://evil.example')")),
                    _link(
                        pdf, pikepdf.Dictionary(S=pikepdf.Name.URI, URI=pikepdf.String("javascript:alert(1)"))
                    ),
                    _link(pdf, launch),
                    _link(pdf, chained),
                    _link(pdf, pikepdf.Dictionary(S=pikepdf.Name.URI, URI=pikepdf.String(SAFE_LINK))),
                    widget,
                ]
            )
        )
    pdf.Root.AcroForm = pikepdf.Dictionary(Fields=fields)
    pdf.save(path)
    return path


def active_things(path: Path) -> list[str]:
    """Every active thing qpdf finds anywhere in the file: every object, direct ones inside them included,
    reachable from the pages or not."""
    found: list[str] = []
    seen: set[tuple[int, int]] = set()

    def walk(obj: object) -> None:
        if isinstance(obj, pikepdf.Object) and obj.is_indirect:
            if obj.objgen in seen:
                return
            seen.add(obj.objgen)
        if isinstance(obj, pikepdf.Array):
            for item in obj:
                walk(item)
        elif isinstance(obj, pikepdf.Dictionary | pikepdf.Stream):
            for key in ("/JS", "/AA", "/OpenAction"):
                if key in obj:
                    found.append(key)
            kind = str(obj.get("/S", ""))
            if kind in ("/JavaScript", "/Launch", "/SubmitForm", "/ImportData", "/GoToR"):
                found.append(f"{kind} action")
            if kind == "/URI" and not str(obj.get("/URI", "")).startswith(("http", "mailto")):
                found.append(f"link to {obj.URI}")
            names = obj.get("/Names")
            if isinstance(names, pikepdf.Dictionary) and "/JavaScript" in names:
                found.append("document JavaScript")
            for key in obj.keys():  # noqa: SIM118  # a pikepdf dictionary is not iterable by key
                if key != "/Parent":
                    walk(obj[key])

    with pikepdf.open(path) as pdf:
        for obj in pdf.objects:
            walk(obj)
        walk(pdf.trailer)
    return found


def safe_links(path: Path) -> list[str]:
    with pikepdf.open(path) as pdf:
        return [
            str(annotation.A.URI)
            for page in pdf.pages
            for annotation in page.obj.get("/Annots", [])
            if "/A" in annotation and annotation.A.get("/S") == pikepdf.Name.URI
        ]


def test_the_test_input_is_active(tmp_path: Path) -> None:
    found = active_things(active_pdf(tmp_path / "active.pdf"))

    assert "document JavaScript" in found
    assert "link to javascript:alert(1)" in found
    assert "/Launch action" in found
    assert "/AA" in found


def test_merge_removes_active_content_and_says_what(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    source = active_pdf(tmp_path / "active.pdf")

    (output,) = merge_pdfs(
        [InputFile(source, "active.pdf", "application/pdf")],
        out_dir,
        PdfEditOptions(title="T"),
        limits=limits,
    )

    assert active_things(output.path) == []
    # The plain https link stays; the one that chained a script to its jump went with it.
    assert safe_links(output.path) == [SAFE_LINK, SAFE_LINK]
    removed = output.details["active_content_removed"]
    assert removed["javascript"] == 5  # the opening script, and per page a link's script and a chained one
    assert removed["launch"] == 2
    assert removed["unsafe_link"] == 2
    assert removed["document_javascript"] == 1
    assert removed["additional_actions"] == 5  # the catalog's, two pages', two widgets'
    document = pdfium.PdfDocument(output.path)
    assert len(document) == 2
    assert document.get_metadata_value("Title") == "T"
    document[0].render(scale=0.5).to_pil()
    document.close()


def test_split_removes_active_content_from_every_part(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    source = active_pdf(tmp_path / "active.pdf")

    outputs = split_pdf(
        [InputFile(source, "active.pdf", "application/pdf")], out_dir, PdfSplitOptions(), limits=limits
    )

    assert len(outputs) == 2
    for output in outputs:
        assert active_things(output.path) == []
        assert output.details["active_content_removed"]["launch"] == 1
        assert SAFE_LINK in safe_links(output.path)


def test_a_pdf_without_active_content_is_left_as_pdfium_wrote_it(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(200, 200))
    pdf.save(tmp_path / "plain.pdf")

    (output,) = merge_pdfs(
        [InputFile(tmp_path / "plain.pdf", "plain.pdf", "application/pdf")],
        out_dir,
        parse_options(PdfEditOptions, {}),
        limits=limits,
    )

    assert "active_content_removed" not in output.details
    assert output.path.read_bytes().startswith(b"%PDF-")


@pytest.mark.parametrize(
    "scheme", ["javascript:", "JavaScript:", " javascript:", "file:///etc/passwd", "data:text/html,x"]
)
def test_unsafe_link_schemes_are_removed(scheme: str, tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(200, 200))
    pdf.pages[0].obj.Annots = pdf.make_indirect(
        pikepdf.Array([_link(pdf, pikepdf.Dictionary(S=pikepdf.Name.URI, URI=pikepdf.String(scheme + "x")))])
    )
    pdf.save(tmp_path / "link.pdf")

    (output,) = merge_pdfs(
        [InputFile(tmp_path / "link.pdf", "link.pdf", "application/pdf")],
        out_dir,
        PdfEditOptions(),
        limits=limits,
    )

    assert active_things(output.path) == []
    assert output.details["active_content_removed"] == {"unsafe_link": 1}
