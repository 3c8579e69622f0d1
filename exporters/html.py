"""HTML to PDF with print CSS, and HTML templates filled with JSON data: one document or thousands.

Typesetting and what a document may reach are exporters/typeset.py's (nothing outside the export's
own inputs); the template language is exporters/templates.py's (Jinja2's sandbox).
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exporters.base import (
    ConversionError,
    CorruptInput,
    InputFile,
    InputTooLarge,
    InvalidOptions,
    Limits,
    OutputFile,
    UnsupportedConversion,
    reading_input,
)
from exporters.options import HtmlPdfOptions as HtmlPdfOptions
from exporters.sniff import detect_encoding
from exporters.templates import Template
from exporters.typeset import HTML_TYPE, Typesetter, check_elements

#: Records one template run may render: an invoice run of ten thousand documents in one export.
MAX_RECORDS = 10_000
MANIFEST = "manifest.json"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # every entry's date: the same bytes for the same job


def html_to_pdf(
    inputs: Sequence[InputFile], out_dir: Path, options: HtmlPdfOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each HTML input as a PDF, or with `template` the one HTML input filled with the JSON input.

    Every other input (images, stylesheets, fonts) is what the documents' relative URLs name.

    Raises UnsupportedConversion (no HTML input), CorruptInput (not text, data not JSON, a document
    the typesetter fails on), InvalidOptions, InvalidTemplate, InputTooLarge.
    """
    documents = [s for s in inputs if s.content_type == HTML_TYPE]
    if not documents:
        raise UnsupportedConversion("an HTML export needs an HTML file; none of the inputs is one")
    if not options.template:
        companions = [s for s in inputs if s.content_type != HTML_TYPE]
        typesetter = Typesetter(companions=companions, options=options, limits=limits)
        names = _Names()
        outputs = []
        for source in documents:
            name = names.add(source.filename, "pdf", fallback="document")
            # Whatever WeasyPrint raises on a document is the document's fault: corrupt_input.
            with reading_input(source, "HTML document"):
                result = typesetter.typeset(_read_text(source), out_dir / name, what=_describe(source))
            details = {"pages": result.pages, **result.details}
            outputs.append(OutputFile(out_dir / name, name, "application/pdf", details))
        return outputs
    return _from_template(inputs, out_dir, options, limits=limits)


def _is_data(source: InputFile) -> bool:
    return source.content_type == "application/json" or source.filename.lower().endswith(".json")


def _from_template(
    inputs: Sequence[InputFile], out_dir: Path, options: HtmlPdfOptions, *, limits: Limits
) -> list[OutputFile]:
    documents = [s for s in inputs if s.content_type == HTML_TYPE]
    data_inputs = [s for s in inputs if s.content_type != HTML_TYPE and _is_data(s)]
    if len(documents) != 1 or len(data_inputs) != 1:
        raise InvalidOptions(
            "template: true needs exactly one HTML input (the template) and one JSON input (the data); "
            f"this export has {len(documents)} HTML and {len(data_inputs)} JSON inputs"
        )
    (source,), (data_input,) = documents, data_inputs
    what = _describe(source)
    template = Template(_read_text(source), strict=options.strict, what=what)
    try:
        data = json.loads(_read_text(data_input, document=False))
    except json.JSONDecodeError as exc:
        raise CorruptInput(f"{_describe(data_input)} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputTooLarge(
            f"{_describe(data_input)} nests its JSON deeper than this service reads"
        ) from None
    companions = [s for s in inputs if s is not source and s is not data_input]
    typesetter = Typesetter(companions=companions, options=options, limits=limits)
    names = _Names()
    if not options.per_record:
        context = {**data, "data": data} if isinstance(data, dict) else {"data": data}
        name = names.add(source.filename, "pdf", fallback="document")
        html = template.render(context)
        with reading_input(source, "HTML document"):
            result = typesetter.typeset(html, out_dir / name, what=what)
        return [
            OutputFile(out_dir / name, name, "application/pdf", {"pages": result.pages, **result.details})
        ]
    if not isinstance(data, list):
        raise InvalidOptions(f"per_record needs a JSON array of records; {_describe(data_input)} is not one")
    if not data:
        raise CorruptInput(f"{_describe(data_input)} has no records")
    if len(data) > MAX_RECORDS:
        raise InputTooLarge(
            f"{_describe(data_input)} has {len(data):,} records; the limit is {MAX_RECORDS:,}"
        )
    stem = _safe_stem(source.filename) or "document"
    produced: list[OutputFile] = []
    failures: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    first_error: ConversionError | None = None
    for index, record in enumerate(data, start=1):
        label = f" (record {index})"
        named = record.get(options.name_field) if options.name_field and isinstance(record, dict) else None
        label_name = str(named) if named not in (None, "") else f"{stem}-{index}"
        name = names.add(label_name, "pdf", fallback=f"{stem}-{index}", whole=True)
        context = (
            {**record, "record": record, "index": index}
            if isinstance(record, dict)
            else {"record": record, "index": index}
        )
        try:
            html = template.render(context, record=label)
            with reading_input(source, "HTML document"):
                result = typesetter.typeset(html, out_dir / name, what=what + label)
        except ConversionError as exc:
            if not options.skip_failed:
                raise
            first_error = first_error or exc
            failure = {
                "record": index,
                "status": "failed",
                "error": {"code": exc.code, "message": exc.message},
            }
            failures.append(failure)
            entries.append(failure)
            names.release(name)
            continue
        details = {"record": index, "pages": result.pages, **result.details}
        produced.append(OutputFile(out_dir / name, name, "application/pdf", details))
        entries.append({"record": index, "name": name, "status": "ok", **details})
    if not produced:
        assert first_error is not None
        raise first_error
    if options.zip:
        return [_zip(produced, entries, out_dir, names.add(source.filename, "zip", fallback="documents"))]
    if failures:
        first = produced[0]
        produced[0] = OutputFile(
            first.path, first.name, first.content_type, {**first.details, "failed_records": failures}
        )
    return produced


