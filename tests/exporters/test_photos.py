"""Photos from phones and cameras: every input format, every output format, orientation, metadata,
colour and the operations, checked on the pixels of the outputs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import EpsImagePlugin, Image, ImageCms, ImageStat

from exporters import images
from exporters.base import InputFile, Limits, OutputFile, UnsupportedInput, parse_options
from exporters.geometry import MATRIX_OF_METHOD, Transform
from exporters.images import (
    ENCODERS,
    ImageOptions,
    JpegOptions,
    LossyImageOptions,
    WebpOptions,
    convert_each,
    to_gif,
    to_jpeg,
    to_png,
    to_tiff,
    to_webp,
)
from exporters.sniff import sniff
from tests.exporters.samples import (
    BLUE,
    GREEN,
    RED,
    YELLOW,
    as_input,
    assert_upright_card,
    card,
    close_to,
    corner_means,
    exiftool_tags,
    gps_exif,
    gradient,
    leaked,
    noise,
    photo_like,
    pixel,
    psnr,
    sample,
    save,
    stored_with_orientation,
)

heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed: HEIC is not supported")

ALL_FORMATS = [name for name in ENCODERS if name != "heic" or images.HEIF_WRITES]


def opened(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return image


def convert(name: str, source: InputFile, out_dir: Path, options: ImageOptions | None = None,
            limits: Limits | None = None) -> OutputFile:  # fmt: skip
    (output,) = convert_each(
        [source], out_dir, options or LossyImageOptions(), limits=limits or Limits(), encoder=ENCODERS[name]
    )
    return output


@pytest.fixture(scope="module")
def photo_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 MP photograph-like JPEG (texture, edges, noise: not flat colour)."""
    return save(photo_like(2000, 1500), tmp_path_factory.mktemp("photo") / "photo.jpg", "JPEG", quality=90)


def frames(path: Path) -> int:
    with Image.open(path) as image:
        return getattr(image, "n_frames", 1)


# -- the geometry of turns and flips ---------------------------------------------------------


def test_transform_matrices_match_pillow() -> None:
    probe = Image.new("L", (3, 2))
    probe.putdata([1, 2, 3, 4, 5, 6])
    for first in MATRIX_OF_METHOD:
        for second in MATRIX_OF_METHOD:
            combined = Transform.of(first, second)
            expected = probe.transpose(first).transpose(second)
            assert combined.apply(probe).tobytes() == expected.tobytes(), (first, second)


# -- inputs ----------------------------------------------------------------------------------


def test_heif_and_avif_are_told_apart_by_their_codec() -> None:
    # Named .heif by the Pillow project, but an HEVC picture: a HEIC.
    assert as_input(sample("pillow/avif_hopper.heif")).content_type == "image/heic"
    assert as_input(sample("pillow/avif_hopper.avif")).content_type == "image/avif"
    avif = io.BytesIO()
    gradient(64, 64).save(avif, "AVIF")
    data = bytearray(avif.getvalue())
    data[8:12] = b"heic"  # a lying major brand: the av01 item still decides
    assert sniff(bytes(data[:4096])) == "image/avif"


@pytest.mark.parametrize(
    ("relative", "size", "mode"),
    [
        ("pillow/avif_hopper.heif", (128, 128), "RGB"),
        ("pillow/avif_hopper.avif", (128, 128), "RGB"),
        ("pillow/avif_transparency.avif", (64, 64), "RGBA"),
        ("pillow/tiff_strip_cmyk_jpeg.tif", (100, 100), "RGB"),
        ("pillow/multipage.tiff", (10, 10), "RGB"),
    ],
)
def test_real_inputs_convert(relative: str, size: tuple[int, int], mode: str, out_dir: Path) -> None:
    output = convert("png", as_input(sample(relative)), out_dir, ImageOptions())
    image = opened(output.path)
    assert (image.size, image.mode) == (size, mode)


