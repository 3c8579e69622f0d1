"""Tables (CSV, TSV, JSON arrays of objects) to a PDF table, an XLSX spreadsheet, CSV or JSON, streamed.

Rows are read one at a time and written as they come, so memory does not grow with the row count:
the PDF is drawn row by row on the canvas (a Platypus LongTable holds every row and measured 4.5×
slower and 3× the memory), the XLSX is written by xlsxwriter in constant-memory mode.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
import re
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from reportlab.lib.units import mm
from reportlab.pdfbase import pdfdoc, pdfmetrics
from reportlab.pdfgen.canvas import Canvas
from reportlab.pdfgen.textobject import PDFTextObject

from exporters import charsets, fonts, typefaces
from exporters.base import (
    CorruptInput,
    InputFile,
    InputTooLarge,
    InvalidOptions,
    Limits,
    OutputFile,
    describe,
    reading_input,
)
from exporters.canvas import new_canvas
from exporters.fonts import FONTS, SANS_BOLD
from exporters.media import CSV, JSON, TSV
from exporters.naming import UniqueNames
from exporters.options import DELIMITERS as DELIMITERS
from exporters.options import ENCODINGS as ENCODINGS
from exporters.options import TableCsvOptions as TableCsvOptions
from exporters.options import TableJsonOptions as TableJsonOptions
from exporters.options import TablePdfOptions as TablePdfOptions
from exporters.options import TableReadOptions as TableReadOptions
from exporters.options import TableXlsxOptions as TableXlsxOptions
from exporters.pages import PAGE_SIZES
from exporters.sniff import JSON_ARRAY_OF_OBJECTS as _JSON_ARRAY_OF_OBJECTS
from exporters.sniff import sniff_table as sniff_table

# -- content types ---------------------------------------------------------------------------------

CSV_TYPE = CSV
TSV_TYPE = TSV
JSON_TYPE = JSON
TABLE_TYPES = (CSV_TYPE, TSV_TYPE, JSON_TYPE)

_BOLD = SANS_BOLD
_REGULAR = FONTS["sans"]

# -- reading -------------------------------------------------------------------------------

Value = str | int | float | bool | None

_SAMPLE_BYTES = 1 << 16
_SAMPLE_ROWS = 200  # rows read ahead to choose column widths and the delimiter
_MAX_LINE_CHARS = 1 << 20  # a longer physical line fails as input_too_large instead of filling memory
_MAX_JSON_VALUE_CHARS = 1 << 22  # one object of a JSON array


def detect_encoding(sample: bytes, *, complete: bool = True) -> str:
    """The encoding of a CSV from a sample of its start, as every text reader detects it (exporters.charsets);
    Latin-1, which reads any byte, when nothing fits better."""
    return charsets.detect_encoding(sample, complete=complete) or "latin-1"


@dataclass
class Table:
    """A table being read: its column names, then its rows one at a time."""

    columns: list[str]
    rows: Iterator[list[Value]]
    sample: list[list[Value]]  # the first rows, already read; `rows` yields them again first
    facts: dict[str, Any] = field(default_factory=dict)  # what was detected, for OutputFile.details


def read_table(source: InputFile, options: TableReadOptions) -> Table:
    """Open a CSV, TSV or JSON input as a table of rows streamed from disk.

    Raises CorruptInput (undecodable, malformed, not an array of objects), InputTooLarge (a line or
    a JSON object too long). Errors found later are raised while iterating `rows`.
    """
    with source.path.open("rb") as file:
        head = file.read(_SAMPLE_BYTES)
    if source.content_type == JSON_TYPE or (
        source.content_type not in (CSV_TYPE, TSV_TYPE) and _JSON_ARRAY_OF_OBJECTS.match(head)
    ):
        return _read_json(source)
    return _read_csv(source, options, head)


def _with_sample(sample: list[list[Value]], rest: Iterator[list[Value]]) -> Iterator[list[Value]]:
    yield from sample
    yield from rest


def _read_csv(source: InputFile, options: TableReadOptions, head: bytes) -> Table:
    encoding = (
        detect_encoding(head, complete=len(head) < _SAMPLE_BYTES)
        if options.encoding == "auto"
        else options.encoding
    )
    if encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    delimiter = options.delimiter
    if delimiter == "auto":
        text = head.decode(encoding, "replace")
        if len(head) == _SAMPLE_BYTES:
            text = text[: text.rfind("\n") + 1] or text  # not a line cut in the middle
        delimiter = "\t" if source.content_type == TSV_TYPE else _detect_delimiter(text)
    # The file stays open while rows are read; the generator closes it when exhausted or collected.
    rows = _csv_rows(source, encoding, delimiter)
    sample: list[list[Value]] = []
    for row in rows:
        sample.append(list(row))
        if len(sample) > _SAMPLE_ROWS:
            break
    columns = [str(c) for c in sample.pop(0)] if options.header and sample else []
    facts: dict[str, Any] = {"encoding": encoding.replace("-sig", ""), "delimiter": delimiter}
    width = max([len(columns), *(_filled_length(r) for r in sample)])
    columns += [f"column_{i + 1}" for i in range(len(columns), width)]
    return Table(
        columns=columns,
        rows=_padded(_with_sample(sample, rows), width, source),
        sample=[_pad(r[:width], width) for r in sample],
        facts=facts,
    )


def _filled_length(row: list[Value]) -> int:
    """Fields up to the last non-empty one: a delimiter ending a line adds no column."""
    length = len(row)
    while length and not row[length - 1]:
        length -= 1
    return length


def _pad(row: list[Value], width: int) -> list[Value]:
    return row + [""] * (width - len(row)) if len(row) < width else row


def _padded(rows: Iterator[list[Value]], width: int, source: InputFile) -> Iterator[list[Value]]:
    for number, row in enumerate(rows, start=1):
        if len(row) > width:
            if not any(row[width:]):
                row = row[:width]  # trailing empty fields (a delimiter at the end of the line)
            else:
                raise CorruptInput(
                    f"{describe(source)}: data row {number} has {len(row)} fields, but the first rows have "
                    f"{width}; is the delimiter or the quoting wrong?"
                )
        yield _pad(row, width)


def _detect_delimiter(text: str) -> str:
    """The candidate that splits the first lines into the most consistent number of fields (> 1)."""
    lines = text.splitlines(keepends=True)[:50]
    best, best_score = ",", (0.0, 0)
    for candidate in (",", ";", "\t", "|"):
        try:
            counts = [len(r) for r in csv.reader(lines, delimiter=candidate) if r]
        except csv.Error:
            continue
        if not counts:
            continue
        mode = max(set(counts), key=counts.count)
        if mode < 2:
            continue
        score = (counts.count(mode) / len(counts), mode)
        if score > best_score:
            best, best_score = candidate, score
    return best


def _bounded_lines(source: InputFile, encoding: str) -> Iterator[str]:
    """The decoded physical lines of a file, refusing any longer than _MAX_LINE_CHARS bytes before
    reading it whole. Each line is decoded on its own (every supported encoding is ASCII-compatible,
    so a newline byte always ends a line), which lets an error name the exact line.

    Raises InputTooLarge, CorruptInput.
    """
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    with source.path.open("rb") as file:
        number = 0
        while True:
            raw = file.readline(_MAX_LINE_CHARS + 1)
            if not raw:
                return
            number += 1
            if len(raw) > _MAX_LINE_CHARS:
                raise InputTooLarge(
                    f"{describe(source)}: line {number} is longer than {_MAX_LINE_CHARS:,} bytes; "
                    "a table row that long cannot be laid out"
                )
            if number == 1 and raw.startswith(codecs.BOM_UTF8) and codec == "utf-8":
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield raw.decode(codec)
            except UnicodeDecodeError as exc:
                raise CorruptInput(
                    f"{describe(source)} is not valid {codec} text: line {number}, byte {exc.start + 1} "
                    f"({exc.reason}); state the encoding with the encoding option"
                ) from None


def _csv_rows(source: InputFile, encoding: str, delimiter: str) -> Iterator[list[Value]]:
    reader = csv.reader(_bounded_lines(source, encoding), delimiter=delimiter, strict=False)
    # Outside the try: what the csv module raises is told apart below; anything else is the input's.
    with reading_input(source, "CSV table"):
        yield from _csv_parsed(source, reader)


def _csv_parsed(source: InputFile, reader: Any) -> Iterator[list[Value]]:
    try:
        for row in reader:
            if row:  # blank lines separate nothing in a table
                yield list(row)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise InputTooLarge(
                f"{describe(source)}: a field near line {reader.line_num} is longer than "
                f"{csv.field_size_limit():,} characters (an unclosed quote?)"
            ) from None
        raise CorruptInput(
            f"{describe(source)} is not a valid CSV near line {reader.line_num}: {exc}"
        ) from None


def _read_json(source: InputFile) -> Table:
    objects = _json_objects(source)
    sample: list[dict[str, Any]] = []
    for obj in objects:
        sample.append(obj)
        if len(sample) >= _SAMPLE_ROWS:
            break
    columns: list[str] = []
    seen: set[str] = set()
    for obj in sample:
        for key in obj:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    ignored: set[str] = set()
    facts: dict[str, Any] = {"ignored_keys": []}

    def rows() -> Iterator[list[Value]]:
        for obj in _chain(sample, objects):
            extra = obj.keys() - seen
            if extra:
                ignored.update(extra)
                facts["ignored_keys"] = sorted(ignored)[:20]
            yield [_json_cell(obj.get(c)) for c in columns]

    sample_rows = [[_json_cell(o.get(c)) for c in columns] for o in sample]
    return Table(columns=columns, rows=rows(), sample=sample_rows, facts=facts)


def _chain(first: list[dict[str, Any]], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from first
    yield from rest


def _json_cell(value: Any) -> Value:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    # Nested objects and arrays have no cell of their own: shown as compact JSON.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_WS = " \t\r\n"


def _json_objects(source: InputFile) -> Iterator[dict[str, Any]]:
    """The objects of a top-level JSON array, decoded one at a time from a bounded buffer.

    Raises CorruptInput, InputTooLarge (one object longer than _MAX_JSON_VALUE_CHARS).
    """
    decoder = json.JSONDecoder()
    name = describe(source)
    # Anything else json raises (RecursionError on arrays nested thousands deep) is the input's too.
    with (
        reading_input(source, "JSON table"),
        source.path.open("r", encoding="utf-8-sig", errors="strict") as stream,
    ):
        buffer = ""
        eof = False
        position = 0  # characters of the file consumed before `buffer`

        def fill() -> bool:
            nonlocal buffer, eof
            if eof:
                return False
            try:
                chunk = stream.read(_SAMPLE_BYTES)
            except UnicodeDecodeError:
                raise CorruptInput(f"{name} is not valid UTF-8 JSON") from None
            if not chunk:
                eof = True
                return False
            buffer += chunk
            return True

        def skip_ws() -> None:
            nonlocal buffer, position
            while True:
                stripped = buffer.lstrip(_WS)
                position += len(buffer) - len(stripped)
                buffer = stripped
                if buffer or not fill():
                    return

        skip_ws()
        if not buffer.startswith("["):
            raise CorruptInput(f"{name} is not a JSON array of objects (it must start with [)")
        buffer, position = buffer[1:], position + 1
        skip_ws()
        if buffer.startswith("]"):
            return
        index = 0
        while True:
            while True:
                try:
                    value, end = decoder.raw_decode(buffer)
                    break
                except json.JSONDecodeError as exc:
                    # An object cut by the end of the buffer looks malformed too: read more, up to the cap.
                    if len(buffer) > _MAX_JSON_VALUE_CHARS:
                        raise InputTooLarge(
                            f"{name}: item {index + 1} of the array is longer than "
                            f"{_MAX_JSON_VALUE_CHARS:,} characters"
                        ) from None
                    if not fill():
                        raise CorruptInput(
                            f"{name} is not valid JSON at character {position + exc.pos}: {exc.msg}"
                        ) from None
            if not isinstance(value, dict):
                raise CorruptInput(
                    f"{name}: item {index + 1} of the array is not an object; a table needs an array of objects"
                )
            yield value
            index += 1
            buffer, position = buffer[end:], position + end
            skip_ws()
            if buffer.startswith(","):
                buffer, position = buffer[1:], position + 1
                skip_ws()
                continue
            if buffer.startswith("]"):
                return
            raise CorruptInput(f"{name} is not valid JSON at character {position}: expected , or ]")


# -- PDF -------------------------------------------------------------------------------------

_HEADER_FILL = (0.85, 0.87, 0.9)
_ZEBRA_FILL = (0.95, 0.96, 0.97)
_RULE = (0.55, 0.57, 0.6)
_PAD_X = 2.5  # points of space left and right of a cell's text
_PAD_Y = 1.5
_LINE_SPACING = 1.2
_ELLIPSIS = "…"
_SPACES = re.compile(r"(\s+)")
_CONTROLS = {code: " " for code in (*range(0x20), *range(0x7F, 0xA0))}


def table_to_pdf(
    inputs: Sequence[InputFile], out_dir: Path, options: TablePdfOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each table as a PDF: the header row repeated on every page, columns fitted, long cells wrapped.

    Raises CorruptInput, InputTooLarge (more than limits.max_table_pages pages, a line too long, columns
    that cannot fit across the page), InvalidOptions.
    """
    fonts.register()
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in inputs:
        table = read_table(source, options)
        name = names.add(source.filename, "pdf", fallback="table")
        path = out_dir / name
        drawer = _TableDrawer(path, table, options, source=source, max_pages=limits.max_table_pages)
        for row in table.rows:
            drawer.add_row(row)
        drawer.finish()
        details = {**table.facts, "rows": drawer.rows, "columns": len(table.columns), "pages": drawer.pages}
        if drawer.cut_cells:
            details["cells_cut"] = drawer.cut_cells
        outputs.append(OutputFile(path=path, name=name, content_type="application/pdf", details=details))
    return outputs


