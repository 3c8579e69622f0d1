"""Content detection from the bytes of a file, never from the client's Content-Type header.

Binary formats are recognised from their bytes alone. The file name only chooses between readings
of text that the bytes cannot tell apart (CSV, TSV or Markdown rather than plain text); it never
lets a binary file in.
"""

from __future__ import annotations

import re
from pathlib import Path

from exporters.charsets import detect_encoding, is_binary
from exporters.markdown import sniff_markdown
from exporters.office import sniff_office
from exporters.tables import sniff_table
from exporters.typeset import sniff_web

# How much of the head `sniff` looks at: Office documents name their parts in the first few KB.
SNIFF_BYTES = 64 * 1024

OCTET_STREAM = "application/octet-stream"

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
        return "application/pdf"
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
