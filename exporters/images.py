"""Raster conversions: any accepted image to PNG, JPEG or WebP, upright, resized, without metadata."""

from __future__ import annotations

import io
import re
import struct
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import ExifTags, Image, ImageOps

from exporters.base import (
    CorruptInput,
    InputFile,
    InputTooLarge,
    InvalidOptions,
    Limits,
    OutputFile,
    UnsupportedInput,
    option,
)

try:
    from PIL import ImageCms

    _SRGB: ImageCms.ImageCmsProfile | None = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
except ImportError:  # Pillow built without LittleCMS: embedded profiles are dropped, not applied
    _SRGB = None

# Our own `Limits.max_pixels` decides what is too large (checked before decoding); Pillow's warning
# between its soft and hard limits would only be noise. Set once, at import.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

#: The Pillow decoder for each accepted media type. An input is only ever opened with the one
#: decoder its sniffed type names, so no other plugin (EPS via Ghostscript, PSD, ...) sees its bytes.
PILLOW_FORMAT_OF_CONTENT_TYPE: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/tiff": "TIFF",
    "image/bmp": "BMP",
}

# What Pillow raises on a truncated or malformed file (UnidentifiedImageError is an OSError).
DECODE_ERRORS: tuple[type[Exception], ...] = (OSError, SyntaxError, ValueError, struct.error, EOFError)

_FITS = ("inside", "contain", "cover", "fill", "outside")
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the stored image 90°
_HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_MAX_STEM_CHARS = 100


@dataclass(frozen=True)
class ImageOptions:
    width: int | None = option(
        None,
        "Width of the output in pixels. Alone, the height follows the aspect ratio.",
        minimum=1,
        maximum=16384,
    )
    height: int | None = option(
        None,
        "Height of the output in pixels. Alone, the width follows the aspect ratio.",
        minimum=1,
        maximum=16384,
    )
    fit: str = option(
        "inside",
        "How the image meets a box given by both width and height. "
        "inside: as large as possible within the box, keeping the aspect ratio (output never larger "
        "than the box); "
        "outside: as small as possible while covering the box, keeping the aspect ratio, nothing cropped "
        "(one side may exceed the box); "
        "cover: exactly the box, scaled to cover it and the overflow cropped equally from both sides; "
        "contain: exactly the box, the image scaled as for inside, centred and padded with background; "
        "fill: exactly the box, stretched, ignoring the aspect ratio. "
        "With only width or only height, every fit behaves as inside.",
        choices=_FITS,
    )
    enlarge: bool = option(
        False,
        "Whether the image may be scaled up. When false, an image smaller than asked keeps its size "
        "(contain pads around it, fill stretches no side beyond its own length, and cover crops the "
        "largest area of the box's shape at the original scale).",
    )
    background: str = option(
        "#ffffff",
        "Colour as #rgb or #rrggbb, used to pad contain and to replace transparency in JPEG.",
    )


@dataclass(frozen=True)
class LossyImageOptions(ImageOptions):
    quality: int = option(
        85,
        "Encoder quality from 1 (smallest file) to 100 (best image).",
        minimum=1,
        maximum=100,
    )


# -- converters ----------------------------------------------------------------------------


