"""Raster conversions: any accepted photo to JPEG, PNG, WebP, AVIF, TIFF, GIF, BMP or HEIC.

The formats are the image outputs of exporters.media; the work is done by the picture engine
(exporters.pictures), which the other families that handle pictures share.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exporters.base import Converter, InputFile, Limits, OutputFile, UnsupportedConversion
from exporters.cancel import checkpoint
from exporters.naming import UniqueNames as UniqueNames
from exporters.naming import safe_stem as safe_stem
from exporters.options import ImageOptions as ImageOptions
from exporters.options import JpegOptions as JpegOptions
from exporters.options import LossyImageOptions as LossyImageOptions
from exporters.options import WebpOptions as WebpOptions
from exporters.pictures import ENCODERS as ENCODERS
from exporters.pictures import HEIF_READS as HEIF_READS
from exporters.pictures import HEIF_WRITES as HEIF_WRITES
from exporters.pictures import PILLOW_FORMAT_OF_CONTENT_TYPE as PILLOW_FORMAT_OF_CONTENT_TYPE
from exporters.pictures import STRIP_PIXELS as STRIP_PIXELS
from exporters.pictures import Encoder as Encoder
from exporters.pictures import Geometry as Geometry
from exporters.pictures import Rendered as Rendered
from exporters.pictures import can_write
from exporters.pictures import convert_one as convert_one
from exporters.pictures import decode_upright as decode_upright
from exporters.pictures import decoding as decoding
from exporters.pictures import finish_mode as finish_mode
from exporters.pictures import flatten as flatten
from exporters.pictures import is_srgb as is_srgb
from exporters.pictures import metadata_found as metadata_found
from exporters.pictures import open_image as open_image
from exporters.pictures import orientation_of as orientation_of
from exporters.pictures import parse_colour as parse_colour
from exporters.pictures import plan_geometry as plan_geometry
from exporters.pictures import reduce_16_bit as reduce_16_bit
from exporters.pictures import render as render
from exporters.pictures import save as save
from exporters.pictures import to_srgb as to_srgb
from exporters.pictures import to_working_mode as to_working_mode

# -- converters ----------------------------------------------------------------------------


def to_png(
    inputs: Sequence[InputFile], out_dir: Path, options: ImageOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each image as an upright PNG (an APNG for an animation), transparency kept.

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    return convert_each(inputs, out_dir, options, limits=limits, encoder=ENCODERS["png"])


def to_jpeg(
    inputs: Sequence[InputFile], out_dir: Path, options: LossyImageOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each image as an upright JPEG, transparency flattened onto the background.

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    return convert_each(inputs, out_dir, options, limits=limits, encoder=ENCODERS["jpeg"])


def to_webp(
    inputs: Sequence[InputFile], out_dir: Path, options: LossyImageOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each image as an upright WebP (animated for an animation), transparency kept.

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    return convert_each(inputs, out_dir, options, limits=limits, encoder=ENCODERS["webp"])


def to_avif(
    inputs: Sequence[InputFile], out_dir: Path, options: LossyImageOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each image as an upright AVIF, transparency kept.

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    return convert_each(inputs, out_dir, options, limits=limits, encoder=ENCODERS["avif"])


def to_tiff(
    inputs: Sequence[InputFile], out_dir: Path, options: ImageOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each image as an upright, losslessly compressed TIFF (every page of a multi-page TIFF).

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    return convert_each(inputs, out_dir, options, limits=limits, encoder=ENCODERS["tiff"])


def to_gif(
    inputs: Sequence[InputFile], out_dir: Path, options: ImageOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each image as an upright GIF of at most 256 colours (animated for an animation).

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    return convert_each(inputs, out_dir, options, limits=limits, encoder=ENCODERS["gif"])


def to_bmp(
    inputs: Sequence[InputFile], out_dir: Path, options: ImageOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each image as an upright BMP, transparency flattened onto the background.

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    return convert_each(inputs, out_dir, options, limits=limits, encoder=ENCODERS["bmp"])


def to_heic(
    inputs: Sequence[InputFile], out_dir: Path, options: LossyImageOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each image as an upright HEIC (needs libheif with an HEVC encoder).

    Raises UnsupportedConversion, UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions.
    """
    if not HEIF_WRITES:
        raise UnsupportedConversion("this installation cannot write HEIC (no HEVC encoder)")
    return convert_each(inputs, out_dir, options, limits=limits, encoder=ENCODERS["heic"])


def convert_each(
    inputs: Sequence[InputFile],
    out_dir: Path,
    options: ImageOptions,
    *,
    limits: Limits,
    encoder: Encoder,
) -> list[OutputFile]:
    """One output per input, written by `encoder`. Raises like the public converters."""
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in inputs:
        checkpoint()
        name = names.add(source.filename, encoder.extension, fallback="image")
        outputs.append(convert_one(source, out_dir / name, options, limits=limits, encoder=encoder))
    return outputs


def converter_for(encoder: Encoder) -> Converter[ImageOptions]:
    """The converter writing each image in `encoder`'s format: what the registry runs for an image
    output format that has no function of its own."""

    def convert(
        inputs: Sequence[InputFile], out_dir: Path, options: ImageOptions, *, limits: Limits
    ) -> list[OutputFile]:
        if not can_write(encoder):
            raise UnsupportedConversion(f"this installation cannot write {encoder.name.upper()}")
        return convert_each(inputs, out_dir, options, limits=limits, encoder=encoder)

    return convert
