"""The picture engine: open, decode, render and write pictures with Pillow, for every family that handles them.

Every output is upright, resized and cropped as asked, in sRGB, and without metadata unless the
client keeps some by name; animations stay animated where the output format can animate. What a
format can hold and how it is written comes from its record in exporters.media.
"""

from __future__ import annotations

import functools
import io
import math
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image, ImageOps

from exporters import media, resample
from exporters.base import (
    CorruptInput,
    InputFile,
    InputTooLarge,
    InvalidOptions,
    Limits,
    OutputFile,
    UnsupportedInput,
    describe,
    reading_input,
)
from exporters.cancel import checkpoint
from exporters.geometry import (
    EXIF_ORIENTATION_METHOD,
    FLIP_MATRIX,
    ROTATE_METHOD,
    WHOLE,
    Box,
    ResizePlan,
    Transform,
    plan_resize,
    within,
)
from exporters.metadata import exif_groups, info_groups, kept_exif
from exporters.options import ImageOptions, JpegOptions, LossyImageOptions, WebpOptions

try:
    from PIL import ImageCms

    _SRGB: ImageCms.ImageCmsProfile | None = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
except ImportError:  # Pillow built without LittleCMS: embedded profiles are dropped, not applied
    _SRGB = None

try:
    import pillow_heif

    # Thumbnails, depth maps and auxiliary pictures of iPhone photos are never used: not decoded.
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    HEIF_READS = True
except ImportError:  # without pillow-heif, HEIC inputs are refused as unsupported
    HEIF_READS = False
#: Whether HEIC can be written: the installed libheif has an HEVC encoder.
HEIF_WRITES = HEIF_READS and "HEIF" in Image.SAVE

# Our own `Limits.max_pixels` decides what is too large (checked before decoding); Pillow's warning
# between its soft and hard limits would only be noise. Set once, at import.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

#: The Pillow decoder for each accepted media type (exporters.media.PILLOW_DECODERS). An input is only
#: ever opened with the one decoder its sniffed type names, so no other plugin (EPS via Ghostscript,
#: PSD, ...) sees its bytes.
PILLOW_FORMAT_OF_CONTENT_TYPE: dict[str, str] = {
    media_type: pillow_format
    for media_type, pillow_format in media.PILLOW_DECODERS.items()
    if pillow_format != "HEIF" or HEIF_READS
}


_HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
# Inputs whose frames are an animation (TIFF: pages).
_ANIMATED_FORMATS = tuple(
    f.pillow for f in media.FORMATS if f.reads == "pillow" and f.animation == "animation"
)
# Readers that turn the pixels themselves and report the upright size (TIFF by its tag; HEIF by the
# container's rotation, which libheif applies and which iPhones keep in step with the EXIF tag).
_READERS_THAT_ORIENT = ("TIFF", "HEIF")


#: How each image output format is written: its record (exporters.media), whose fields the encoder reads.
Encoder = media.Format

#: The image output formats by name: rows of exporters.media.
ENCODERS: dict[str, Encoder] = dict(media.IMAGE_OUTPUTS)


def can_write(encoder: Encoder) -> bool:
    """Whether this process can write the format (HEIC needs libheif with an HEVC encoder)."""
    if encoder.pillow_format not in Image.SAVE:
        Image.init()  # Pillow loads its own plugins lazily: SAVE is complete after this
    return encoder.pillow_format in Image.SAVE


def convert_one(
    source: InputFile, path: Path, options: ImageOptions, *, limits: Limits, encoder: Encoder
) -> OutputFile:
    """One input written to `path` by `encoder`. Raises like the public converters."""
    rendered = render(source, options, limits=limits, encoder=encoder)
    save(rendered, path, encoder, options)
    details: dict[str, Any] = {
        "metadata": {"removed": sorted(rendered.removed), "kept": sorted(rendered.kept)}
    }
    if len(rendered.frames) > 1:
        details["frames"] = len(rendered.frames)
    return OutputFile(path=path, name=path.name, content_type=encoder.content_type, details=details)


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
    with decoding(source):
        image = Image.open(source.path, formats=[pillow_format])
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
    """Around every Pillow call that reads an input: its failures become the errors of this service
    (see exporters.base.reading_input; a declared size past Pillow's own bomb limit is too large).

    Raises CorruptInput, InputTooLarge.
    """
    pillow_format = PILLOW_FORMAT_OF_CONTENT_TYPE.get(source.content_type)
    what = f"{pillow_format} image" if pillow_format else "image"
    with reading_input(source, what):
        try:
            yield
        except Image.DecompressionBombError:
            raise InputTooLarge(
                f"{describe(source)} declares more pixels than can be decoded safely"
            ) from None


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


