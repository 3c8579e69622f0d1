"""Active content taken out of a PDF this service writes from a client's PDF: scripts and actions a
reader would run or follow without being asked (JavaScript, launching programs, submitting forms,
opening other files, `javascript:` links).

PDFium copies pages with everything in their dictionaries (a page's /AA, its annotations and their
actions), so a merged or split PDF would carry whatever the input carried. qpdf (through pikepdf)
rewrites the written file without it. Links to http, https and mailto addresses and jumps inside the
document stay: they do nothing until a person clicks them, and go where they say.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pikepdf

#: Action types that run or fetch something: /S value -> the name used in an output's details.
_ACTIVE_ACTIONS = {
    "/JavaScript": "javascript",
    "/Launch": "launch",
    "/SubmitForm": "submit_form",
    "/ImportData": "import_data",
    "/GoToR": "remote_file",  # opens another file, also \\server\share paths (credential leaks)
    "/GoToE": "embedded_file",
    "/Rendition": "rendition",  # may carry its own /JS
    "/RichMediaExecute": "rich_media",
    "/Sound": "media",
    "/Movie": "media",
}
_SAFE_URI_SCHEMES = ("http://", "https://", "mailto:")
_MAX_ACTION_CHAIN = 100  # /Next chains followed at most this deep (a loop ends here)


def remove_active_content(path: Path) -> dict[str, int]:
    """Rewrite the PDF at `path` without active content; what was removed, counted by kind (empty if nothing).

    Raises pikepdf.PdfError when the file is not a PDF qpdf can read (it was written by this service).
    """
    removed: Counter[str] = Counter()
    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        _clean_catalog(pdf.Root, removed)
        for page in pdf.pages:
            _drop_additional_actions(page.obj, removed)
            annotations = page.obj.get("/Annots")
            if not isinstance(annotations, pikepdf.Array):
                continue
            kept = pikepdf.Array()
            for annotation in annotations:
                if not isinstance(annotation, pikepdf.Dictionary):
                    continue
                _drop_additional_actions(annotation, removed)
                action = annotation.get("/A")
                if action is not None and _is_active(action, removed):
                    if annotation.get("/Subtype") == pikepdf.Name.Link:
                        continue  # a link that only ran a script is no link at all
                    del annotation["/A"]
                kept.append(annotation)
            page.obj.Annots = kept
        if removed:
            with warnings.catch_warnings():
                # PDFium keeps form fields' widgets on the pages, not in an /AcroForm: qpdf's notice
                # about that is true of every merged form and says nothing about this file.
                warnings.simplefilter("ignore", pikepdf.PageCopyWarning)
                # Classic cross-reference table: set_info appends its update to one (see pdfdocs).
                pdf.save(path, object_stream_mode=pikepdf.ObjectStreamMode.disable, deterministic_id=True)
    return dict(sorted(removed.items()))


def document_level_active_content(path: Path, *, password: str | None) -> dict[str, int]:
    """What an input PDF holds at the document level (opening script, document JavaScript, XFA), counted.

    Only counted, for an output's details: PDFium copies pages into a new document, never the
    catalog where these live, so none of it reaches an output. {} when qpdf cannot read the input
    (PDFium, which did, is what the conversion relies on).
    """
    removed: Counter[str] = Counter()
    try:
        with pikepdf.open(path, password=password or "") as pdf:
            _clean_catalog(pdf.Root, removed)
    except pikepdf.PdfError:
        return {}
    return dict(removed)


def _clean_catalog(root: pikepdf.Object, removed: Counter[str]) -> None:
    """Remove the document-level active content of a catalog: opening action, /AA, JavaScript names, XFA."""
    if "/OpenAction" in root and _is_active(root.OpenAction, removed):
        del root["/OpenAction"]
    _drop_additional_actions(root, removed)
    names = root.get("/Names")
    if isinstance(names, pikepdf.Dictionary) and "/JavaScript" in names:
        del names["/JavaScript"]
        removed["document_javascript"] += 1
    acroform = root.get("/AcroForm")
    if isinstance(acroform, pikepdf.Dictionary) and "/XFA" in acroform:
        del acroform["/XFA"]  # XFA forms carry their own scripts
        removed["xfa_form"] += 1


def _drop_additional_actions(holder: pikepdf.Object, removed: Counter[str]) -> None:
    """Remove a dictionary's /AA (actions run on open, close, focus, keystrokes, ...): never clicked."""
    if "/AA" in holder:
        del holder["/AA"]
        removed["additional_actions"] += 1


def _is_active(action: Any, removed: Counter[str]) -> bool:
    """Whether an action (or any action it chains to with /Next) runs or fetches something; counted."""
    found = False
    pending = [action]
    seen = 0
    while pending and seen < _MAX_ACTION_CHAIN:
        current = pending.pop()
        seen += 1
        if isinstance(current, pikepdf.Array):
            pending.extend(item for item in current if isinstance(item, pikepdf.Dictionary | pikepdf.Array))
            continue
        if not isinstance(current, pikepdf.Dictionary):
            continue  # a destination (an array of page and position) is not an action
        kind = str(current.get("/S", ""))
        if kind in _ACTIVE_ACTIONS:
            removed[_ACTIVE_ACTIONS[kind]] += 1
            found = True
        elif kind == "/URI":
            uri = str(current.get("/URI", "")).strip().lower()
            if not uri.startswith(_SAFE_URI_SCHEMES):
                removed["unsafe_link"] += 1  # javascript:, file:, data:, vbscript:, ...
                found = True
        if "/JS" in current and kind not in _ACTIVE_ACTIONS:
            removed["javascript"] += 1
            found = True
        if "/Next" in current:
            pending.append(current.Next)
    return found
