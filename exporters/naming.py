"""Download names: what a job's outputs are called, made safe and unique from the client's names."""

from __future__ import annotations

import re
import unicodedata

_MAX_STEM_CHARS = 100


def safe_stem(filename: str) -> str:
    """The stem of a client's file name reduced to ASCII letters, digits and `._-` ("" if nothing is left)."""
    base = re.split(r"[/\\]", filename)[-1]
    stem, dot, _extension = base.rpartition(".")
    if not dot or not stem:
        stem = base
    ascii_only = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_only)
    # No leading dot (hidden file, `..`) and no dangling separators.
    return cleaned.strip("._-")[:_MAX_STEM_CHARS].strip("._-")


class UniqueNames:
    """Download names for one job's outputs: safe stems, deduplicated with -2, -3, ... suffixes."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def add(self, filename: str, extension: str, *, fallback: str) -> str:
        """A new name `<stem>.<extension>` from the client's `filename`, unique in this job."""
        stem = safe_stem(filename) or fallback
        name = f"{stem}.{extension}"
        counter = 2
        # Case-insensitively, since the names may meet a case-insensitive file system on download.
        while name.lower() in self._taken:
            name = f"{stem}-{counter}.{extension}"
            counter += 1
        self._taken.add(name.lower())
        return name
