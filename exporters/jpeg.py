"""JPEG files taken apart at their markers: metadata removed without touching the coded picture.

A JPEG is a sequence of marker segments (FF xx, a two-byte length, the payload) up to a start of
scan, then entropy-coded data in which a literal FF is always followed by 00 or a restart marker.
Removing APPn and COM segments changes no pixel, so a photo embedded this way is exactly the photo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from exporters.base import CorruptInput
from exporters.metadata import exif_categories

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
# Start-of-frame markers of the codings a PDF reader's DCTDecode handles: baseline, extended, progressive.
_SOF_PASSABLE = (0xC0, 0xC1, 0xC2)
_SOF_ANY = (*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0))
_RST = range(0xD0, 0xD8)  # restart markers: no length, only inside entropy-coded data
_TEM = 0x01  # no length either
_APP0, _APP1, _APP2, _APP13, _APP14, _COM = 0xE0, 0xE1, 0xE2, 0xED, 0xEE, 0xFE

ICC_SIGNATURE = b"ICC_PROFILE\x00"


@dataclass
class StrippedJpeg:
    """A JPEG without metadata, and the names of what was taken out (for the job's details)."""

    data: bytes
    removed: set[str] = field(default_factory=set)
    icc_profile: bytes | None = None  # the profile the picture is coded in, if it declared one
    frames: list[int] = field(default_factory=list)  # the start-of-frame markers met (0xC0, 0xC2, ...)
    scans: int = 0  # start-of-scan segments met


def _kind_of_segment(marker: int, payload: bytes) -> str | None:
    """What a metadata segment holds ("exif", "gps", "xmp", ...), None for a segment decoding needs."""
    if marker == _APP0:
        # JFIF carries density only; its JFXX extension carries nothing but a thumbnail.
        return "thumbnail" if payload.startswith(b"JFXX\x00") else None
    if marker == _APP14 and payload.startswith(b"Adobe"):
        return None  # says whether the channels are YCC, YCCK or plain: decoding needs it
    if marker == _APP2 and payload.startswith(ICC_SIGNATURE):
        return "icc_profile"
    if marker == _APP1:
        if payload.startswith(b"Exif\x00"):
            return "exif"
        if payload.startswith((b"http://ns.adobe.com/xap/1.0/", b"http://ns.adobe.com/xmp/extension/")):
            return "xmp"
        return "app1"
    if marker == _APP2 and payload.startswith(b"MPF\x00"):
        return "mpf"  # points at the other pictures of a dual-camera MPO, which are not kept
    if marker == _APP13:
        return "iptc"
    if marker == _COM:
        return "comment"
    if 0xE0 <= marker <= 0xEF:
        return f"app{marker - 0xE0}"
    return None


def strip_metadata(data: bytes, *, keep_icc: bool = True, name: str = "the file") -> StrippedJpeg:
    """The JPEG with its EXIF (GPS), XMP, IPTC, comments and other APPn segments removed, losslessly.

    JFIF, Adobe (colour transform) and, when `keep_icc`, the ICC profile stay: decoding needs them.
    Anything after the end of the first picture (an MPO's second camera, trailing bytes) is dropped.
    Raises CorruptInput when the markers cannot be followed.
    """
    if not data.startswith(b"\xff\xd8"):
        raise CorruptInput(f"{name} is not a JPEG: it does not start with a start-of-image marker")
    view = memoryview(data)
    out: list[bytes | memoryview] = [b"\xff\xd8"]  # pieces joined once: the coded data is copied once
    removed: set[str] = set()
    icc_chunks: list[bytes] = []
    frames: list[int] = []
    scans = 0
    pos = 2
    end = len(data)
    while True:
        # Fill bytes (any number of FF) may precede a marker.
        while pos < end and data[pos] == 0xFF and pos + 1 < end and data[pos + 1] == 0xFF:
            pos += 1
        if pos + 1 >= end or data[pos] != 0xFF:
            raise CorruptInput(f"{name} is damaged or incomplete: its JPEG markers end unexpectedly")
        marker = data[pos + 1]
        if marker == _EOI:
            out.append(b"\xff\xd9")
            break
        if marker in _RST or marker in (_TEM, _SOI):
            out.append(view[pos : pos + 2])
            pos += 2
            continue
        if pos + 4 > end:
            raise CorruptInput(f"{name} is damaged or incomplete: a JPEG segment is cut short")
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment_end = pos + 2 + length
        if length < 2 or segment_end > end:
            raise CorruptInput(f"{name} is damaged or incomplete: a JPEG segment is cut short")
        payload = data[pos + 4 : segment_end]
        kind = _kind_of_segment(marker, payload)
        if kind == "icc_profile":
            icc_chunks.append(payload)
            if keep_icc:
                out.append(view[pos:segment_end])
            else:
                removed.add(kind)
        elif kind is not None:
            removed.add(kind)
            if kind == "exif":
                removed.update(exif_categories(payload))
        else:
            out.append(view[pos:segment_end])
        pos = segment_end
        if marker in _SOF_ANY:
            frames.append(marker)
        if marker == _SOS:
            scans += 1
            scan_end = _end_of_entropy_coded_data(data, pos)
            out.append(view[pos:scan_end])
            pos = scan_end
    return StrippedJpeg(b"".join(out), removed, _joined_icc(icc_chunks), frames, scans)


def passthrough(data: bytes) -> StrippedJpeg | None:
    """The JPEG without its metadata if its bytes may go into a PDF as they are (DCTDecode), else None.

    A PDF reader's JPEG decoder is stricter than libjpeg, which skips junk between segments and
    makes up for missing data with a warning: a file Pillow decodes may still show as nothing in
    a PDF. Pass-through is safe only when every segment follows the one before (SOI, segments with
    valid lengths, no stray bytes), there is one baseline or progressive frame with at least one
    scan, and the end-of-image marker is reached; anything else is decoded and re-encoded.
    """
    try:
        stripped = strip_metadata(data)
    except CorruptInput:
        return None
    if len(stripped.frames) != 1 or stripped.frames[0] not in _SOF_PASSABLE or stripped.scans < 1:
        return None
    return stripped


#: A marker inside coded data: 0xFF followed by anything but a stuffed zero, a restart marker
#: (they belong to the scan) or another 0xFF (fill bytes before the marker's own 0xFF).
_MARKER_AFTER_SCAN = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


def _end_of_entropy_coded_data(data: bytes, pos: int) -> int:
    """Where the next marker after a scan's coded data starts (the end of the data if none does)."""
    # One regular-expression search instead of a Python loop over every 0xFF of the coded data.
    found = _MARKER_AFTER_SCAN.search(data, pos)
    return found.start() if found else len(data)


def _joined_icc(chunks: list[bytes]) -> bytes | None:
    """An ICC profile split over APP2 segments (each numbered: sequence, count), put back together."""
    if not chunks:
        return None
    numbered = []
    for chunk in chunks:
        body = chunk[len(ICC_SIGNATURE) :]
        if len(body) < 2:
            return None
        numbered.append((body[0], body[2:]))
    numbered.sort(key=lambda item: item[0])
    return b"".join(part for _index, part in numbered)
