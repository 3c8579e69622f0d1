"""Fixtures shared by the converter tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exporters import fonts
from exporters.base import Limits
from tests.exporters.samples import Pdf


@pytest.fixture(autouse=True, scope="session")
def _bundled_fonts() -> None:
    """The bundled faces registered with reportlab, as a worker does at start-up (registry.prepare):
    some tests draw with them on canvases of their own, before any converter has registered them."""
    fonts.register()


@pytest.fixture
def open_pdf() -> Iterator[type[Pdf]]:
    """Open PDFs with `open_pdf(path)`; all are closed after the test."""
    opened: list[Pdf] = []

    class Tracked(Pdf):
        def __init__(self, path: Path) -> None:
            super().__init__(path)
            opened.append(self)

    yield Tracked
    for pdf in opened:
        pdf.close()


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def limits() -> Limits:
    return Limits()
