"""Helpers for the converter tests: inputs made by Pillow, real samples, and ways to look at outputs."""

from __future__ import annotations

import io
import json
import math
import random
import re
import shutil
import subprocess
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat

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


def photo_like(width: int, height: int, *, seed: int = 7) -> Image.Image:
    """A photograph-like RGB picture: smooth light, shapes with sharp edges, fine texture and sensor
    noise. Encoders and resamplers work on it about as hard as on a real photo (flat colour would
    make them unrealistically fast, pure noise unrealistically slow)."""
    rng = random.Random(seed)
    base = gradient(width, height)
    draw = ImageDraw.Draw(base)
    for _ in range(60):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(max(2, width // 60), max(3, width // 6))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    texture = noise(max(1, width // 8), max(1, height // 8), seed=seed).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
    picture = Image.blend(base, texture, 0.25)
    picture = picture.filter(ImageFilter.GaussianBlur(1.2))
    return Image.blend(picture, grain, 0.06)


def psnr(image: Image.Image, reference: Image.Image) -> float:
    """Peak signal-to-noise ratio of `image` against `reference`, in dB (RGB, 8 bits)."""
    difference = ImageChops.difference(image.convert("RGB"), reference.convert("RGB"))
    histogram = difference.histogram()
    squared = sum((index % 256) ** 2 * count for index, count in enumerate(histogram))
    mse = squared / (image.size[0] * image.size[1] * 3)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


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


# -- metadata ------------------------------------------------------------------------------


def embedded_jpegs(pdf_bytes: bytes) -> list[bytes]:
    """The DCTDecode image streams of a PDF, as the bytes a viewer (or anyone) would extract."""
    streams = []
    for match in re.finditer(rb"<<((?:(?!>>).)*?/DCTDecode(?:(?!>>).)*?)>>\s*stream\r?\n", pdf_bytes, re.S):
        length = re.search(rb"/Length (\d+)", match.group(1))
        assert length, "an image stream without a direct /Length"
        streams.append(pdf_bytes[match.end() : match.end() + int(length.group(1))])
    return streams


def jpeg_markers(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, first 12 bytes of the payload) of every segment before the first scan's coded data."""
    assert data.startswith(b"\xff\xd8"), "not a JPEG"
    segments = []
    pos = 2
    while pos + 4 <= len(data):
        assert data[pos] == 0xFF, f"no marker at {pos}"
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segments.append((marker, data[pos + 4 : pos + 4 + min(12, length - 2)]))
        if marker == 0xDA:
            break
        pos += 2 + length
    return segments


def gps_exif() -> bytes:
    """An EXIF block with a GPS position, a camera, a capture date, a copyright and an orientation."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "Phone 15"  # Model
    exif[0x8298] = "(c) Ann Example"  # Copyright
    exif[0x0112] = 1
    exif.get_ifd(0x8769)[0x9003] = "2024:07:14 12:34:56"  # DateTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)
    gps[3], gps[4] = "E", (2.0, 17.0, 40.0)
    return exif.tobytes()


XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.48N"/></rdf:RDF>'
    b'</x:xmpmeta><?xpacket end="w"?>'
)


def with_iptc(jpeg: bytes) -> bytes:
    """The JPEG with an APP13 Photoshop/IPTC segment (a city name) inserted after its SOI."""
    iptc = b"\x1c\x02\x5a\x00\x05Paris"  # IPTC 2:90 City
    resource = b"8BIM\x04\x04\x00\x00" + len(iptc).to_bytes(4, "big") + iptc
    payload = b"Photoshop 3.0\x00" + resource
    return jpeg[:2] + b"\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def exiftool_tags(path: Path) -> dict[str, object]:
    """Every tag exiftool finds in a file (skips the test when exiftool is not installed)."""
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed (Debian: libimage-exiftool-perl); the byte checks still ran")
    result = subprocess.run(
        [exiftool, "-json", "-a", "-G1", "-ee", str(path)], capture_output=True, check=True, text=True
    )
    (tags,) = json.loads(result.stdout)
    assert isinstance(tags, dict)
    return tags


#: exiftool groups that mean metadata survived (File, JFIF, Composite and the like are structure).
LEAKING_GROUPS = ("GPS", "IFD0", "ExifIFD", "XMP", "IPTC", "Photoshop", "MakerNotes", "IFD1", "MPF0")


#: What a TIFF's main IFD holds to describe its own pixels: structure, not metadata.
TIFF_LAYOUT = {
    "ImageWidth", "ImageHeight", "BitsPerSample", "Compression", "PhotometricInterpretation",
    "StripOffsets", "SamplesPerPixel", "RowsPerStrip", "StripByteCounts", "PlanarConfiguration",
    "XResolution", "YResolution", "ResolutionUnit", "Predictor", "ExtraSamples", "SampleFormat",
    "SubfileType",
}  # fmt: skip


def leaked(tags: dict[str, object]) -> list[str]:
    """The tags exiftool found that are metadata (not the file's own structure)."""
    return sorted(
        key
        for key in tags
        if key.split(":")[0].startswith(LEAKING_GROUPS)
        and not (key.startswith("IFD0:") and key.split(":")[1] in TIFF_LAYOUT)
    )
