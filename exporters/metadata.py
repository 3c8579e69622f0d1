"""What metadata an image carries, what may be kept of it, and what an output is written with.

Nothing is kept by default. A client may keep a few named groups of EXIF tags (`KEEPABLE`); the
position (GPS), serial numbers, maker notes, thumbnails, XMP and IPTC are never written, since any
of them can say where a photo was taken or by which device.
"""

from __future__ import annotations

from collections.abc import Iterable

from PIL import ExifTags, Image

_EXIF_IFD = ExifTags.IFD.Exif
_GPS_IFD = ExifTags.IFD.GPSInfo

#: The groups of tags a client may keep, and the tags of each, by IFD (0: the main IFD).
KEEPABLE: dict[str, dict[int, frozenset[int]]] = {
    "copyright": {0: frozenset({0x8298, 0x013B})},  # Copyright, Artist
    "datetime": {
        0: frozenset({0x0132}),  # DateTime
        # DateTimeOriginal, DateTimeDigitized, their time-zone offsets and sub-seconds
        _EXIF_IFD: frozenset({0x9003, 0x9004, 0x9010, 0x9011, 0x9012, 0x9290, 0x9291, 0x9292}),
    },
    "camera": {
        0: frozenset({0x010F, 0x0110}),  # Make, Model
        # Exposure time, f-number, ISO, focal length (and in 35 mm), lens make and model
        _EXIF_IFD: frozenset({0x829A, 0x829D, 0x8827, 0x920A, 0xA405, 0xA433, 0xA434}),
    },
    "description": {0: frozenset({0x010E})},  # ImageDescription
}

#: Tags that are structure, not content (TIFF's own layout tags, pointers to sub-IFDs, the
#: orientation that is applied to the pixels): never reported as removed on their own.
_CONTENT_TAGS_OF_TIFF_RANGE = frozenset({0x010D, 0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x013C})
_STRUCTURAL = (
    frozenset(range(0x00FE, 0x0154)) - _CONTENT_TAGS_OF_TIFF_RANGE
    | frozenset(range(0x0200, 0x0215))
    | frozenset({0x8769, 0x8825, 0xA005, 0x9000, 0xA000, 0x8773})  # 0x8773: ICC, reported on its own
)
#: Tags of the main IFD that hold other kinds of metadata (TIFF stores them there).
_TAG_GROUPS = {0x02BC: "xmp", 0x83BB: "iptc", 0x8649: "iptc"}


def _group_of(ifd: int, tag: int) -> str | None:
    for group, tags in KEEPABLE.items():
        if tag in tags.get(ifd, ()):
            return group
    return None


def exif_groups(exif: Image.Exif) -> set[str]:
    """The groups present in `exif`: "gps", the KEEPABLE ones, and "exif" for any other tag."""
    found: set[str] = set()
    try:
        if exif.get_ifd(_GPS_IFD):
            found.add("gps")
        exif_ifd = dict(exif.get_ifd(_EXIF_IFD))
    except Exception:  # a damaged IFD: what is there is removed anyway
        found.add("exif")
        exif_ifd = {}
    for ifd, tags in ((0, dict(exif)), (_EXIF_IFD, exif_ifd)):
        for tag in tags:
            if tag in _STRUCTURAL:
                continue
            found.add(_group_of(ifd, tag) or (_TAG_GROUPS.get(tag, "exif") if ifd == 0 else "exif"))
    return found


def exif_categories(app1_payload: bytes) -> set[str]:
    """The groups (see exif_groups) in the payload of a JPEG APP1 Exif segment, {"exif"} if unreadable."""
    exif = Image.Exif()
    try:
        exif.load(app1_payload)
        return exif_groups(exif) or {"exif"}
    except Exception:  # reading another program's EXIF may fail in any way; it is removed regardless
        return {"exif"}


def kept_exif(exif: Image.Exif, keep: Iterable[str]) -> Image.Exif | None:
    """A new EXIF block with only the tags of the `keep` groups (no orientation: pixels are upright)."""
    keep = set(keep)
    if not keep:
        return None
    kept = Image.Exif()
    try:
        exif_ifd = dict(exif.get_ifd(_EXIF_IFD))
    except Exception:
        exif_ifd = {}
    for tag, value in dict(exif).items():
        if _group_of(0, tag) in keep:
            kept[tag] = value
    kept_sub = {tag: value for tag, value in exif_ifd.items() if _group_of(_EXIF_IFD, tag) in keep}
    if kept_sub:
        kept.get_ifd(_EXIF_IFD).update(kept_sub)
    return kept if (len(kept) or kept_sub) else None


#: Keys of Pillow's `info` that hold metadata, and the group each is reported as.
_INFO_GROUPS = {
    "xmp": "xmp",
    "XML:com.adobe.xmp": "xmp",
    "photoshop": "iptc",
    "iptc": "iptc",
    "comment": "comment",
    "comments": "comment",
    "thumbnails": "thumbnail",
    "mp": "mpf",
}


def info_groups(info: dict[str | tuple[int, int], object], image_format: str | None) -> set[str]:
    """Metadata groups held in an opened image's `info` (beyond EXIF): XMP, IPTC, comments, PNG text."""
    found = {group for key, group in _INFO_GROUPS.items() if info.get(key)}
    # PNG tEXt/iTXt/zTXt chunks land in info as str values under their keyword.
    if image_format == "PNG" and any(
        isinstance(value, str) and key not in _INFO_GROUPS for key, value in info.items()
    ):
        found.add("text")
    return found
