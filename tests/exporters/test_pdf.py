"""Images to one PDF: pages, sizes, orientation by rendering, JPEG passthrough, determinism."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from exporters.base import CorruptInput, InputTooLarge, InvalidOptions, Limits, parse_options
from exporters.jpeg import passthrough
from exporters.pdf import ImagePdfOptions, images_to_pdf
from tests.exporters.samples import (
    XMP,
    Pdf,
    as_input,
    assert_upright_card,
    assert_upright_photo,
    card,
    close_to,
    embedded_jpegs,
    exiftool_tags,
    gps_exif,
    gradient,
    image_bytes,
    jpeg_markers,
    leaked,
    noise,
    pixel,
    sample,
    save,
    stored_with_orientation,
    with_iptc,
)

A4 = (595.28, 841.89)
A4_LANDSCAPE = (841.89, 595.28)
LETTER = (612.0, 792.0)
LETTER_LANDSCAPE = (792.0, 612.0)
MM = 72 / 25.4


@pytest.fixture
def three_images(tmp_path: Path) -> list[Path]:
    """A landscape JPEG, a portrait PNG with alpha and a square GIF."""
    rgba = gradient(200, 300).convert("RGBA")
    rgba.putalpha(128)
    return [
        save(gradient(300, 200), tmp_path / "wide.jpg", "JPEG"),
        save(rgba, tmp_path / "tall.png", "PNG"),
        save(gradient(100, 100).convert("P"), tmp_path / "square.gif", "GIF"),
    ]


def test_a_page_per_image_in_order(
    three_images: list[Path], out_dir: Path, limits: Limits, open_pdf: type[Pdf]
) -> None:
    (output,) = images_to_pdf([as_input(p) for p in three_images], out_dir, ImagePdfOptions(), limits=limits)

    assert (output.name, output.content_type, output.path) == (
        "images.pdf",
        "application/pdf",
        out_dir / "images.pdf",
    )
    pdf = open_pdf(output.path)
    assert [pdf.page_size(i) for i in range(len(pdf))] == [A4_LANDSCAPE, A4, A4]


@pytest.mark.parametrize(
    ("options", "sizes"),
    [
        ({"orientation": "portrait"}, [A4, A4, A4]),
        ({"orientation": "landscape"}, [A4_LANDSCAPE] * 3),
        ({"page_size": "Letter"}, [LETTER_LANDSCAPE, LETTER, LETTER]),
        ({"page_size": "Letter", "orientation": "landscape"}, [LETTER_LANDSCAPE] * 3),
        ({"page_size": "fit"}, [(300.0, 200.0), (200.0, 300.0), (100.0, 100.0)]),
        (
            {"page_size": "fit", "orientation": "portrait", "margin_mm": 30},
            [(300.0, 200.0), (200.0, 300.0), (100.0, 100.0)],
        ),
    ],
)
def test_page_sizes(
    options: dict[str, object],
    sizes: list[tuple[float, float]],
    three_images: list[Path],
    out_dir: Path,
    limits: Limits,
    open_pdf: type[Pdf],
) -> None:
    parsed = parse_options(ImagePdfOptions, options)
    (output,) = images_to_pdf([as_input(p) for p in three_images], out_dir, parsed, limits=limits)
    pdf = open_pdf(output.path)
    assert [pdf.page_size(i) for i in range(len(pdf))] == sizes


def test_one_image_is_named_after_it(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    path = save(gradient(30, 20), tmp_path / "x.jpg", "JPEG")
    (output,) = images_to_pdf([as_input(path, "Été 2024.jpg")], out_dir, ImagePdfOptions(), limits=limits)
    assert output.name == "Ete_2024.pdf"
    (output,) = images_to_pdf([as_input(path, "фото.jpg")], out_dir, ImagePdfOptions(), limits=limits)
    assert output.name == "image.pdf"


def test_image_fills_the_printable_area_centred_within_the_margins(
    tmp_path: Path, out_dir: Path, limits: Limits, open_pdf: type[Pdf]
) -> None:
    black = save(Image.new("RGB", (400, 400), (0, 0, 0)), tmp_path / "black.png", "PNG")

    (output,) = images_to_pdf([as_input(black)], out_dir, ImagePdfOptions(margin_mm=20), limits=limits)

    page = open_pdf(output.path).render(0)  # one pixel per point
    width, height = page.size
    side = width - 2 * 20 * MM  # a square image on a portrait page: as wide as the printable width
    top = (height - side) / 2
    inside = [(width / 2, height / 2), (20 * MM + 3, top + 3), (width - 20 * MM - 3, top + side - 3)]
    outside = [
        (20 * MM - 3, height / 2),
        (width - 20 * MM + 3, height / 2),
        (width / 2, top - 3),
        (width / 2, top + side + 3),
    ]
    for x, y in inside:
        assert page.getpixel((int(x), int(y))) == (0, 0, 0), (x, y)
    for x, y in outside:
        assert page.getpixel((int(x), int(y))) == (255, 255, 255), (x, y)


def test_transparency_is_flattened_onto_white(
    tmp_path: Path, out_dir: Path, limits: Limits, open_pdf: type[Pdf]
) -> None:
    picture = Image.new("RGBA", (100, 100), (0, 0, 255, 255))
    picture.paste((255, 0, 0, 0), (0, 0, 50, 100))  # invisible red on the left
    source = as_input(save(picture, tmp_path / "half.png", "PNG"))

    (output,) = images_to_pdf([source], out_dir, ImagePdfOptions(page_size="fit"), limits=limits)

    page = open_pdf(output.path).render(0)
    assert close_to(pixel(page, (25, 50)), (255, 255, 255), 2)
    assert close_to(pixel(page, (75, 50)), (0, 0, 255), 2)


# -- orientation, by rendering -------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(9))
def test_real_photo_pages_are_upright(
    orientation: int, out_dir: Path, limits: Limits, open_pdf: type[Pdf]
) -> None:
    source = as_input(sample(f"orientation/Landscape_{orientation}.jpg"))

    (output,) = images_to_pdf([source], out_dir, ImagePdfOptions(), limits=limits)

    pdf = open_pdf(output.path)
    assert pdf.page_size(0) == A4_LANDSCAPE
    page = pdf.render(0, scale=0.5)
    bbox = ImageChops.difference(page, Image.new("RGB", page.size, "white")).getbbox()
    assert bbox is not None
    assert_upright_photo(page.crop(bbox))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_stored_orientation_is_shown_upright(
    orientation: int, image_format: str, tmp_path: Path, out_dir: Path, limits: Limits, open_pdf: type[Pdf]
) -> None:
    stored, exif = stored_with_orientation(card(120, 80), orientation)
    path = save(stored, tmp_path / "card", image_format, exif=exif)

    (output,) = images_to_pdf([as_input(path)], out_dir, ImagePdfOptions(page_size="fit"), limits=limits)

    pdf = open_pdf(output.path)
    assert pdf.page_size(0) == (120.0, 80.0)
    assert_upright_card(pdf.render(0))


# -- embedding -----------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [1, 6])
def test_jpeg_is_embedded_as_is(
    orientation: int, tmp_path: Path, out_dir: Path, limits: Limits, open_pdf: type[Pdf]
) -> None:
    stored, exif = stored_with_orientation(noise(1200, 900), orientation)
    path = save(stored, tmp_path / "photo.jpg", "JPEG", quality=92, exif=exif)
    jpeg_size = path.stat().st_size
    assert jpeg_size > 900_000

    (output,) = images_to_pdf([as_input(path)], out_dir, ImagePdfOptions(), limits=limits)

    pdf_bytes = output.path.read_bytes()
    original = path.read_bytes()
    scan = original.index(b"\xff\xda")  # the coded picture, from its start of scan to the end
    (embedded,) = embedded_jpegs(pdf_bytes)
    assert embedded.endswith(original[scan:])
    assert b"/DCTDecode" in pdf_bytes
    assert b"ASCII85Decode" not in pdf_bytes
    assert len(pdf_bytes) <= jpeg_size * 1.05 + 10_000
    assert len(open_pdf(output.path)) == 1


@pytest.fixture
def gps_jpeg(tmp_path: Path) -> Path:
    """A photo carrying GPS EXIF, XMP (with a position too), an IPTC city and a comment."""
    data = image_bytes(gradient(300, 200), "JPEG", quality=90, exif=gps_exif(), xmp=XMP, comment=b"at home")
    path = tmp_path / "holiday.jpg"
    path.write_bytes(with_iptc(data))
    with Image.open(path) as original:
        assert original.getexif().get_ifd(0x8825), "the sample should carry GPS data"
        assert {"xmp", "photoshop", "comment"} <= set(original.info)
    return path


def test_embedded_jpeg_loses_exif_gps_xmp_iptc_and_comments(
    gps_jpeg: Path, out_dir: Path, limits: Limits
) -> None:
    (output,) = images_to_pdf([as_input(gps_jpeg)], out_dir, ImagePdfOptions(), limits=limits)

    pdf_bytes = output.path.read_bytes()
    for needle in (b"Exif\x00\x00", b"PhoneMaker", b"GPSLatitude", b"Paris", b"at home", b"8BIM", b"xmpmeta"):
        assert needle not in pdf_bytes, needle
    (embedded,) = embedded_jpegs(pdf_bytes)
    kept = {marker for marker, _payload in jpeg_markers(embedded) if 0xE0 <= marker <= 0xEF or marker == 0xFE}
    assert kept == {0xE0}  # JFIF only: no APP1 (EXIF, XMP), APP13 (IPTC) or COM
    with Image.open(io.BytesIO(embedded)) as image, Image.open(gps_jpeg) as original:
        assert len(image.getexif()) == 0
        assert image.tobytes() == original.tobytes()  # the same coded picture: not re-encoded
    assert output.details == {
        "metadata": {"removed": ["camera", "comment", "copyright", "datetime", "exif", "gps", "iptc", "xmp"],
                     "kept": []}
    }  # fmt: skip


def test_embedded_jpeg_has_no_metadata_for_exiftool(
    gps_jpeg: Path, tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    (output,) = images_to_pdf([as_input(gps_jpeg)], out_dir, ImagePdfOptions(), limits=limits)
    (embedded,) = embedded_jpegs(output.path.read_bytes())
    extracted = tmp_path / "extracted.jpg"
    extracted.write_bytes(embedded)

    assert leaked(exiftool_tags(gps_jpeg))  # exiftool does see them in the input
    assert leaked(exiftool_tags(extracted)) == []
    assert leaked(exiftool_tags(output.path)) == []


def test_real_gps_sample_leaves_no_trace_in_the_pdf(out_dir: Path, limits: Limits) -> None:
    source = as_input(sample("pillow/exif_gps.jpg"))

    (output,) = images_to_pdf([source], out_dir, ImagePdfOptions(), limits=limits)

    pdf_bytes = output.path.read_bytes()
    assert b"Exif\x00\x00" not in pdf_bytes
    (embedded,) = embedded_jpegs(pdf_bytes)
    assert 0xE1 not in {marker for marker, _payload in jpeg_markers(embedded)}
    assert "gps" in output.details["metadata"]["removed"]


def test_mpo_embeds_only_its_first_picture(out_dir: Path, limits: Limits, open_pdf: type[Pdf]) -> None:
    path = sample("pillow/frozenpond.mpo")

    (output,) = images_to_pdf([as_input(path)], out_dir, ImagePdfOptions(page_size="fit"), limits=limits)

    (embedded,) = embedded_jpegs(output.path.read_bytes())
    assert embedded.count(b"\xff\xd8") == 1  # no second camera
    assert b"MPF\x00" not in embedded
    assert output.path.stat().st_size < path.stat().st_size * 0.6
    assert open_pdf(output.path).page_size(0) == (640.0, 480.0)


def test_other_images_are_embedded_losslessly(
    tmp_path: Path, out_dir: Path, limits: Limits, open_pdf: type[Pdf]
) -> None:
    picture = gradient(120, 80)
    source = as_input(save(picture, tmp_path / "exact.png", "PNG"))

    (output,) = images_to_pdf([source], out_dir, ImagePdfOptions(page_size="fit"), limits=limits)

    pdf_bytes = output.path.read_bytes()
    assert b"/FlateDecode" in pdf_bytes
    assert b"/DCTDecode" not in pdf_bytes
    assert b"ASCII85Decode" not in pdf_bytes
    (image_object,) = [obj for obj in open_pdf(output.path).document[0].get_objects() if obj.type == 3]
    extracted = image_object.get_bitmap().to_pil().convert("RGB")
    assert extracted.tobytes() == picture.tobytes()


def test_cmyk_jpeg_is_converted_not_inverted(out_dir: Path, limits: Limits, open_pdf: type[Pdf]) -> None:
    path = sample("pillow/pil_sample_cmyk.jpg")
    with Image.open(path) as original:
        expected = ImageStat.Stat(original.convert("RGB")).mean

    (output,) = images_to_pdf([as_input(path)], out_dir, ImagePdfOptions(page_size="fit"), limits=limits)

    page = open_pdf(output.path).render(0)
    assert page.size == (100, 100)
    assert close_to(tuple(ImageStat.Stat(page).mean), tuple(expected), 4)


def test_same_inputs_give_identical_bytes_wherever_they_are(
    three_images: list[Path], tmp_path: Path, limits: Limits
) -> None:
    # The worker fetches inputs to a new temporary directory, without extensions, on each attempt.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copies = [Path(shutil.copy(p, elsewhere / str(i))) for i, p in enumerate(three_images)]
    produced = []
    for run, paths in (("first", three_images), ("second", copies)):
        out = tmp_path / run
        out.mkdir()
        inputs = [as_input(path, original.name) for path, original in zip(paths, three_images, strict=True)]
        (output,) = images_to_pdf(inputs, out, ImagePdfOptions(), limits=limits)
        produced.append(output.path.read_bytes())
    assert produced[0] == produced[1]


# -- refusals ------------------------------------------------------------------------------


def test_truncated_jpeg_is_corrupt(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    data = (save(noise(300, 200), tmp_path / "whole.jpg", "JPEG")).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])

    with pytest.raises(CorruptInput, match=r"cut\.jpg"):
        images_to_pdf([as_input(cut)], out_dir, ImagePdfOptions(), limits=limits)


def test_broken_png_is_corrupt(out_dir: Path, limits: Limits) -> None:
    with pytest.raises(CorruptInput):
        images_to_pdf([as_input(sample("pillow/broken.png"))], out_dir, ImagePdfOptions(), limits=limits)


def test_too_many_pages(three_images: list[Path], out_dir: Path) -> None:
    with pytest.raises(InputTooLarge, match="limit is 2"):
        images_to_pdf(
            [as_input(p) for p in three_images], out_dir, ImagePdfOptions(), limits=Limits(max_pages=2)
        )


def test_too_many_pixels(three_images: list[Path], out_dir: Path) -> None:
    with pytest.raises(InputTooLarge):
        images_to_pdf(
            [as_input(p) for p in three_images], out_dir, ImagePdfOptions(), limits=Limits(max_pixels=50_000)
        )


@pytest.mark.parametrize(
    "raw",
    [
        {"page_size": "A3"},
        {"margin_mm": 101},
        {"margin_mm": -1},
        {"margin_mm": "10"},
        {"orientation": "up"},
        {"dpi": 300},
    ],
)
def test_invalid_options_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(InvalidOptions):
        parse_options(ImagePdfOptions, raw)


def test_whole_millimetres_are_accepted() -> None:
    assert parse_options(ImagePdfOptions, {"margin_mm": 5}).margin_mm == 5.0


def test_tiff_turned_by_its_tag(out_dir: Path, limits: Limits, open_pdf: type[Pdf]) -> None:
    # Stored 88x590 and tagged "turn 90° clockwise": a 590x88 line of text once upright.
    source = as_input(sample("pillow/g4_orientation_6.tif"))

    (output,) = images_to_pdf([source], out_dir, ImagePdfOptions(page_size="fit"), limits=limits)

    assert open_pdf(output.path).page_size(0) == (590.0, 88.0)


def test_album_is_a_well_formed_pdf_for_qpdf(three_images: list[Path], out_dir: Path, limits: Limits) -> None:
    """The album is written by exportd's own streaming writer: qpdf (through pikepdf) checks its syntax."""
    pikepdf = pytest.importorskip("pikepdf", reason="pikepdf comes with the dev dependencies (img2pdf)")
    inputs = [as_input(p) for p in three_images] + [as_input(sample("pillow/pil_sample_cmyk.jpg"))]
    (out,) = images_to_pdf(inputs, out_dir, parse_options(ImagePdfOptions, {}), limits=limits)
    with pikepdf.open(out.path) as document:
        assert document.check_pdf_syntax() == []
        assert len(document.pages) == 4
        filters = {str(x.Filter) for page in document.pages for x in page.obj.Resources.XObject.values()}
    assert filters == {"/DCTDecode", "/FlateDecode"}  # the JPEGs as they are, the others lossless


