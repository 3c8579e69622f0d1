"""HTML and CSS typeset to PDF by WeasyPrint, sealed off from everything but the export's own files.

Shared by the HTML family (exporters/html.py) and Markdown's `engine: "html"`: one place decides
what a document may reach. Every URL the document names (`<img>`, `<link>`, `@import`, `url()`,
`@font-face`, `<object>`, SVG `href`s) goes through `SealedFetcher`, which answers only:

- a relative URL, by its last path segment, with the input of the same export of that file name;
- a `data:` URL of at most DATA_URL_MAX_BYTES.

Nothing else is opened: no network (not even this machine), no `file://`, no absolute path. What
could not be resolved is listed in the output's details instead of leaving a silent blank. HTML is
never scripted: WeasyPrint has no JavaScript engine, `<script>` is dropped and `<iframe>` is not
rendered.

WeasyPrint is imported on first use, not with this module: the API process lists the conversion
without paying for Pango and the layout engine (0.7 s and 30 MB measured here).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import dataclasses
import io
import logging
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporters import media
from exporters.base import InputFile, InputTooLarge, Limits, option
from exporters.sniff import sniff_web as sniff_web

#: The base URL relative references are resolved against. The `.invalid` top-level domain is
#: reserved never to resolve (RFC 2606); nothing is ever fetched from it anyway, its path is only
#: read back to find the input of that name.
BASE_URL = "http://inputs.exportd.invalid/"

#: Largest `data:` URL decoded (images inlined by tools that export HTML are often a few hundred KB).
DATA_URL_MAX_BYTES = 2 * 1024 * 1024

#: Elements in one document, counted as start tags before parsing. WeasyPrint holds about 16 KB per
#: element while it lays out (measured here on tables: 20,000 elements, 96 pages, 305 MB above the
#: process's start), so this bounds one document near 400 MB, and a 10-million-cell table is
#: refused without being parsed.
MAX_ELEMENTS = 25_000
#: Nesting depth: WeasyPrint's layout recurses per level, and Python's stack ends near 1,000 frames.
MAX_DEPTH = 200
#: References listed in an output's details; the rest are counted.
MAX_LISTED_REFERENCES = 50

PDF_VARIANTS = ("pdf/a-3b", "pdf/ua-1")
PAGE_SIZES = ("A3", "A4", "A5", "B5", "Letter", "Legal", "Ledger")

#: Media types of companion inputs (their records are in exporters.media).
CSS_TYPE = media.CSS
HTML_TYPE = media.HTML
FONT_TYPES = dict(media.FONT_MAGIC)


@dataclass(frozen=True)
class PageOptions:
    """What users set most without CSS; when set, each wins over the document's own `@page` rule."""

    page_size: str | None = option(
        None, "Paper size; by default the document's CSS @page size, else A4.", choices=PAGE_SIZES
    )
    margin_mm: float | None = option(
        None,
        "White border in millimetres on every side of the page; by default the document's CSS, else "
        "about 20 mm.",
        minimum=0,
        maximum=100,
    )
    landscape: bool | None = option(
        None, "Turn the page sideways (true) or upright (false); by default as the document's CSS says."
    )
    title: str | None = option(None, "Title in the PDF's metadata; by default the document's <title>.")
    pdf_variant: str | None = option(
        None,
        "pdf/a-3b for archiving (fonts embedded, sRGB output intent, XMP metadata) or pdf/ua-1 for "
        "accessibility (tagged structure, title shown); by default a plain PDF.",
        choices=PDF_VARIANTS,
    )


def page_css(options: PageOptions) -> str:
    """The `@page` rule for the options that are set ("" when none is)."""
    declarations = []
    if options.page_size is not None or options.landscape is not None:
        size = options.page_size or "A4"
        if options.landscape is not None:
            size += " landscape" if options.landscape else " portrait"
        declarations.append(f"size: {size} !important;")
    if options.margin_mm is not None:
        declarations.append(f"margin: {options.margin_mm:g}mm !important;")
    return f"@page {{ {' '.join(declarations)} }}" if declarations else ""


# -- the sealed fetcher --------------------------------------------------------------------------


@dataclass
class References:
    """What a document asked for and did not get, in the order asked."""

    unresolved: dict[str, str] = dataclasses.field(default_factory=dict)  # reference -> reason

    def refuse(self, reference: str, reason: str) -> None:
        shown = reference if len(reference) <= 200 else reference[:200] + "…"
        self.unresolved.setdefault(shown, reason)

    def details(self) -> dict[str, Any]:
        """The output details that list them (empty when everything resolved)."""
        if not self.unresolved:
            return {}
        listed = [
            {"reference": ref, "reason": why}
            for ref, why in list(self.unresolved.items())[:MAX_LISTED_REFERENCES]
        ]
        more = len(self.unresolved) - len(listed)
        return {"unresolved_references": listed, **({"unresolved_not_listed": more} if more else {})}


