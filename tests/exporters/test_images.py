"""Images to PNG, JPEG and WebP: real files in, outputs reopened and looked at."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageChops, ImageStat, PsdImagePlugin, TiffImagePlugin

from exporters.base import (
    CorruptInput,
    InputFile,
    InputTooLarge,
    InvalidOptions,
    Limits,
    OutputFile,
    UnsupportedInput,
    parse_options,
)
from exporters.images import ImageOptions, LossyImageOptions, UniqueNames, safe_stem, to_jpeg, to_png, to_webp
from tests.exporters.samples import (
    as_input,
    assert_upright_card,
    assert_upright_photo,
    card,
    close_to,
    corner_means,
    gradient,
    noise,
    pixel,
    sample,
    save,
    stored_with_orientation,
)

# A LossyImageOptions is also an ImageOptions, so every image converter accepts one.
AnyConverter = Callable[..., list[OutputFile]]


def opened(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return image


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3000x2000 photo-sized JPEG."""
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    return save(gradient(3000, 2000), path, "JPEG", quality=90)


@pytest.fixture
def small_png(tmp_path: Path) -> Path:
    """A 300x200 RGB PNG."""
    return save(gradient(300, 200), tmp_path / "small.png", "PNG")


# -- formats and modes ---------------------------------------------------------------------


def test_each_format_is_written_with_its_extension_and_type(
    small_png: Path, out_dir: Path, limits: Limits
) -> None:
    converters: list[tuple[AnyConverter, str, str, str]] = [
        (to_png, "PNG", "small.png", "image/png"),
        (to_jpeg, "JPEG", "small.jpg", "image/jpeg"),
        (to_webp, "WEBP", "small.webp", "image/webp"),
    ]
    for convert, pillow_format, name, content_type in converters:
        (output,) = convert([as_input(small_png)], out_dir, LossyImageOptions(), limits=limits)
        assert (output.name, output.content_type) == (name, content_type)
        assert output.path.parent == out_dir
        image = opened(output.path)
        assert (image.format, image.size) == (pillow_format, (300, 200))