def test_heic_from_a_phone_like_encoder(tmp_path: Path, out_dir: Path) -> None:
    path = save(gradient(300, 200), tmp_path / "IMG_0001.HEIC", "HEIF", quality=90)
    source = as_input(path)
    assert source.content_type == "image/heic"

    output = convert("jpeg", source, out_dir, JpegOptions(width=150))

    image = opened(output.path)
    assert (image.format, image.size) == ("JPEG", (150, 100))
    assert close_to(pixel(image, (140, 5)), pixel(gradient(150, 100), (140, 5)), 12)


def test_mpo_gives_its_primary_picture(tmp_path: Path, out_dir: Path) -> None:
    left, right = Image.new("RGB", (64, 48), RED), Image.new("RGB", (64, 48), BLUE)
    path = tmp_path / "pond.mpo"
    left.save(path, "MPO", save_all=True, append_images=[right])
    source = as_input(path)
    assert source.content_type == "image/jpeg"

    output = convert("png", source, out_dir)

    image = opened(output.path)
    assert close_to(pixel(image, (32, 24)), RED, 6)
    assert "mpf" in output.details["metadata"]["removed"]


def test_16_bit_png_is_scaled_to_8_bits(tmp_path: Path, out_dir: Path) -> None:
    deep = Image.new("I;16", (256, 2))
    deep.putdata([x * 257 for x in range(256)] * 2)
    output = convert("png", as_input(save(deep, tmp_path / "deep.png", "PNG")), out_dir)
    image = opened(output.path)
    assert image.mode == "L"
    assert [image.getpixel((x, 0)) for x in (0, 64, 255)] == [0, 64, 255]


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "eps"),
        (b"\xc5\xd0\xd3\xc6" + bytes(28), "eps-binary"),
        (b"8BPS\x00\x01" + bytes(20), "psd"),
        (b"SIMPLE  =                    T" + b" " * 50, "fits"),
        (b"DDS |" + bytes(120), "dds"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "svg"),
    ],
)
def test_other_formats_are_refused_even_named_png(
    head: bytes, kind: str, tmp_path: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ghostscript(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ghostscript was about to run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    path = tmp_path / "photo.png"
    path.write_bytes(head)

    with pytest.raises(UnsupportedInput):
        to_png([as_input(path)], out_dir, ImageOptions(), limits=Limits())


# -- outputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_every_output_format(name: str, tmp_path: Path, out_dir: Path) -> None:
    source = as_input(save(card(120, 80), tmp_path / "card.jpg", "JPEG", quality=95))

    output = convert(name, source, out_dir, LossyImageOptions(width=60))

    encoder = ENCODERS[name]
    assert output.name == f"card.{encoder.extension}"
    assert output.content_type == encoder.content_type
    image = opened(output.path)
    assert image.format == encoder.pillow_format
    assert image.size == (60, 40)
    assert_upright_card(image)


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_outputs_are_reproducible(name: str, tmp_path: Path) -> None:
    source = as_input(save(noise(64, 48), tmp_path / "in.png", "PNG"))
    produced = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        produced.append(convert(name, source, tmp_path / run).path.read_bytes())
    assert produced[0] == produced[1]


def animation(tmp_path: Path, image_format: str, count: int = 3) -> Path:
    colours = [RED, GREEN, BLUE, YELLOW][:count]
    shots = [Image.new("RGBA", (40, 30), (*c, 255)) for c in colours]
    path = tmp_path / f"blink.{image_format.lower()}"
    shots[0].save(path, image_format, save_all=True, append_images=shots[1:], duration=80, loop=0)
    return path


@pytest.mark.parametrize("image_format", ["GIF", "WEBP", "PNG"])
@pytest.mark.parametrize("name", ["gif", "webp", "png"])
def test_animations_stay_animated(image_format: str, name: str, tmp_path: Path, out_dir: Path) -> None:
    source = as_input(animation(tmp_path, image_format))

    output = convert(name, source, out_dir, LossyImageOptions(width=20))

    assert frames(output.path) == 3
    assert output.details["frames"] == 3
    with Image.open(output.path) as image:
        assert image.size == (20, 15)
        image.seek(2)
        assert close_to(pixel(image.convert("RGB"), (10, 7)), BLUE, 10)


def test_first_frame_only_and_formats_without_animation(tmp_path: Path, out_dir: Path) -> None:
    source = as_input(animation(tmp_path, "GIF"))
    gif = convert("gif", source, out_dir, LossyImageOptions(first_frame_only=True))
    jpeg = convert("jpeg", source, out_dir)
    assert frames(gif.path) == 1
    assert close_to(pixel(opened(jpeg.path), (20, 15)), RED, 6)


def test_multipage_tiff_keeps_its_pages_as_tiff(out_dir: Path) -> None:
    source = as_input(sample("pillow/multipage.tiff"))
    (tiff,) = to_tiff([source], out_dir, ImageOptions(), limits=Limits())
    assert frames(tiff.path) == 3
    (png,) = to_png([source], out_dir, ImageOptions(), limits=Limits())
    assert frames(png.path) == 1


def test_gif_keeps_transparency(tmp_path: Path, out_dir: Path) -> None:
    picture = Image.new("RGBA", (40, 40), (0, 0, 255, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 20, 40))
    (output,) = to_gif([as_input(save(picture, tmp_path / "half.png", "PNG"))], out_dir, ImageOptions(),
                       limits=Limits())  # fmt: skip
    image = opened(output.path).convert("RGBA")
    assert pixel(image, (5, 20))[3] == 0
    assert close_to(pixel(image, (35, 20)), (0, 0, 255, 255), 4)


@pytest.mark.parametrize("name", ["jpeg", "bmp"])
def test_formats_without_alpha_flatten_onto_the_background(name: str, tmp_path: Path, out_dir: Path) -> None:
    picture = Image.new("RGBA", (40, 40), (0, 0, 255, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 20, 40))
    source = as_input(save(picture, tmp_path / "half.png", "PNG"))
    image = opened(convert(name, source, out_dir, LossyImageOptions(background="#f00")).path)
    assert image.mode == "RGB"
    assert close_to(pixel(image, (5, 20)), (255, 0, 0), 6)


def test_progressive_jpeg_lossless_webp_and_dpi(tmp_path: Path, out_dir: Path) -> None:
    picture = noise(64, 48)
    source = as_input(save(picture, tmp_path / "in.png", "PNG"))

    (jpeg,) = to_jpeg([source], out_dir, JpegOptions(progressive=True, dpi=300), limits=Limits())
    (webp,) = to_webp([source], out_dir, WebpOptions(lossless=True), limits=Limits())

    with Image.open(jpeg.path) as image:
        assert image.info.get("progressive") and image.info["dpi"] == (300, 300)
    assert opened(webp.path).convert("RGB").tobytes() == picture.tobytes()


# -- orientation, by pixels ------------------------------------------------------------------


def oriented(tmp_path: Path, image_format: str, orientation: int) -> Path:
    stored, exif = stored_with_orientation(card(120, 80), orientation)
    params: dict[str, object] = {"exif": exif}
    if image_format in ("JPEG", "WEBP", "AVIF", "HEIF"):
        params["quality"] = 95
    if image_format == "WEBP":
        params["lossless"] = True
    return save(stored, tmp_path / f"card-{orientation}.{image_format.lower()}", image_format, **params)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("image_format", ["TIFF", "PNG", "WEBP", "AVIF", "HEIF"])
def test_every_orientation_in_every_format_comes_out_upright(
    image_format: str, orientation: int, tmp_path: Path, out_dir: Path
) -> None:
    source = as_input(oriented(tmp_path, image_format, orientation))

    output = convert("png", source, out_dir, ImageOptions())

    image = opened(output.path)
    assert image.size == (120, 80)
    assert_upright_card(image)
    assert image.getexif().get(0x0112) in (None, 1)


def test_kept_metadata_never_carries_the_orientation(tmp_path: Path, out_dir: Path) -> None:
    stored, exif_bytes = stored_with_orientation(card(120, 80), 6)
    exif = Image.Exif()
    exif.load(exif_bytes)
    exif[0x8298] = "(c) Ann"
    source = as_input(save(stored, tmp_path / "card.jpg", "JPEG", exif=exif.tobytes(), quality=95))

    output = convert("jpeg", source, out_dir, LossyImageOptions(keep_metadata=("copyright",)))

    image = opened(output.path)
    assert_upright_card(image)
    assert image.getexif().get(0x0112) is None
    assert image.getexif().get(0x8298) == "(c) Ann"


# -- operations ------------------------------------------------------------------------------


def test_rotate_and_flip_after_orientation(tmp_path: Path, out_dir: Path) -> None:
    source = as_input(oriented(tmp_path, "JPEG", 6))

    turned = opened(convert("png", source, out_dir, ImageOptions(rotate=90)).path)
    mirrored = opened(convert("png", source, out_dir, ImageOptions(flip="horizontal")).path)

    assert turned.size == (80, 120)
    corners = corner_means(turned, 0.2)  # the upright card turned clockwise: blue top left
    assert close_to(corners["top_left"], BLUE, 30) and close_to(corners["top_right"], RED, 30)
    corners = corner_means(mirrored, 0.2)
    assert close_to(corners["top_left"], GREEN, 30) and close_to(corners["bottom_right"], BLUE, 30)


def test_crop_box_is_taken_from_the_upright_image(tmp_path: Path, out_dir: Path) -> None:
    source = as_input(oriented(tmp_path, "JPEG", 8))
    # The upright card's top right quarter is green.
    output = convert("png", source, out_dir, ImageOptions(crop=(64, 4, 52, 32)))
    image = opened(output.path)
    assert image.size == (52, 32)
    assert close_to(tuple(ImageStat.Stat(image).mean), GREEN, 8)


@pytest.mark.parametrize(
    ("gravity", "colour"), [("west", (255, 0, 0)), ("center", (0, 255, 0)), ("east", (0, 0, 255))]
)
def test_cover_keeps_the_part_gravity_names(
    gravity: str, colour: tuple[int, int, int], tmp_path: Path, out_dir: Path
) -> None:
    stripes = Image.new("RGB", (600, 200), (255, 0, 0))
    stripes.paste((0, 255, 0), (200, 0, 400, 200))
    stripes.paste((0, 0, 255), (400, 0, 600, 200))
    source = as_input(save(stripes, tmp_path / "stripes.png", "PNG"))
    options = ImageOptions(width=100, height=100, fit="cover", gravity=gravity)
    image = opened(convert("png", source, out_dir, options).path)
    assert close_to(pixel(image, (50, 50)), colour, 4)


def test_contain_places_by_gravity(tmp_path: Path, out_dir: Path) -> None:
    source = as_input(save(Image.new("RGB", (200, 100), (0, 0, 0)), tmp_path / "b.png", "PNG"))
    options = ImageOptions(width=200, height=200, fit="contain", gravity="north", background="#fff")
    image = opened(convert("png", source, out_dir, options).path)
    assert image.getpixel((100, 50)) == (0, 0, 0)
    assert image.getpixel((100, 150)) == (255, 255, 255)


def test_crop_and_rotate_options_are_validated() -> None:
    from exporters.base import InvalidOptions

    for raw in ({"crop": [1, 2, 3]}, {"crop": "0,0,1,1"}, {"crop": [0, 0, -1, 5]}, {"rotate": 45},
                {"flip": "diagonal"}, {"keep_metadata": ["gps"]}, {"gravity": "up"}):  # fmt: skip
        with pytest.raises(InvalidOptions):
            parse_options(JpegOptions, raw)
    parsed = parse_options(JpegOptions, {"keep_metadata": ["datetime", "copyright", "datetime"]})
    assert parsed.keep_metadata == ("copyright", "datetime")


# -- metadata --------------------------------------------------------------------------------


@pytest.fixture
def gps_photo(tmp_path: Path) -> Path:
    return save(gradient(120, 80), tmp_path / "gps.jpg", "JPEG", exif=gps_exif(), quality=90)


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_no_gps_or_exif_in_any_output(name: str, gps_photo: Path, out_dir: Path) -> None:
    output = convert(name, as_input(gps_photo), out_dir)

    data = output.path.read_bytes()
    assert b"Exif\x00\x00" not in data and b"PhoneMaker" not in data
    image = opened(output.path)
    assert not image.getexif().get_ifd(0x8825)
    assert output.details["metadata"]["removed"] == ["camera", "copyright", "datetime", "gps"]


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_exiftool_finds_no_metadata_in_any_output(name: str, gps_photo: Path, out_dir: Path) -> None:
    output = convert(name, as_input(gps_photo), out_dir)
    assert leaked(exiftool_tags(output.path)) == []


@pytest.mark.parametrize("name", ["jpeg", "png", "webp", "tiff", "avif"])
def test_kept_groups_and_nothing_else(name: str, gps_photo: Path, out_dir: Path) -> None:
    options = LossyImageOptions(keep_metadata=("copyright", "datetime"))

    output = convert(name, as_input(gps_photo), out_dir, options)

    exif = opened(output.path).getexif()
    assert exif.get(0x8298) == "(c) Ann Example"
    if name == "tiff":  # a TIFF keeps the capture date as its DateTime (no EXIF sub-IFD)
        assert exif.get(0x0132) == "2024:07:14 12:34:56"
    else:
        assert exif.get_ifd(0x8769).get(0x9003) == "2024:07:14 12:34:56"
    assert not exif.get_ifd(0x8825)
    assert exif.get(0x010F) is None  # camera was not asked for
    assert output.details["metadata"] == {"removed": ["camera", "gps"], "kept": ["copyright", "datetime"]}
    if name in ("jpeg", "png", "tiff"):
        tags = exiftool_tags(output.path)
        assert not [key for key in tags if key.startswith("GPS")]
        assert "IFD0:Copyright" in tags


# -- colour ----------------------------------------------------------------------------------


def test_wide_gamut_profile_is_converted_or_kept(out_dir: Path, tmp_path: Path) -> None:
    source = as_input(sample("pillow/avif_xmp_tags_orientation.avif"))
    with Image.open(source.path) as original:
        profile = original.info["icc_profile"]
        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
        assert "ColorMatch" in description
        raw = original.convert("RGB")
        srgb = ImageCms.profileToProfile(
            raw, ImageCms.ImageCmsProfile(io.BytesIO(profile)), ImageCms.createProfile("sRGB")
        )
        assert srgb is not None

    converted = opened(convert("png", source, out_dir, ImageOptions()).path)
    (tmp_path / "kept").mkdir()
    kept = opened(convert("png", source, tmp_path / "kept", ImageOptions(keep_icc=True)).path)

    assert "icc_profile" not in converted.info
    assert kept.info["icc_profile"] == profile
    mean = tuple(ImageStat.Stat(converted).mean)
    assert close_to(mean, tuple(ImageStat.Stat(srgb).mean), 2)
    assert not close_to(mean, tuple(ImageStat.Stat(raw).mean), 2)  # the conversion did something
    assert close_to(tuple(ImageStat.Stat(kept).mean), tuple(ImageStat.Stat(raw).mean), 2)


def test_cmyk_in_tiff_becomes_rgb(out_dir: Path) -> None:
    source = as_input(sample("pillow/tiff_strip_cmyk_jpeg.tif"))
    with Image.open(source.path) as original:
        expected = tuple(ImageStat.Stat(original.convert("RGB")).mean)
    image = opened(convert("jpeg", source, out_dir, LossyImageOptions(quality=95)).path)
    assert image.mode == "RGB"
    assert close_to(tuple(ImageStat.Stat(image).mean), expected, 4)


@pytest.mark.parametrize("width", [1600, 1000, 700, 450, 200])
def test_reduced_jpeg_decode_is_as_good_as_a_full_one(width: int, photo_jpeg: Path, out_dir: Path) -> None:
    """Decoding at reduced scale (draft) for speed keeps 40 dB PSNR against the naive full decode."""
    output = convert("png", as_input(photo_jpeg), out_dir, ImageOptions(width=width))
    with Image.open(photo_jpeg) as original:
        reference = original.resize(opened(output.path).size, Image.Resampling.LANCZOS)
    assert psnr(opened(output.path), reference) >= 40.0
