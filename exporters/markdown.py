"""Markdown to PDF: CommonMark plus tables and strikethrough, typeset with reportlab's Platypus.

Every piece of the client's text is escaped before it becomes Paragraph markup, so a document can
never inject reportlab tags (fonts, links, images from the disk). Raw HTML is shown as text.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    HRFlowable,
    Image,
    KeepTogether,
    ListFlowable,
    ListItem,
    Paragraph,
    Preformatted,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

import exporters.canvas  # noqa: F401  # its reportlab setting (no ASCII85 streams) applies to these PDFs
from exporters import fonts, media, resample, typefaces
from exporters.base import (
    CorruptInput,
    InputFile,
    InputTooLarge,
    InvalidOptions,
    Limits,
    OutputFile,
    UnsupportedConversion,
    describe,
)
from exporters.fonts import FONTS
from exporters.jpeg import passthrough
from exporters.naming import UniqueNames
from exporters.options import MarkdownPdfOptions as MarkdownPdfOptions
from exporters.pages import PAGE_SIZES
from exporters.pictures import (
    decode_upright,
    flatten,
    is_srgb,
    open_image,
    orientation_of,
    to_srgb,
    to_working_mode,
)
from exporters.sniff import detect_encoding
from exporters.sniff import sniff_markdown as sniff_markdown

MARKDOWN_TYPE = media.MARKDOWN
_FONT_DIR = fonts.FONT_DIR
_SANS = FONTS["sans"]
_MONO = FONTS["mono"]

_LINK_SCHEMES = ("http://", "https://", "mailto:")
_MONO_ADVANCE_EM = 0.602  # DejaVu Sans Mono's advance width, for wrapping code by characters
_MAX_IMAGE_PIXELS_PER_DOCUMENT = 4  # × limits.max_pixels: all images of one document together
#: Pictures are stored with this many pixels per inch of their drawn size at most: what a printer
#: resolves; more only makes the file larger.
PRINT_DPI = 300
_POINTS_PER_INCH = 72.0
_JPEG_QUALITY = 90
# Pictures of lossy formats (their records in exporters.media) are re-encoded as JPEG; the others losslessly.
_PHOTO_FORMATS = ("MPO", *(f.pillow for f in media.FORMATS if f.lossy and f.pillow))
_WHITE = (255, 255, 255)


def markdown_to_pdf(
    inputs: Sequence[InputFile], out_dir: Path, options: MarkdownPdfOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each Markdown input as a PDF; image inputs of the same job are the pictures its `![](name)` refer to.

    Raises UnsupportedConversion (no Markdown input), CorruptInput (not UTF-8), InputTooLarge (more
    than limits.max_pages pages, pictures over the pixel limit), InvalidOptions.
    """
    if options.engine == "html":
        return _markdown_via_html(inputs, out_dir, options, limits=limits)
    fonts.register()
    if any(s.content_type == "text/css" or s.content_type.startswith("font/") for s in inputs):
        raise InvalidOptions('stylesheets and fonts style Markdown only with engine: "html"')
    documents = [s for s in inputs if not s.content_type.startswith("image/")]
    pictures = {s.filename.rsplit("/", 1)[-1]: s for s in inputs if s.content_type.startswith("image/")}
    if not documents:
        raise UnsupportedConversion("a Markdown export needs a Markdown file; only images were given")
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in documents:
        data = source.path.read_bytes()
        # The encoding as the sniffer found it (exporters.charsets): a cp1251 .md is Markdown too.
        encoding = detect_encoding(data)
        if encoding is None:
            raise CorruptInput(f"{describe(source)} is not text in any encoding this service reads")
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise CorruptInput(
                f"{describe(source)} is not valid {encoding.upper()} text (byte offset {exc.start})"
            ) from None
        name = names.add(source.filename, "pdf", fallback="document")
        path = out_dir / name
        builder = _Builder(options, pictures, limits=limits)
        story = builder.story(text)
        title = options.title if options.title is not None else builder.first_heading
        _build(path, story, options, title=title, limits=limits, source=source)
        details: dict[str, Any] = {}
        if builder.missing_images:
            details["images_not_found"] = sorted(builder.missing_images)
        outputs.append(OutputFile(path=path, name=name, content_type="application/pdf", details=details))
    return outputs