def test_png_and_webp_keep_transparency(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    picture = Image.new("RGBA", (64, 64), (0, 0, 255, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 32, 64))
    source = as_input(save(picture, tmp_path / "half.png", "PNG"))

    png = opened(to_png([source], out_dir, ImageOptions(), limits=limits)[0].path)
    webp = opened(to_webp([source], out_dir, LossyImageOptions(), limits=limits)[0].path)

    for image in (png, webp):
        assert image.mode == "RGBA"
        assert pixel(image, (8, 32))[3] == 0
        assert pixel(image, (56, 32))[3] == 255


def test_jpeg_flattens_transparency_onto_the_background(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    picture = Image.new("RGBA", (64, 64), (0, 0, 255, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 32, 64))
    source = as_input(save(picture, tmp_path / "half.png", "PNG"))

    (output,) = to_jpeg([source], out_dir, LossyImageOptions(background="#0f0"), limits=limits)

    image = opened(output.path)
    assert image.mode == "RGB"
    assert close_to(pixel(image, (8, 32)), (0, 255, 0), 6)
    assert close_to(pixel(image, (56, 32)), (0, 0, 255), 6)


def test_palette_gif_with_transparency(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    picture = Image.new("P", (40, 40), 1)
    picture.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    picture.paste(0, (0, 0, 20, 40))  # index 0, transparent, on the left half
    source = as_input(save(picture, tmp_path / "logo.gif", "GIF", transparency=0))

    png = opened(to_png([source], out_dir, ImageOptions(), limits=limits)[0].path)
    jpeg = opened(to_jpeg([source], out_dir, LossyImageOptions(), limits=limits)[0].path)

    assert png.mode == "RGBA"
    assert pixel(png, (5, 20))[3] == 0
    assert png.getpixel((35, 20)) == (0, 0, 255, 255)
    assert close_to(pixel(jpeg, (5, 20)), (255, 255, 255), 6)
    assert close_to(pixel(jpeg, (35, 20)), (0, 0, 255), 8)


def test_real_palette_png_with_transparency(out_dir: Path, limits: Limits) -> None:
    source = as_input(sample("pillow/p_trns_single.png"))
    (output,) = to_png([source], out_dir, ImageOptions(), limits=limits)
    image = opened(output.path)
    assert image.mode == "RGBA"
    alpha = image.getchannel("A").getextrema()
    assert alpha == (0, 255)


def test_animated_gif_gives_its_first_frame(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "blink.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)

    (output,) = to_png([as_input(path)], out_dir, ImageOptions(), limits=limits)

    assert opened(output.path).convert("RGB").getpixel((16, 16)) == (255, 0, 0)


def test_16_bit_greyscale_is_scaled_to_8_bits_not_clipped(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    picture = Image.new("I;16", (256, 4))
    for x in range(256):
        for y in range(4):
            picture.putpixel((x, y), x * 257)
    source = as_input(save(picture, tmp_path / "deep.tif", "TIFF"))

    (output,) = to_png([source], out_dir, ImageOptions(), limits=limits)

    image = opened(output.path)
    assert image.mode == "L"
    assert [image.getpixel((x, 0)) for x in (0, 1, 128, 200, 255)] == [0, 1, 128, 200, 255]


def test_float_tiff_is_scaled_to_8_bits(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    picture = Image.new("F", (3, 1))
    picture.putpixel((1, 0), 0.5)
    picture.putpixel((2, 0), 1.0)
    source = as_input(save(picture, tmp_path / "float.tif", "TIFF"))

    (output,) = to_png([source], out_dir, ImageOptions(), limits=limits)

    image = opened(output.path)
    assert [image.getpixel((x, 0)) for x in range(3)] == [0, 128, 255]


def test_bilevel_tiff_with_orientation(out_dir: Path, limits: Limits) -> None:
    # Stored 88 pixels wide and 590 tall, tagged "turn 90° clockwise": a line of text once upright.
    source = as_input(sample("pillow/g4_orientation_6.tif"))
    with Image.open(source.path) as original:
        assert isinstance(original, TiffImagePlugin.TiffImageFile)
        assert original.tag_v2[256] == 88 and original.tag_v2[257] == 590 and original.tag_v2[274] == 6
        original.load()
        upright = original.convert("L")

    (full,) = to_png([source], out_dir, ImageOptions(), limits=limits)
    smaller = out_dir / "smaller"
    smaller.mkdir()
    (half,) = to_png([source], smaller, ImageOptions(width=295), limits=limits)

    image = opened(full.path)
    assert (image.mode, image.size) == ("L", (590, 88))
    assert image.tobytes() == upright.tobytes()
    assert opened(half.path).size == (295, 44)


def test_real_16_bit_tiff_converts(out_dir: Path, limits: Limits) -> None:
    (output,) = to_png([as_input(sample("pillow/16bit.cropped.tif"))], out_dir, ImageOptions(), limits=limits)
    image = opened(output.path)
    assert (image.mode, image.size) == ("L", (64, 64))


def test_bmp_and_webp_inputs(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    bmp = as_input(save(gradient(50, 30), tmp_path / "a.bmp", "BMP"))
    webp = as_input(save(gradient(50, 30), tmp_path / "b.webp", "WEBP", lossless=True))
    assert (bmp.content_type, webp.content_type) == ("image/bmp", "image/webp")

    outputs = to_png([bmp, webp], out_dir, ImageOptions(), limits=limits)

    for output in outputs:
        image = opened(output.path)
        assert image.size == (50, 30)
        assert close_to(pixel(image, (49, 0)), pixel(gradient(50, 30), (49, 0)), 2)


def test_cmyk_jpeg_becomes_rgb_with_the_same_colours(out_dir: Path, limits: Limits) -> None:
    path = sample("pillow/pil_sample_cmyk.jpg")
    with Image.open(path) as original:
        assert original.mode == "CMYK"
        expected = ImageStat.Stat(original.convert("RGB")).mean

    converters: list[AnyConverter] = [to_jpeg, to_png]
    for convert in converters:
        (output,) = convert([as_input(path)], out_dir, LossyImageOptions(quality=95), limits=limits)
        image = opened(output.path)
        assert image.mode == "RGB"
        assert close_to(tuple(ImageStat.Stat(image).mean), tuple(expected), 4)


def test_icc_profile_is_not_carried_and_its_srgb_colours_stay(out_dir: Path, limits: Limits) -> None:
    source = as_input(sample("pillow/hopper.iccprofile.tif"))
    with Image.open(source.path) as original:
        assert "icc_profile" in original.info  # an sRGB profile: converting to sRGB keeps the colours
        expected = tuple(ImageStat.Stat(original.convert("RGB")).mean)

    (png,) = to_png([source], out_dir, ImageOptions(), limits=limits)
    (jpeg,) = to_jpeg([source], out_dir, LossyImageOptions(quality=95), limits=limits)

    for output in (png, jpeg):
        image = opened(output.path)
        assert "icc_profile" not in image.info
        assert close_to(tuple(ImageStat.Stat(image).mean), expected, 2)


# -- metadata ------------------------------------------------------------------------------


def test_exif_and_gps_are_not_carried_to_any_output(out_dir: Path, limits: Limits) -> None:
    path = sample("pillow/exif_gps.jpg")
    with Image.open(path) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo), "the sample should carry GPS data"

    outputs = (
        to_png([as_input(path)], out_dir, ImageOptions(), limits=limits)
        + to_jpeg([as_input(path)], out_dir, LossyImageOptions(), limits=limits)
        + to_webp([as_input(path)], out_dir, LossyImageOptions(), limits=limits)
    )

    for output in outputs:
        image = opened(output.path)
        assert "exif" not in image.info
        assert len(image.getexif()) == 0
        assert b"Exif" not in output.path.read_bytes()


# -- orientation ---------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(9))
def test_real_photo_is_upright_for_every_orientation(orientation: int, out_dir: Path, limits: Limits) -> None:
    source = as_input(sample(f"orientation/Landscape_{orientation}.jpg"))

    (output,) = to_jpeg([source], out_dir, LossyImageOptions(width=450, quality=90), limits=limits)

    image = opened(output.path)
    assert image.size == (450, 300)
    assert_upright_photo(image)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_stored_orientation_is_applied_to_pixels(
    orientation: int, tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    stored, exif = stored_with_orientation(card(120, 80), orientation)
    source = as_input(save(stored, tmp_path / "card.jpg", "JPEG", quality=95, exif=exif))

    (output,) = to_png([source], out_dir, ImageOptions(), limits=limits)

    image = opened(output.path)
    assert image.size == (120, 80)
    assert_upright_card(image)


def test_orientation_tag_in_webp_is_applied(out_dir: Path, limits: Limits) -> None:
    source = as_input(sample("pillow/hopper_orientation_6.webp"))
    with Image.open(source.path) as original:
        expected = original.transpose(Image.Transpose.ROTATE_270).convert("RGB")

    (output,) = to_png([source], out_dir, ImageOptions(), limits=limits)

    image = opened(output.path).convert("RGB")
    for name, colour in corner_means(image).items():
        assert close_to(colour, corner_means(expected)[name], 2)


# -- geometry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "size"),
    [
        ({}, (3000, 2000)),
        ({"width": 300}, (300, 200)),
        ({"height": 100}, (150, 100)),
        ({"width": 300, "fit": "cover"}, (300, 200)),  # one side given: every fit is inside
        ({"width": 300, "height": 300}, (300, 200)),
        ({"width": 300, "height": 300, "fit": "inside"}, (300, 200)),
        ({"width": 300, "height": 300, "fit": "outside"}, (450, 300)),
        ({"width": 300, "height": 300, "fit": "cover"}, (300, 300)),
        ({"width": 300, "height": 300, "fit": "contain"}, (300, 300)),
        ({"width": 300, "height": 300, "fit": "fill"}, (300, 300)),
        ({"width": 100, "height": 400, "fit": "inside"}, (100, 67)),
        ({"width": 100, "height": 400, "fit": "outside"}, (600, 400)),
    ],
)
def test_output_size_per_fit(
    options: dict[str, object], size: tuple[int, int], big_jpeg: Path, out_dir: Path, limits: Limits
) -> None:
    parsed = parse_options(LossyImageOptions, options)
    (output,) = to_jpeg([as_input(big_jpeg)], out_dir, parsed, limits=limits)
    assert opened(output.path).size == size


@pytest.mark.parametrize(
    ("options", "size"),
    [
        ({"width": 600}, (300, 200)),
        ({"width": 600, "enlarge": True}, (600, 400)),
        ({"height": 50}, (75, 50)),
        ({"width": 1000, "height": 1000, "fit": "inside"}, (300, 200)),
        ({"width": 1000, "height": 1000, "fit": "inside", "enlarge": True}, (1000, 667)),
        ({"width": 1000, "height": 1000, "fit": "outside"}, (300, 200)),
        ({"width": 1000, "height": 1000, "fit": "outside", "enlarge": True}, (1500, 1000)),
        ({"width": 1000, "height": 1000, "fit": "contain"}, (1000, 1000)),
        ({"width": 1000, "height": 500, "fit": "cover"}, (300, 150)),
        ({"width": 1000, "height": 500, "fit": "cover", "enlarge": True}, (1000, 500)),
        ({"width": 1000, "height": 100, "fit": "fill"}, (300, 100)),
        ({"width": 1000, "height": 100, "fit": "fill", "enlarge": True}, (1000, 100)),
    ],
)
def test_no_upscaling_unless_enlarge(
    options: dict[str, object], size: tuple[int, int], small_png: Path, out_dir: Path, limits: Limits
) -> None:
    parsed = parse_options(ImageOptions, options)
    (output,) = to_png([as_input(small_png)], out_dir, parsed, limits=limits)
    assert opened(output.path).size == size


def test_contain_pads_with_the_background_around_the_centred_image(
    small_png: Path, out_dir: Path, limits: Limits
) -> None:
    options = ImageOptions(width=300, height=300, fit="contain", background="#ff00ff")

    (output,) = to_png([as_input(small_png)], out_dir, options, limits=limits)

    image = opened(output.path)
    # 300x200 centred in 300x300: bands of 50 rows above and below.
    assert image.getpixel((150, 49)) == (255, 0, 255)
    assert image.getpixel((150, 250)) == (255, 0, 255)
    assert close_to(pixel(image, (299, 50)), (255, 0, 90), 3)  # its top right
    assert close_to(pixel(image, (0, 249)), (0, 255, 90), 3)  # its bottom left


def test_cover_crops_the_overflow_equally_from_both_sides(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    stripes = Image.new("RGB", (600, 200), (255, 0, 0))
    stripes.paste((0, 255, 0), (200, 0, 400, 200))
    stripes.paste((0, 0, 255), (400, 0, 600, 200))
    source = as_input(save(stripes, tmp_path / "stripes.png", "PNG"))

    (output,) = to_png([source], out_dir, ImageOptions(width=100, height=100, fit="cover"), limits=limits)

    image = opened(output.path)
    assert image.size == (100, 100)
    # The filter may blend a pixel's width of the neighbours in at the very edges, no more.
    for x in (2, 50, 97):
        assert close_to(pixel(image, (x, 50)), (0, 255, 0), 4), x


def test_fill_stretches(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    picture = Image.new("RGB", (200, 200), (255, 0, 0))
    picture.paste((0, 0, 255), (100, 0, 200, 200))
    source = as_input(save(picture, tmp_path / "halves.png", "PNG"))

    (output,) = to_png([source], out_dir, ImageOptions(width=100, height=20, fit="fill"), limits=limits)

    image = opened(output.path)
    assert image.size == (100, 20)
    assert close_to(pixel(image, (10, 10)), (255, 0, 0), 2)
    assert close_to(pixel(image, (90, 10)), (0, 0, 255), 2)


def test_downscaled_jpeg_matches_a_full_decode(big_jpeg: Path, out_dir: Path, limits: Limits) -> None:
    """Decoding at reduced scale for speed must not cost visible quality."""
    (output,) = to_png([as_input(big_jpeg)], out_dir, ImageOptions(width=300), limits=limits)
    with Image.open(big_jpeg) as original:
        reference = original.convert("RGB").resize((300, 200), Image.Resampling.LANCZOS)

    difference = ImageChops.difference(opened(output.path).convert("RGB"), reference)

    assert max(ImageStat.Stat(difference).mean) < 1.0


# -- quality and determinism ---------------------------------------------------------------


@pytest.mark.parametrize("convert", [to_jpeg, to_webp])
def test_quality_changes_the_size(convert: AnyConverter, tmp_path: Path, limits: Limits) -> None:
    source = as_input(save(noise(200, 200), tmp_path / "noise.png", "PNG"))
    sizes = []
    for quality in (20, 95):
        out = tmp_path / f"q{quality}"
        out.mkdir()
        (output,) = convert([source], out, LossyImageOptions(quality=quality), limits=limits)
        sizes.append(output.path.stat().st_size)
    assert sizes[0] * 2 < sizes[1]


@pytest.mark.parametrize("convert", [to_png, to_jpeg, to_webp])
def test_same_input_gives_identical_bytes(convert: AnyConverter, tmp_path: Path, limits: Limits) -> None:
    picture = gradient(400, 300).convert("RGBA")
    picture.putalpha(200)
    source = as_input(save(picture, tmp_path / "in.png", "PNG"))
    produced = []
    for run in ("first", "second"):
        out = tmp_path / run
        out.mkdir()
        options = LossyImageOptions(width=123)
        (output,) = convert([source], out, options, limits=limits)
        produced.append(output.path.read_bytes())
    assert produced[0] == produced[1]


# -- refusals ------------------------------------------------------------------------------


def test_truncated_png_is_corrupt(out_dir: Path, limits: Limits) -> None:
    with pytest.raises(CorruptInput, match=r"broken\.png"):
        to_png([as_input(sample("pillow/broken.png"))], out_dir, ImageOptions(), limits=limits)


def test_truncated_jpeg_is_corrupt(big_jpeg: Path, tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    data = big_jpeg.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])

    with pytest.raises(CorruptInput, match="damaged or incomplete"):
        to_jpeg([as_input(cut)], out_dir, LossyImageOptions(), limits=limits)


def test_psd_is_refused_without_being_decoded(
    out_dir: Path, limits: Limits, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*args: object) -> None:
        raise AssertionError("the PSD decoder was reached")

    monkeypatch.setattr(PsdImagePlugin, "_accept", must_not_run)
    monkeypatch.setattr(PsdImagePlugin.PsdImageFile, "_open", must_not_run)
    path = sample("pillow/hopper.psd")

    with pytest.raises(UnsupportedInput):
        to_png([as_input(path)], out_dir, ImageOptions(), limits=limits)
    # Even if a caller claimed the bytes were an image, only that image's decoder may look at them.
    claimed = InputFile(path=path, filename="hopper.png", content_type="image/png")
    with pytest.raises(CorruptInput):
        to_png([claimed], out_dir, ImageOptions(), limits=limits)


def test_decompression_bomb_is_too_large(out_dir: Path, limits: Limits) -> None:
    with pytest.raises(InputTooLarge):
        to_png([as_input(sample("pillow/decompression_bomb.gif"))], out_dir, ImageOptions(), limits=limits)


def test_pixel_limit_is_checked_before_decoding(
    big_jpeg: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*args: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", must_not_run)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", must_not_run)

    with pytest.raises(InputTooLarge, match="3000×2000"):
        to_png([as_input(big_jpeg)], out_dir, ImageOptions(), limits=Limits(max_pixels=1_000_000))


def test_output_side_limit(small_png: Path, big_jpeg: Path, out_dir: Path) -> None:
    limits = Limits(max_output_side_px=1000)
    with pytest.raises(InputTooLarge, match="1000"):
        to_png([as_input(small_png)], out_dir, ImageOptions(width=1200, enlarge=True), limits=limits)
    with pytest.raises(InputTooLarge):
        to_jpeg([as_input(big_jpeg)], out_dir, LossyImageOptions(), limits=limits)
    (output,) = to_jpeg([as_input(big_jpeg)], out_dir, LossyImageOptions(width=1000), limits=limits)
    assert opened(output.path).size == (1000, 667)


def test_text_is_not_an_image(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UnsupportedInput, match="text/plain"):
        to_png([as_input(path)], out_dir, ImageOptions(), limits=limits)


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": "#fff"}, "unknown option"),
        ({"width": "300"}, "width must be an integer"),
        ({"width": True}, "width must be an integer"),
        ({"width": 0}, "width must be at least 1"),
        ({"height": 8193}, "height must be at most 8192"),
        ({"quality": 0}, "quality must be at least 1"),
        ({"quality": 101}, "quality must be at most 100"),
        ({"fit": "stretch"}, "fit must be one of"),
        ({"enlarge": "yes"}, "enlarge must be a boolean"),
    ],
)
def test_invalid_options_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOptions, match=message):
        parse_options(LossyImageOptions, raw, limits=Limits())


def test_valid_options_parse() -> None:
    options = parse_options(LossyImageOptions, {"width": 640, "fit": "cover", "quality": 70, "enlarge": True})
    assert options == LossyImageOptions(width=640, fit="cover", quality=70, enlarge=True)


@pytest.mark.parametrize("background", ["white", "#ffff", "#12345g", "ffffff", "#1234567", ""])
def test_bad_background_colour_is_refused(
    background: str, small_png: Path, out_dir: Path, limits: Limits
) -> None:
    with pytest.raises(InvalidOptions, match="background"):
        to_jpeg([as_input(small_png)], out_dir, LossyImageOptions(background=background), limits=limits)


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "stem"),
    [
        ("holiday.jpg", "holiday"),
        ("my photo (1).JPG", "my_photo_1"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ann\\scan.tiff", "scan"),
        ("Été à Noël.png", "Ete_a_Noel"),
        ("фото.jpg", ""),
        (".hidden", "hidden"),
        ("...", ""),
        ("archive.tar.gz", "archive.tar"),
        ('a"b;c\r\nd.png', "a_b_c_d"),
        ("", ""),
    ],
)
def test_safe_stem(filename: str, stem: str) -> None:
    assert safe_stem(filename) == stem


def test_names_are_unique_case_insensitively() -> None:
    names = UniqueNames()
    added = [names.add(f, "png", fallback="image") for f in ("a.jpg", "A.gif", "a-2.png", "фото.jpg", "")]
    assert added == ["a.png", "A-2.png", "a-2-2.png", "image.png", "image-2.png"]


def test_outputs_get_unique_safe_names(small_png: Path, out_dir: Path, limits: Limits) -> None:
    inputs = [as_input(small_png, name) for name in ("photo.jpg", "photo.png", "фото.jpg", "../x.bmp")]

    outputs = to_webp(inputs, out_dir, LossyImageOptions(), limits=limits)

    assert [o.name for o in outputs] == ["photo.webp", "photo-2.webp", "image.webp", "x.webp"]
    assert all(o.path == out_dir / o.name and o.path.is_file() for o in outputs)