def companion_name(url: str) -> str | None:
    """The file name a URL under BASE_URL names (its last path segment), None for any other URL."""
    if not url.startswith(BASE_URL):
        return None
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path.rsplit("/", 1)[-1]) or None


def _decode_data_url(url: str) -> tuple[bytes, str]:
    """(bytes, media type) of a `data:` URL. Raises ValueError."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise ValueError("a data: URL without a comma")
    parameters = header.split(";")
    media_type = parameters[0].strip() or "text/plain"
    if "base64" in (p.strip().lower() for p in parameters[1:]):
        try:
            data = base64.b64decode(urllib.parse.unquote(payload), validate=False)
        except (binascii.Error, ValueError):
            raise ValueError("a data: URL whose base64 is damaged") from None
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    return data, media_type


def _too_many_pixels(data: bytes, max_pixels: int) -> str | None:
    """Why a picture must not be decoded (its header declares more than `max_pixels`), or None.

    WeasyPrint decodes pictures with Pillow, which only refuses past twice its own default: a 2 MB
    PNG may declare a gigapixel. Read from the header, as every other picture of an export is."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as picture:
            width, height = picture.size
    except Exception:
        return None  # not a raster picture (SVG, a font, a stylesheet): nothing to decode here
    if width * height > max_pixels:
        return f"a picture of {width} × {height} pixels, over the limit of {max_pixels:,}"
    return None


