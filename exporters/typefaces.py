"""A fallback typeface for what DejaVu has no glyph for (Chinese, Japanese), when one is installed.

The shipped DejaVu fonts cover Latin, Cyrillic and Greek. For CJK text the PDF converters look for
an installed TrueType CJK font (reportlab embeds TrueType outlines only, not the CFF of Noto CJK),
and draw the characters DejaVu lacks in it, run by run. Without one, those characters have no
glyph; GET /v1/formats does not change, the text layer still holds them.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

#: TrueType fonts with CJK coverage, as Debian and others install them, first found wins.
CANDIDATES = (
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),  # fonts-droid-fallback
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),  # fonts-wqy-microhei
    Path("/usr/share/fonts/truetype/arphic/uming.ttc"),  # fonts-arphic-uming
    Path("/usr/share/fonts/droid/DroidSansFallbackFull.ttf"),  # Fedora, Arch
)

FALLBACK = "exportd-CJK"

# Characters worth a look: everything from the CJK radicals up (Latin, Cyrillic and Greek are
# below), so text without them costs one regular-expression search.
_MAYBE_CJK = re.compile("[\u2e80-\U0003ffff]")


def _register() -> TTFont | None:
    for path in CANDIDATES:
        if path.is_file():
            try:
                font = TTFont(FALLBACK, str(path), subfontIndex=0)
            except Exception:  # a damaged or unusable font file: try the next
                continue
            pdfmetrics.registerFont(font)
            return font
    return None


_lock = threading.Lock()
_looked = False
_fallback_font: TTFont | None = None


def _fallback() -> TTFont | None:
    """The fallback font, loaded the first time CJK text is met: parsing it costs about 20 MB, which
    a worker that never sees CJK does not pay."""
    global _looked, _fallback_font
    with _lock:
        if not _looked:
            _fallback_font = _register()
            _looked = True
    return _fallback_font


def available() -> bool:
    """Whether a CJK fallback font is installed."""
    return _fallback() is not None


def runs(text: str, font_name: str) -> list[tuple[str, str]]:
    """`text` cut into (font name, piece) runs: `font_name` where it has the glyph, else the fallback."""
    if not _MAYBE_CJK.search(text):
        return [(font_name, text)]
    font = _fallback()
    if font is None:
        return [(font_name, text)]
    covered = pdfmetrics.getFont(font_name).face.charToGlyph
    fallback = font.face.charToGlyph
    pieces: list[tuple[str, str]] = []
    for char in text:
        code = ord(char)
        name = FALLBACK if code not in covered and code in fallback else font_name
        if pieces and pieces[-1][0] == name:
            pieces[-1] = (name, pieces[-1][1] + char)
        else:
            pieces.append((name, char))
    return pieces


def measure(font: Any, text: str, size: float) -> float:
    """The width of `text` drawn with the registered `font` object and, where it lacks glyphs, the fallback."""
    pieces = runs(text, font.fontName)
    if len(pieces) == 1 and pieces[0][0] == font.fontName:
        return float(font.stringWidth(text, size))
    return string_width(text, font.fontName, size)


def draw(text_object: Any, text: str, font_name: str, size: float, leading: float) -> None:
    """textOut of `text` in `font_name`, switching to the fallback for the runs it has no glyph for."""
    pieces = runs(text, font_name)
    if len(pieces) == 1 and pieces[0][0] == font_name:
        text_object.textOut(text)
        return
    for name, piece in pieces:
        text_object.setFont(name, size, leading)
        text_object.textOut(piece)
    text_object.setFont(font_name, size, leading)


def markup(text: str, font_name: str) -> str:
    """`text` escaped for Paragraph markup, its fallback runs in <font> tags."""
    return "".join(
        escape(piece) if name == font_name else f'<font face="{name}">{escape(piece)}</font>'
        for name, piece in runs(text, font_name)
    )


def string_width(text: str, font_name: str, size: float) -> float:
    """The width of `text` in points, each run in the font it will be drawn in."""
    return float(sum(pdfmetrics.stringWidth(piece, name, size) for name, piece in runs(text, font_name)))