def _cell_text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).translate(_CONTROLS) if isinstance(value, str) else str(value)


class _TableDrawer:
    """Lays out and draws rows one at a time; a page is finished as soon as the next row does not fit."""

    def __init__(
        self, path: Path, table: Table, options: TablePdfOptions, *, source: InputFile, max_pages: int
    ) -> None:
        self._source = source
        self._max_pages = max_pages
        self._size = options.font_size
        self._leading = self._size * _LINE_SPACING
        self._max_lines = options.max_cell_lines
        self._zebra = options.zebra
        self._regular = pdfmetrics.getFont(_REGULAR)
        self._bold = pdfmetrics.getFont(_BOLD)
        self._widths_cache: dict[str, float] = {}
        self._margin = options.margin_mm * mm
        self._header = [_cell_text(c) for c in table.columns] if table.columns else []
        sample = [[_cell_text(v) for v in row] for row in table.sample]
        short, long = sorted(PAGE_SIZES[options.page_size])
        natural = self._natural_widths(sample)
        landscape = options.orientation == "landscape" or (
            options.orientation == "auto" and sum(natural) > short - 2 * self._margin
        )
        self._page_w, self._page_h = (long, short) if landscape else (short, long)
        usable_w = self._page_w - 2 * self._margin
        self._usable_h = self._page_h - 2 * self._margin - self._leading  # room for the page number
        if usable_w <= 0 or self._usable_h <= 3 * self._leading:
            raise InvalidOptions("margin_mm leaves no room for a table on the page")
        self._col_w = self._fit(natural, usable_w)
        # reportlab holds a whole document in memory until it saves it, so a long table is drawn
        # as parts of CHUNK_PAGES pages, each saved at once, and joined at the end one part at a
        # time (_join): memory does not grow with the row count.
        self._path = path
        self._parts: list[Path] = []
        self._canvas: Canvas = self._new_part()
        self._text: PDFTextObject | None = None
        self._y = 0.0
        self.pages = 0
        self.rows = 0
        self.cut_cells = 0
        self._header_lines = [
            self._wrap(c, w, self._bold) for c, w in zip(self._header, self._col_w, strict=True)
        ]
        self._header_h = self._row_height(self._header_lines)

    # -- measuring -------------------------------------------------------------------------

    def _width(self, text: str, font: Any = None) -> float:
        if font is None or font is self._regular:
            cached = self._widths_cache.get(text)
            if cached is None:
                cached = typefaces.measure(self._regular, text, self._size)
                if len(self._widths_cache) < 10_000:  # bounded: cells repeat (cities, dates), ids do not
                    self._widths_cache[text] = cached
            return cached
        return typefaces.measure(font, text, self._size)

    def _natural_widths(self, sample: list[list[str]]) -> list[float]:
        """Each column's width if nothing wrapped, from the header and the sampled rows (capped so
        that one long description cannot take the whole page)."""
        cap = 60 * self._size  # about 100 characters
        widths = [self._width(c, self._bold) + 2 * _PAD_X for c in self._header]
        for row in sample:
            for i, cell in enumerate(row):
                if cell:
                    w = min(cap, self._width(cell)) + 2 * _PAD_X
                    if w > widths[i]:
                        widths[i] = w
        return widths

    def _fit(self, natural: list[float], usable: float) -> list[float]:
        """Column widths filling the usable width: narrow columns keep their natural width, wide ones
        share the rest equally (water filling). Raises InputTooLarge when the columns cannot fit."""
        if not natural:
            return []
        least = 3 * self._size + 2 * _PAD_X  # about four characters
        if least * len(natural) > usable:
            raise InputTooLarge(
                f"{describe(self._source)} has {len(natural)} columns, more than fit across the page; "
                "landscape orientation, a larger page_size or a smaller font_size fit more"
            )
        if sum(natural) <= usable:
            spare = (usable - sum(natural)) / len(natural)
            return [w + spare for w in natural]
        widths = [0.0] * len(natural)
        remaining = list(range(len(natural)))
        room = usable
        while remaining:
            share = room / len(remaining)
            narrow = [i for i in remaining if natural[i] <= share]
            if not narrow:
                for i in remaining:
                    widths[i] = max(least, share)
                break
            for i in narrow:
                widths[i] = natural[i]
                room -= natural[i]
            remaining = [i for i in remaining if natural[i] > share]
        # Raising narrow columns to `least` may overflow a little: scale back uniformly.
        total = sum(widths)
        return [w * usable / total for w in widths] if total > usable else widths

    def _wrap(self, text: str, column_width: float, font: Any = None) -> list[str]:
        """Greedy wrapping at spaces, breaking words wider than the column by characters; at most
        max_cell_lines lines, the last one ending in … when text was cut."""
        width = column_width - 2 * _PAD_X
        if "\n" not in text and "\r" not in text and self._width(text, font) <= width:
            return [text] if text else []
        lines: list[str] = []
        for paragraph in text.splitlines():
            line, line_w = "", 0.0
            for token in _SPACES.split(paragraph.replace("\t", " ")):
                if not token:
                    continue
                token_w = self._width(token, font)
                if line_w + token_w <= width:
                    line, line_w = line + token, line_w + token_w
                    continue
                if token.isspace():
                    lines.append(line)
                    line, line_w = "", 0.0
                    continue
                if line:
                    lines.append(line)
                line, line_w = "", 0.0
                for char in token:
                    char_w = self._width(char, font)
                    if line and line_w + char_w > width:
                        lines.append(line)
                        line, line_w = "", 0.0
                    line, line_w = line + char, line_w + char_w
                if len(lines) > self._max_lines:
                    break
            lines.append(line.rstrip())
            if len(lines) > self._max_lines:
                break
        if len(lines) > self._max_lines:
            self.cut_cells += 1
            lines = lines[: self._max_lines]
            last = lines[-1]
            while last and self._width(last + _ELLIPSIS, font) > width:
                last = last[:-1]
            lines[-1] = last + _ELLIPSIS
        return lines

    def _row_height(self, cells: list[list[str]]) -> float:
        return max([1, *(len(lines) for lines in cells)]) * self._leading + 2 * _PAD_Y

    # -- drawing ---------------------------------------------------------------------------

    def add_row(self, row: list[Value]) -> None:
        cells = [self._wrap(_cell_text(v), w) for v, w in zip(row, self._col_w, strict=True)]
        height = self._row_height(cells)
        if self._text is None or self._y - height < self._margin + 1.5 * self._leading:
            self._new_page()
        if self._zebra and self.rows % 2 == 1:
            self._fill(self._y - height, height, _ZEBRA_FILL)
        self._draw_cells(cells, self._y)
        self._y -= height
        self.rows += 1

    def _fill(self, bottom: float, height: float, colour: tuple[float, float, float]) -> None:
        self._canvas.setFillColorRGB(*colour)
        self._canvas.rect(self._margin, bottom, sum(self._col_w), height, stroke=0, fill=1)

    def _draw_cells(self, cells: list[list[str]], top: float, *, font_name: str = _REGULAR) -> None:
        assert self._text is not None
        text = self._text
        x = self._margin
        baseline = top - _PAD_Y - self._size * 0.93  # DejaVu's ascent is about 0.93 em
        for lines, width in zip(cells, self._col_w, strict=True):
            y = baseline
            for line in lines:
                if line:
                    text.setTextOrigin(x + _PAD_X, y)
                    typefaces.draw(text, line, font_name, self._size, self._leading)
                y -= self._leading
            x += width

    def _new_page(self) -> None:
        if self._text is not None:
            self._end_page()
        if self.pages == self._max_pages:
            raise InputTooLarge(
                f"{describe(self._source)} needs more than {self._max_pages} pages, the limit; "
                "a smaller font_size or margin_mm fits more rows on each page"
            )
        self.pages += 1
        self._y = self._page_h - self._margin
        self._text = self._canvas.beginText()
        if self._header:
            self._fill(self._y - self._header_h, self._header_h, _HEADER_FILL)
            self._text.setFont(_BOLD, self._size, self._leading)
            self._draw_cells(self._header_lines, self._y, font_name=_BOLD)
            self._y -= self._header_h
            self._canvas.setStrokeColorRGB(*_RULE)
            self._canvas.setLineWidth(0.5)
            self._canvas.line(self._margin, self._y, self._margin + sum(self._col_w), self._y)
        self._text.setFont(_REGULAR, self._size, self._leading)

    def _new_part(self) -> Canvas:
        part = self._path.with_name(f".{self._path.name}.part{len(self._parts)}")
        self._parts.append(part)
        return new_canvas(part, (self._page_w, self._page_h), initial_font=_REGULAR)

    def _end_page(self) -> None:
        assert self._text is not None
        self._canvas.setFillColorRGB(0, 0, 0)
        self._canvas.drawText(self._text)
        self._canvas.setFont(_REGULAR, self._size * 0.85)
        self._canvas.setFillColorRGB(0.4, 0.4, 0.4)
        self._canvas.drawRightString(self._page_w - self._margin, self._margin, str(self.pages))
        self._canvas.showPage()
        _compress_last_page(self._canvas)
        self._text = None
        if self.pages % CHUNK_PAGES == 0:
            self._canvas.save()
            self._canvas = self._new_part()

    def finish(self) -> None:
        """Close the last page (a table without rows still gets one page with its header) and save."""
        if self._text is None:
            self._new_page()
        self._end_page()
        if self.pages % CHUNK_PAGES:
            self._canvas.save()
        else:
            self._parts.pop()  # the part begun after the last full one has no page
        _join(self._parts, self._path)


