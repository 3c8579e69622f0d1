"""Many photos to one ZIP: each converted, under its own (deduplicated) name, with a manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exporters.base import (
    ConversionError,
    InputFile,
    InputTooLarge,
    Limits,
    OutputFile,
    UnsupportedConversion,
)
from exporters.naming import UniqueNames
from exporters.options import ZipOptions as ZipOptions
from exporters.pictures import ENCODERS, can_write, convert_one

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # every entry's date: the same bytes for the same job
#: Formats whose files still shrink in a ZIP (exporters.media); the others are stored as they are.
_COMPRESSIBLE = tuple(name for name, record in ENCODERS.items() if record.compressible)
MANIFEST = "manifest.json"


def images_to_zip(
    inputs: Sequence[InputFile], out_dir: Path, options: ZipOptions, *, limits: Limits
) -> list[OutputFile]:
    """One ZIP of every image converted as `options` say, with manifest.json listing each input's fate.

    Raises UnsupportedInput, CorruptInput, InputTooLarge, InvalidOptions (the first failure, unless
    skip_failed; then only when no input converts).
    """
    if len(inputs) > limits.max_pages:
        raise InputTooLarge(f"{len(inputs)} images in one ZIP; the limit is {limits.max_pages}")
    encoder = ENCODERS[options.image_format]
    if not can_write(encoder):
        raise UnsupportedConversion(f"this installation cannot write {encoder.name.upper()}")
    work = out_dir / ".zip-parts"
    work.mkdir()
    names = UniqueNames()
    entries: list[dict[str, Any]] = []
    converted: list[tuple[Path, str]] = []
    first_error: ConversionError | None = None
    try:
        for index, source in enumerate(inputs):
            name = names.add(source.filename, encoder.extension, fallback="image")
            try:
                output = convert_one(source, work / f"{index}", options, limits=limits, encoder=encoder)
            except ConversionError as exc:
                if not options.skip_failed:
                    raise
                first_error = first_error or exc
                entries.append({"input": source.filename, "status": "failed",
                                "error": {"code": exc.code, "message": exc.message}})  # fmt: skip
                continue
            entries.append({
                "input": source.filename,
                "name": name,
                "status": "ok",
                "content_type": encoder.content_type,
                "size": output.path.stat().st_size,
                "sha256": _sha256(output.path),
                **output.details,
            })  # fmt: skip
            converted.append((output.path, name))
        if not converted:
            assert first_error is not None
            raise first_error
        zip_name = (
            names.add(inputs[0].filename, "zip", fallback="images") if len(inputs) == 1 else "images.zip"
        )
        path = out_dir / zip_name
        with zipfile.ZipFile(path, "w") as archive:
            for part, name in converted:
                compress = options.image_format in _COMPRESSIBLE
                _add(archive, name, part, compress=compress)
            manifest = json.dumps({"items": entries}, ensure_ascii=False, indent=2).encode()
            info = _entry(MANIFEST, compress=True)
            archive.writestr(info, manifest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = sum(1 for e in entries if e["status"] == "failed")
    details = {"items": len(entries), "failed": failed}
    return [OutputFile(path=path, name=zip_name, content_type="application/zip", details=details)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry(name: str, *, compress: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _add(archive: zipfile.ZipFile, name: str, part: Path, *, compress: bool) -> None:
    with part.open("rb") as source, archive.open(_entry(name, compress=compress), "w") as target:
        shutil.copyfileobj(source, target, 1 << 20)
