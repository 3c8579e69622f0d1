"""Resampling through libvips gives what Pillow's own resize gives, in every mode the converters use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageStat

from exporters import resample
from exporters.resample import Filter
from tests.exporters.samples import psnr
from tests.exporters.test_photos import photo_like


@pytest.fixture
def pillow_only() -> Iterator[None]:
    """Resample with Pillow, as where libvips cannot load."""
    saved = resample.VIPS
    resample.VIPS = None
    yield
    resample.VIPS = saved


def both(image: Image.Image, size: tuple[int, int], **kwargs: object) -> tuple[Image.Image, Image.Image]:
    ours = resample.resize(image, size, **kwargs)  # type: ignore[arg-type]
    saved, resample.VIPS = resample.VIPS, None
    try:
        pillow = resample.resize(image, size, **kwargs)  # type: ignore[arg-type]
    finally:
        resample.VIPS = saved
    return ours, pillow


def test_libvips_is_what_resamples_here() -> None:
    """The lock installs pyvips-binary: the tests below compare two engines, not one with itself."""
    assert resample.engine().startswith("libvips 8."), "pyvips-binary is in the lock; it should load here"
    assert resample.VIPS is not None


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
@pytest.mark.parametrize("size", [(1600, 1200), (701, 333), (250, 250), (2400, 1800)])
def test_libvips_matches_pillows_lanczos(mode: str, size: tuple[int, int]) -> None:
    """Downscales by 1.25 to 8, a change of aspect ratio and an enlargement (that one Pillow does), each
    to the exact pixel size."""
    image = photo_like(2000, 1500).convert(mode)
    ours, pillow = both(image, size)
    assert ours.mode == mode and ours.size == size
    assert psnr(ours.convert("RGB"), pillow.convert("RGB")) >= 40.0


def test_libvips_crops_the_box_it_is_given() -> None:
    image = photo_like(1200, 900)
    box = (100, 50, 900, 650)
    ours, pillow = both(image, (400, 300), box=box)
    assert psnr(ours, pillow) >= 40.0
    assert psnr(ours, image.crop(box).resize((400, 300), Image.Resampling.LANCZOS)) >= 40.0


def test_a_box_between_pixels_is_left_to_pillow() -> None:
    """libvips's resize has no sub-pixel box: Pillow does those, exactly."""
    image = photo_like(600, 400)
    box = (10.5, 20.25, 500.5, 380.75)
    assert (
        resample.resize(image, (245, 180), box).tobytes()
        == image.resize((245, 180), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0).tobytes()
    )


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_premultiplied_so_transparent_colour_never_bleeds(mode: str) -> None:
    """Fully transparent pixels may hold any colour (here white, or pure red); none of it may reach the
    opaque black edge next to them once resampled."""
    image = Image.new("RGBA", (400, 300), (255, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((200, 0, 399, 299), fill=(0, 0, 0, 255))
    image = image.convert(mode)
    ours = resample.resize(image, (123, 97))
    assert ours.mode == mode
    colour = ours.convert("RGBA")
    for x in range(123):
        for y in (10, 50, 90):
            r, g, b, a = colour.getpixel((x, y))  # type: ignore[misc]
            if a >= 8:  # where there is something to see, it is the black of the opaque half
                assert max(r, g, b) <= 8, (x, y, (r, g, b, a))
    assert ImageStat.Stat(colour.getchannel("A")).extrema[0] == (0, 255)


def test_alpha_result_matches_pillow() -> None:
    image = photo_like(900, 600).convert("RGBA")
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse((100, 80, 800, 520), fill=255)
    image.putalpha(mask)
    ours, pillow = both(image, (300, 200))
    assert ours.mode == "RGBA"
    assert psnr(ours.getchannel("A").convert("RGB"), pillow.getchannel("A").convert("RGB")) >= 40.0
    flat = Image.new("RGB", ours.size, "white")
    flat_pillow = flat.copy()
    flat.paste(ours, mask=ours.getchannel("A"))
    flat_pillow.paste(pillow, mask=pillow.getchannel("A"))
    assert psnr(flat, flat_pillow) >= 40.0


def test_after_a_reduced_decode_both_engines_use_the_same_cubic() -> None:
    image = photo_like(2016, 1512)
    ours, pillow = both(image, (1600, 1200), kernel=Filter.AFTER_REDUCED_DECODE)
    assert psnr(ours, pillow) >= 45.0


def test_other_modes_go_through_pillow() -> None:
    image = Image.linear_gradient("L").resize((300, 200)).convert("F")
    result = resample.resize(image, (30, 20))
    assert result.mode == "F" and result.size == (30, 20)
    expected = image.resize((30, 20), Image.Resampling.LANCZOS, reducing_gap=3.0)
    assert result.tobytes() == expected.tobytes()


def test_a_photo_converts_alike_where_libvips_is_missing(pillow_only: None, tmp_path: Path) -> None:
    from exporters.images import ImageOptions
    from tests.exporters.test_photos import as_input, convert, opened, save

    source = save(photo_like(2000, 1500), tmp_path / "photo.jpg", "JPEG", quality=90)
    (tmp_path / "a").mkdir()
    without = opened(convert("png", as_input(source), tmp_path / "a", ImageOptions(width=640)).path)
    resample.VIPS = pytest.importorskip("pyvips")
    (tmp_path / "b").mkdir()
    with_vips = opened(convert("png", as_input(source), tmp_path / "b", ImageOptions(width=640)).path)
    assert without.size == with_vips.size == (640, 480)
    assert psnr(with_vips, without) >= 40.0


def test_libvips_is_not_loaded_until_something_is_resampled() -> None:
    """The worker supervisor forks its workers; it must never have started libvips's threads."""
    import subprocess
    import sys

    probe = (
        "import sys, actors.pool, service.wiring, exporters.registry\n"
        "assert 'pyvips' not in sys.modules, 'loaded at import'\n"
        "from exporters import resample\n"
        "print(resample.engine())\n"
        "assert 'pyvips' in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("libvips")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "CMYK"])  # LA is copied: its bands lie apart
def test_pillows_pixels_are_shared_with_libvips_not_copied(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where Pillow's rows are contiguous, libvips reads them in place (no tobytes); the result is the
    same, to the byte, as from a copy."""
    image = photo_like(900, 700).convert(mode)
    if mode.endswith("A"):
        image.putalpha(Image.linear_gradient("L").resize(image.size))
    shared = resample.resize(image, (400, 311))

    def copied_out(self: Image.Image, *args: object, **kwargs: object) -> bytes:
        raise AssertionError("the pixels were copied out of Pillow")

    with monkeypatch.context() as patched:
        patched.setattr(Image.Image, "tobytes", copied_out)
        again = resample.resize(image, (400, 311))
    assert again.tobytes() == shared.tobytes()

    def not_exported(*args: object) -> None:
        return None  # as when the rows are not contiguous

    monkeypatch.setattr(resample, "_shared_memory", not_exported)  # the copying path, for comparison
    copied = resample.resize(image, (400, 311))
    assert copied.mode == shared.mode == mode
    assert copied.tobytes() == shared.tobytes()


def test_an_image_whose_rows_are_not_contiguous_is_copied_and_still_right() -> None:
    """Pillow stores large images in several blocks, which it cannot export in place."""
    image = photo_like(4200, 3200).convert("RGBA")  # 54 MB: more than one of Pillow's blocks
    with pytest.raises(ValueError):
        image.im.__arrow_c_array__()
    ours, pillow = both(image, (1050, 800))
    assert psnr(ours.convert("RGB"), pillow.convert("RGB")) >= 40.0