# -- rendering -----------------------------------------------------------------------------


@dataclass
class Rendered:
    """An input made ready for an encoder: its frames and what goes into the file besides pixels."""

    frames: list[Image.Image]
    durations: list[int] = field(default_factory=list)  # per frame, ms (animations)
    loop: int = 0
    icc_profile: bytes | None = None  # embedded as is (keep_icc)
    exif: Image.Exif | None = None  # the kept groups only
    removed: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Geometry:
    """Where the output's pixels come from: which transform, which part of the stored picture."""

    transform: Transform  # from the stored picture to the output's orientation
    plan: ResizePlan  # in the output's orientation
    stored_box: Box  # the part of the stored picture used, in fractions of its sides

    @property
    def stored_target(self) -> tuple[int, int]:
        """The content's size before the transform is applied (what the stored picture is resized to)."""
        return self.transform.size(self.plan.content)


def plan_geometry(
    stored_size: tuple[int, int],
    orientation: int,
    options: ImageOptions,
    source: InputFile,
    *,
    limits: Limits,
) -> Geometry:
    """The geometry of an output from a picture stored at `stored_size` with an EXIF orientation.

    Raises InvalidOptions, InputTooLarge.
    """
    transform = Transform.of(EXIF_ORIENTATION_METHOD.get(orientation), ROTATE_METHOD[options.rotate])
    transform = transform.then(Transform(FLIP_MATRIX[options.flip]))
    view_w, view_h = transform.size(stored_size)
    user_box: Box = WHOLE
    crop_w, crop_h = view_w, view_h
    if options.crop is not None:
        left, top, width, height = options.crop
        right, bottom = min(view_w, left + width), min(view_h, top + height)
        if width < 1 or height < 1 or left >= view_w or top >= view_h:
            raise InvalidOptions(
                f"the crop box {list(options.crop)} leaves nothing of {describe(source)}, which is "
                f"{view_w}×{view_h} pixels as it stands after orientation, rotate and flip"
            )
        user_box = (left / view_w, top / view_h, right / view_w, bottom / view_h)
        crop_w, crop_h = right - left, bottom - top
    plan = plan_resize(
        crop_w,
        crop_h,
        box_w=options.width,
        box_h=options.height,
        fit=options.fit,
        enlarge=options.enlarge,
        gravity=options.gravity,
    )
    if max(plan.size) > limits.max_output_side_px:
        raise InputTooLarge(
            f"the output for {describe(source)} would be {plan.size[0]}×{plan.size[1]} pixels; "
            f"no side may exceed {limits.max_output_side_px}: ask for a smaller width or height"
        )
    return Geometry(transform, plan, transform.box_before(within(user_box, plan.crop)))


def _frame_count(image: Image.Image, encoder: Encoder | None, options: ImageOptions) -> int:
    """How many frames of the opened input the output will hold."""
    if encoder is None or options.first_frame_only or not encoder.frames:
        return 1
    n_frames = getattr(image, "n_frames", 1)
    animation = image.format in _ANIMATED_FORMATS and encoder.frames == "animation"
    pages = image.format == "TIFF" and encoder.frames == "pages"
    return n_frames if (animation or pages) and n_frames > 1 else 1


