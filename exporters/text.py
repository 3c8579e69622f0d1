"""Plain text to PDF (UTF-8, or the code page exporters.charsets detects), wrapped and paginated, in an embedded Unicode font."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas
from reportlab.pdfgen.textobject import PDFTextObject

from exporters import typefaces
from exporters.base import (
    CorruptInput,
    InputFile,
    InputTooLarge,
    InvalidOptions,
    Limits,
    OutputFile,
    describe,
)
from exporters.canvas import new_canvas
from exporters.fonts import FONTS as FONTS
from exporters.naming import UniqueNames
from exporters.options import TextPdfOptions as TextPdfOptions
from exporters.pages import PAGE_SIZES
from exporters.sniff import detect_encoding

_CHUNK_BYTES = 1 << 16
_BOM = b"\xef\xbb\xbf"
_LINE_SPACING = 1.2  # leading as a multiple of the font size
_TAB = "    "
_BREAKS = re.compile(r"([\n\f])")
_TOKENS = re.compile(r" +|[^ ]+")
# Control characters (sniffing only vetted the head of the file) have no glyph: they are shown as
# U+FFFD so that nothing disappears silently. Tabs become spaces.
_CLEAN = {code: "\ufffd" for code in (*range(0x20), *range(0x7F, 0xA0))} | {0x09: _TAB}
_MAX_WORD_CHARS = 10_000  # a word this long is broken by characters as it comes, to bound memory


def page_size_of(options: TextPdfOptions) -> tuple[float, float]:
    width, height = PAGE_SIZES[options.page_size]
    return (height, width) if options.orientation == "landscape" else (width, height)


def text_to_pdf(
    inputs: Sequence[InputFile], out_dir: Path, options: TextPdfOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each text file as a PDF: lines wrapped at spaces to the page width, blank lines kept.

    A form feed starts a new page; tabs are four spaces. An empty file gives one blank page.
    Raises CorruptInput (not text in its detected encoding), InputTooLarge (more than limits.max_pages pages), InvalidOptions.
    """
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in inputs:
        name = names.add(source.filename, "pdf", fallback="document")
        path = out_dir / name
        canvas = new_canvas(path, page_size_of(options), initial_font=FONTS[options.font])
        typesetter = _Typesetter(canvas, options, source=source, max_pages=limits.max_pages)
        for piece in _decoded_pieces(source):
            for part in _BREAKS.split(piece):
                if part == "\n":
                    typesetter.end_line()
                elif part == "\f":
                    typesetter.new_page()
                elif part:
                    typesetter.add(part.translate(_CLEAN))
        typesetter.finish()
        canvas.save()
        outputs.append(OutputFile(path=path, name=name, content_type="application/pdf"))
    return outputs


def _decoded_pieces(source: InputFile) -> Iterator[str]:
    """The file's text in pieces of at most 64 KiB, line ends as "\\n", decoded strictly in the encoding
    its first 64 KiB show (exporters.charsets, as the sniffer and the table reader decide it).

    Raises CorruptInput.
    """
    offset = 0  # bytes of the file handed to the decoder so far
    held_cr = False  # a "\r" ending a piece might begin a "\r\n" split across two reads
    with source.path.open("rb") as file:
        chunk = file.read(_CHUNK_BYTES)
        encoding = detect_encoding(chunk, complete=len(chunk) < _CHUNK_BYTES)
        if encoding is None:
            raise CorruptInput(f"{describe(source)} is not text in any encoding this service reads")
        codec = "utf-8" if encoding == "utf-8-sig" else encoding
        decoder = codecs.getincrementaldecoder(codec)("strict")
        if chunk.startswith(_BOM):
            chunk, offset = chunk[len(_BOM) :], len(_BOM)
        while True:
            final = not chunk
            buffered = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final)
            except UnicodeDecodeError as exc:
                position = offset - buffered + exc.start
                raise CorruptInput(
                    f"{describe(source)} is not valid {codec.upper()} text (byte offset {position})"
                ) from None
            offset += len(chunk)
            if held_cr:
                text = "\r" + text
            held_cr = text.endswith("\r") and not final
            if held_cr:
                text = text[:-1]
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            if text:
                yield text
            if final:
                return
            chunk = file.read(_CHUNK_BYTES)


