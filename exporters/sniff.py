"""Content detection from the first bytes of a file, never from its name or the client's header."""

from __future__ import annotations

SNIFF_BYTES = 4096  # how much of the head `sniff` needs to see

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


def _iso_bmff(head: bytes) -> str | None:
    """HEIF family: an `ftyp` box whose major or compatible brands name the codec."""
    if head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, min(box_size, len(head)), 4)]
    for brand in brands:  # the major brand first, so `avif` wins over a generic `mif1`
        if brand in _ISO_BMFF_BRANDS:
            return _ISO_BMFF_BRANDS[brand]
    return None


def _is_text(head: bytes, *, complete: bool) -> bool:
    """UTF-8 (with or without BOM) without NUL or other binary control bytes."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the end of the head is still text.
        if complete or exc.start < len(head) - 3 or exc.reason != "unexpected end of data":
            return False
    controls = sum(1 for b in head if b < 0x20 and b not in (0x09, 0x0A, 0x0C, 0x0D))
    return controls == 0


def sniff(head: bytes, *, complete: bool = False) -> str:
    """The media type of a file from its first bytes (`complete` when `head` is the whole file)."""
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
    if head and _is_text(head, complete=complete):
        return "text/plain"
    return OCTET_STREAM
