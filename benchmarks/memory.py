"""Peak memory per conversion family, and the factors of exporters/estimate.py it justifies.

Not a test: it prints figures. Each case runs in a fresh Python process that first loads what a
worker process loads and sets glibc's thresholds as a worker does; then its peak RSS is reset
(/proc/self/clear_refs) and the conversion runs. "added" is the peak RSS during the conversion
minus the RSS before it; "factor" is added / units, where units are what the estimate multiplies
(decoded bytes of an image, bytes of a rendered page, bytes of a document). "table" is the factor
FACTORS holds and "headroom" table / measured (≥ 1: the estimate errs high).

A second run of the 16-bit and RGBA cases with the strip-wise/early-reduction code turned off
(EXPORTD_BENCH_BASELINE=1 has no effect on the code: the baseline is computed by the old recipe
inline, see _BASELINE) is printed beside, as the ratio the peak reductions bought.

    python benchmarks/memory.py
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024

# Runs in the child: argv = content_type, target, options JSON, input path, recipe ("new" or "old").
_CHILD = r"""
import json, os, sys, tempfile
from pathlib import Path
import actors.export, service.wiring  # noqa: F401  what a worker process has loaded
from actors.memory import keep_large_buffers
from exporters import registry
from exporters.base import InputFile, Limits, parse_options
keep_large_buffers()
content_type, target, options_json, path, recipe = sys.argv[1:6]

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)

conversion = registry.find([content_type], target)
options = parse_options(conversion.options, json.loads(options_json))
source = InputFile(Path(path), Path(path).name, content_type)
limits = Limits(max_pixels=60_000_000)
with tempfile.TemporaryDirectory() as out:
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    if recipe == "old":
        from benchmarks.memory import old_recipe
        old_recipe(source, Path(out), target)
    else:
        conversion.convert([source], Path(out), options, limits=limits)
    peak = status("VmHWM")
print(json.dumps({"before": before, "added": peak - before}))
"""


def old_recipe(source: Any, out_dir: Path, target: str) -> None:
    """The conversions as they were before the peak reductions (whole-image flatten, I;16 via I)."""
    from PIL import Image

    image = Image.open(source.path)
    image.load()
    if image.mode.startswith("I;16"):
        pixels = image.convert("I").point(lambda v: v * (255 / 65535) + 0.5).convert("L")
    else:
        pixels = image
    if target == "pdf":
        if pixels.mode == "RGBA":
            canvas = Image.new("RGB", pixels.size, (255, 255, 255))
            canvas.paste(pixels.convert("RGB"), mask=pixels.getchannel("A"))
            pixels = canvas
        (out_dir / "x.pdf").write_bytes(zlib.compress(pixels.tobytes(), 6))
    else:
        pixels.save(out_dir / "x.png")


def write_png16(path: Path, width: int, height: int, *, channels: int = 4) -> None:
    """A 16-bit PNG (RGBA for 4 channels, grey for 1) of a smooth gradient, written row by row.

    Pillow cannot write 16-bit RGBA; this writes the chunks itself. Compresses like the issue's
    file: 7000×7000 RGBA comes out near 400 KB.
    """
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    compressor = zlib.compressobj(9)
    chunks: list[bytes] = []
    for y in range(height):
        level = (y * 65535 // max(1, height - 1)).to_bytes(2, "big")
        row = bytearray(b"\x00")
        pixel = level * channels
        row += pixel * width
        chunks.append(compressor.compress(bytes(row)))
    chunks.append(compressor.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(chunks)) + chunk(b"IEND", b"")
    )


def write_photo(path: Path, side: int) -> None:
    """A side×side RGB JPEG with detail everywhere (noise over a gradient), like a photo."""
    from PIL import Image

    noise = Image.effect_noise((side, side), 40).convert("RGB")
    noise.save(path, quality=90)


def write_pdf(path: Path, pages: int) -> None:
    """An A4 PDF of text and shapes."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    canvas = Canvas(str(path), pagesize=A4)
    for n in range(pages):
        canvas.setFillColorRGB(0.2, 0.4, 0.8)
        canvas.rect(50, 50, 400, 300, fill=1)
        canvas.drawString(72, 720, f"page {n + 1} " + "text " * 20)
        canvas.showPage()
    canvas.save()


def write_csv(path: Path, rows: int) -> None:
    lines = ["id,name,amount,date"] + [
        f"{i},item number {i},{i * 1.25:.2f},2024-01-{i % 28 + 1:02d}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")


