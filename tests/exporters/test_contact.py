"""Contact sheets from real photos: pages, captions, upright thumbnails, failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from exporters.base import CorruptInput, InputTooLarge, Limits, parse_options
from exporters.contact import ContactSheetOptions, contact_sheet_pdf, contact_sheet_png
from tests.exporters.samples import SKY, WATER, Pdf, as_input, sample


def _photos(tmp_path: Path, count: int) -> list[Path]:
    """`count` copies of the real landscape photo stored with orientation 6 (turned, as phones store it)."""
    source = sample("orientation/Landscape_6.jpg")
    paths = []
    for index in range(count):
        path = tmp_path / f"holiday {index + 1:02d}.jpg"
        shutil.copyfile(source, path)
        paths.append(path)
    return paths


def test_pdf_sheet_has_a_page_per_grid_with_captions_and_numbers(
    tmp_path: Path, out_dir: Path, limits: Limits, open_pdf: type[Pdf]
) -> None:
    inputs = [as_input(p) for p in _photos(tmp_path, 7)]
    options = parse_options(ContactSheetOptions, {"columns": 2, "rows": 2, "title": "Été 2026 — Крым"})
    (out,) = contact_sheet_pdf(inputs, out_dir, options, limits=limits)
    pdf = open_pdf(out.path)
    assert len(pdf) == 2 == out.details["pages"]  # 7 photos, 4 a page
    assert pdf.page_size(0) == (595.28, 841.89)
    first, second = pdf.text(0), pdf.text(1)
    for index in range(1, 5):
        assert f"holiday {index:02d}.jpg" in first
    assert "holiday 05.jpg" in second and "holiday 07.jpg" in second
    assert "page 1 of 2" in first and "page 2 of 2" in second
    assert "Été 2026 — Крым" in first


def test_png_sheets_show_upright_thumbnails(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    inputs = [as_input(p) for p in _photos(tmp_path, 3)]
    options = parse_options(ContactSheetOptions, {"columns": 1, "rows": 2, "sheet_width_px": 800,
                                                  "landscape": True})  # fmt: skip
    outputs = contact_sheet_png(inputs, out_dir, options, limits=limits)
    assert [o.name for o in outputs] == ["contact-sheet.png", "contact-sheet-2.png"]
    with Image.open(outputs[0].path) as sheet:
        assert sheet.size == (800, round(800 * 595.28 / 841.89))
        sheet = sheet.convert("RGB")
        # The first thumbnail is the widest non-white thing in the upper cell (its caption, centred
        # below it, is narrower). The photo is 3:2 once upright: sky at its top left, dark water at
        # its bottom right. Stored turned (orientation 6), it would be 2:3 with other corners.
        upper = sheet.crop((0, 0, sheet.width, sheet.height // 2))
        left, top, right, _bottom = Image.eval(upper, lambda v: 255 - v).getbbox() or (0, 0, 0, 0)
        width = right - left
        height = round(width * 2 / 3)
        near = lambda a, b: all(abs(x - y) < 40 for x, y in zip(a, b, strict=True))  # noqa: E731
        assert near(upper.getpixel((left + 3, top + 3)), SKY)
        assert near(upper.getpixel((left + width - 4, top + height - 4)), WATER)
        assert upper.getpixel((left + width - 4, top + height + 4)) == (255, 255, 255)  # its lower edge


def test_an_unreadable_photo_fails_the_sheet_unless_skipped(tmp_path: Path, out_dir: Path, limits: Limits,
                                                            open_pdf: type[Pdf]) -> None:  # fmt: skip
    good = _photos(tmp_path, 1)[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:3000])
    inputs = [as_input(good), as_input(broken)]
    with pytest.raises(CorruptInput):
        contact_sheet_pdf(inputs, out_dir, parse_options(ContactSheetOptions, {}), limits=limits)
    (out,) = contact_sheet_pdf(inputs, out_dir, parse_options(ContactSheetOptions, {"skip_failed": True}),
                               limits=limits)  # fmt: skip
    text = open_pdf(out.path).text(0)
    assert "broken.jpg" in text and "holiday 01.jpg" in text


def test_too_many_pages_is_refused_before_any_work(tmp_path: Path, out_dir: Path) -> None:
    inputs = [as_input(p) for p in _photos(tmp_path, 5)]
    options = parse_options(ContactSheetOptions, {"columns": 1, "rows": 1})
    with pytest.raises(InputTooLarge):
        contact_sheet_pdf(inputs, out_dir, options, limits=Limits(max_pages=4))


def test_sheets_are_reproducible(tmp_path: Path, limits: Limits) -> None:
    inputs = [as_input(p) for p in _photos(tmp_path, 3)]
    options = parse_options(ContactSheetOptions, {})
    made = []
    for run in ("a", "b"):
        out = tmp_path / run
        out.mkdir()
        made.append(contact_sheet_pdf(inputs, out, options, limits=limits)[0].path.read_bytes())
    assert made[0] == made[1]
