"""Helpers for the converter tests: inputs made by Pillow, real samples, and ways to look at outputs."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageStat

from exporters.base import InputFile
from exporters.sniff import SNIFF_BYTES, sniff

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# The shared corpus the fixtures were copied from, next to the repository; absent in CI.
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"

RUSSIAN = "Съешь же ещё этих мягких французских булок, да выпей же чаю."
GREEK = "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία."
FRENCH = "Voilà l'été, déjà à Noël ; où est la forêt ?"

# Corner colours of the upright sample photo (orientation/Landscape_*.jpg): sky top left, rock top
# right, stony ground bottom left, dark water bottom right.
SKY, ROCK, GROUND, WATER = (129, 171, 225), (62, 61, 60), (43, 56, 59), (17, 17, 17)

# The upright test card used for synthetic orientations: four quadrants of distinct colours.
RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 220, 40)


def as_input(path: Path, filename: str | None = None) -> InputFile:
    """An InputFile as the service makes one: the type sniffed from the bytes, never from the name."""
    with path.open("rb") as file:
        head = file.read(SNIFF_BYTES + 1)
    content_type = sniff(head[:SNIFF_BYTES], complete=len(head) <= SNIFF_BYTES)
    return InputFile(
        path=path, filename=filename if filename is not None else path.name, content_type=content_type
    )


def sample(relative: str) -> Path:
    """A real sample file: from tests/fixtures, else from the shared corpus, else the test is skipped."""
    for root in (FIXTURES, CORPUS):
        if (root / relative).is_file():
            return root / relative
    pytest.skip(f"sample {relative} is neither in tests/fixtures nor in {CORPUS}")


def save(image: Image.Image, path: Path, image_format: str, **params: object) -> Path:
    image.save(path, format=image_format, **params)
    return path


def gradient(width: int, height: int) -> Image.Image:
    """An RGB image whose red grows left to right and green top to bottom."""
    red = Image.linear_gradient("L").rotate(90).resize((width, height))
    green = Image.linear_gradient("L").resize((width, height))
    blue = Image.new("L", (width, height), 90)
    return Image.merge("RGB", (red, green, blue))


def noise(width: int, height: int, *, seed: int = 1) -> Image.Image:
    """An RGB image of seeded noise: JPEG cannot make it small, so files have predictable heft."""
    return Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))


def card(width: int = 120, height: int = 80) -> Image.Image:
    """Upright: red top left, green top right, blue bottom left, yellow bottom right."""
    card = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    card.paste(RED, (0, 0, half_w, half_h))
    card.paste(GREEN, (half_w, 0, width, half_h))
    card.paste(BLUE, (0, half_h, half_w, height))
    card.paste(YELLOW, (half_w, half_h, width, height))
    return card


#: What a viewer must do to the stored picture to show it upright, per EXIF orientation.
UPRIGHTING = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_INVERSE = {
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
}


def stored_with_orientation(upright: Image.Image, orientation: int) -> tuple[Image.Image, bytes]:
    """(the picture as a camera would store it, its EXIF block) for an upright picture."""
    stored = upright
    if orientation in UPRIGHTING:
        method = UPRIGHTING[orientation]
        stored = upright.transpose(_INVERSE.get(method, method))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return stored, exif.tobytes()


def corner_means(image: Image.Image, fraction: float = 0.1) -> dict[str, tuple[float, ...]]:
    """Mean colour of the four corner boxes, each `fraction` of the width and height."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    box_w, box_h = max(1, int(width * fraction)), max(1, int(height * fraction))
    boxes = {
        "top_left": (0, 0, box_w, box_h),
        "top_right": (width - box_w, 0, width, box_h),
        "bottom_left": (0, height - box_h, box_w, height),
        "bottom_right": (width - box_w, height - box_h, width, height),
    }
    return {name: tuple(ImageStat.Stat(rgb.crop(box)).mean) for name, box in boxes.items()}


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The channels of one pixel of a multi-channel image."""
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return tuple(int(v) for v in value)


def close_to(actual: tuple[float, ...], expected: tuple[float, ...], tolerance: float) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def assert_upright_photo(image: Image.Image) -> None:
    """The sample photo is landscape with each corner where it belongs."""
    width, height = image.size
    assert width > height, f"expected a landscape picture, got {width}x{height}"
    corners = corner_means(image)
    expected = {"top_left": SKY, "top_right": ROCK, "bottom_left": GROUND, "bottom_right": WATER}
    for name, colour in expected.items():
        assert close_to(corners[name], colour, 14), f"{name} is {corners[name]}, expected about {colour}"


def assert_upright_card(image: Image.Image) -> None:
    corners = corner_means(image, fraction=0.2)
    expected = {"top_left": RED, "top_right": GREEN, "bottom_left": BLUE, "bottom_right": YELLOW}
    for name, colour in expected.items():
        assert close_to(corners[name], colour, 30), f"{name} is {corners[name]}, expected about {colour}"


class Pdf:
    """A PDF opened with pdfium: pages, sizes, text layer and rendering."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.document = pdfium.PdfDocument(path)

    def __len__(self) -> int:
        return len(self.document)

    def page_size(self, index: int) -> tuple[float, float]:
        width, height = self.document[index].get_size()
        return round(width, 2), round(height, 2)

    def text(self, index: int) -> str:
        return str(self.document[index].get_textpage().get_text_range())

    def all_text(self) -> str:
        return "".join(self.text(i) for i in range(len(self)))

    def char_boxes(
        self, index: int, *, loose: bool = False
    ) -> list[tuple[str, tuple[float, float, float, float]]]:
        """(character, (left, bottom, right, top)) for each character of a page; loose boxes span the font's
        ascent and descent, so all characters of a line share them."""
        textpage = self.document[index].get_textpage()
        return [
            (textpage.get_text_range(i, 1), textpage.get_charbox(i, loose=loose))
            for i in range(textpage.count_chars())
        ]

    def render(self, index: int, *, scale: float = 1.0) -> Image.Image:
        image = self.document[index].render(scale=scale).to_pil()
        assert isinstance(image, Image.Image)
        return image.convert("RGB")

    def close(self) -> None:
        self.document.close()


def image_bytes(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **params)
    return buffer.getvalue()
