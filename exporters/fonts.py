"""The bundled DejaVu faces: their names for reportlab, and their one registration.

reportlab keeps fonts in a process-wide registry. They are registered once per process by
`register()`: the worker calls it at start-up (exporters.registry.prepare), and every converter
that draws text with reportlab calls it too, which costs nothing once done. Importing this module
registers nothing and loads no reportlab.
"""

from __future__ import annotations

import threading
from pathlib import Path

FONT_DIR = Path(__file__).parent / "fonts"

#: Font option value -> the name the font is registered under with reportlab.
FONTS: dict[str, str] = {"sans": "exportd-DejaVuSans", "mono": "exportd-DejaVuSansMono"}
SANS_BOLD = "exportd-DejaVuSans-Bold"

#: Every face registered: reportlab name -> file in FONT_DIR.
FACES: dict[str, str] = {
    FONTS["sans"]: "DejaVuSans.ttf",
    FONTS["mono"]: "DejaVuSansMono.ttf",
    SANS_BOLD: "DejaVuSans-Bold.ttf",
    "exportd-DejaVuSans-Oblique": "DejaVuSans-Oblique.ttf",
    "exportd-DejaVuSans-BoldOblique": "DejaVuSans-BoldOblique.ttf",
    "exportd-DejaVuSansMono-Bold": "DejaVuSansMono-Bold.ttf",
}

_lock = threading.Lock()
_registered = False


def register() -> None:
    """Register the bundled faces with reportlab, once per process (later calls return at once).

    Each document still gets its own subset of glyphs (reportlab keys that state by document).
    """
    global _registered
    if _registered:
        return
    with _lock:
        if _registered:
            return
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        for name, file in FACES.items():
            if name not in pdfmetrics.getRegisteredFontNames():
                pdfmetrics.registerFont(TTFont(name, str(FONT_DIR / file)))
        # So that <b> and <i> in Paragraph markup pick the bold and oblique faces.
        sans, mono = FONTS["sans"], FONTS["mono"]
        pdfmetrics.registerFontFamily(sans, normal=sans, bold=SANS_BOLD, italic="exportd-DejaVuSans-Oblique",
                                      boldItalic="exportd-DejaVuSans-BoldOblique")  # fmt: skip
        pdfmetrics.registerFontFamily(mono, normal=mono, bold="exportd-DejaVuSansMono-Bold", italic=mono,
                                      boldItalic="exportd-DejaVuSansMono-Bold")  # fmt: skip
        _registered = True