#: Pages of a table drawn into one part before it is saved (see _TableDrawer).
CHUNK_PAGES = 200


def _join(parts: list[Path], path: Path) -> None:
    """The parts' pages, in order, as one PDF at `path`; the parts are removed.

    The parts are reportlab's own simple files (every object listed in one xref table, stream
    lengths given directly), so they are joined by copying their objects one part at a time with
    new numbers: memory holds one part, whatever the page count. (qpdf, tried first, held every
    page's objects until it wrote the result.)
    """
    if len(parts) == 1:
        parts[0].replace(path)
        return
    with path.open("wb") as out:
        writer = _PartJoiner(out)
        for part in parts:
            writer.add(part.read_bytes())
        writer.finish()
    for part in parts:
        part.unlink()


_REF = re.compile(rb"(\d+) 0 R")
_TRAILER_REF = re.compile(rb"/(Root|Info) (\d+) 0 R")
_LENGTH = re.compile(rb"/Length (\d+)")


class _PartJoiner:
    """Writes the objects of reportlab PDFs into one, renumbered; pages stay in order."""

    _PAGES, _CATALOG = 1, 2

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        # Per object and per page one machine integer: the only state that grows with the table.
        self._offsets = array("q", [0, 0, 0])  # 1: Pages, 2: Catalog, written last
        self._kids = array("q")
        out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")

    def add(self, data: bytes) -> None:
        start = data.rindex(b"startxref")
        xref_at = int(data[start + 9 :].split()[0])
        trailer = data[data.index(b"trailer", xref_at) : start]
        refs = {name: int(number) for name, number in _TRAILER_REF.findall(trailer)}
        header = data[xref_at:].split(b"\n", 2)
        count = int(header[1].split()[1])
        table = header[2]
        offsets = [int(table[20 * i : 20 * i + 10]) for i in range(count)]
        catalog = self._object(data, offsets[refs[b"Root"]])
        pages = int(re.search(rb"/Pages (\d+) 0 R", catalog).group(1))  # type: ignore[union-attr]
        skipped = (refs[b"Root"], refs[b"Info"], pages)  # the part's own catalog, info and page tree
        renumber = {pages: self._PAGES}
        for k in range(1, count):
            if k not in skipped:
                renumber[k] = len(self._offsets) + len(renumber) - 1

        def new_ref(match: re.Match[bytes]) -> bytes:
            return b"%d 0 R" % renumber[int(match.group(1))]

        kids = re.search(rb"/Kids \[([^\]]*)\]", self._object(data, offsets[pages]))
        self._kids.extend(renumber[int(n)] for n in _REF.findall(kids.group(1)))  # type: ignore[union-attr]
        for k in range(1, count):
            if k in skipped:
                continue
            body = self._object(data, offsets[k])
            cut = body.find(b"stream\n")
            head, stream = (body, b"") if cut < 0 else (body[:cut], body[cut:])
            self._offsets.append(self._out.tell())
            self._out.write(b"%d 0 obj\n" % renumber[k] + _REF.sub(new_ref, head) + stream + b"\nendobj\n")

    @staticmethod
    def _object(data: bytes, offset: int) -> bytes:
        """The body of the object at `offset`, between its `obj` header and `endobj`."""
        begin = data.index(b"obj", offset) + 3
        cut = data.find(b"stream\n", begin, data.index(b"endobj", begin) + 6)
        if cut >= 0:  # skip the stream by its length: its bytes may hold anything
            length = int(_LENGTH.search(data, begin, cut).group(1))  # type: ignore[union-attr]
            end = data.index(b"endstream", cut + 7 + length) + len(b"endstream")
            return data[begin:end].strip()
        return data[begin : data.index(b"endobj", begin)].strip()

    def finish(self) -> None:
        self._offsets[self._PAGES] = self._out.tell()
        self._out.write(b"1 0 obj\n<< /Type /Pages /Count %d /Kids [" % len(self._kids))
        for kid in self._kids:
            self._out.write(b" %d 0 R" % kid)
        self._out.write(b" ] >>\nendobj\n")
        self._offsets[self._CATALOG] = self._out.tell()
        self._out.write(b"2 0 obj\n<< /Type /Catalog /Pages 1 0 R >>\nendobj\n")
        xref = self._out.tell()
        self._out.write(b"xref\n0 %d\n0000000000 65535 f \n" % len(self._offsets))
        for offset in self._offsets[1:]:
            self._out.write(b"%010d 00000 n \n" % offset)
        self._out.write(
            b"trailer\n<< /Size %d /Root 2 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(self._offsets), xref)
        )