BROKEN_JPEGS = ("photoshop-200dpi-broken.jpg", "junk_jpeg_header.jpg", "truncated_app14.jpg")


@pytest.mark.parametrize("name", BROKEN_JPEGS)
def test_jpeg_whose_markers_cannot_be_followed_is_not_passed_through(name: str) -> None:
    assert passthrough(sample(f"pillow/{name}").read_bytes()) is None
    assert passthrough(sample("pillow/exif_gps.jpg").read_bytes()) is not None


def test_jpegs_pillow_decodes_but_a_pdf_would_break_are_re_encoded_not_failed(
    out_dir: Path, limits: Limits, open_pdf: type[Pdf]
) -> None:
    good = sample("orientation/Landscape_1.jpg")
    paths = [sample(f"pillow/{name}") for name in BROKEN_JPEGS] + [good]

    (output,) = images_to_pdf(
        [as_input(p) for p in paths], out_dir, ImagePdfOptions(page_size="fit"), limits=limits
    )

    pdf = open_pdf(output.path)
    assert len(pdf) == 4
    for index, path in enumerate(paths):
        # What a PDF reader shows is the picture Pillow decodes, not a blank or grey page.
        rendered = pdf.render(index)
        with Image.open(path) as original:
            expected = original.convert("RGB").resize(rendered.size)
        difference = ImageStat.Stat(ImageChops.difference(rendered, expected)).mean
        assert max(difference) < 8, f"{path.name}: page differs from the decoded picture by {difference}"
    # The good photo still travels as it is: its coded data is in the PDF unchanged.
    original = good.read_bytes()
    scan = original.index(b"\xff\xda")
    assert any(stream.endswith(original[scan:]) for stream in embedded_jpegs(output.path.read_bytes()))
