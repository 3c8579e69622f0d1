"""Content detection from the bytes of a file, never from the client's Content-Type header.

Binary formats are recognised from their bytes alone. The file name only chooses between readings
of text that the bytes cannot tell apart (CSV, TSV or Markdown rather than plain text); it never
lets a binary file in.

Every sniffer lives here (pictures, PDF, Office documents, tables, HTML, stylesheets, fonts,
Markdown, the encoding of text), beside nothing but the format records of exporters.media: the API
sniffs uploads with this module without loading any conversion library.
"""

from __future__ import annotations

import codecs
import re
import struct
import zipfile
from pathlib import Path

from exporters import media
from exporters.media import DOC, DOCX, ODP, ODS, ODT, PPT, PPTX, RTF, XLS, XLSX

# How much of the head `sniff` looks at: Office documents name their parts in the first few KB.
SNIFF_BYTES = 64 * 1024

OCTET_STREAM = media.OCTET_STREAM

_ISO_BMFF_BRANDS = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"hevc": "image/heic",
    b"hevx": "image/heic",
    b"avif": "image/avif",
    b"avis": "image/avif",
}

#: The coded item types of HEIF images: what decides the decoder, whatever the brands claim.
_ITEM_CODECS = {b"hvc1": "image/heic", b"av01": "image/avif"}


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO-BMFF boxes in data[start:end], cut at the head's end."""
    found = []
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        header = 8
        if size == 1 and pos + 16 <= end:
            size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < header:
            break
        found.append((kind, pos + header, min(pos + size, end)))
        pos += size
    return found


def _item_codec(head: bytes, meta_start: int, meta_end: int) -> str | None:
    """The media type named by the coded items of a `meta` box: its primary item's codec, or for a
    grid of tiles (as iPhones store photos), the codec of the items it is made of."""
    primary_id = None
    types: dict[int, bytes] = {}
    for kind, start, end in _boxes(head, meta_start + 4, meta_end):  # meta is a full box
        if kind == b"pitm" and end - start >= 6:
            version = head[start]
            primary_id = int.from_bytes(head[start + 4 : start + (6 if version == 0 else 8)], "big")
        if kind == b"iinf" and end - start >= 6:
            count_bytes = 2 if head[start] == 0 else 4
            for entry, e_start, e_end in _boxes(head, start + 4 + count_bytes, end):
                version = head[e_start] if e_start < e_end else 0
                if entry != b"infe" or version < 2:
                    continue
                id_bytes = 2 if version == 2 else 4
                item_id = int.from_bytes(head[e_start + 4 : e_start + 4 + id_bytes], "big")
                type_at = e_start + 4 + id_bytes + 2  # after the protection index
                if type_at + 4 <= e_end:
                    types[item_id] = head[type_at : type_at + 4]
    if primary_id in types and types[primary_id] in _ITEM_CODECS:
        return _ITEM_CODECS[types[primary_id]]
    for item_type in types.values():
        if item_type in _ITEM_CODECS:
            return _ITEM_CODECS[item_type]
    return None


def _iso_bmff(head: bytes) -> str | None:
    """HEIF family (HEIC, AVIF): an `ftyp` box, then the codec of the coded items in `meta` decides;
    when the head does not reach them, the major or compatible brands do."""
    if head[4:8] != b"ftyp":
        return None
    boxes = _boxes(head, 0, len(head))
    for kind, start, end in boxes:
        if kind == b"meta":
            codec = _item_codec(head, start, end)
            if codec:
                return codec
    box_size = int.from_bytes(head[0:4], "big")
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, min(box_size, len(head)), 4)]
    for brand in brands:  # the major brand first, so `avif` wins over a generic `mif1`
        if brand in _ISO_BMFF_BRANDS:
            return _ISO_BMFF_BRANDS[brand]
    return None