def _compress_last_page(canvas: Canvas) -> None:
    """Compress the content of the page just finished now rather than when the document is saved.

    reportlab keeps every page's drawing commands as uncompressed text until `save`, so memory grows
    with the page count (47 MB for 10k rows, 91 MB for 100k). A stream whose dictionary already
    names its Filter is written as it is; the bytes are those `save` would have produced (the same
    zlib call on the same UTF-8 text). Skipped if a reportlab version lays out its pages differently.
    """
    pages = getattr(getattr(getattr(canvas, "_doc", None), "Pages", None), "pages", None)
    if not pages:
        return
    page = pages[-1]
    content = getattr(page, "stream", None)
    if not isinstance(content, str) or getattr(page, "Contents", None) is not None:
        return
    dictionary = pdfdoc.PDFDictionary({"Filter": pdfdoc.PDFArray([pdfdoc.PDFName("FlateDecode")])})
    page.Contents = pdfdoc.PDFStream(dictionary, zlib.compress(content.encode("utf-8")), filters=[])
    page.stream = None


# -- XLSX ------------------------------------------------------------------------------------

_XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_XLSX_MAX_ROWS = 1_048_576
_XLSX_MAX_COLUMNS = 16_384
_XLSX_MAX_CELL_CHARS = 32_767
# Fixed so that the same table gives the same bytes (xlsxwriter otherwise stamps the current time).
_XLSX_CREATED = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# No leading "+" or zeros: "+7 916…", "007" and zip codes are identifiers, not numbers.
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,14})")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,3})?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?")
_SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