def run_case(content_type: str, target: str, options: dict[str, Any], path: Path, recipe: str = "new") -> int:
    """Peak bytes the conversion added to a fresh worker-like process."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, content_type, target, json.dumps(options), str(path), recipe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    added: int = json.loads(result.stdout.strip().splitlines()[-1])["added"]
    return added


def main() -> None:
    from exporters.estimate import FACTORS, EstimateInput, estimate_job

    rows: list[tuple[str, str, str, int, int, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rgba16 = work / "rgba16.png"
        write_png16(rgba16, 7000, 7000, channels=4)
        grey16 = work / "grey16.png"
        write_png16(grey16, 5000, 5000, channels=1)
        photo = work / "photo.jpg"
        write_photo(photo, 7071)
        document = work / "doc.pdf"
        write_pdf(document, 3)
        table = work / "table.csv"
        write_csv(table, 40_000)
        records = [
            {"id": i, "name": f"item {i}", "amount": i * 1.25, "date": "2024-01-02"} for i in range(30_000)
        ]
        table_json = work / "table.json"
        table_json.write_text(json.dumps(records))
        notes = work / "notes.md"
        section = (
            "# Title\n\nSome *text* with a [link](http://x) and more words to fill a line of prose here.\n\n"
        )
        notes.write_text((section + "- a\n- b\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n") * 600)
        text = work / "notes.txt"
        text.write_text("A line of plain text to be typeset, long enough to wrap once or twice.\n" * 20_000)
        cases: list[tuple[str, str, str, Path, dict[str, Any], str]] = [
            ("image", "7000×7000 RGBA PNG (16-bit) → PNG", "image/png", rgba16, {}, "png"),
            ("image", "7071×7071 RGB JPEG (50 MP) → JPEG", "image/jpeg", photo, {}, "jpeg"),
            (
                "image",
                "7071×7071 RGB JPEG (50 MP) → JPEG 1600 px",
                "image/jpeg",
                photo,
                {"width": 1600},
                "jpeg",
            ),
            ("image", "5000×5000 I;16 PNG → PNG", "image/png", grey16, {}, "png"),
            ("image_pdf", "7000×7000 RGBA PNG (16-bit) → PDF", "image/png", rgba16, {}, "pdf"),
            ("image_pdf", "7071×7071 RGB JPEG (50 MP) → PDF", "image/jpeg", photo, {}, "pdf"),
            ("pdf_render", "3 A4 pages at 600 dpi → PNG", "application/pdf", document, {"dpi": 600}, "png"),
            ("document", f"{table.stat().st_size // 1000} kB CSV → PDF", "text/csv", table, {}, "pdf"),
            (
                "document",
                f"{table_json.stat().st_size // 1000} kB JSON table → PDF",
                "application/json",
                table_json,
                {},
                "pdf",
            ),
            ("document", f"{text.stat().st_size // 1000} kB text → PDF", "text/plain", text, {}, "pdf"),
            (
                "markdown",
                f"{notes.stat().st_size // 1000} kB Markdown → PDF",
                "text/markdown",
                notes,
                {},
                "pdf",
            ),
        ]
        from exporters.registry import find

        print(
            f"{'family':<11} {'case':<44} {'added MiB':>9} {'estimate MiB':>12} {'factor':>7} {'table':>6} {'headroom':>8}"
        )
        for family, label, content_type, path, options, target in cases:
            added = run_case(content_type, target, options, path)
            kind = find([content_type], target).kind

            def opener(p: Path = path) -> Any:
                return p.open("rb")

            estimate = estimate_job(
                kind, target, [EstimateInput(content_type, path.stat().st_size, opener)], options
            )
            units = _units(family, estimate.peak_bytes)
            factor = added / units if units else 0.0
            table_factor = FACTORS[family]
            headroom = estimate.peak_bytes / added if added else float("inf")
            rows.append((family, label, content_type, added, estimate.peak_bytes, factor, 0))
            print(
                f"{family:<11} {label:<44} {added / MiB:>9.1f} {estimate.peak_bytes / MiB:>12.1f} "
                f"{factor:>7.2f} {table_factor:>6.2f} {headroom:>7.2f}×"
            )
        print()
        print("peak reductions, against the previous recipe measured in this run:")
        for label, content_type, path, target in (
            ("7000×7000 RGBA PNG (16-bit) → PDF", "image/png", rgba16, "pdf"),
            ("5000×5000 I;16 PNG → PNG", "image/png", grey16, "png"),
        ):
            new = run_case(content_type, target, {}, path)
            old = run_case(content_type, target, {}, path, recipe="old")
            print(
                f"  {label:<40} before {old / MiB:7.1f} MiB  now {new / MiB:7.1f} MiB  ratio {old / new:4.2f}×"
            )


def _units(family: str, estimate_bytes: int) -> float:
    """The units the estimate multiplied, recovered from it (the estimate minus its base, / its factor)."""
    from exporters.estimate import FACTORS, JOB_BASE_BYTES

    return (estimate_bytes - JOB_BASE_BYTES) / FACTORS[family]  # PDF pages: plus the file, a rounding


if __name__ == "__main__":
    main()
