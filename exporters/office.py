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
import struct
import subprocess
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium

from exporters.base import (
    ConversionError,
    CorruptInput,
    InputFile,
    InputTooLarge,
    Limits,
    OutputFile,
    describe,
    option,
)
from exporters.images import UniqueNames
from exporters.pdfdocs import PDFIUM_LOCK, EncryptedInput

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
ODT = "application/vnd.oasis.opendocument.text"
ODS = "application/vnd.oasis.opendocument.spreadsheet"
ODP = "application/vnd.oasis.opendocument.presentation"
RTF = "application/rtf"
DOC = "application/msword"
XLS = "application/vnd.ms-excel"
PPT = "application/vnd.ms-powerpoint"

#: Media type -> the extension LibreOffice is given the file under (it picks its import filter by it).
OFFICE_TYPES: dict[str, str] = {
    DOCX: "docx", XLSX: "xlsx", PPTX: "pptx", ODT: "odt", ODS: "ods", ODP: "odp",
    RTF: "rtf", DOC: "doc", XLS: "xls", PPT: "ppt",
}  # fmt: skip

DEFAULT_TIMEOUT_S = 120.0
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_OOXML_PARTS = (("word/", DOCX), ("xl/", XLSX), ("ppt/", PPTX))
_OLE2_STREAMS = (("WordDocument", DOC), ("Workbook", XLS), ("Book", XLS), ("PowerPoint Document", PPT))
_MAX_DIRECTORY_SECTORS = 64  # a loop in a hostile file's FAT ends here
_MAX_ZIP_MEMBERS = 10_000  # more entries than any real document: not worth listing further


class OfficeUnavailable(ConversionError):
    """LibreOffice is not installed where this conversion runs (a deployment problem, not the input's)."""

    code = "office_unavailable"


class ConversionTimedOut(ConversionError):
    """LibreOffice did not finish within the time limit; the same file would time out again."""

    code = "time_limit_exceeded"


@dataclass(frozen=True)
class OfficePdfOptions:
    pdf_a: bool = option(False, "Write PDF/A-2b (for archiving): every font embedded, no transparency.")


# -- recognition -----------------------------------------------------------------------------


def sniff_office(head: bytes, path: Path | None = None) -> str | None:
    """The media type of an Office document from its bytes, or None if it is not one.

    ZIP-based files (OOXML, OpenDocument) are told apart by their `mimetype` entry (OpenDocument) or
    their part names (OOXML); OLE2 compound files (DOC, XLS, PPT) by the streams in their root
    directory; RTF by its `{\\rtf` signature. With `path` the whole file is consulted (a ZIP's table of
    contents is at its end); without, only `head`.
    """
    if head.startswith(b"{\\rtf"):
        return RTF
    if head.startswith(b"PK\x03\x04"):
        return _sniff_zip(head, path)
    if head.startswith(_OLE2_MAGIC):
        return _sniff_ole2(head, path)
    return None


def _sniff_zip(head: bytes, path: Path | None) -> str | None:
    # OpenDocument stores an uncompressed "mimetype" entry first: its content is right in the head.
    if head[30:38] == b"mimetype":
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        start = 30 + name_len + extra_len
        mimetype = head[start : start + 60].split(b"PK", 1)[0].decode("ascii", "replace").strip()
        if mimetype in (ODT, ODS, ODP):
            return mimetype
    names: list[str] = []
    if path is not None:
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist()[:_MAX_ZIP_MEMBERS]:
                    names.append(info.filename)
                if "mimetype" in names:
                    with archive.open("mimetype") as member:
                        mimetype = member.read(100).decode("ascii", "replace").strip()
                    if mimetype in (ODT, ODS, ODP):
                        return mimetype
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
    else:
        names = [part.decode("ascii", "replace") for part in _local_names(head)]
    if "[Content_Types].xml" not in names and path is not None:
        return None
    for prefix, media_type in _OOXML_PARTS:
        if any(name.startswith(prefix) for name in names):
            return media_type
    return None


def _local_names(head: bytes) -> list[bytes]:
    """The names of the ZIP local file headers found in the head."""
    names = []
    at = head.find(b"PK\x03\x04")
    while at != -1 and at + 30 <= len(head):
        name_len = struct.unpack("<H", head[at + 26 : at + 28])[0]
        names.append(head[at + 30 : at + 30 + name_len])
        at = head.find(b"PK\x03\x04", at + 30 + name_len)
    return names


def _sniff_ole2(head: bytes, path: Path | None) -> str | None:
    """Which application's stream an OLE2 compound file holds, from the names in its directory."""
    if len(head) < 0x200:
        return None
    sector_shift = struct.unpack("<H", head[0x1E:0x20])[0]
    if sector_shift not in (9, 12):
        return None
    sector_size = 1 << sector_shift

    def read(offset: int, size: int) -> bytes:
        if offset + size <= len(head) or path is None:
            return head[offset : offset + size]
        with path.open("rb") as file:
            file.seek(offset)
            return file.read(size)

    # The directory is a chain of sectors linked through the FAT; the header lists the first 109
    # FAT sectors, which cover any document this service accepts (about 7 MB of 512-byte sectors each).
    fat_sectors = [s for s in struct.unpack("<109I", head[0x4C:0x200]) if s < 0xFFFFFFFA]
    entries_per_fat_sector = sector_size // 4
    names: set[str] = set()
    sector = struct.unpack("<I", head[0x30:0x34])[0]
    for _ in range(_MAX_DIRECTORY_SECTORS):
        if sector >= 0xFFFFFFFA:
            break
        directory = read((sector + 1) * sector_size, sector_size)
        for entry in range(0, len(directory) - 127, 128):
            length = struct.unpack("<H", directory[entry + 64 : entry + 66])[0]
            if 2 <= length <= 64:
                names.add(directory[entry : entry + length - 2].decode("utf-16-le", "replace"))
        fat_index, slot = divmod(sector, entries_per_fat_sector)
        if fat_index >= len(fat_sectors):
            break
        link = read((fat_sectors[fat_index] + 1) * sector_size + slot * 4, 4)
        if len(link) < 4:
            break
        sector = struct.unpack("<I", link)[0]
    if "EncryptedPackage" in names:
        return None  # a password-protected OOXML file: not convertible without its password
    for stream, media_type in _OLE2_STREAMS:
        if stream in names:
            return media_type
    return None


# -- conversion ------------------------------------------------------------------------------


def find_soffice() -> str | None:
    """The path of LibreOffice's `soffice`, or None when it is not installed."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def office_to_pdf(
    inputs: Sequence[InputFile], out_dir: Path, options: OfficePdfOptions, *, limits: Limits
) -> list[OutputFile]:
    """Each Office document as a PDF made by LibreOffice.

    The time limit is `limits.office_timeout_s` when Limits has it, else DEFAULT_TIMEOUT_S.
    Raises OfficeUnavailable, CorruptInput (LibreOffice could not read it), ConversionTimedOut,
    InputTooLarge (more than limits.max_pages pages).
    """
    soffice = find_soffice()
    if soffice is None:
        raise OfficeUnavailable(
            "LibreOffice is not installed on this worker, so Office files cannot be converted"
        )
    timeout_s = float(getattr(limits, "office_timeout_s", DEFAULT_TIMEOUT_S))
    names = UniqueNames()
    outputs: list[OutputFile] = []
    for source in inputs:
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
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise ConversionTimedOut(
            f"LibreOffice did not finish converting {describe(source)} within {timeout_s:g} s"
        ) from None
    except BaseException:
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
