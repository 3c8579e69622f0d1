"""Contact sheets: many photos as a grid of captioned thumbnails, as PDF pages or PNG sheets."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics

from exporters import fonts
from exporters.base import ConversionError, InputFile, InputTooLarge, Limits, OutputFile
from exporters.canvas import new_canvas
from exporters.fonts import FONTS
from exporters.naming import UniqueNames
from exporters.options import ContactSheetOptions as ContactSheetOptions
from exporters.options import ImageOptions
from exporters.pages import PAGE_SIZES
from exporters.pictures import flatten, render

_FONT_FILE = Path(__file__).parent / "fonts" / "DejaVuSans.ttf"
_WHITE = (255, 255, 255)
_PLACEHOLDER = (235, 235, 235)
_INK = (40, 40, 40)
#: Thumbnails are decoded at this many times the size they are drawn at, so they stay sharp when
#: the PDF is zoomed or printed (a 300 dpi print of a 4-column A4 sheet needs about 500 px).
_PDF_THUMB_OVERSAMPLE = 2.5


@dataclass(frozen=True)
class _Cell:
    caption: str
    thumbnail: Image.Image | None  # None: the photo could not be read
    reason: str = ""


@dataclass(frozen=True)
class _Layout:
    width: float
    height: float
    margin: float
    header: float
    footer: float
    caption: float
    columns: int
    rows: int

    @property
    def cell_w(self) -> float:
        return (self.width - 2 * self.margin) / self.columns

    @property
    def cell_h(self) -> float:
        return (self.height - 2 * self.margin - self.header - self.footer) / self.rows

    def thumb_box(self) -> tuple[float, float]:
        pad = self.cell_w * 0.06
        return self.cell_w - 2 * pad, self.cell_h - 2 * pad - self.caption

    def cell_origin(self, slot: int) -> tuple[float, float]:
        """Top-left corner of a cell, y growing downwards."""
        row, column = divmod(slot, self.columns)
        return self.margin + column * self.cell_w, self.margin + self.header + row * self.cell_h


def _layout(options: ContactSheetOptions, width: float, height: float) -> _Layout:
    unit = width / 100  # sizes in proportion to the page: the same look in points and in pixels
    return _Layout(
        width=width,
        height=height,
        margin=4 * unit,
        header=4 * unit if options.title else 0,
        footer=3 * unit,
        caption=2.6 * unit,
        columns=options.columns,
        rows=options.rows,
    )


def _page_size(options: ContactSheetOptions) -> tuple[float, float]:
    width, height = PAGE_SIZES[options.page_size]
    return (height, width) if options.landscape else (width, height)


def _cells(
    inputs: Sequence[InputFile], thumb_px: int, options: ContactSheetOptions, *, limits: Limits
) -> Iterator[_Cell]:
    """One thumbnail per input, upright and in sRGB, decoded at thumbnail size (JPEGs at 1/8 scale)."""
    thumb_options = ImageOptions(width=thumb_px, height=thumb_px, fit="inside", first_frame_only=True)
    for source in inputs:
        try:
            rendered = render(source, thumb_options, limits=limits, encoder=None)
        except ConversionError as exc:
            if not options.skip_failed:
                raise
            yield _Cell(source.filename, None, exc.message)
            continue
        yield _Cell(source.filename, flatten(rendered.frames[0], _WHITE).convert("RGB"))


def _pages(cells: Iterator[_Cell], per_page: int) -> Iterator[list[_Cell]]:
    page: list[_Cell] = []
    for cell in cells:
        page.append(cell)
        if len(page) == per_page:
            yield page
            page = []
    if page:
        yield page


def _fit(width: float, height: float, box_w: float, box_h: float) -> tuple[float, float]:
    scale = min(box_w / width, box_h / height)
    return width * scale, height * scale


def _check(inputs: Sequence[InputFile], options: ContactSheetOptions, limits: Limits) -> int:
    pages = math.ceil(len(inputs) / (options.columns * options.rows))
    if pages > limits.max_pages:
        raise InputTooLarge(f"{len(inputs)} photos make {pages} pages; the limit is {limits.max_pages}")
    return pages


def contact_sheet_pdf(
    inputs: Sequence[InputFile], out_dir: Path, options: ContactSheetOptions, *, limits: Limits
) -> list[OutputFile]:
    """One PDF of captioned thumbnails, `columns` × `rows` a page, numbered "page N of M".

    Raises UnsupportedInput, CorruptInput, InputTooLarge (unless skip_failed for unreadable photos).
    """
    total = _check(inputs, options, limits)
    width, height = _page_size(options)
    layout = _layout(options, width, height)
    box_w, box_h = layout.thumb_box()
    thumb_px = max(16, round(max(box_w, box_h) * _PDF_THUMB_OVERSAMPLE))
    path = out_dir / "contact-sheet.pdf"
    font = FONTS["sans"]
    canvas = new_canvas(path, (width, height), initial_font=font)
    if options.title:
        canvas.setTitle(options.title)
    for number, page in enumerate(
        _pages(_cells(inputs, thumb_px, options, limits=limits), layout.columns * layout.rows), 1
    ):
        canvas.setFillColorRGB(*(c / 255 for c in _INK))
        if options.title:
            canvas.setFont(font, layout.header * 0.45)
            canvas.drawString(
                layout.margin,
                height - layout.margin - layout.header * 0.6,
                _clip(options.title, font, layout.header * 0.45, width - 2 * layout.margin),
            )
        canvas.setFont(font, layout.footer * 0.45)
        canvas.drawCentredString(width / 2, layout.margin, f"page {number} of {total}")
        for slot, cell in enumerate(page):
            left, top = layout.cell_origin(slot)
            pad = layout.cell_w * 0.06
            if cell.thumbnail is not None:
                draw_w, draw_h = _fit(*cell.thumbnail.size, box_w, box_h)
                x = left + pad + (box_w - draw_w) / 2
                y = height - (top + pad + box_h)  # resting on its caption
                canvas.drawImage(ImageReader(cell.thumbnail), x, y, draw_w, draw_h)
            else:
                canvas.setFillColorRGB(*(c / 255 for c in _PLACEHOLDER))
                canvas.rect(left + pad, height - (top + pad + box_h), box_w, box_h, stroke=0, fill=1)
                canvas.setFillColorRGB(*(c / 255 for c in _INK))
                canvas.setFont(font, layout.caption * 0.4)
                canvas.drawCentredString(
                    left + layout.cell_w / 2,
                    height - (top + pad + box_h / 2),
                    _clip(cell.reason, font, layout.caption * 0.4, box_w),
                )
            size = layout.caption * 0.45
            canvas.setFont(font, size)
            canvas.drawCentredString(
                left + layout.cell_w / 2,
                height - (top + pad + box_h + layout.caption * 0.7),
                _clip(cell.caption, font, size, box_w),
            )
        canvas.showPage()
    canvas.save()
    return [OutputFile(path=path, name=path.name, content_type="application/pdf", details={"pages": total})]


def contact_sheet_png(
    inputs: Sequence[InputFile], out_dir: Path, options: ContactSheetOptions, *, limits: Limits
) -> list[OutputFile]:
    """PNG sheets of captioned thumbnails, `columns` × `rows` each, numbered "page N of M".

    Raises UnsupportedInput, CorruptInput, InputTooLarge (unless skip_failed for unreadable photos).
    """
    fonts.register()  # captions are measured with the bundled face
    total = _check(inputs, options, limits)
    page_w, page_h = _page_size(options)
    width = options.sheet_width_px
    height = round(width * page_h / page_w)
    if width * height * total > limits.max_total_pixels:
        raise InputTooLarge(
            f"{total} sheets of {width}×{height} pixels exceed the limit of {limits.max_total_pixels:,} pixels"
        )
    layout = _layout(options, width, height)
    box_w, box_h = layout.thumb_box()
    thumb_px = max(16, round(max(box_w, box_h)))
    caption_font = ImageFont.truetype(str(_FONT_FILE), max(8, round(layout.caption * 0.45)))
    footer_font = ImageFont.truetype(str(_FONT_FILE), max(8, round(layout.footer * 0.45)))
    title_font = ImageFont.truetype(str(_FONT_FILE), max(8, round(layout.header * 0.45 or 8)))
    names = UniqueNames()
    outputs = []
    for number, page in enumerate(
        _pages(_cells(inputs, thumb_px, options, limits=limits), layout.columns * layout.rows), 1
    ):
        sheet = Image.new("RGB", (width, height), _WHITE)
        draw = ImageDraw.Draw(sheet)
        if options.title:
            draw.text(
                (layout.margin, layout.margin + layout.header * 0.2),
                _clip_px(options.title, title_font, width - 2 * layout.margin),
                fill=_INK,
                font=title_font,
            )
        draw.text(
            (width / 2, height - layout.margin),
            f"page {number} of {total}",
            fill=_INK,
            font=footer_font,
            anchor="ms",
        )
        for slot, cell in enumerate(page):
            left, top = layout.cell_origin(slot)
            pad = layout.cell_w * 0.06
            if cell.thumbnail is not None:
                thumb = cell.thumbnail
                if max(thumb.size[0] / box_w, thumb.size[1] / box_h) > 1:
                    draw_w, draw_h = _fit(*thumb.size, box_w, box_h)
                    thumb = thumb.resize(
                        (max(1, round(draw_w)), max(1, round(draw_h))), Image.Resampling.LANCZOS
                    )
                x = round(left + pad + (box_w - thumb.size[0]) / 2)
                y = round(top + pad + box_h - thumb.size[1])  # resting on its caption
                sheet.paste(thumb, (x, y))
            else:
                draw.rectangle(
                    (left + pad, top + pad, left + pad + box_w, top + pad + box_h), fill=_PLACEHOLDER
                )
                draw.text(
                    (left + layout.cell_w / 2, top + pad + box_h / 2),
                    _clip_px(cell.reason, caption_font, box_w),
                    fill=_INK,
                    font=caption_font,
                    anchor="mm",
                )
            draw.text(
                (left + layout.cell_w / 2, top + pad + box_h + layout.caption * 0.7),
                _clip_px(cell.caption, caption_font, box_w),
                fill=_INK,
                font=caption_font,
                anchor="ms",
            )
        name = names.add("contact-sheet", "png", fallback="contact-sheet")
        path = out_dir / name
        sheet.save(path, "PNG", compress_level=6)
        outputs.append(
            OutputFile(
                path=path, name=name, content_type="image/png", details={"page": number, "pages": total}
            )
        )
    return outputs


def _clip(text: str, font: str, size: float, width: float) -> str:
    """`text`, shortened with an ellipsis to fit `width` points."""
    if pdfmetrics.stringWidth(text, font, size) <= width:
        return text
    while text and pdfmetrics.stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text + "…"


def _clip_px(text: str, font: ImageFont.FreeTypeFont, width: float) -> str:
    """`text`, shortened with an ellipsis to fit `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"
