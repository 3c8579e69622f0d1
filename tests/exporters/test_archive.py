"""Photos to one ZIP: converted entries, deduplicated names, a manifest, failures per entry."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from exporters.archive import ZipOptions, images_to_zip
from exporters.base import CorruptInput, Limits, parse_options
from tests.exporters.samples import as_input, gps_exif, gradient, sample, save


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    return [
        save(gradient(300, 200), tmp_path / "a.jpg", "JPEG", exif=gps_exif()),
        save(gradient(200, 300), tmp_path / "b.png", "PNG"),
        save(gradient(100, 100), tmp_path / "c.gif", "GIF"),
    ]


def test_zip_of_converted_photos_with_a_manifest(photos: list[Path], out_dir: Path) -> None:
    inputs = [
        as_input(photos[0], "holiday.jpg"),
        as_input(photos[1], "holiday.png"),
        as_input(photos[2], "Été.gif"),
    ]

    (output,) = images_to_zip(inputs, out_dir, ZipOptions(image_format="webp", width=50), limits=Limits())

    assert (output.name, output.content_type) == ("images.zip", "application/zip")
    with zipfile.ZipFile(output.path) as archive:
        assert archive.namelist() == ["holiday.webp", "holiday-2.webp", "Ete.webp", "manifest.json"]
        manifest = json.loads(archive.read("manifest.json"))
        for item in manifest["items"]:
            data = archive.read(item["name"])
            assert item["status"] == "ok"
            assert (item["size"], item["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
            with Image.open(io.BytesIO(data)) as image:
                assert image.format == "WEBP" and image.size[0] <= 50
    assert [item["input"] for item in manifest["items"]] == ["holiday.jpg", "holiday.png", "Été.gif"]
    assert "gps" in manifest["items"][0]["metadata"]["removed"]
    assert output.details == {"items": 3, "failed": 0}


def test_one_bad_photo_fails_its_entry_when_asked(photos: list[Path], out_dir: Path) -> None:
    broken = as_input(sample("pillow/broken.png"))
    inputs = [as_input(photos[0]), broken, as_input(photos[1])]

    with pytest.raises(CorruptInput):
        images_to_zip(inputs, out_dir, ZipOptions(), limits=Limits())

    (output,) = images_to_zip(inputs, out_dir, ZipOptions(skip_failed=True), limits=Limits())

    with zipfile.ZipFile(output.path) as archive:
        assert archive.namelist() == ["a.jpg", "b.jpg", "manifest.json"]
        items = json.loads(archive.read("manifest.json"))["items"]
    assert [item["status"] for item in items] == ["ok", "failed", "ok"]
    assert items[1]["error"]["code"] == "corrupt_input" and "broken.png" in items[1]["error"]["message"]
    assert output.details == {"items": 3, "failed": 1}
    assert list(out_dir.iterdir()) == [output.path]  # no parts left behind


def test_all_failing_is_a_failure(out_dir: Path) -> None:
    with pytest.raises(CorruptInput):
        images_to_zip(
            [as_input(sample("pillow/broken.png"))], out_dir, ZipOptions(skip_failed=True), limits=Limits()
        )


def test_zip_is_reproducible(photos: list[Path], tmp_path: Path) -> None:
    produced = []
    for run in ("one", "two"):
        (tmp_path / run).mkdir()
        (output,) = images_to_zip(
            [as_input(p) for p in photos], tmp_path / run, ZipOptions(), limits=Limits()
        )
        produced.append(output.path.read_bytes())
    assert produced[0] == produced[1]


def test_zip_options() -> None:
    assert parse_options(ZipOptions, {"image_format": "png", "skip_failed": True}).image_format == "png"
    with pytest.raises(Exception, match="image_format must be one of"):
        parse_options(ZipOptions, {"image_format": "pdf"})
