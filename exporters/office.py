"""Office documents (Word, Excel, PowerPoint, OpenDocument, RTF) to PDF through LibreOffice headless.

Each conversion runs `soffice` in its own process group with its own throw-away profile, so
conversions never share state or lock each other out, and a timeout kills LibreOffice and every
helper it started. LibreOffice is optional: `find_soffice()` says whether it is installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pypdfium2 as pdfium

from exporters import media
from exporters.base import (
    ConversionError,
    CorruptInput,
    EncryptedInput,
    InputFile,
    InputTooLarge,
    Limits,
    OutputFile,
    describe,
)
from exporters.cancel import checkpoint
from exporters.media import DOC as DOC
from exporters.media import DOCX as DOCX
from exporters.media import ODP as ODP
from exporters.media import ODS as ODS
from exporters.media import ODT as ODT
from exporters.media import PPT as PPT
from exporters.media import PPTX as PPTX
from exporters.media import RTF as RTF
from exporters.media import XLS as XLS
from exporters.media import XLSX as XLSX
from exporters.naming import UniqueNames
from exporters.options import OfficePdfOptions as OfficePdfOptions
from exporters.pdfium import PDFIUM_LOCK
from exporters.sniff import sniff_office as sniff_office

#: Media type -> the extension LibreOffice is given the file under (it picks its import filter by it).
OFFICE_TYPES: dict[str, str] = dict(media.OFFICE_TYPES)


class OfficeUnavailable(ConversionError):
    """LibreOffice is not installed where this conversion runs (a deployment problem, not the input's)."""

    code = "office_unavailable"


class ConversionTimedOut(ConversionError):
    """LibreOffice did not finish within the time limit; the same file would time out again."""

    code = "time_limit_exceeded"


# -- conversion ------------------------------------------------------------------------------


def find_soffice() -> str | None:
    """The path of LibreOffice's `soffice`, or None when it is not installed."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def office_to_pdf(
    inputs: Sequence[InputFile], out_dir: Path, options: OfficePdfOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each Office document as a PDF made by LibreOffice.

    The time limit is `limits.office_timeout_s`.
    Raises OfficeUnavailable, CorruptInput (LibreOffice could not read it), ConversionTimedOut,
    InputTooLarge (more than limits.max_pages pages).
    """
    soffice = find_soffice()
    if soffice is None:
        raise OfficeUnavailable(
            "LibreOffice is not installed on this worker, so Office files cannot be converted"
        )
    timeout_s = limits.office_timeout_s
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in inputs:
        checkpoint()
        extension = OFFICE_TYPES.get(source.content_type) or source.filename.rpartition(".")[2].lower()
        name = names.add(source.filename, "pdf", fallback="document")
        with tempfile.TemporaryDirectory(prefix="exportd-office-") as work_dir:
            work = Path(work_dir)
            # A fixed ASCII name with the right extension: the client's name never reaches a command line.
            document = work / f"input.{extension}"
            shutil.copyfile(source.path, document)
            produced = _run_soffice(soffice, document, work, options, timeout_s=timeout_s, source=source)
            pages = _page_count(produced, source)
            if pages > limits.max_pages:
                raise InputTooLarge(
                    f"{describe(source)} makes {pages} pages; the limit is {limits.max_pages}"
                )
            path = out_dir / name
            shutil.move(produced, path)
        outputs.append(
            OutputFile(path=path, name=name, content_type="application/pdf", details={"pages": pages})
        )
    return outputs


def _run_soffice(
    soffice: str,
    document: Path,
    work: Path,
    options: OfficePdfOptions,
    *,
    timeout_s: float,
    source: InputFile,
) -> Path:
    """Run one LibreOffice conversion in its own process group. Raises CorruptInput, ConversionTimedOut."""
    profile = work / "profile"
    out = work / "out"
    out.mkdir()
    target = (
        'pdf:writer_pdf_Export:{"SelectPdfVersion":{"type":"long","value":"2"}}' if options.pdf_a else "pdf"
    )
    command = [
        soffice,
        f"-env:UserInstallation={profile.as_uri()}",
        "--headless",
        "--invisible",
        "--nologo",
        "--nodefault",
        "--nolockcheck",
        "--norestore",
        "--convert-to",
        target,
        "--outdir",
        str(out),
        str(document),
    ]
    # A fixed environment: HOME inside the work directory (LibreOffice writes there), nothing inherited.
    env = {
        "HOME": str(work),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "SAL_USE_VCLPLUGIN": "svp",
    }
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=work,
        env=env,
        start_new_session=True,  # its own process group, so a timeout can end every helper it started
    )
    try:
        output = _wait(process, timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise ConversionTimedOut(
            f"LibreOffice did not finish converting {describe(source)} within {timeout_s:g} s"
        ) from None
    except BaseException:  # Canceled at a checkpoint too: LibreOffice is killed with its helpers
        _kill_group(process)
        raise
    finally:
        # soffice.bin may outlive the launcher script; nothing of this conversion may stay behind.
        _kill_group(process)
    produced = out / f"{document.stem}.pdf"
    if process.returncode != 0 or not produced.is_file() or produced.stat().st_size == 0:
        text = output.decode("utf-8", "replace")
        if "password" in text.lower():
            raise EncryptedInput(f"{describe(source)} is protected by a password")
        raise CorruptInput(
            f"LibreOffice could not convert {describe(source)}; it may be damaged or not an Office file"
        )
    return produced


#: How often a running LibreOffice is checked for its job's cancel.
_POLL_S = 0.2


def _wait(process: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """LibreOffice's output once it exits. Raises subprocess.TimeoutExpired, Canceled."""
    deadline = time.monotonic() + timeout_s
    while True:
        checkpoint()
        left = deadline - time.monotonic()
        try:
            output, _ = process.communicate(timeout=max(0.0, min(_POLL_S, left)))
            return output
        except subprocess.TimeoutExpired:
            if left <= _POLL_S:
                raise


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    if process.returncode is None:
        process.wait()


def _page_count(path: Path, source: InputFile) -> int:
    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(path)
        except pdfium.PdfiumError:
            raise CorruptInput(f"LibreOffice made an unreadable PDF from {describe(source)}") from None
        try:
            return len(document)
        finally:
            document.close()
