"""What a file is, from its bytes: pictures and programs written in ASCII are not text; text in a code page is."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters import registry
from exporters.base import UnsupportedInput
from exporters.charsets import detect_encoding
from exporters.sniff import sniff
from tests.exporters.samples import FRENCH, GREEK, RUSSIAN

PILLOW = Path(__file__).parent.parent / "fixtures" / "pillow"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("zero_bb.eps", "application/postscript"),
        ("hopper.xpm", "image/x-xpixmap"),
        ("hopper.xbm", "image/x-xbitmap"),
        ("hopper_1bit_plain.pbm", "image/x-portable-anymap"),
    ],
)
def test_pictures_written_in_ascii_are_refused_not_printed(name: str, media_type: str) -> None:
    data = (PILLOW / name).read_bytes()

    assert sniff(data, complete=True, filename=name) == media_type
    # Also under a text file's name: the bytes decide.
    assert sniff(data, complete=True, filename="notes.txt") == media_type
    with pytest.raises(UnsupportedInput, match=f"files of type {media_type} cannot be converted"):
        registry.kind_of(media_type)


@pytest.mark.parametrize(
    "head",
    [
        b"P1 is the first priority of 2 teams\n",  # a sentence, not a Netpbm header
        b"%PDQ notes\n",
        b"#define nothing\n",
        b"<svgish text\n",
    ],
)
def test_text_that_only_starts_like_a_format_is_text(head: bytes) -> None:
    assert sniff(head, complete=True, filename="notes.txt") == "text/plain"


def test_svg_is_not_text() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    assert sniff(svg, complete=True, filename="notes.txt") == "image/svg+xml"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [(RUSSIAN, "cp1251"), (RUSSIAN, "koi8_r"), (FRENCH, "cp1252"), (GREEK, "cp1253")],
)
def test_text_in_a_code_page_is_text_as_a_csv_in_it_is_a_table(text: str, encoding: str) -> None:
    data = (text + "\n").encode(encoding)

    assert sniff(data, complete=True, filename="notes.txt") == "text/plain"
    assert sniff(data, complete=True, filename="notes.md") == "text/markdown"
    assert sniff(data, complete=True, filename="data.csv") == "text/csv"
    # One detector for both readers.
    assert detect_encoding(data) == encoding


def test_binary_is_neither_text_nor_a_table() -> None:
    data = b"\x01\x02\x03binary\x00\x00\x10"

    assert sniff(data, complete=True, filename="notes.txt") == "application/octet-stream"
