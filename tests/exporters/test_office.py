"""Office documents to PDF through LibreOffice: recognised from their bytes, converted for real."""

from __future__ import annotations

import os
import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import exporters.office as office
from exporters.base import CorruptInput, InputFile, InputTooLarge, Limits
from exporters.office import (
    DOC,
    DOCX,
    ODP,
    ODS,
    ODT,
    PPTX,
    RTF,
    XLS,
    XLSX,
    ConversionTimedOut,
    OfficePdfOptions,
    OfficeUnavailable,
    office_to_pdf,
    sniff_office,
)
from tests.exporters.samples import GREEK, Pdf, sample

needs_soffice = pytest.mark.skipif(
    office.find_soffice() is None,
    reason="LibreOffice is not installed (Debian: libreoffice-writer-nogui libreoffice-calc-nogui "
    "libreoffice-impress-nogui); Office conversions were not tested",
)

SAMPLES = {
    "letter.docx": DOCX, "letter.odt": ODT, "letter.rtf": RTF, "letter.doc": DOC,
    "table.xlsx": XLSX, "table.ods": ODS, "table.xls": XLS, "slides.pptx": PPTX, "slides.odp": ODP,
}  # fmt: skip


def office_input(name: str) -> InputFile:
    path = sample(f"documents/office/{name}")
    content_type = sniff_office(path.read_bytes()[:4096], path)
    assert content_type is not None
    return InputFile(path=path, filename=name, content_type=content_type)


@pytest.mark.parametrize(("name", "expected"), sorted(SAMPLES.items()))
def test_office_files_are_recognised_from_their_bytes(name: str, expected: str, tmp_path: Path) -> None:
    original = sample(f"documents/office/{name}")
    anonymous = tmp_path / "upload"  # no extension: the name must not matter
    shutil.copyfile(original, anonymous)

    assert sniff_office(anonymous.read_bytes()[:4096], anonymous) == expected


def test_other_files_are_not_office_documents(tmp_path: Path) -> None:
    assert sniff_office(sample("documents/office/letter.txt").read_bytes()) is None
    archive = tmp_path / "plain.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("word/readme.txt", "not a document")
    assert sniff_office(archive.read_bytes()[:4096], archive) is None  # no [Content_Types].xml
    assert (
        sniff_office(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600) is None
    )  # OLE2 with nothing known


def test_without_libreoffice_the_error_says_so(
    monkeypatch: pytest.MonkeyPatch, out_dir: Path, limits: Limits
) -> None:
    monkeypatch.setattr(office, "find_soffice", lambda: None)

    with pytest.raises(OfficeUnavailable, match="LibreOffice is not installed"):
        office_to_pdf([office_input("letter.docx")], out_dir, OfficePdfOptions(), limits=limits)


@needs_soffice
def test_docx_to_pdf_keeps_russian_and_greek(out_dir: Path, open_pdf: type[Pdf], limits: Limits) -> None:
    (output,) = office_to_pdf([office_input("letter.docx")], out_dir, OfficePdfOptions(), limits=limits)

    pdf = open_pdf(output.path)
    text = pdf.all_text()
    assert output.name == "letter.pdf" and output.details == {"pages": 1}
    assert "Hello from exportd" in text
    assert "Привет, мир! Съешь же ещё этих мягких французских булок." in text
    assert GREEK in text


@needs_soffice
def test_spreadsheet_and_slides_to_pdf(out_dir: Path, open_pdf: type[Pdf], limits: Limits) -> None:
    outputs = office_to_pdf(
        [office_input("table.xls"), office_input("slides.pptx")], out_dir, OfficePdfOptions(), limits=limits
    )

    table, slides = (open_pdf(o.path) for o in outputs)
    cells = re.sub(r"\s+", " ", table.all_text())
    assert "Item Количество Price" in cells and "Груши 7 2.25" in cells
    assert len(slides) == 2 and "Slide two: Ελλάδα" in slides.text(1)
    assert slides.page_size(0)[0] > slides.page_size(0)[1]  # slides are landscape


@needs_soffice
def test_page_limit(out_dir: Path) -> None:
    with pytest.raises(InputTooLarge, match="makes 2 pages; the limit is 1"):
        office_to_pdf([office_input("slides.odp")], out_dir, OfficePdfOptions(), limits=Limits(max_pages=1))


@needs_soffice
def test_damaged_file_fails_as_corrupt(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    data = sample("documents/office/letter.docx").read_bytes()
    broken = tmp_path / "broken.docx"
    broken.write_bytes(data[: len(data) // 2])

    with pytest.raises(CorruptInput, match="LibreOffice could not convert"):
        office_to_pdf([InputFile(broken, "broken.docx", DOCX)], out_dir, OfficePdfOptions(), limits=limits)


@needs_soffice
def test_timeout_kills_the_whole_process_group(out_dir: Path) -> None:
    @dataclass(frozen=True)
    class Short(Limits):  # what Limits.office_timeout_s will be once the field exists
        office_timeout_s: float = 0.3

    started = time.monotonic()
    with pytest.raises(ConversionTimedOut, match=r"within 0\.3 s"):
        office_to_pdf([office_input("letter.odt")], out_dir, OfficePdfOptions(), limits=Short())

    assert time.monotonic() - started < 10
    time.sleep(0.2)
    leftovers = [
        pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline(pid).find("exportd-office-") != -1
    ]
    assert leftovers == []


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""
