"""The reportlab canvas every PDF drawn by this package starts from."""

from __future__ import annotations

from pathlib import Path

from reportlab import rl_config
from reportlab.pdfgen.canvas import Canvas

from exporters import fonts

# reportlab wraps every stream, images included, in ASCII85 unless told otherwise: a quarter more
# bytes and most of the time spent on a PDF of photos. Version 5.1 has no per-canvas switch (each
# stream reads rl_config.useA85 when it is written), so it is turned off once, here, at import.
rl_config.useA85 = 0


def new_canvas(path: Path, page_size: tuple[float, float], *, initial_font: str | None = None) -> Canvas:
    """A reportlab canvas that writes a compressed, byte-for-byte reproducible PDF to `path`."""
    fonts.register()
    canvas = Canvas(
        str(path), pagesize=page_size, pageCompression=1, invariant=True, initialFontName=initial_font
    )
    canvas.setCreator("exportd")
    return canvas
