"""The format records (exporters.media) are what the registry, the encoders, the sniffer and the
download route read: a row there is a working image output everywhere, with no other table to edit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from exporters import geometry, media, metadata, options, pictures, registry
from exporters.base import InputFile, Limits, parse_options
from exporters.sniff import sniff
from service.resources.files import content_type_of

ROOT = Path(__file__).resolve().parents[2]
IMAGE_OUTPUTS = list(media.IMAGE_OUTPUTS.values())


def _writable(record: media.Format) -> media.Format:
    if not pictures.can_write(record):
        pytest.skip(f"this installation cannot write {record.name}")
    return record


@pytest.mark.parametrize("record", IMAGE_OUTPUTS, ids=lambda r: r.name)
def test_an_image_output_row_is_a_conversion_with_its_facts(record: media.Format) -> None:
    conversion = registry.find(["image/png"], record.name)
    assert registry.FORMATS[record.name] == record.media_type
    assert conversion.description == record.description and conversion.needs == record.needs
    assert ("quality" in registry.describe(limits=Limits())["conversions"][
        registry.CONVERSIONS.index(conversion)]["options"]) == record.lossy  # fmt: skip
    assert content_type_of(f"photo.{record.extension}") == record.media_type


@pytest.mark.parametrize("record", IMAGE_OUTPUTS, ids=lambda r: r.name)
def test_an_image_output_row_writes_that_format(record: media.Format, tmp_path: Path) -> None:
    """Through the registry as a job runs it: the file is of the row's format, named with its
    extension, transparency kept exactly where the row says so."""
    record = _writable(record)
    source = tmp_path / "in.png"
    picture = Image.new("RGBA", (40, 30), (200, 40, 40, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 20, 30))  # the left half transparent
    picture.save(source)
    conversion = registry.find(["image/png"], record.name)
    chosen = parse_options(conversion.options, {"width": 20}, limits=Limits())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (output,) = conversion.convert([InputFile(source, "holiday.png", "image/png")], out_dir, chosen,
                                   limits=Limits())  # fmt: skip
    assert output.name == f"holiday.{record.extension}"
    assert output.content_type == record.media_type
    with Image.open(output.path) as written:
        assert written.format == record.pillow
        assert written.size == (20, 15)
        has_alpha = "A" in written.mode or "transparency" in written.info
        assert has_alpha == record.alpha
    if record.media_type in media.PILLOW_DECODERS:  # a format this service also reads: recognised
        assert sniff(output.path.read_bytes(), complete=True) == record.media_type


def test_every_conversion_finds_its_converter() -> None:
    """The registry's rows name their converters lazily: each of them resolves (a typo fails here)."""
    for conversion in registry.CONVERSIONS:
        assert callable(conversion.convert), (conversion.kind, conversion.format)


def test_inputs_are_read_by_their_records() -> None:
    assert {f.media_type: f.kind for f in media.FORMATS if f.kind} == registry.KIND_OF_CONTENT_TYPE
    assert {
        t: p for t, p in media.PILLOW_DECODERS.items() if p != "HEIF" or pictures.HEIF_READS
    } == pictures.PILLOW_FORMAT_OF_CONTENT_TYPE


def test_choices_spelled_for_the_options_are_the_engines() -> None:
    """Options name these without loading Pillow; the engine's tables must say the same."""
    assert tuple(geometry.GRAVITY) == options.GRAVITIES
    assert tuple(geometry.FLIP_MATRIX) == options.FLIPS
    assert tuple(metadata.KEEPABLE) == options.KEEPABLE_GROUPS


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_fonts_are_registered_by_the_start_up_call_not_by_an_import() -> None:
    check = "from reportlab.pdfbase import pdfmetrics; from exporters.fonts import FACES; " \
            "print(all(n in pdfmetrics.getRegisteredFontNames() for n in FACES))"  # fmt: skip
    assert (
        _run(f"import exporters.text, exporters.tables, exporters.markdown, exporters.contact\n{check}")
        == "False"
    )
    capabilities = "from exporters import registry; print(sorted(registry.prepare()))"
    assert _run(f"{capabilities}\n{check}").splitlines() == ["['heic_write', 'office', 'pango']", "True"]