#: Formats written in plain ASCII that are not text to read: pictures, fonts and programs for other
#: software. Recognised before any text reading, so that they are refused instead of printed as listings.
_TEXT_FORMATS: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb"\A%!PS"), "application/postscript"),  # PostScript and EPS
    (re.compile(rb"\A/\* XPM \*/|\A! XPM2"), "image/x-xpixmap"),
    (re.compile(rb"\A(?:/\*.*?\*/\s*)?#define\s+\w*_width\s+\d+"), "image/x-xbitmap"),
    # Netpbm: the magic number, then (past comments) the width and the height.
    (re.compile(rb"\AP[1-6](?:\s|#[^\n]*\n)*\d+\s+\d+"), "image/x-portable-anymap"),
    (re.compile(rb"\AP7\s"), "image/x-portable-arbitrarymap"),
    (re.compile(rb"\ASTARTFONT\s"), "application/x-font-bdf"),
    (
        re.compile(
            rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!DOCTYPE svg[^>]*>\s*)?<svg[\s>]",
            re.S,
        ),
        "image/svg+xml",
    ),
)


def _text_format(head: bytes) -> str | None:
    """The media type of a file written in text that is a picture, a font or a program, or None."""
    for pattern, media_type in _TEXT_FORMATS:
        if pattern.match(head):
            return media_type
    return None


def needs_whole_file(head: bytes) -> bool:
    """Whether a container (ZIP, OLE2) may only be told apart with the whole file (`sniff(path=...)`)."""
    return head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"))


# -- Office documents ---------------------------------------------------------------------------

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_OOXML_PARTS = (("word/", DOCX), ("xl/", XLSX), ("ppt/", PPTX))
_OLE2_STREAMS = (("WordDocument", DOC), ("Workbook", XLS), ("Book", XLS), ("PowerPoint Document", PPT))
_MAX_DIRECTORY_SECTORS = 64  # a loop in a hostile file's FAT ends here
_MAX_ZIP_MEMBERS = 10_000  # more entries than any real document: not worth listing further


def sniff_office(head: bytes, path: Path | None = None) -> str | None:
    """The media type of an Office document from its bytes, or None if it is not one.

    ZIP-based files (OOXML, OpenDocument) are told apart by their `mimetype` entry (OpenDocument) or
    their part names (OOXML); OLE2 compound files (DOC, XLS, PPT) by the streams in their root
    directory; RTF by its `{\\rtf` signature. With `path` the whole file is consulted (a ZIP's table of
    contents is at its end); without, only `head`.
    """
    if head.startswith(b"{\\rtf"):
        return RTF
    if head.startswith(b"PK\x03\x04"):
        return _sniff_zip(head, path)
    if head.startswith(_OLE2_MAGIC):
        return _sniff_ole2(head, path)
    return None


def _sniff_zip(head: bytes, path: Path | None) -> str | None:
    # OpenDocument stores an uncompressed "mimetype" entry first: its content is right in the head.
    if head[30:38] == b"mimetype":
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        start = 30 + name_len + extra_len
        mimetype = head[start : start + 60].split(b"PK", 1)[0].decode("ascii", "replace").strip()
        if mimetype in (ODT, ODS, ODP):
            return mimetype
    names: list[str] = []
    if path is not None:
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist()[:_MAX_ZIP_MEMBERS]:
                    names.append(info.filename)
                if "mimetype" in names:
                    with archive.open("mimetype") as member:
                        mimetype = member.read(100).decode("ascii", "replace").strip()
                    if mimetype in (ODT, ODS, ODP):
                        return mimetype
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
    else:
        names = [part.decode("ascii", "replace") for part in _local_names(head)]
    if "[Content_Types].xml" not in names and path is not None:
        return None
    for prefix, media_type in _OOXML_PARTS:
        if any(name.startswith(prefix) for name in names):
            return media_type
    return None


def _local_names(head: bytes) -> list[bytes]:
    """The names of the ZIP local file headers found in the head."""
    names = []
    at = head.find(b"PK\x03\x04")
    while at != -1 and at + 30 <= len(head):
        name_len = struct.unpack("<H", head[at + 26 : at + 28])[0]
        names.append(head[at + 30 : at + 30 + name_len])
        at = head.find(b"PK\x03\x04", at + 30 + name_len)
    return names