# -- Markdown to flowables -------------------------------------------------------------------


class _Builder:
    """Walks the Markdown syntax tree and makes Platypus flowables."""

    def __init__(
        self, options: MarkdownPdfOptions, pictures: dict[str, InputFile], *, limits: Limits
    ) -> None:
        self._options = options
        self._pictures = pictures
        self._limits = limits
        self._pixels_used = 0
        self.first_heading: str | None = None
        self.missing_images: set[str] = set()
        size = options.font_size
        page_w, page_h = PAGE_SIZES[options.page_size]
        if options.orientation == "landscape":
            page_w, page_h = page_h, page_w
        self.frame_width = page_w - 2 * options.margin_mm * mm
        self.frame_height = page_h - 2 * options.margin_mm * mm - 2 * size * 1.6  # header and footer room
        if self.frame_width < 50 or self.frame_height < 50:
            raise InvalidOptions("margin_mm leaves no room for text on the page")
        self.body = ParagraphStyle(
            "body", fontName=_SANS, fontSize=size, leading=size * 1.4, spaceAfter=size * 0.6
        )
        self.cell = ParagraphStyle(
            "cell", parent=self.body, spaceAfter=0, fontSize=size * 0.9, leading=size * 1.2
        )
        self.header_cell = ParagraphStyle("header_cell", parent=self.cell, fontName="exportd-DejaVuSans-Bold")
        self.code = ParagraphStyle(
            "code",
            fontName=_MONO,
            fontSize=size * 0.85,
            leading=size * 1.15,
        )
        self.caption = ParagraphStyle("caption", parent=self.body, alignment=TA_CENTER, fontSize=size * 0.85)
        scales = {1: 2.0, 2: 1.6, 3: 1.3, 4: 1.15, 5: 1.0, 6: 0.9}
        self.headings = {
            level: ParagraphStyle(
                f"h{level}",
                fontName="exportd-DejaVuSans-Bold",
                fontSize=size * scale,
                leading=size * scale * 1.25,
                spaceBefore=size * (1.2 if level <= 2 else 0.8),
                spaceAfter=size * 0.5,
                keepWithNext=True,
            )
            for level, scale in scales.items()
        }
        self._outline_level = -1
        self._headings = 0

    def story(self, text: str) -> list[Flowable]:
        parser = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
        tree = SyntaxTreeNode(parser.parse(text))
        return self._blocks(tree.children, self.frame_width)

    # -- blocks ----------------------------------------------------------------------------

    def _blocks(self, nodes: Sequence[SyntaxTreeNode], width: float) -> list[Flowable]:
        story: list[Flowable] = []
        for node in nodes:
            story.extend(self._block(node, width))
        return story

    def _block(self, node: SyntaxTreeNode, width: float) -> list[Flowable]:
        kind = node.type
        if kind == "heading":
            return [self._heading(node)]
        if kind == "paragraph":
            return self._paragraph(node, self.body, width)
        if kind in ("bullet_list", "ordered_list"):
            return [self._list(node, width)]
        if kind == "blockquote":
            return [self._quote(node, width)]
        if kind in ("fence", "code_block"):
            return [self._code(node.content, width)]
        if kind == "table":
            return [self._table(node, width)]
        if kind == "hr":
            return [HRFlowable(width="100%", thickness=0.6, color=colors.grey, spaceBefore=6, spaceAfter=8)]
        if kind == "html_block":
            return [self._code(node.content, width)]  # shown, never interpreted
        return self._blocks(node.children, width)

    def _heading(self, node: SyntaxTreeNode) -> Flowable:
        level = int(node.tag[1])
        plain = _plain_text(node)
        if self.first_heading is None and plain:
            self.first_heading = plain
        # The outline cannot skip levels (a ### under a #): each entry is at most one deeper.
        outline_level = min(level - 1, self._outline_level + 1)
        self._outline_level = outline_level
        paragraph = _Heading(self._inline(node.children[0] if node.children else None), self.headings[level])
        self._headings += 1
        # Keys are counted, not taken from id(): they are written into the PDF, which must not vary.
        paragraph.outline = (plain or " ", outline_level, f"h{self._headings}")
        return paragraph

    def _paragraph(self, node: SyntaxTreeNode, style: ParagraphStyle, width: float) -> list[Flowable]:
        """A paragraph; pictures in it become flowables of their own, in their place."""
        inline = node.children[0] if node.children else None
        if inline is None:
            return []
        pieces: list[Flowable] = []
        run: list[SyntaxTreeNode] = []
        for child in inline.children:
            if child.type == "image":
                if run:
                    pieces.append(Paragraph(self._inline_nodes(run), style))
                    run = []
                pieces.extend(self._image(child, width))
            else:
                run.append(child)
        if run and (markup := self._inline_nodes(run)).strip():
            pieces.append(Paragraph(markup, style))
        return pieces

    def _list(self, node: SyntaxTreeNode, width: float) -> Flowable:
        indent = self.body.fontSize * 1.6
        items = []
        for item in node.children:
            content: list[Flowable] = []
            for child in item.children:
                if child.type == "paragraph":
                    content.extend(self._paragraph(child, self.body, width - indent))
                else:
                    content.extend(self._block(child, width - indent))
            items.append(ListItem(content or [Spacer(1, 1)]))
        if node.type == "ordered_list":
            start = node.attrs.get("start", 1)
            return ListFlowable(
                items, bulletType="1", start=str(start), leftIndent=indent, bulletFontName=_SANS,
                bulletFontSize=self.body.fontSize, bulletFormat="%s.",
            )  # fmt: skip
        return ListFlowable(
            items, bulletType="bullet", start="•", leftIndent=indent, bulletFontName=_SANS,
            bulletFontSize=self.body.fontSize,
        )  # fmt: skip

    def _quote(self, node: SyntaxTreeNode, width: float) -> Flowable:
        inner = self._blocks(node.children, width - 14) or [Spacer(1, 1)]
        table = Table([[inner]], colWidths=[width - 4])
        table.setStyle(
            TableStyle(
                [
                    ("LINEBEFORE", (0, 0), (0, 0), 2.5, colors.Color(0.75, 0.77, 0.8)),
                    ("LEFTPADDING", (0, 0), (0, 0), 10),
                    ("TEXTCOLOR", (0, 0), (0, 0), colors.Color(0.3, 0.3, 0.3)),
                ]
            )
        )
        return table

    def _code(self, text: str, width: float) -> Flowable:
        chars = max(20, int((width - 16) / (self.code.fontSize * _MONO_ADVANCE_EM)))
        # Preformatted keeps spaces and line breaks exactly; long lines are cut into several. It draws
        # no background of its own: a one-cell table does, and splits across pages like the text.
        block = Preformatted(text.rstrip("\n").expandtabs(4), self.code, maxLineLength=chars, newLineChars="")
        table = Table([[block]], colWidths=[width])
        table.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, -1), colors.Color(0.95, 0.95, 0.96)),
                    ("TOPPADDING", (0, 0), (-1, -1), 5),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
                ]
            )
        )
        table.spaceAfter = self.body.spaceAfter
        return table

    def _table(self, node: SyntaxTreeNode, width: float) -> Flowable:
        rows: list[list[Flowable]] = []
        header_rows = 0
        for section in node.children:
            for row in section.children:
                cells = []
                for cell in row.children:
                    style = self.header_cell if cell.type == "th" else self.cell
                    inline = cell.children[0] if cell.children else None
                    cells.append(Paragraph(self._inline(inline), style))
                rows.append(cells)
                if section.type == "thead":
                    header_rows += 1
        if not rows:
            return Spacer(1, 1)
        columns = max(len(r) for r in rows)
        for cells_of_row in rows:
            cells_of_row.extend(Paragraph("", self.cell) for _ in range(columns - len(cells_of_row)))
        table = Table(rows, colWidths=[width / columns] * columns, repeatRows=header_rows, hAlign="LEFT")
        style = [
            ("GRID", (0, 0), (-1, -1), 0.4, colors.Color(0.7, 0.7, 0.72)),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
        if header_rows:
            style.append(("BACKGROUND", (0, 0), (-1, header_rows - 1), colors.Color(0.9, 0.91, 0.93)))
        table.setStyle(TableStyle(style))
        return KeepTogether([table, Spacer(1, self.body.fontSize * 0.6)]) if len(rows) < 8 else table

    def _image(self, node: SyntaxTreeNode, width: float) -> list[Flowable]:
        reference = str(node.attrs.get("src", ""))
        alt = _plain_text(node)
        source = self._pictures.get(reference.rsplit("/", 1)[-1]) if "://" not in reference else None
        if source is None:
            # Pictures are never fetched from the network or the disk: only other inputs of the job.
            self.missing_images.add(reference)
            return [Paragraph(f"<i>[{escape(alt or reference)}]</i>", self.caption)]
        with open_image(source, limits=self._limits) as opened:
            pixels = opened.size[0] * opened.size[1]
            self._pixels_used += pixels
            if self._pixels_used > _MAX_IMAGE_PIXELS_PER_DOCUMENT * self._limits.max_pixels:
                raise InputTooLarge("the pictures of this document have too many pixels together")
            orientation = orientation_of(opened, source)
            upright = opened.size if orientation < 5 else (opened.size[1], opened.size[0])
            # At most the frame's width and two thirds of its height, never enlarged beyond 1 px = 0.75 pt.
            scale = min(width / upright[0], self.frame_height * 0.66 / upright[1], 0.75)
            drawn = (upright[0] * scale, upright[1] * scale)
            data = _picture_data(opened, source, orientation, _print_size(upright, drawn))
        flowables: list[Flowable] = [Image(data, width=drawn[0], height=drawn[1])]
        if alt:
            flowables.append(Paragraph(escape(alt), self.caption))
        return flowables

    # -- inline ----------------------------------------------------------------------------

    def _inline(self, node: SyntaxTreeNode | None) -> str:
        return self._inline_nodes(node.children) if node is not None else ""

    def _inline_nodes(self, nodes: Sequence[SyntaxTreeNode]) -> str:
        return "".join(self._inline_node(n) for n in nodes)

    def _inline_node(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind in ("text", "html_inline"):
            return typefaces.markup(node.content, _SANS)  # escaped; CJK in the fallback font
        if kind == "softbreak":
            return " "
        if kind == "hardbreak":
            return "<br/>"
        if kind == "code_inline":
            return f'<font face="{_MONO}">{escape(node.content)}</font>'
        inner = self._inline_nodes(node.children)
        if kind == "strong":
            return f"<b>{inner}</b>"
        if kind == "em":
            return f"<i>{inner}</i>"
        if kind == "s":
            return f"<strike>{inner}</strike>"
        if kind == "link":
            href = str(node.attrs.get("href", ""))
            if href.lower().startswith(_LINK_SCHEMES):
                quoted = escape(href, {'"': "&quot;"})
                return f'<a href="{quoted}" color="#1a4fa0"><u>{inner}</u></a>'
            return inner  # relative and script links lead nowhere in a PDF
        if kind == "image":
            return f"[{escape(_plain_text(node))}]"
        return inner


def _plain_text(node: SyntaxTreeNode) -> str:
    if node.type in ("text", "code_inline", "html_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(_plain_text(c) for c in node.children)


def _print_size(upright: tuple[int, int], drawn_pt: tuple[float, float]) -> tuple[int, int]:
    """The pixels a picture needs at its drawn size to print sharp (PRINT_DPI), never more than it has."""
    width, height = upright
    need_w = math.ceil(drawn_pt[0] / _POINTS_PER_INCH * PRINT_DPI)
    if need_w >= width:
        return upright
    return need_w, max(1, round(height * need_w / width))


def _picture_data(
    image: PILImage.Image, source: InputFile, orientation: int, size: tuple[int, int]
) -> io.BytesIO:
    """The picture as the PDF will carry it, at `size` pixels (upright).

    A JPEG that needs no change (its size already, upright, sRGB, markers sound) goes in as its own
    bytes without metadata, which reportlab embeds as they are (DCTDecode). Anything else is decoded,
    turned, reduced to `size` and stored as a JPEG (photos: JPEG, HEIC, AVIF, WebP) or losslessly
    (drawings: PNG, GIF, BMP, TIFF), which reportlab compresses with Flate.
    Raises CorruptInput, InputTooLarge.
    """
    icc_profile = image.info.get("icc_profile")
    icc = icc_profile if isinstance(icc_profile, bytes) and icc_profile else None
    photo = image.format in _PHOTO_FORMATS
    if (
        image.format in ("JPEG", "MPO")
        and size == image.size
        and orientation == 1
        and image.mode in ("RGB", "L")
        and (icc is None or is_srgb(icc))
    ):
        stripped = passthrough(source.path.read_bytes())
        if stripped is not None:
            return io.BytesIO(stripped.data)
    if image.format in ("JPEG", "MPO") and size != image.size:
        stored = size if orientation < 5 else (size[1], size[0])
        image.draft(image.mode, stored)  # libjpeg decodes at 1/2, 1/4 or 1/8 when that still covers it
    decode_upright(image, source)
    pixels = flatten(to_srgb(to_working_mode(image, source), icc), _WHITE)
    if pixels.size != size:
        pixels = resample.resize(pixels, size)
    elif pixels is image:
        pixels = image.copy()  # the opened image is closed by the caller
    if pixels.mode not in ("L", "RGB"):
        pixels = pixels.convert("RGB")
    buffer = io.BytesIO()
    if photo:
        pixels.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    else:
        pixels.save(buffer, format="PNG", compress_level=1)  # decoded again by reportlab, which deflates it
    buffer.seek(0)
    return buffer


class _Heading(Paragraph):  # type: ignore[misc]  # reportlab ships no type hints
    """A heading paragraph that adds itself to the PDF outline when placed on a page."""

    outline: tuple[str, int, str] = ("", 0, "")

    def draw(self) -> None:
        super().draw()
        title, level, key = self.outline
        if not key:
            return  # the second part of a heading split across pages
        self.canv.bookmarkPage(key)
        self.canv.addOutlineEntry(title, key, level=level, closed=level > 0)


# -- document --------------------------------------------------------------------------------


def _build(
    path: Path,
    story: list[Flowable],
    options: MarkdownPdfOptions,
    *,
    title: str | None,
    limits: Limits,
    source: InputFile,
) -> None:
    page_size = PAGE_SIZES[options.page_size]
    if options.orientation == "landscape":
        page_size = (page_size[1], page_size[0])
    margin = options.margin_mm * mm
    size = options.font_size

    class _Numbered(Canvas):  # type: ignore[misc]  # reportlab ships no type hints
        """Holds each page until the end so that "page N of M" knows M (pages are small: text only)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["invariant"] = 1
            kwargs["pageCompression"] = 1
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            if len(self._pages) >= limits.max_pages:
                raise InputTooLarge(f"{describe(source)} needs more than {limits.max_pages} pages, the limit")
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self._decorate(number, total)
                super().showPage()
            super().save()

        def _decorate(self, number: int, total: int) -> None:
            width, height = self._pagesize
            self.saveState()
            self.setFont(_SANS, size * 0.8)
            self.setFillColorRGB(0.35, 0.35, 0.35)
            if options.header:
                self.drawString(margin, height - margin + size * 0.8, _one_line(options.header))
            footer_y = margin - size * 1.6
            if options.footer:
                text = _one_line(options.footer).replace("{page}", str(number)).replace("{pages}", str(total))
                self.drawString(margin, footer_y, text)
            if options.page_numbers:
                self.drawRightString(width - margin, footer_y, f"page {number} of {total}")
            self.restoreState()

    document = SimpleDocTemplate(
        str(path),
        pagesize=page_size,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin + size * 1.6,
        bottomMargin=margin,
        title=title or "",
        author=options.author or "",
        creator="exportd",
        producer="exportd",
        subject="",
        invariant=1,
    )
    document.build(story or [Spacer(1, 1)], canvasmaker=_Numbered)


def _one_line(text: str) -> str:
    """A header or footer as one line (drawn with drawString: never parsed as markup)."""
    return " ".join(text.split())


# -- engine "html": Markdown as HTML, typeset with print CSS ----------------------------------------

_FONT_FACES = {  # the bundled DejaVu faces, so the output is the same wherever it is made
    ("normal", "normal"): "DejaVuSans.ttf",
    ("bold", "normal"): "DejaVuSans-Bold.ttf",
    ("normal", "italic"): "DejaVuSans-Oblique.ttf",
    ("bold", "italic"): "DejaVuSans-BoldOblique.ttf",
}


def _css_string(text: str) -> str:
    """A CSS string literal of `text`: quotes, backslashes and line breaks escaped."""
    return '"' + "".join(f"\\{ord(c):x} " if c in '"\\\n\r' else c for c in text) + '"'


def _markdown_via_html(
    inputs: Sequence[InputFile], out_dir: Path, options: MarkdownPdfOptions, *, limits: Limits
) -> list[OutputFile]:
    """markdown_to_pdf with `engine: "html"`: the same inputs, options and errors, typeset by WeasyPrint."""
    from exporters.typeset import CSS_TYPE, PageOptions, Typesetter

    documents = [s for s in inputs if s.content_type == MARKDOWN_TYPE or s.content_type == "text/plain"]
    if not documents:
        raise UnsupportedConversion("a Markdown export needs a Markdown file; none of the inputs is one")
    user_css = [s.path.read_bytes().decode("utf-8", "replace") for s in inputs if s.content_type == CSS_TYPE]
    fonts = [
        InputFile(_FONT_DIR / file, f"exportd-{file}", "font/ttf")
        for file in sorted(set(_FONT_FACES.values()))
    ]
    faces = "".join(
        f'@font-face {{ font-family: exportd-sans; font-weight: {weight}; font-style: {style}; src: url("exportd-{file}") }}'
        for (weight, style), file in _FONT_FACES.items()
    )
    width, height = PAGE_SIZES[options.page_size]
    if options.orientation == "landscape":
        width, height = height, width
    size = options.font_size
    margin_boxes = ""
    if options.header:
        margin_boxes += f"@top-center {{ content: {_css_string(options.header)} }}"
    if options.footer:
        parts = re.split(r"(\{page\}|\{pages\})", options.footer)
        content = " ".join(
            "counter(page)" if p == "{page}" else "counter(pages)" if p == "{pages}" else _css_string(p)
            for p in parts
            if p
        )
        margin_boxes += f"@bottom-center {{ content: {content} }}"
    if options.page_numbers:
        margin_boxes += '@bottom-right { content: "page " counter(page) " of " counter(pages) }'
    stylesheet = (
        f"{faces}"
        f"@page {{ size: {width:.2f}pt {height:.2f}pt; margin: {options.margin_mm:g}mm;"
        f" font: {size * 0.8:.1f}pt exportd-sans; color: #555; {margin_boxes} }}"
        f"body {{ font: {size:g}pt/1.4 exportd-sans; }}"
        "h1, h2, h3, h4, h5, h6 { break-after: avoid; line-height: 1.25 }"
        "pre, code { font-family: monospace; font-size: 0.85em } pre { white-space: pre-wrap; background: #f4f4f4; padding: 6pt }"
        "table { border-collapse: collapse } th, td { border: 0.5pt solid #999; padding: 2pt 4pt }"
        "thead { display: table-header-group } img { max-width: 100% } blockquote { color: #444; border-left: 2pt solid #ccc; padding-left: 8pt; margin-left: 0 }"
    )
    companions = [s for s in inputs if s not in documents] + fonts
    typesetter = Typesetter(
        companions=companions,
        options=PageOptions(title=options.title),
        limits=limits,
        stylesheets=[stylesheet, *user_css],
    )
    parser = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in documents:
        data = source.path.read_bytes()
        encoding = detect_encoding(data)
        if encoding is None:
            raise CorruptInput(f"{describe(source)} is not text in any encoding this service reads")
        tokens = parser.parse(data.decode(encoding, "replace"))
        heading = next(
            (tokens[i + 1].content for i, t in enumerate(tokens[:-1]) if t.type == "heading_open"), None
        )
        title = options.title if options.title is not None else heading
        head = f"<title>{escape(title)}</title>" if title else ""
        if options.author:
            head += f'<meta name="author" content="{escape(options.author, {chr(34): "&quot;"})}">'
        html = f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head><body>{parser.renderer.render(tokens, parser.options, {})}</body></html>"
        name = names.add(source.filename, "pdf", fallback="document")
        result = typesetter.typeset(html, out_dir / name, what=describe(source))
        outputs.append(
            OutputFile(out_dir / name, name, "application/pdf", {"pages": result.pages, **result.details})
        )
    return outputs