def typed_value(value: Value) -> Value | dt.date | dt.datetime:
    """A cell's value as a spreadsheet should hold it: numbers and ISO dates parsed, the rest as given."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text or len(text) > 32:
        return value
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text) and sum(c.isdigit() for c in text) <= 15:
        number = float(text)
        if number == number and abs(number) != float("inf"):
            return number
    if _DATE.fullmatch(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            return value
    if _DATETIME.fullmatch(text):
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            return value
    return value


def table_to_xlsx(
    inputs: Sequence[InputFile], out_dir: Path, options: TableXlsxOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each table as an XLSX workbook of one sheet: a bold frozen header row, typed cells, an autofilter.

    Raises CorruptInput, InputTooLarge (more rows or columns than a worksheet holds), InvalidOptions.
    """
    import xlsxwriter  # type: ignore[import-untyped]  # imported here: only this conversion needs it

    sheet_name = options.sheet_name.strip()
    if not sheet_name or len(sheet_name) > 31 or _SHEET_NAME_FORBIDDEN.search(sheet_name):
        raise InvalidOptions("sheet_name must be 1 to 31 characters, none of []:*?/\\")
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in inputs:
        table = read_table(source, options)
        if len(table.columns) > _XLSX_MAX_COLUMNS:
            raise InputTooLarge(
                f"{describe(source)} has more than {_XLSX_MAX_COLUMNS:,} columns, a worksheet's limit"
            )
        name = names.add(source.filename, "xlsx", fallback="table")
        path = out_dir / name
        # constant_memory: each row is flushed to a temporary file as soon as the next one starts, and
        # strings are stored inline rather than in a shared table that would grow with the input.
        workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False})
        workbook.set_properties({"created": _XLSX_CREATED, "author": "", "comments": ""})
        sheet = workbook.add_worksheet(sheet_name)
        bold = workbook.add_format({"bold": True})
        date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
        datetime_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        for col, width in enumerate(_xlsx_widths(table)):
            sheet.set_column(col, col, width)
        for col, title in enumerate(table.columns):
            sheet.write_string(0, col, title[:_XLSX_MAX_CELL_CHARS], bold)
        sheet.freeze_panes(1, 0)
        row_index = 0
        cut = 0
        for row_index, row in enumerate(table.rows, start=1):  # the row count after the loop
            if row_index >= _XLSX_MAX_ROWS:
                workbook.close()
                path.unlink(missing_ok=True)
                raise InputTooLarge(
                    f"{describe(source)} has more than {_XLSX_MAX_ROWS - 1:,} rows, a worksheet's limit"
                )
            for col, value in enumerate(row):
                cell = typed_value(value) if options.typed else value
                if cell is None or cell == "":
                    continue
                if isinstance(cell, bool):
                    sheet.write_boolean(row_index, col, cell)
                elif isinstance(cell, int | float):
                    if isinstance(cell, int) and abs(cell) >= 10**15:
                        sheet.write_string(row_index, col, str(cell))  # Excel keeps 15 significant digits
                    else:
                        sheet.write_number(row_index, col, cell)
                elif isinstance(cell, dt.date) and cell.year < 1900:
                    sheet.write_string(row_index, col, str(value))  # before Excel's first date
                elif isinstance(cell, dt.datetime):
                    sheet.write_datetime(row_index, col, cell, datetime_format)
                elif isinstance(cell, dt.date):
                    sheet.write_datetime(row_index, col, cell, date_format)
                else:
                    text = str(cell)
                    if len(text) > _XLSX_MAX_CELL_CHARS:
                        text, cut = text[:_XLSX_MAX_CELL_CHARS], cut + 1
                    sheet.write_string(row_index, col, text)
        if table.columns:
            sheet.autofilter(0, 0, max(row_index, 1), len(table.columns) - 1)
        workbook.close()
        details = {**table.facts, "rows": row_index, "columns": len(table.columns)}
        if cut:
            details["cells_cut"] = cut
        outputs.append(OutputFile(path=path, name=name, content_type=_XLSX_TYPE, details=details))
    return outputs