def _sniff_ole2(head: bytes, path: Path | None) -> str | None:
    """Which application's stream an OLE2 compound file holds, from the names in its directory."""
    if len(head) < 0x200:
        return None
    sector_shift = struct.unpack("<H", head[0x1E:0x20])[0]
    if sector_shift not in (9, 12):
        return None
    sector_size = 1 << sector_shift

    def read(offset: int, size: int) -> bytes:
        if offset + size <= len(head) or path is None:
            return head[offset : offset + size]
        with path.open("rb") as file:
            file.seek(offset)
            return file.read(size)

    # The directory is a chain of sectors linked through the FAT; the header lists the first 109
    # FAT sectors, which cover any document this service accepts (about 7 MB of 512-byte sectors each).
    fat_sectors = [s for s in struct.unpack("<109I", head[0x4C:0x200]) if s < 0xFFFFFFFA]
    entries_per_fat_sector = sector_size // 4
    names: set[str] = set()
    sector = struct.unpack("<I", head[0x30:0x34])[0]
    for _ in range(_MAX_DIRECTORY_SECTORS):
        if sector >= 0xFFFFFFFA:
            break
        directory = read((sector + 1) * sector_size, sector_size)
        for entry in range(0, len(directory) - 127, 128):
            length = struct.unpack("<H", directory[entry + 64 : entry + 66])[0]
            if 2 <= length <= 64:
                names.add(directory[entry : entry + length - 2].decode("utf-16-le", "replace"))
        fat_index, slot = divmod(sector, entries_per_fat_sector)
        if fat_index >= len(fat_sectors):
            break
        link = read((fat_sectors[fat_index] + 1) * sector_size + slot * 4, 4)
        if len(link) < 4:
            break
        sector = struct.unpack("<I", link)[0]
    if "EncryptedPackage" in names:
        return None  # a password-protected OOXML file: not convertible without its password
    for stream, media_type in _OLE2_STREAMS:
        if stream in names:
            return media_type
    return None


# -- tables ------------------------------------------------------------------------------------

JSON_ARRAY_OF_OBJECTS = re.compile(rb"\A(?:\xef\xbb\xbf)?[ \t\r\n]*\[[ \t\r\n]*(?:\{|\])")


def sniff_table(head: bytes, filename: str) -> str | None:
    """The table media type of a file, or None: JSON from the bytes, CSV and TSV from the name and bytes.

    A JSON array of objects announces itself (`[` then `{`). A CSV is also plain text, so nothing in
    its bytes alone says "table"; the client's `.csv`/`.tsv` extension is taken as the hint, and
    the bytes must still look like text in some 8-bit or UTF-8 encoding (no NUL, few controls), since
    CSV exports are often cp1251 or Latin-1, which the UTF-8 text sniffer refuses.
    """
    if JSON_ARRAY_OF_OBJECTS.match(head):
        return media.JSON
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    if extension not in ("csv", "tsv", "tab"):
        return None
    if b"\x00" in head:
        return None
    controls = sum(1 for b in head if b < 0x20 and b not in (0x09, 0x0A, 0x0C, 0x0D))
    if controls > len(head) // 100:
        return None
    return media.TSV if extension in ("tsv", "tab") else media.CSV


# -- HTML, stylesheets and fonts --------------------------------------------------------------


def sniff_web(head: bytes, filename: str) -> str | None:
    """The media type of an HTML page, a stylesheet or a font, or None.

    Fonts are recognised by their bytes; HTML by its bytes (a doctype or an <html> tag) or its
    `.html`/`.htm` name; CSS, which nothing in its bytes announces, only by a `.css` name. The caller
    checks that HTML and CSS are text.
    """
    if head[:4] in media.FONT_MAGIC:
        return media.FONT_MAGIC[head[:4]]
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if extension in ("html", "htm") or start.startswith((b"<!doctype html", b"<html")):
        return media.HTML
    if extension == "css":
        return media.CSS
    return None


# -- Markdown -----------------------------------------------------------------------------------

_MARKDOWN_EXTENSIONS = media.BY_NAME["markdown"].extensions


def sniff_markdown(filename: str) -> str | None:
    """text/markdown for UTF-8 text the client named `.md`: any text is valid Markdown, and reading
    plain notes as Markdown would change them (asterisks vanish), so only the name can ask for it."""
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    return media.MARKDOWN if extension in _MARKDOWN_EXTENSIONS else None