def render(source: InputFile, options: ImageOptions, *, limits: Limits, encoder: Encoder | None) -> Rendered:
    """The input decoded and made into the output's frames (one unless the encoder keeps several).

    Frames come out in mode L, LA, RGB or RGBA, in sRGB unless keep_icc kept the profile.
    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    background = parse_colour(options.background)
    with open_image(source, limits=limits) as image:
        with decoding(source):
            frame_count = _frame_count(image, encoder, options)
        width, height = image.size
        if frame_count > limits.max_frames:
            raise InputTooLarge(
                f"{describe(source)} has {frame_count} frames; the limit is {limits.max_frames} "
                "(ask for first_frame_only to convert the first)"
            )
        if width * height * frame_count > limits.max_total_pixels:
            raise InputTooLarge(
                f"{describe(source)} is {frame_count} frames of {width}×{height} pixels "
                f"({width * height * frame_count:,} in all); the limit is {limits.max_total_pixels:,}"
            )
        orientation = 1 if image.format in _READERS_THAT_ORIENT else orientation_of(image, source)
        geometry = plan_geometry(image.size, orientation, options, source, limits=limits)
        out_w, out_h = geometry.plan.size
        if out_w * out_h * frame_count > limits.max_total_pixels:
            raise InputTooLarge(
                f"the output for {describe(source)} would be {frame_count} frames of {out_w}×{out_h} "
                f"pixels; the limit is {limits.max_total_pixels:,} pixels in all"
            )
        found = metadata_found(image)
        icc = image.info.get("icc_profile")
        icc_profile = icc if isinstance(icc, bytes) and icc else None
        keep_icc = bool(options.keep_icc and icc_profile and (encoder is None or encoder.icc))
        kernel = resample.Filter.LANCZOS
        if image.format in ("JPEG", "MPO") and frame_count == 1 and _draft(image, geometry):
            kernel = resample.Filter.AFTER_REDUCED_DECODE  # libjpeg did most of the reduction (see Filter)
        rendered = Rendered(frames=[])
        for index in range(frame_count):
            checkpoint()
            with decoding(source):
                if index:
                    image.seek(index)
                image.load()
                rendered.durations.append(int(image.info.get("duration", 100) or 100))
                if image.mode == "CMYK":
                    keep_icc = False  # CMYK is converted, never kept
                frame = _render_frame(image, source, geometry, icc_profile, keep_icc=keep_icc, kernel=kernel)
            if geometry.plan.size != geometry.plan.content:
                frame = _pad(frame, geometry.plan, background)
            rendered.frames.append(frame)
        loop = image.info.get("loop", 0)
        rendered.loop = loop if isinstance(loop, int) else 0
        exif = image.getexif() if options.keep_metadata and (encoder is None or encoder.exif) else None
    if exif is not None:
        rendered.exif = kept_exif(exif, options.keep_metadata)
        rendered.kept = (
            {g for g in exif_groups(exif) if g in options.keep_metadata} if rendered.exif else set()
        )
    if keep_icc:
        rendered.icc_profile = icc_profile
        found.discard("icc_profile")
    elif icc_profile and is_srgb(icc_profile):
        found.discard("icc_profile")  # the colours are the same; nothing of note went away
    rendered.removed = found - rendered.kept
    return rendered


def _render_frame(
    image: Image.Image,
    source: InputFile,
    geometry: Geometry,
    icc_profile: bytes | None,
    *,
    keep_icc: bool,
    kernel: resample.Filter = resample.Filter.LANCZOS,
) -> Image.Image:
    """One decoded frame cropped, resized, turned and in sRGB: each step once, on as few pixels as can be."""
    pixels = to_working_mode(image, source)
    width, height = pixels.size
    left, top, right, bottom = geometry.stored_box
    box = (left * width, top * height, right * width, bottom * height)
    target = geometry.stored_target
    if target != (width, height) or geometry.stored_box != WHOLE:
        if target == (round(box[2] - box[0]), round(box[3] - box[1])) and all(v == int(v) for v in box):
            pixels = pixels.crop((int(box[0]), int(box[1]), int(box[2]), int(box[3])))  # no resampling
        else:
            pixels = resample.resize(pixels, target, box, kernel)
    pixels = geometry.transform.apply(pixels)
    # Colour conversion after resizing: the profile transform then touches only the output's pixels.
    if not keep_icc:
        pixels = to_srgb(pixels, icc_profile)
    elif pixels.mode == "CMYK":
        pixels = pixels.convert("RGB")
    # The opened image is closed by the caller: return another Image object. One sharing the
    # decoded pixels (Pillow's _new) keeps them alive without a copy (a 50 MP photo's peak fell
    # from 382 to 191 MiB); pixels mapped read-only from the file are copied.
    if pixels is image:
        return image.copy() if image.readonly else image._new(image.im)
    return pixels


def _draft(image: Image.Image, geometry: Geometry) -> bool:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the output is that much smaller; whether it will.

    The scale asked for is the output's own (times resample.REDUCE_MARGIN), not twice it: asking for twice
    would rule out the 1/2 scale for the most common case, a 12 MP photo shown 1600 px wide.
    """
    left, top, right, bottom = geometry.stored_box
    target_w, target_h = geometry.stored_target
    need = (
        math.ceil(resample.REDUCE_MARGIN * target_w / (right - left)),
        math.ceil(resample.REDUCE_MARGIN * target_h / (bottom - top)),
    )
    full_size = image.size
    image.draft(None, need)
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
        return reduce_16_bit(image)
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


#: Pixels of 16-bit grey scaled to 8 bits at a time (see reduce_16_bit).
STRIP_PIXELS = 1024 * 1024


