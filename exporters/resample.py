"""Resizing pixels: libvips's vectorised resamplers when they are installed, Pillow's otherwise.

Pillow's resampling is exact but scalar: on a 12 MP photo shown 1600 px wide it took 45 ms of
the 90 ms the whole conversion took after a reduced JPEG decode. libvips (the pyvips-binary
wheel, the library imgproxy is built on) does the same filters with SIMD in about a tenth of that.
Only the resampling is handed over; decoding, colour, metadata and encoding stay with Pillow, so
the format allow-list and everything else stay as they are.

Alpha is premultiplied before resampling (as Pillow does itself), so no dark or coloured fringes
appear where transparent pixels meet opaque ones.
"""

from __future__ import annotations

import ctypes
import logging
from enum import Enum
from typing import Any

from PIL import Image

log = logging.getLogger(__name__)

_NOT_LOADED: Any = object()
#: The pyvips module once loaded, None where it cannot load. Loaded on first use, in the process
#: that resamples: the worker supervisor, which forks the workers, never starts libvips (a child
#: forked from a process whose libvips threads have run can deadlock).
VIPS: Any = _NOT_LOADED


def _vips() -> Any:
    global VIPS
    if VIPS is _NOT_LOADED:
        try:
            import pyvips  # type: ignore[import-untyped]

            # Each conversion already runs on a worker thread of its own, in as many processes as
            # there are cores: libvips's own thread pool would only make them fight. Its operation
            # cache holds pixels of earlier calls; nothing here is computed twice, so it is off.
            pyvips.concurrency_set(1)
            pyvips.cache_set_max(0)
            VIPS = pyvips
        except (ImportError, OSError) as exc:  # no wheel for this platform, or libvips failed to load
            VIPS = None
            if not isinstance(exc, ModuleNotFoundError):
                log.warning("libvips could not be loaded; Pillow resamples instead: %s", exc)
    return VIPS


class Filter(Enum):
    """What the resize is for. The kernels for each are the same in both libraries."""

    #: The default: a windowed sinc, the sharpest without visible ringing.
    LANCZOS = ("lanczos3", Image.Resampling.LANCZOS)
    #: After libjpeg already reduced the photo by 2, 4 or 8 in its DCT (a low-pass of its own), a
    #: cubic finishes it closer to the naive full-size LANCZOS output than LANCZOS again does: on
    #: 12 MP photos made 1600 px wide, 40.2 dB PSNR against 39.8 dB (and softer kernels such as
    #: Mitchell, which score higher there, lose detail on larger reductions: 37 dB at 1/10).
    AFTER_REDUCED_DECODE = ("cubic", Image.Resampling.BICUBIC)

    def __init__(self, vips_kernel: str, pillow: Image.Resampling) -> None:
        self.vips_kernel = vips_kernel
        self.pillow = pillow


#: How much of a reduction is always left to the filter when a cheaper step did the rest: a reduced
#: JPEG decode (libjpeg's DCT scaling, exporters/images.py) or averaging whole blocks here. Both are
#: close to a box filter; leaving at least this much to the filter keeps the result within 40 dB
#: PSNR of a full-size LANCZOS, while a 12 MP photo shown 1600 px wide is still reduced by 2 first.
REDUCE_MARGIN = 1.25

_PREMULTIPLIED = {"RGBA": "RGBa", "LA": "La"}
_BANDS = {"L": 1, "La": 2, "RGB": 3, "RGBa": 4, "CMYK": 4}
#: Modes whose pixels libvips can read where Pillow keeps them, and how Pillow reads the result back:
#: one byte a pixel for L, four for the others (RGB's fourth is padding, resampled and dropped).
_SHARED_RAWMODE = {"L": "L", "RGB": "RGBX", "RGBa": "RGBa", "CMYK": "CMYK"}


class _ArrowArray(ctypes.Structure):
    """The Arrow C data interface's ArrowArray (a stable ABI), as Pillow exports an image."""


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64), ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))), ("dictionary", ctypes.POINTER(_ArrowArray)),
    ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p),
]  # fmt: skip
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _shared_memory(pixels: Image.Image, stored: int) -> Any:
    """Pillow's own pixel memory (`stored` bytes a pixel) as a buffer, without a copy, through its
    Arrow export; None where its rows are not contiguous (large images lie in several blocks) or
    this Pillow cannot export."""
    width, height = pixels.size
    try:
        capsule = pixels.im.__arrow_c_array__()
    except (AttributeError, ValueError):
        return None
    exported = _ArrowArray.from_address(_capsule_pointer(capsule, b"arrow_array"))
    data = exported.children[0].contents if exported.n_children else exported
    if data.length != width * height * stored or data.offset or not data.buffers[1]:
        return None
    shared = (ctypes.c_ubyte * data.length).from_address(data.buffers[1])
    shared.keep = capsule  # the capsule holds Pillow's memory while libvips reads it
    return shared