# -- text and its encoding -----------------------------------------------------------------------
#
# The encoding of a text file, decided one way for every reader of text: the sniffer, plain text, CSV, Markdown.
#
# UTF-8 (with or without BOM) is taken as soon as the bytes are valid UTF-8; otherwise charset-normalizer
# weighs the encodings text files are commonly written in. Only encodings in which a newline byte is
# always a newline are considered (single-byte code pages and the CJK multi-byte ones), so readers
# may split lines before decoding them; UTF-16 and UTF-32 files hold NUL bytes and are not text here.

#: Candidates, most likely first: the order breaks ties between encodings that read a sample equally well.
CANDIDATES = (
    "cp1252",  # Western European Windows (a superset of Latin-1's letters)
    "cp1251",  # Cyrillic Windows
    "cp1250",  # Central European Windows
    "cp1253",  # Greek
    "cp1254",  # Turkish
    "cp1257",  # Baltic
    "koi8_r",
    "cp866",
    "gb18030",
    "big5",
    "shift_jis",
    "euc_jp",
    "euc_kr",
)
# Latin-script code pages whose accented letters differ: between them, a sample whose only non-ASCII
# bytes are C0–FF (the accented letters of cp1252 and Latin-1, à to ÿ) is Western European text.
_LATIN = {"cp1250", "cp1252", "cp1254", "cp1257"}


def is_binary(sample: bytes) -> bool:
    """NUL bytes or control characters other than tab, newlines and form feed: not a text file."""
    if b"\x00" in sample:
        return True
    return any(b < 0x20 and b not in (0x09, 0x0A, 0x0C, 0x0D) for b in sample)


def detect_encoding(sample: bytes, *, complete: bool = True) -> str | None:
    """The encoding of a text file from a sample of its start (`complete` when it is the whole file).

    utf-8-sig, utf-8, or one of CANDIDATES; None when the bytes are not text in any of them.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if b"\x00" in sample:
        return None
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(sample, complete)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    if is_binary(sample):  # valid UTF-8 may hold a stray control character; guessed code pages not
        return None
    if not complete and b"\n" in sample:
        sample = sample[: sample.rfind(b"\n") + 1]  # not a multi-byte character cut by the sample's end
    import charset_normalizer  # here: only text that is not UTF-8 needs it (4 MB the API rarely pays)

    results = charset_normalizer.from_bytes(sample, cp_isolation=list(CANDIDATES))
    if not results:
        return None
    least = min(match.chaos for match in results)
    readings = {
        encoding
        for match in results
        if match.chaos == least
        for encoding in match.could_be_from_charset
        if encoding in CANDIDATES
    }
    if not readings:
        return None
    best = min(readings, key=CANDIDATES.index)
    if best in _LATIN and all(b >= 0xC0 for b in sample if b >= 0x80):
        return "cp1252"
    return best


def sniff(head: bytes, *, complete: bool = False, filename: str = "", path: Path | None = None) -> str:
    """The media type of a file from its first bytes (`complete` when `head` is the whole file).

    `filename` is the client's name for it (see the module docstring); `path`, the whole file, lets
    Office documents whose parts lie beyond the head be recognised.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[:2] == b"BM" and len(head) >= 26:
        return "image/bmp"
    if head.startswith(b"%PDF-"):
        return media.PDF
    iso = _iso_bmff(head)
    if iso:
        return iso
    text_format = _text_format(head)
    if text_format:
        return text_format
    office = sniff_office(head, path)  # before text: an RTF file is also valid text
    if office:
        return office
    table = sniff_table(head, filename)  # before text: CSV exports are often not UTF-8
    if table:
        return table
    web = sniff_web(head, filename)  # fonts by their bytes; HTML and CSS only when they are text
    is_text = bool(head) and not is_binary(head) and detect_encoding(head, complete=complete) is not None
    if web and (web.startswith("font/") or is_text):
        return web
    if is_text:
        return sniff_markdown(filename) or "text/plain"
    return OCTET_STREAM