def make_fetcher(companions: Mapping[str, InputFile], references: References, *, max_pixels: int) -> Any:
    """A WeasyPrint URL fetcher that serves `companions` by file name and refuses everything else,
    and pictures whose header declares more than `max_pixels`."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class SealedFetcher(URLFetcher):  # type: ignore[misc]  # weasyprint ships no type hints
        def fetch(self, url: str, headers: Any = None) -> Any:
            # WeasyPrint catches any exception raised here, warns and goes on without the resource.
            if url.startswith("data:"):
                if len(url) > DATA_URL_MAX_BYTES * 4 // 3 + 256:
                    references.refuse(url[:60], f"a data: URL over {DATA_URL_MAX_BYTES} bytes")
                    raise ValueError("data: URL too large")
                data, media_type = _decode_data_url(url)
                too_large = _too_many_pixels(data, max_pixels)
                if too_large:
                    references.refuse(url[:60], too_large)
                    raise ValueError("refused: too many pixels")
                return URLFetcherResponse(url, data, {"Content-Type": media_type})
            name = companion_name(url)
            if name is None:
                references.refuse(url, "only the export's own inputs are read: no network, no file:// URL")
                raise ValueError("refused: not an input of this export")
            source = companions.get(name)
            if source is None:
                references.refuse(name, "no input of this export has that file name")
                raise ValueError("refused: no such input")
            data = source.path.read_bytes()
            too_large = _too_many_pixels(data, max_pixels)
            if too_large:
                references.refuse(name, too_large)
                raise ValueError("refused: too many pixels")
            return URLFetcherResponse(url, data, {"Content-Type": source.content_type})

    # No redirects, no handlers used: fetch() above never calls the opener's network code.
    return SealedFetcher(timeout=1, allowed_protocols=(), allow_redirects=False)


def load_weasyprint() -> Any:
    """The weasyprint module, imported without the global it changes in Pillow.

    WeasyPrint's import sets Pillow's process-wide `ImageFile.LOAD_TRUNCATED_IMAGES = True`: in a
    worker, every photo conversion after the first HTML job would then accept truncated JPEGs as
    whole (grey bottoms instead of corrupt_input). The flag is put back as it was; WeasyPrint then
    loads pictures as strictly as the rest of exportd (a truncated one is left out).
    """
    from PIL import ImageFile

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        import weasyprint
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before
    return weasyprint


# -- limits on layout ------------------------------------------------------------------------------

_page_cap: contextvars.ContextVar[int | None] = contextvars.ContextVar("exportd_page_cap", default=None)
_patch_lock = threading.Lock()


class _TooManyPages(Exception):
    pass


def _cap_pagination() -> None:
    """Make WeasyPrint stop laying out pages once a document passes the page limit.

    WeasyPrint lays out every page before it returns any, so a document of 100,000 pages would take
    the memory of all of them before a count could refuse it. `make_all_pages` is the generator its
    layout loop drains; wrapping it (once per process, the cap per thread through a context
    variable) stops the loop at the first page past the cap.
    """
    load_weasyprint()
    import weasyprint.layout as layout

    with _patch_lock:
        original = layout.make_all_pages
        if getattr(original, "exportd_capped", False):
            return

        def make_all_pages(*args: Any, **kwargs: Any) -> Iterator[Any]:
            cap = _page_cap.get()
            for count, page in enumerate(original(*args, **kwargs), start=1):
                if cap is not None and count > cap:
                    raise _TooManyPages
                yield page

        make_all_pages.exportd_capped = True  # type: ignore[attr-defined]
        layout.make_all_pages = make_all_pages


def check_elements(data: bytes | str, *, what: str) -> None:
    """Refuse a document of more than MAX_ELEMENTS elements, from a count of its tags (works on the
    raw bytes, before a large file is decoded). Raises InputTooLarge."""
    elements = count_elements(data)
    if elements > MAX_ELEMENTS:
        raise InputTooLarge(
            f"{what} has {elements:,} elements; the limit is {MAX_ELEMENTS:,} (split it into several documents)"
        )


def count_elements(text: str | bytes) -> int:
    """An upper bound of the elements in an HTML text, counted without parsing: its `<` that open no
    end tag (comments and a stray `<` in text count too, which only makes the bound safer)."""
    if isinstance(text, bytes):
        return text.count(b"<") - text.count(b"</")
    return text.count("<") - text.count("</")


def _depth(root: Any) -> int:
    deepest = 0
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in element)
    return deepest


@dataclass(frozen=True)
class Typeset:
    pages: int
    details: Mapping[str, Any]


class Typesetter:
    """Typesets documents that share companions, options and stylesheets (one export's documents).

    The fonts found and the stylesheets parsed for the first document serve the next ones: an
    invoice run typesets thousands of documents with one configuration.
    """

    def __init__(
        self,
        *,
        companions: Sequence[InputFile],
        options: PageOptions,
        limits: Limits,
        stylesheets: Sequence[str] = (),
    ) -> None:
        """`companions` are the inputs relative URLs name; `stylesheets` are CSS texts applied after
        each document's own (a user stylesheet)."""
        weasyprint = load_weasyprint()  # first: the imports below would set Pillow's flag otherwise
        from weasyprint.text.fonts import FontConfiguration

        # WeasyPrint logs each refused URL and each layout step: document content and noise, one
        # line per step of thousands of documents. What a document missed is in its details instead.
        logging.getLogger("weasyprint").setLevel(logging.CRITICAL)
        self._weasyprint = weasyprint
        self._options = options
        self._limits = limits
        self._by_name = {c.filename.rsplit("/", 1)[-1]: c for c in companions}
        self._font_config = FontConfiguration()
        self._stylesheets = stylesheets
        self._page_css = page_css(options)
        _cap_pagination()

    def typeset(self, html: str, out: Path, *, what: str) -> Typeset:
        """Typeset one HTML document into the PDF at `out`; `what` names it in error messages.

        Raises InputTooLarge (too many elements, nested too deep, more than limits.max_pages pages).
        """
        weasyprint = self._weasyprint
        check_elements(html, what=what)
        references = References()
        fetcher = make_fetcher(self._by_name, references, max_pixels=self._limits.max_pixels)
        document = weasyprint.HTML(string=html, base_url=BASE_URL, url_fetcher=fetcher)
        depth = _depth(document.etree_element)
        if depth > MAX_DEPTH:
            raise InputTooLarge(f"{what} nests elements {depth} deep; the limit is {MAX_DEPTH}")
        # Parsed per document: a stylesheet's url()s go through this document's fetcher, so each
        # document lists its own unresolved references.
        user_css = [
            weasyprint.CSS(string=css, base_url=BASE_URL, url_fetcher=fetcher, font_config=self._font_config)
            for css in self._stylesheets
        ]
        if self._page_css:
            user_css.append(weasyprint.CSS(string=self._page_css))
        token = _page_cap.set(self._limits.max_pages)
        try:
            rendered = document.render(
                stylesheets=user_css, font_config=self._font_config, pdf_variant=self._options.pdf_variant
            )
        except _TooManyPages:
            raise InputTooLarge(f"{what} has more than {self._limits.max_pages} pages, the limit") from None
        except RecursionError:
            raise InputTooLarge(f"{what} is laid out too deep for this service") from None
        finally:
            _page_cap.reset(token)
        if self._options.title is not None:
            rendered.metadata.title = self._options.title
        if self._options.pdf_variant == "pdf/ua-1" and not rendered.metadata.title:
            # PDF/UA requires a title; a document without one is named after its file.
            rendered.metadata.title = what.strip('"')
        rendered.write_pdf(out, pdf_variant=self._options.pdf_variant)
        return Typeset(pages=len(rendered.pages), details=references.details())