def _vips_source(vips: Any, pixels: Image.Image) -> tuple[Any, str]:
    """`pixels` as a libvips image, and the raw mode its resampled bytes come back in.

    libvips reads Pillow's memory as it lies, each pixel's bytes padding included, where it can;
    otherwise (LA keeps its bands apart; see also _shared_memory) the pixels are copied out."""
    width, height = pixels.size
    rawmode = _SHARED_RAWMODE.get(pixels.mode)
    shared = _shared_memory(pixels, len(rawmode)) if rawmode else None
    if rawmode is None or shared is None:
        copied = pixels.tobytes()
        return vips.Image.new_from_memory(copied, width, height, _BANDS[pixels.mode], "uchar"), pixels.mode
    return vips.Image.new_from_memory(shared, width, height, len(rawmode), "uchar"), rawmode


def resize(
    image: Image.Image,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
    kernel: Filter = Filter.LANCZOS,
) -> Image.Image:
    """`image`'s `box` (all of it by default) resampled to exactly `size`. Reductions in modes L, LA,
    RGB, RGBA and CMYK go through libvips; anything else, enlargements, and boxes that do not fall on
    whole pixels, through Pillow."""
    whole = (0, 0, image.size[0], image.size[1])
    box = box or whole

    requested = kernel.pillow  # a pre-reduce below changes `kernel`; a fallback uses the original

    def with_pillow() -> Image.Image:
        return image.resize(size, requested, box=box, reducing_gap=3.0)

    enlarging = size[0] > box[2] - box[0] or size[1] > box[3] - box[1]
    # Enlargements (only on request, and rare) stay with Pillow: libvips aligns pixel centres
    # differently when it upsamples, so its results would drift from Pillow's by a fraction of a pixel.
    vips = _vips()
    if vips is None or enlarging or not all(float(v).is_integer() for v in box):
        return with_pillow()
    mode = image.mode
    pixels = image.convert(_PREMULTIPLIED[mode]) if mode in _PREMULTIPLIED else image
    if pixels.mode not in _BANDS:
        return with_pillow()
    left, top, right, bottom = (int(v) for v in box)
    factor = int(min((right - left) / size[0], (bottom - top) / size[1]) / REDUCE_MARGIN)
    if factor >= 2 and kernel is Filter.LANCZOS and (left, top, right, bottom) == whole:
        # Averaging whole blocks first (in C, on premultiplied pixels) is what libjpeg's reduced
        # decode does for JPEGs; it leaves libvips a quarter or less of the pixels to copy and filter.
        # Not after a reduced decode: two low-passes in a row would blur (34 dB instead of 43).
        pixels = pixels.reduce(factor)
        kernel = Filter.AFTER_REDUCED_DECODE
        left, top, right, bottom = 0, 0, pixels.size[0], pixels.size[1]
    width, height = pixels.size
    source, rawmode = _vips_source(vips, pixels)
    if (left, top, right, bottom) != (0, 0, width, height):
        source = source.extract_area(left, top, right - left, bottom - top)
    # A reducing gap of 3 as for Pillow: an integer box shrink first only where it is invisible.
    scaled = source.resize(
        size[0] / source.width, vscale=size[1] / source.height, kernel=kernel.vips_kernel, gap=3.0
    )
    if (scaled.width, scaled.height) != size:  # rounding at an odd scale: never guess, do it exactly
        return with_pillow()
    result = Image.new(pixels.mode, size, None)  # not cleared first: every pixel is written next
    result.frombytes(scaled.write_to_memory(), "raw", rawmode)
    return result.convert(mode) if mode in _PREMULTIPLIED else result


def engine() -> str:
    """Which library resamples, for logs and benchmarks."""
    vips = _vips()
    return f"libvips {vips.version(0)}.{vips.version(1)}.{vips.version(2)}" if vips else "Pillow"
