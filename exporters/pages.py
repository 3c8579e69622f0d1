"""Paper sizes, in PDF points (1/72 inch), portrait: what every family that lays out pages offers.

Plain numbers (reportlab's A4 and LETTER), so that options can name them without loading reportlab.
"""

from __future__ import annotations

_MM = 72 / 25.4

PAGE_SIZES: dict[str, tuple[float, float]] = {"A4": (210 * _MM, 297 * _MM), "Letter": (612.0, 792.0)}