def _xlsx_widths(table: Table) -> list[float]:
    """Column widths in characters from the header and the sampled rows, between 6 and 60."""
    widths = [float(len(c)) + 2 for c in table.columns]
    for row in table.sample:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(_cell_text(value)) + 1)
    return [min(60.0, max(6.0, w)) for w in widths]


# -- CSV and JSON ----------------------------------------------------------------------------


def table_to_csv(
    inputs: Sequence[InputFile], out_dir: Path, options: TableCsvOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each table (a JSON array of objects, or a CSV in any encoding) as a UTF-8 CSV with a header row.

    Raises CorruptInput, InputTooLarge.
    """
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in inputs:
        table = read_table(source, options)
        name = names.add(source.filename, "csv", fallback="table")
        path = out_dir / name
        count = 0
        neutralised = 0

        def cells(row: Sequence[Value]) -> list[str]:
            nonlocal neutralised
            texts = ["" if v is None else _cell_text(v) for v in row]
            if options.keep_formulas:
                return texts
            safe = [neutralise_formula(text) for text in texts]
            neutralised += sum(1 for a, b in zip(texts, safe, strict=True) if a is not b)
            return safe

        with path.open("w", encoding="utf-8-sig" if options.bom else "utf-8", newline="") as file:
            writer = csv.writer(file, delimiter=options.output_delimiter, lineterminator="\r\n")
            writer.writerow(cells(table.columns))
            for row in table.rows:
                writer.writerow(cells(row))
                count += 1
        details = {**table.facts, "rows": count, "columns": len(table.columns)}
        if neutralised:
            details["formulas_neutralised"] = neutralised
        outputs.append(OutputFile(path=path, name=name, content_type="text/csv", details=details))
    return outputs


#: What a spreadsheet takes for the start of a formula (or of DDE, =cmd|'/c calc'!A1) in a CSV cell.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def neutralise_formula(text: str) -> str:
    """The cell as a spreadsheet shows it as text: prefixed with ' when it would start a formula.

    Numbers such as -5 or +1.5e3 stay as they are: a spreadsheet reads them as numbers, not formulas.
    The same string object is returned when nothing changes.
    """
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def table_to_json(
    inputs: Sequence[InputFile], out_dir: Path, options: TableJsonOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each table as a UTF-8 JSON array of objects keyed by the column names, one object per line.

    CSV cells stay strings (a CSV does not say what is a number). Raises CorruptInput, InputTooLarge.
    """
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in inputs:
        table = read_table(source, options)
        columns = _unique_keys(table.columns)
        name = names.add(source.filename, "json", fallback="table")
        path = out_dir / name
        count = 0
        with path.open("w", encoding="utf-8", newline="\n") as file:
            file.write("[")
            for row in table.rows:
                file.write(",\n" if count else "\n")
                file.write(json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False))
                count += 1
            file.write("\n]\n" if count else "]\n")
        details = {**table.facts, "rows": count, "columns": len(columns)}
        outputs.append(OutputFile(path=path, name=name, content_type=JSON_TYPE, details=details))
    return outputs


def _unique_keys(columns: list[str]) -> list[str]:
    """Column names usable as object keys: a repeated or empty name gets a suffix, so no value is lost."""
    keys: list[str] = []
    taken: set[str] = set()
    for i, column in enumerate(columns):
        key = column or f"column_{i + 1}"
        candidate, n = key, 2
        while candidate in taken:
            candidate, n = f"{key}_{n}", n + 1
        taken.add(candidate)
        keys.append(candidate)
    return keys