class _Typesetter:
    """Greedy line breaking and pagination, fed the text of a file piece by piece.

    A long line never has to be held whole: words are placed as they complete, and a word wider
    than the line is broken by characters as soon as it is known to be that wide.
    """

    def __init__(self, canvas: Canvas, options: TextPdfOptions, *, source: InputFile, max_pages: int) -> None:
        self._canvas = canvas
        self._source = source
        self._max_pages = max_pages
        self._font_name = FONTS[options.font]
        self._font = pdfmetrics.getFont(self._font_name)
        self._size = options.font_size
        page_w, page_h = page_size_of(options)
        self._by_char = options.wrap == "char"
        margin = options.margin_mm * mm
        self._left = margin
        self._max_width = page_w - 2 * margin
        if self._max_width <= 0 or page_h - 2 * margin <= 0:
            raise InvalidOptions("margin_mm leaves no room for text on the page")
        self._leading = self._size * _LINE_SPACING
        ascent = self._font.face.ascent * self._size / 1000
        descent = -self._font.face.descent * self._size / 1000
        self._first_baseline = page_h - margin - ascent
        room = page_h - 2 * margin - ascent - descent
        self._lines_per_page = max(1, 1 + int(room // self._leading))
        self._space_width = self._width(" ")
        self._char_widths: dict[str, float] = {}

        self._pages = 0
        self._text: PDFTextObject | None = None  # the page being filled, None between pages
        self._lines_on_page = 0

        self._line = ""  # the visual line being built
        self._line_width = 0.0
        self._spaces = ""  # spaces seen after the last placed word, placed only if a word follows
        self._word = ""  # the word being read, which the next piece may continue
        self._word_width = 0.0
        self._at_line_start = True  # no visual line of this text line emitted yet: keep its indent
        self._open = False  # something has been added since the last end of line

    def _width(self, text: str) -> float:
        return typefaces.measure(self._font, text, self._size)

    # -- input -----------------------------------------------------------------------------

    def add(self, text: str) -> None:
        """Text without line ends or form feeds, continuing the current line."""
        self._open = True
        if self._by_char:
            self._break_by_characters(text, continuing=True)
            return
        for token in _TOKENS.findall(text):
            if token[0] == " ":
                self._place_word()
                # More spaces than fit on a line could never be shown; don't keep them.
                room = int(self._max_width / self._space_width) + 1
                self._spaces = (self._spaces + token)[:room]
            else:
                self._word += token
                self._word_width += self._width(token)
                if self._word_width > self._max_width or len(self._word) > _MAX_WORD_CHARS:
                    self._place_word()

    def end_line(self) -> None:
        """End the current line of the text (an empty one leaves a blank line)."""
        self._place_word()
        self._emit(self._line)
        self._line, self._line_width, self._spaces = "", 0.0, ""
        self._at_line_start = True
        self._open = False

    def new_page(self) -> None:
        """A form feed: end the line if one is open and continue at the top of a new page."""
        if self._open:
            self.end_line()
        if self._text is not None:
            self._end_page()

    def finish(self) -> None:
        """End the last line and page; a text with no line at all still gets one blank page."""
        if self._open:
            self.end_line()
        if self._text is not None:
            self._end_page()
        if self._pages == 0:
            self._start_page()
            self._end_page()

    # -- line breaking ---------------------------------------------------------------------

    def _place_word(self) -> None:
        """Put the word being read on the current line, or on the next ones if it does not fit."""
        if not self._word:
            return
        word, word_width = self._word, self._word_width
        self._word, self._word_width = "", 0.0
        # Spaces before a word are kept within a line and as a line's indent, not at a break.
        spaces = self._spaces if self._line or self._at_line_start else ""
        self._spaces = ""
        added = len(spaces) * self._space_width + word_width
        if self._line_width + added <= self._max_width:
            self._line += spaces + word
            self._line_width += added
            return
        if self._line:
            self._emit(self._line)
        # The word starts a line of its own; an indent too wide to keep with it vanishes.
        if word_width <= self._max_width:
            self._line, self._line_width = word, word_width
        else:
            self._break_by_characters(word)

    def _break_by_characters(self, text: str, *, continuing: bool = False) -> None:
        """Lay out a run by characters: full lines are emitted, the rest is the current line.

        `continuing`: the run goes on from the current line (wrap=char) instead of starting one.
        """
        line, line_width = (self._line, self._line_width) if continuing else ("", 0.0)
        widths = self._char_widths
        for char in text:
            char_width = widths.get(char)
            if char_width is None:
                char_width = widths[char] = self._width(char)
            if line and line_width + char_width > self._max_width:
                self._emit(line)
                line, line_width = "", 0.0
            line += char
            line_width += char_width
        self._line, self._line_width = line, line_width

    # -- pages -----------------------------------------------------------------------------

    def _emit(self, line: str) -> None:
        if self._text is None:
            self._start_page()
        assert self._text is not None
        # CJK characters DejaVu lacks are drawn in the fallback font, when one is installed.
        typefaces.draw(self._text, line, self._font_name, self._size, self._leading)
        self._text.textLine("")
        self._at_line_start = False
        self._lines_on_page += 1
        if self._lines_on_page == self._lines_per_page:
            self._end_page()

    def _start_page(self) -> None:
        if self._pages == self._max_pages:
            raise InputTooLarge(
                f"{describe(self._source)} needs more than {self._max_pages} pages, the limit; "
                "a smaller font_size or margin_mm fits more on each page"
            )
        self._pages += 1
        self._text = self._canvas.beginText(self._left, self._first_baseline)
        self._text.setFont(self._font_name, self._size, self._leading)

    def _end_page(self) -> None:
        assert self._text is not None
        self._canvas.drawText(self._text)
        self._canvas.showPage()
        self._text = None
        self._lines_on_page = 0
