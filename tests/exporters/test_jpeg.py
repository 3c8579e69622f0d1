"""Lossless removal of JPEG metadata: every kind of segment, every kind of scan, damaged files."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageCms

from exporters.base import CorruptInput
from exporters.jpeg import strip_metadata
from tests.exporters.samples import XMP, gps_exif, image_bytes, jpeg_markers, noise, sample, with_iptc


def decoded(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.tobytes()


@pytest.mark.parametrize(
    "params",
    [
        {"quality": 90},
        {"quality": 90, "progressive": True},
        {"quality": 90, "restart_marker_blocks": 1},
        {"quality": 90, "progressive": True, "restart_marker_rows": 1},
    ],
    ids=["baseline", "progressive", "restart-markers", "progressive-restarts"],
)
def test_pixels_are_unchanged_and_metadata_gone(params: dict[str, object]) -> None:
    original = with_iptc(
        image_bytes(noise(96, 64), "JPEG", exif=gps_exif(), xmp=XMP, comment=b"taken at home", **params)
    )

    stripped = strip_metadata(original)

    assert decoded(stripped.data) == decoded(original)
    markers = {marker for marker, _payload in jpeg_markers(stripped.data)}
    assert not markers & {0xE1, 0xED, 0xFE}
    assert (
        b"Exif" not in stripped.data
        and b"Paris" not in stripped.data
        and b"taken at home" not in stripped.data
    )
    assert {"exif", "gps", "xmp", "iptc", "comment"} <= stripped.removed


def test_icc_profile_and_adobe_segment_are_kept() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk = Image.new("CMYK", (16, 16), (10, 20, 30, 40))
    original = image_bytes(cmyk, "JPEG", icc_profile=profile, exif=gps_exif())

    stripped = strip_metadata(original)

    assert stripped.icc_profile == profile
    with Image.open(io.BytesIO(stripped.data)) as image:
        assert image.mode == "CMYK"
        assert image.info["icc_profile"] == profile
        assert "adobe" in image.info
    assert decoded(stripped.data) == decoded(original)
    without = strip_metadata(original, keep_icc=False)
    assert b"ICC_PROFILE" not in without.data and "icc_profile" in without.removed


def test_real_cmyk_sample_keeps_its_colours() -> None:
    data = sample("pillow/pil_sample_cmyk.jpg").read_bytes()
    stripped = strip_metadata(data)
    assert decoded(stripped.data) == decoded(data)
    assert {"exif", "xmp", "iptc"} <= stripped.removed


def test_trailing_data_and_second_pictures_are_dropped() -> None:
    first = image_bytes(noise(32, 32), "JPEG")
    stripped = strip_metadata(first + image_bytes(noise(32, 32, seed=2), "JPEG") + b"junk")
    assert stripped.data == first  # Pillow writes no metadata segment of its own


@pytest.mark.parametrize("cut", [1, 3, 21, 200])
def test_cut_headers_are_corrupt(cut: int) -> None:
    data = image_bytes(noise(32, 32), "JPEG", exif=gps_exif())
    with pytest.raises(CorruptInput):
        strip_metadata(data[:cut])


def test_not_a_jpeg() -> None:
    with pytest.raises(CorruptInput, match="not a JPEG"):
        strip_metadata(b"\x89PNG\r\n\x1a\n")
