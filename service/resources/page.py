"""GET / and GET /ui/{name}: the web page, served from files in the package (no CDN, no build step)."""

from __future__ import annotations

from pathlib import Path

import falcon

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

#: The page's own files and their media types; nothing else under /ui/ is served.
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}

#: Scripts and styles from this origin only (no inline code), requests to this API only, never framed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _serve(resp: falcon.Response, name: str, content_type: str) -> None:
    resp.set_headers(SECURITY_HEADERS)
    resp.content_type = content_type
    resp.data = (WEB_DIR / name).read_bytes()


class Page:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _serve(resp, "index.html", "text/html; charset=utf-8")


class PageAsset:
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name not in ASSETS:
            raise falcon.HTTPNotFound(description=f"the page has no file named {name[:100]!r}")
        _serve(resp, name, ASSETS[name])
