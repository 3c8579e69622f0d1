"""The encoding of a text file, decided one way for every reader of text: the sniffer, plain text, CSV, Markdown.

The detection lives with the other sniffers (exporters.sniff); the text families read it from here
or from there.
"""

from __future__ import annotations

from exporters.sniff import CANDIDATES as CANDIDATES
from exporters.sniff import detect_encoding as detect_encoding
from exporters.sniff import is_binary as is_binary