def _zip(
    produced: list[OutputFile], entries: list[dict[str, Any]], out_dir: Path, zip_name: str
) -> OutputFile:
    by_name = {o.name: o for o in produced}
    path = out_dir / zip_name
    with zipfile.ZipFile(path, "w") as archive:
        for entry in entries:
            output = by_name.get(entry.get("name", ""))
            if output is None:
                continue
            data = output.path.read_bytes()
            entry.update(
                content_type="application/pdf", size=len(data), sha256=hashlib.sha256(data).hexdigest()
            )
            archive.writestr(_entry(output.name, compress=False), data)
            output.path.unlink()
        manifest = json.dumps({"items": entries}, ensure_ascii=False, indent=2).encode()
        archive.writestr(_entry(MANIFEST, compress=True), manifest)
    failed = sum(1 for e in entries if e["status"] == "failed")
    return OutputFile(path, zip_name, "application/zip", {"items": len(entries), "failed": failed})


def _entry(name: str, *, compress: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    # PDFs compress their streams already; the manifest is text.
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _read_text(source: InputFile, *, document: bool = True) -> str:
    """The text of an input: UTF-8, or the code page its bytes show (as text inputs are read).

    Raises CorruptInput, InputTooLarge (more elements than a document may have: counted on the
    bytes, so that a huge file is refused before it is decoded)."""
    data = source.path.read_bytes()
    if document:
        check_elements(data, what=_describe(source))
    encoding = detect_encoding(data)
    if encoding is None:
        raise CorruptInput(f"{_describe(source)} is not text in UTF-8 or a code page this service reads")
    return data.decode(encoding)


def _describe(source: InputFile) -> str:
    return f'"{source.filename}"' if source.filename else "the document"


def _safe_stem(filename: str) -> str:
    """The stem of a client's file name reduced to ASCII letters, digits and `._-`."""
    base = re.split(r"[/\\]", filename)[-1]
    stem, dot, _extension = base.rpartition(".")
    return _safe_part(stem if dot and stem else base)


def _safe_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:100]


class _Names:
    """Download names for one job's outputs: safe stems, deduplicated with -2, -3, ... suffixes."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def add(self, filename: str, extension: str, *, fallback: str, whole: bool = False) -> str:
        """A new name `<stem>.<extension>`; `whole`: all of `filename` is the stem (a record's field)."""
        stem = (_safe_part(filename) if whole else _safe_stem(filename)) or fallback
        name, counter = f"{stem}.{extension}", 2
        while name.lower() in self._taken:  # case-insensitively: downloads may meet such a file system
            name, counter = f"{stem}-{counter}.{extension}", counter + 1
        self._taken.add(name.lower())
        return name

    def release(self, name: str) -> None:
        self._taken.discard(name.lower())
