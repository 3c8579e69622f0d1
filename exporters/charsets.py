"""The encoding of a text file, decided one way for every reader of text: the sniffer, plain text, CSV, Markdown.

UTF-8 (with or without BOM) is taken as soon as the bytes are valid UTF-8; otherwise charset-normalizer
weighs the encodings text files are commonly written in. Only encodings in which a newline byte is
always a newline are considered (single-byte code pages and the CJK multi-byte ones), so readers
may split lines before decoding them; UTF-16 and UTF-32 files hold NUL bytes and are not text here.
"""

from __future__ import annotations

import codecs

import charset_normalizer

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