def to_png(
    inputs: Sequence[InputFile], out_dir: Path, options: ImageOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each image as an upright PNG without metadata, transparency kept.

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    return _convert_each(inputs, out_dir, options, limits=limits, pillow_format="PNG", extension="png")


def to_jpeg(
    inputs: Sequence[InputFile], out_dir: Path, options: LossyImageOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each image as an upright JPEG without metadata, transparency flattened onto the background.

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    return _convert_each(inputs, out_dir, options, limits=limits, pillow_format="JPEG", extension="jpg")


def to_webp(
    inputs: Sequence[InputFile], out_dir: Path, options: LossyImageOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each image as an upright lossy WebP without metadata, transparency kept.

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    return _convert_each(inputs, out_dir, options, limits=limits, pillow_format="WEBP", extension="webp")


_CONTENT_TYPE_OF_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def _convert_each(
    inputs: Sequence[InputFile],
    out_dir: Path,
    options: ImageOptions,
    *,
    limits: Limits,
    pillow_format: str,
    extension: str,
) -> list[OutputFile]:
    """One output per input in `pillow_format`. Raises like the public converters."""
    background = parse_colour(options.background)
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in inputs:
        image = load_for_output(source, options, limits=limits)
        image = _finish_modes(image, pillow_format, background)
        name = names.add(source.filename, extension, fallback="image")
        path = out_dir / name
        _save(image, path, pillow_format, options)
        outputs.append(OutputFile(path=path, name=name, content_type=_CONTENT_TYPE_OF_FORMAT[pillow_format]))
    return outputs


def _save(image: Image.Image, path: Path, pillow_format: str, options: ImageOptions) -> None:
    """Write `image` with no metadata at all: no EXIF (GPS), no ICC profile, no text chunks."""
    # Encoders fall back to `info` for some metadata (PNG takes its ICC profile from there).
    image.info = {}
    if pillow_format == "PNG":
        image.save(path, format="PNG")
    elif pillow_format == "JPEG":
        assert isinstance(options, LossyImageOptions)
        image.save(path, format="JPEG", quality=options.quality, optimize=False, progressive=False)
    else:
        assert isinstance(options, LossyImageOptions)
        image.save(path, format="WEBP", quality=options.quality, method=4)


# -- opening and decoding ------------------------------------------------------------------


@contextmanager
def open_image(source: InputFile, *, limits: Limits) -> Iterator[Image.Image]:
    """The first frame of `source` with only its header read and its pixel count checked.

    Raises UnsupportedInput, CorruptInput, InputTooLarge.
    """
    pillow_format = PILLOW_FORMAT_OF_CONTENT_TYPE.get(source.content_type)
    if pillow_format is None:
        accepted = ", ".join(PILLOW_FORMAT_OF_CONTENT_TYPE)
        raise UnsupportedInput(
            f"{describe(source)} is of type {source.content_type}, not an image this service reads "
            f"({accepted})"
        )
    try:
        image = Image.open(source.path, formats=[pillow_format])
    except Image.DecompressionBombError:
        raise InputTooLarge(f"{describe(source)} declares more pixels than can be decoded safely") from None
    except DECODE_ERRORS:
        raise CorruptInput(
            f"{describe(source)} cannot be read as a {pillow_format} image; it is damaged or incomplete"
        ) from None
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise CorruptInput(f"{describe(source)} declares an empty image ({width}×{height} pixels)")
        if width * height > limits.max_pixels:
            raise InputTooLarge(
                f"{describe(source)} is {width}×{height} pixels ({width * height:,}); "
                f"the limit is {limits.max_pixels:,} pixels"
            )
        yield image


@contextmanager
def decoding(source: InputFile) -> Iterator[None]:
    """Turn what Pillow raises on a damaged file into the errors of this service.

    Raises CorruptInput, InputTooLarge.
    """
    try:
        yield
    except Image.DecompressionBombError:
        raise InputTooLarge(f"{describe(source)} declares more pixels than can be decoded safely") from None
    except DECODE_ERRORS:
        raise CorruptInput(f"{describe(source)} is damaged or incomplete; it cannot be decoded") from None


def orientation_of(image: Image.Image, source: InputFile) -> int:
    """The EXIF orientation (1-8) of an opened image, 1 when absent or meaningless.

    Raises CorruptInput, InputTooLarge (reading a PNG's EXIF may mean decoding it).
    """
    with decoding(source):
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def decode_upright(image: Image.Image, source: InputFile) -> None:
    """Decode the pixels of an opened image and turn them, in place, as its EXIF orientation says.

    Raises CorruptInput, InputTooLarge.
    """
    with decoding(source):
        image.load()
        ImageOps.exif_transpose(image, in_place=True)


def load_for_output(source: InputFile, options: ImageOptions, *, limits: Limits) -> Image.Image:
    """The input decoded, upright and resized as `options` say, in mode L, LA, RGB or RGBA, in sRGB.

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    background = parse_colour(options.background)
    with open_image(source, limits=limits) as image:
        orientation = orientation_of(image, source)
        # Pillow's TIFF reader turns the pixels itself and reports the upright size from the header.
        swapped = orientation in _SWAPPING_ORIENTATIONS and image.format != "TIFF"
        stored_w, stored_h = image.size
        upright_size = (stored_h, stored_w) if swapped else (stored_w, stored_h)
        plan = _checked_plan(upright_size, options, source, limits=limits)
        reduced = False
        if image.format in ("JPEG", "MPO"):
            reduced = _draft(image, plan, swapped=swapped)
        icc_profile = image.info.get("icc_profile")
        decode_upright(image, source)
        if not reduced and image.size != upright_size:
            # A reader that oriented the pixels differently from what the header suggested: trust them.
            plan = _checked_plan(image.size, options, source, limits=limits)
        pixels = to_working_mode(image, source)
        pixels = _apply_plan(pixels, plan)
        # Colour conversion after resizing: the profile transform then touches only the output's pixels.
        pixels = to_srgb(pixels, icc_profile if isinstance(icc_profile, bytes) else None)
        if plan.size != plan.content:
            pixels = _pad(pixels, plan, background)
        # Closing the opened image frees its pixels, so what is returned must be another image.
        return image.copy() if pixels is image else pixels


def _checked_plan(
    upright_size: tuple[int, int], options: ImageOptions, source: InputFile, *, limits: Limits
) -> ResizePlan:
    """The resize plan for an upright image of this size. Raises InputTooLarge."""
    plan = plan_resize(upright_size[0], upright_size[1], options)
    if max(plan.size) > limits.max_output_side_px:
        raise InputTooLarge(
            f"the output for {describe(source)} would be {plan.size[0]}×{plan.size[1]} pixels; "
            f"no side may exceed {limits.max_output_side_px}: ask for a smaller width or height"
        )
    return plan


def _draft(image: Image.Image, plan: ResizePlan, *, swapped: bool) -> bool:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the output is that much smaller; whether it will."""
    crop_w = plan.crop[2] - plan.crop[0]
    crop_h = plan.crop[3] - plan.crop[1]
    # Twice the needed resolution leaves LANCZOS enough pixels to look as good as a full decode.
    need_w = max(1, round(2 * plan.content[0] / crop_w))
    need_h = max(1, round(2 * plan.content[1] / crop_h))
    full_size = image.size
    image.draft(None, (need_h, need_w) if swapped else (need_w, need_h))
    return image.size != full_size


def to_working_mode(image: Image.Image, source: InputFile) -> Image.Image:
    """The image in L, LA, RGB, RGBA or CMYK, 8 bits per channel; 16-bit and float data are scaled.

    Raises UnsupportedInput.
    """
    mode = image.mode
    has_transparency = "transparency" in image.info
    if mode in ("L", "RGB") and not has_transparency:
        return image
    if mode in ("LA", "RGBA", "CMYK"):
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit samples (Pillow also keeps 16-bit PNG grey as "I") scaled to 8 bits, rounded.
        return image.convert("I").point(lambda v: v * (255 / 65535) + 0.5).convert("L")
    if mode == "F":
        _low, high = image.getextrema()
        assert isinstance(high, float)
        full_scale = 1.0 if high <= 1.0 else 255.0 if high <= 255.0 else 65535.0
        return image.point(lambda v: v * (255 / full_scale) + 0.5).convert("L")
    if mode == "1":
        return image.convert("LA" if has_transparency else "L")
    if mode == "L":
        return image.convert("LA")
    if mode == "La":
        return image.convert("LA")
    if mode in ("P", "PA", "RGB", "RGBa"):
        palette_mode = image.palette.mode if image.palette is not None else ""
        with_alpha = has_transparency or mode in ("PA", "RGBa") or palette_mode == "RGBA"
        return image.convert("RGBA" if with_alpha else "RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        raise UnsupportedInput(
            f"{describe(source)} uses the colour mode {mode}, which is not supported"
        ) from None


# -- geometry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResizePlan:
    """What to make of an upright image: the output size and the part of the image that fills it."""

    size: tuple[int, int]  # the output, in pixels
    content: tuple[int, int]  # the image within the output; smaller than `size` only for contain
    crop: tuple[float, float, float, float]  # the part of the image used, in fractions of its sides


_WHOLE = (0.0, 0.0, 1.0, 1.0)


def _px(length: float) -> int:
    """A computed length as a whole number of pixels, at least one."""
    return max(1, int(length + 0.5))


def plan_resize(width: int, height: int, options: ImageOptions) -> ResizePlan:
    """The output of an upright image of `width` by `height` pixels under `options` (see ImageOptions.fit)."""
    box_w, box_h = options.width, options.height
    if box_w is None or box_h is None:
        if box_w is not None:
            scale = box_w / width
        elif box_h is not None:
            scale = box_h / height
        else:
            return ResizePlan((width, height), (width, height), _WHOLE)
        if not options.enlarge:
            scale = min(scale, 1.0)
        size = (_px(width * scale), _px(height * scale))
        return ResizePlan(size, size, _WHOLE)

    if options.fit == "fill":
        size = (box_w, box_h) if options.enlarge else (min(box_w, width), min(box_h, height))
        return ResizePlan(size, size, _WHOLE)
    if options.fit == "cover":
        # Without enlarging, shrink the box (keeping its shape) until the image covers it at scale 1.
        shrink = 1.0 if options.enlarge else min(1.0, width / box_w, height / box_h)
        size = (_px(box_w * shrink), _px(box_h * shrink))
        scale = max(size[0] / width, size[1] / height)
        used_w = min(1.0, size[0] / scale / width)
        used_h = min(1.0, size[1] / scale / height)
        left, top = (1.0 - used_w) / 2, (1.0 - used_h) / 2
        return ResizePlan(size, size, (left, top, left + used_w, top + used_h))

    pick = max if options.fit == "outside" else min
    scale = pick(box_w / width, box_h / height)
    if not options.enlarge:
        scale = min(scale, 1.0)
    content = (_px(width * scale), _px(height * scale))
    if options.fit == "contain":
        return ResizePlan((box_w, box_h), content, _WHOLE)
    return ResizePlan(content, content, _WHOLE)


def _apply_plan(image: Image.Image, plan: ResizePlan) -> Image.Image:
    """Crop and resize the decoded image (which may be a draft at reduced scale) to the plan's content."""
    width, height = image.size
    left, top, right, bottom = plan.crop
    box = (left * width, top * height, right * width, bottom * height)
    if plan.content == (width, height) and plan.crop == _WHOLE:
        return image
    return image.resize(plan.content, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


def _pad(image: Image.Image, plan: ResizePlan, background: tuple[int, int, int]) -> Image.Image:
    """The image centred on a canvas of the plan's size painted with the background colour."""
    mode = "RGBA" if image.mode in ("RGBA", "LA") else "RGB"
    canvas = Image.new(mode, plan.size, (*background, 255) if mode == "RGBA" else background)
    offset = ((plan.size[0] - plan.content[0]) // 2, (plan.size[1] - plan.content[1]) // 2)
    canvas.paste(image.convert(mode), offset)
    return canvas


# -- colour --------------------------------------------------------------------------------


def to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """The image in sRGB, converted from its ICC profile if it has one; CMYK becomes RGB, grey stays grey."""
    if icc_profile and _SRGB is not None and image.mode in ("RGB", "RGBA", "CMYK"):
        output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        try:
            source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            converted = ImageCms.profileToProfile(image, source_profile, _SRGB, outputMode=output_mode)
        except (ImageCms.PyCMSError, OSError, ValueError):
            converted = None  # a damaged or mismatched profile: treat the pixels as sRGB already
        if converted is not None:
            return converted
    if image.mode == "CMYK":
        return image.convert("RGB")
    return image


def flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """The image without transparency, composed onto `background`: RGB, or L when it was grey."""
    if image.mode not in ("LA", "RGBA"):
        return image
    grey_background = background[0] == background[1] == background[2]
    if image.mode == "LA" and grey_background:
        canvas = Image.new("L", image.size, background[0])
        canvas.paste(image.getchannel("L"), mask=image.getchannel("A"))
        return canvas
    canvas = Image.new("RGB", image.size, background)
    canvas.paste(image.convert("RGB"), mask=image.getchannel("A"))
    return canvas


def _finish_modes(image: Image.Image, pillow_format: str, background: tuple[int, int, int]) -> Image.Image:
    """The image in a mode the encoder stores as is: JPEG has no alpha, WebP has no grey."""
    if pillow_format == "JPEG":
        return flatten(image, background)
    if pillow_format == "WEBP" and image.mode in ("L", "LA"):
        return image.convert("RGBA" if image.mode == "LA" else "RGB")
    return image


def parse_colour(text: str) -> tuple[int, int, int]:
    """(r, g, b) from #rgb or #rrggbb.

    Raises InvalidOptions.
    """
    if not _HEX_COLOUR.fullmatch(text):
        raise InvalidOptions(f"background must be a colour like #fff or #1a2b3c, not {text!r}")
    digits = text[1:]
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


# -- names ---------------------------------------------------------------------------------


def describe(source: InputFile) -> str:
    """How an error message names an input: the client's file name, quoted."""
    return f'"{source.filename}"' if source.filename else "the file"


def safe_stem(filename: str) -> str:
    """The stem of a client's file name reduced to ASCII letters, digits and `._-` ("" if nothing is left)."""
    base = re.split(r"[/\\]", filename)[-1]
    stem, dot, _extension = base.rpartition(".")
    if not dot or not stem:
        stem = base
    ascii_only = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_only)
    # No leading dot (hidden file, `..`) and no dangling separators.
    return cleaned.strip("._-")[:_MAX_STEM_CHARS].strip("._-")


class UniqueNames:
    """Download names for one job's outputs: safe stems, deduplicated with -2, -3, ... suffixes."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def add(self, filename: str, extension: str, *, fallback: str) -> str:
        """A new name `<stem>.<extension>` from the client's `filename`, unique in this job."""
        stem = safe_stem(filename) or fallback
        name = f"{stem}.{extension}"
        counter = 2
        # Case-insensitively, since the names may meet a case-insensitive file system on download.
        while name.lower() in self._taken:
            name = f"{stem}-{counter}.{extension}"
            counter += 1
        self._taken.add(name.lower())
        return name
