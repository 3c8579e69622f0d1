"""What every user of PDFium in a process shares: one lock. PDFium is not thread-safe.

Importing this module loads no PDFium (the lock is all it holds), so a module can name the lock
without paying for the library until it renders.
"""

from __future__ import annotations

import threading

#: Held around every call into PDFium, by every module of this process that uses it.
PDFIUM_LOCK = threading.Lock()