def reduce_16_bit(image: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer) grey scaled to 8-bit L, a strip of rows at a time.

    Pillow scales only in mode I (4 bytes a pixel): whole, a 16-bit picture (2 bytes) needed two
    copies of 4 bytes a pixel beside it; in strips only the 8-bit result is whole.
    """
    width, height = image.size
    reduced = Image.new("L", image.size)
    rows = max(1, STRIP_PIXELS // width)
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows))).convert("I")
        reduced.paste(strip.point(lambda v: v * (255 / 65535) + 0.5).convert("L"), (0, top))
    return reduced


def _pad(image: Image.Image, plan: ResizePlan, background: tuple[int, int, int]) -> Image.Image:
    """The image placed on a canvas of the plan's size painted with the background colour."""
    mode = "RGBA" if image.mode in ("RGBA", "LA") else "RGB"
    canvas = Image.new(mode, plan.size, (*background, 255) if mode == "RGBA" else background)
    canvas.paste(image.convert(mode), plan.offset)
    return canvas


def _main_ifd_only(exif: Image.Exif) -> Image.Exif:
    """The EXIF tags for a TIFF, all in its main IFD (Pillow cannot write a TIFF's EXIF sub-IFD):
    the capture date becomes the file's DateTime."""
    flat = Image.Exif()
    for tag, value in exif.items():
        if tag != ExifTags.IFD.Exif:
            flat[tag] = value
    original = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.DateTimeOriginal)
    if original and ExifTags.Base.DateTime not in flat:
        flat[ExifTags.Base.DateTime] = original
    return flat


# -- writing -------------------------------------------------------------------------------


def finish_mode(image: Image.Image, encoder: Encoder, background: tuple[int, int, int]) -> Image.Image:
    """The image in a mode the encoder stores as is."""
    if not encoder.alpha:
        image = flatten(image, background)
    if not encoder.grey and image.mode in ("L", "LA"):
        image = image.convert("RGBA" if image.mode == "LA" else "RGB")
    return image


def save(rendered: Rendered, path: Path, encoder: Encoder, options: ImageOptions) -> None:
    """Write the frames with nothing but what `rendered` says to keep (no EXIF, ICC or text otherwise)."""
    background = parse_colour(options.background)
    frames = [finish_mode(frame, encoder, background) for frame in rendered.frames]
    for frame in frames:
        # Encoders fall back to `info` for some metadata (PNG takes its ICC profile from there).
        frame.info = {}
    params: dict[str, Any] = {}
    if rendered.icc_profile and encoder.icc:
        params["icc_profile"] = rendered.icc_profile
    if rendered.exif is not None and encoder.exif:
        params["exif"] = (
            _main_ifd_only(rendered.exif) if encoder.pillow_format == "TIFF" else rendered.exif
        ).tobytes()
    if options.dpi and encoder.dpi:
        params["dpi"] = (options.dpi, options.dpi)
    quality = options.quality if isinstance(options, LossyImageOptions) else 85
    fmt = encoder.pillow_format
    params.update(encoder.save_params)
    if encoder.lossy:
        params["quality"] = quality
    # The two options only these encoders have.
    if fmt == "JPEG":
        progressive = isinstance(options, JpegOptions) and options.progressive
        params.update(optimize=progressive, progressive=progressive)
    elif fmt == "WEBP":
        params["lossless"] = isinstance(options, WebpOptions) and options.lossless
    if len(frames) > 1:
        params.update(save_all=True, append_images=frames[1:])
        if encoder.frames == "animation":
            params.update(duration=rendered.durations, loop=rendered.loop)
        params.update(encoder.animation_params)
    frames[0].save(path, format=fmt, **params)


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


@functools.lru_cache(maxsize=32)
def is_srgb(icc_profile: bytes) -> bool:
    """Whether an embedded ICC profile is a variant of sRGB (so its pixels need no conversion)."""
    if _SRGB is None:
        return True  # without LittleCMS nothing can be converted: treat every profile as sRGB
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        description = ImageCms.getProfileDescription(profile)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return True  # a damaged profile is ignored when converting as well
    return "srgb" in description.lower().replace(" ", "")


def metadata_found(image: Image.Image) -> set[str]:
    """The metadata groups an opened image carries (see exporters.metadata), its ICC profile included."""
    try:
        found = exif_groups(image.getexif())
    except (MemoryError, InputTooLarge):
        raise
    except Exception:  # a damaged EXIF block: whatever it holds is removed anyway
        found = {"exif"}
    found |= info_groups(image.info, image.format)
    if image.info.get("icc_profile"):
        found.add("icc_profile")
    return found


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
