"""Geometry of an image export: turns and flips as one transform, and what part of the picture
ends up how large in the output.

Turning a 12-megapixel photo costs as much as resizing it, so the EXIF orientation, the client's
rotate and flip are combined into one of the eight transforms of a rectangle, and that one is
applied once, to the small resized picture. Crops are computed on the picture as the client sees
it (upright, turned, flipped) and mapped back onto the stored pixels, which are resized directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

# A transform as the matrix (a, b, c, d) acting on pixel coordinates centred on the picture, x to
# the right and y down: x' = a·x + b·y, y' = c·x + d·y.
Matrix = tuple[int, int, int, int]

IDENTITY: Matrix = (1, 0, 0, 1)

#: Pillow's transpose methods as matrices.
MATRIX_OF_METHOD: dict[Image.Transpose, Matrix] = {
    Image.Transpose.FLIP_LEFT_RIGHT: (-1, 0, 0, 1),
    Image.Transpose.FLIP_TOP_BOTTOM: (1, 0, 0, -1),
    Image.Transpose.ROTATE_90: (0, 1, -1, 0),  # anticlockwise
    Image.Transpose.ROTATE_180: (-1, 0, 0, -1),
    Image.Transpose.ROTATE_270: (0, -1, 1, 0),  # clockwise
    Image.Transpose.TRANSPOSE: (0, 1, 1, 0),
    Image.Transpose.TRANSVERSE: (0, -1, -1, 0),
}
_METHOD_OF_MATRIX = {matrix: method for method, matrix in MATRIX_OF_METHOD.items()}

#: What makes a stored picture upright, per EXIF orientation (as Pillow's exif_transpose does).
EXIF_ORIENTATION_METHOD: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

#: The client's rotate option (degrees clockwise) and flip option as transforms.
ROTATE_METHOD: dict[int, Image.Transpose | None] = {
    0: None,
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}
FLIP_MATRIX: dict[str, Matrix] = {
    "none": IDENTITY,
    "horizontal": (-1, 0, 0, 1),
    "vertical": (1, 0, 0, -1),
    "both": (-1, 0, 0, -1),
}

GRAVITY: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "north": (0.5, 0.0),
    "south": (0.5, 1.0),
    "east": (1.0, 0.5),
    "west": (0.0, 0.5),
    "northeast": (1.0, 0.0),
    "northwest": (0.0, 0.0),
    "southeast": (1.0, 1.0),
    "southwest": (0.0, 1.0),
}

Box = tuple[float, float, float, float]  # left, top, right, bottom, in fractions of the sides
WHOLE: Box = (0.0, 0.0, 1.0, 1.0)


def _multiply(second: Matrix, first: Matrix) -> Matrix:
    """The transform that applies `first`, then `second`."""
    a, b, c, d = second
    e, f, g, h = first
    return (a * e + b * g, a * f + b * h, c * e + d * g, c * f + d * h)


@dataclass(frozen=True)
class Transform:
    """One of the eight ways to turn and mirror a rectangle."""

    matrix: Matrix = IDENTITY

    @classmethod
    def of(cls, *methods: Image.Transpose | None) -> Transform:
        """The transform applying `methods` in order (None does nothing)."""
        matrix = IDENTITY
        for method in methods:
            if method is not None:
                matrix = _multiply(MATRIX_OF_METHOD[method], matrix)
        return cls(matrix)

    def then(self, other: Transform) -> Transform:
        return Transform(_multiply(other.matrix, self.matrix))

    @property
    def swaps_axes(self) -> bool:
        return self.matrix[0] == 0

    @property
    def method(self) -> Image.Transpose | None:
        """Pillow's transpose method doing this (None for the identity)."""
        return _METHOD_OF_MATRIX.get(self.matrix)

    def size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size of a picture of `size` once transformed (or, since swapping is symmetric, before)."""
        return (size[1], size[0]) if self.swaps_axes else size

    def box_before(self, box: Box) -> Box:
        """The box, given on the transformed picture, on the picture before the transform."""
        a, b, c, d = self.matrix
        # The inverse of an orthogonal matrix is its transpose.
        corners = []
        for x, y in ((box[0], box[1]), (box[2], box[3])):
            u, v = x - 0.5, y - 0.5
            corners.append((a * u + c * v + 0.5, b * u + d * v + 0.5))
        (x0, y0), (x1, y1) = corners
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    def apply(self, image: Image.Image) -> Image.Image:
        method = self.method
        return image if method is None else image.transpose(method)


@dataclass(frozen=True)
class ResizePlan:
    """What to make of a picture: the output size, the part of the picture that fills it, and where."""

    size: tuple[int, int]  # the output, in pixels
    content: tuple[int, int]  # the picture within the output; smaller than `size` only for contain
    crop: Box  # the part of the picture used
    offset: tuple[int, int] = (0, 0)  # where the content sits in the output (contain pads around it)


def px(length: float) -> int:
    """A computed length as a whole number of pixels, at least one."""
    return max(1, int(length + 0.5))


def plan_resize(
    width: int,
    height: int,
    *,
    box_w: int | None,
    box_h: int | None,
    fit: str,
    enlarge: bool,
    gravity: str = "center",
) -> ResizePlan:
    """The output of a picture of `width` by `height` pixels asked to meet a box (see ImageOptions.fit)."""
    gx, gy = GRAVITY[gravity]
    if box_w is None or box_h is None:
        if box_w is not None:
            scale = box_w / width
        elif box_h is not None:
            scale = box_h / height
        else:
            return ResizePlan((width, height), (width, height), WHOLE)
        if not enlarge:
            scale = min(scale, 1.0)
        size = (px(width * scale), px(height * scale))
        return ResizePlan(size, size, WHOLE)

    if fit == "fill":
        size = (box_w, box_h) if enlarge else (min(box_w, width), min(box_h, height))
        return ResizePlan(size, size, WHOLE)
    if fit == "cover":
        # Without enlarging, shrink the box (keeping its shape) until the image covers it at scale 1.
        shrink = 1.0 if enlarge else min(1.0, width / box_w, height / box_h)
        size = (px(box_w * shrink), px(box_h * shrink))
        scale = max(size[0] / width, size[1] / height)
        used_w = min(1.0, size[0] / scale / width)
        used_h = min(1.0, size[1] / scale / height)
        left, top = (1.0 - used_w) * gx, (1.0 - used_h) * gy
        return ResizePlan(size, size, (left, top, left + used_w, top + used_h))

    pick = max if fit == "outside" else min
    scale = pick(box_w / width, box_h / height)
    if not enlarge:
        scale = min(scale, 1.0)
    content = (px(width * scale), px(height * scale))
    if fit == "contain":
        offset = (int((box_w - content[0]) * gx), int((box_h - content[1]) * gy))
        return ResizePlan((box_w, box_h), content, WHOLE, offset)
    return ResizePlan(content, content, WHOLE)


def within(outer: Box, inner: Box) -> Box:
    """`inner` (fractions of the part `outer` selects) as fractions of the whole."""
    w, h = outer[2] - outer[0], outer[3] - outer[1]
    return (
        outer[0] + inner[0] * w,
        outer[1] + inner[1] * h,
        outer[0] + inner[2] * w,
        outer[1] + inner[3] * h,
    )
