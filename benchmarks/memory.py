"""Peak memory per conversion, and the factors of exporters/estimate.py it justifies.

Not a test: it prints figures. Each case runs in a fresh Python process that first loads what a
worker process loads and sets glibc's thresholds as a worker does; then its peak RSS is reset
(/proc/self/clear_refs) and the conversion runs. "added" is the peak RSS during the conversion
minus the RSS before it; "per unit" is added / units, the units being what the estimate
multiplies (an image's decoded bytes, a rendered page's bitmap bytes, a file's bytes); the factor
named in the first column is the largest "per unit" of its cases, rounded up. "estimate" is what
exporters.estimate says for the case and "headroom" estimate / added (≥ 1: the estimate errs high).

Then the conversions whose peaks were cut are run again by their previous recipe (old_recipe: the
whole-picture flatten and compress into a PDF, the whole-picture 16-bit scaling), as the baseline
measured in the same run, and the ratio is printed; last, photo throughput with one malloc arena
per process against glibc's default arenas (what the single arena costs in lock waits).

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
registry.prepare()  # every family loaded and the fonts registered, as a worker does at start-up
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


# Runs in the child: 4 threads convert a 12 MP photo to 1600 px, 15 each, as a worker process does;
# argv = photo path, "one" (keep_large_buffers' single arena) or "default" (glibc's 8 per core).
_ARENAS = r"""
import ctypes, sys, tempfile, threading, time
from pathlib import Path
import actors.export, service.wiring  # noqa: F401
from actors.memory import keep_large_buffers
from exporters import registry
from exporters.base import InputFile, Limits, parse_options
keep_large_buffers()
registry.prepare()  # every family loaded and the fonts registered, as a worker does at start-up
if sys.argv[2] == "default":
    ctypes.CDLL("libc.so.6").mallopt(-8, 0)  # M_ARENA_MAX back to glibc's default
conversion = registry.find(["image/jpeg"], "jpeg")
options = parse_options(conversion.options, {"width": 1600})
def work():
    for _ in range(15):
        with tempfile.TemporaryDirectory() as out:
            conversion.convert([InputFile(Path(sys.argv[1]), "p.jpg", "image/jpeg")], Path(out), options, limits=Limits())
began = time.perf_counter()
threads = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(60 / (time.perf_counter() - began))
"""


def photos_per_s(photo: Path, arenas: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", _ARENAS, str(photo), arenas],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


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
    from PIL import Image

    from exporters.estimate import EstimateInput, estimate_job
    from exporters.registry import find

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rgba16 = work / "rgba16.png"
        write_png16(rgba16, 7000, 7000, channels=4)
        grey16 = work / "grey16.png"
        write_png16(grey16, 5000, 5000, channels=1)
        photo = work / "photo.jpg"
        write_photo(photo, 7071)
        photo12 = work / "photo12.jpg"
        write_photo(photo12, 3464)
        noise_png = work / "noise.png"
        Image.open(photo12).save(noise_png)
        cmyk = work / "cmyk.jpg"
        Image.open(photo12).convert("CMYK").save(cmyk, quality=90)
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
        p12 = 3464 * 3464 * 3
        size = lambda p: p.stat().st_size  # noqa: E731
        # (factor it justifies, case, media type, input, options, output, units, what the units are)
        cases: list[tuple[str, str, str, Path, dict[str, Any], str, int, str]] = [
            (
                "image",
                "7000×7000 RGBA PNG (16-bit) → PNG",
                "image/png",
                rgba16,
                {},
                "png",
                7000 * 7000 * 4,
                "decoded",
            ),
            (
                "image",
                "7071×7071 RGB JPEG (50 MP) → JPEG",
                "image/jpeg",
                photo,
                {},
                "jpeg",
                7071**2 * 3,
                "decoded",
            ),
            ("image", "5000×5000 I;16 PNG → PNG", "image/png", grey16, {}, "png", 5000 * 5000 * 2, "decoded"),
            ("image", "3464×3464 JPEG → PNG", "image/jpeg", photo12, {}, "png", p12, "decoded"),
            ("image", "3464×3464 JPEG → TIFF", "image/jpeg", photo12, {}, "tiff", p12, "decoded"),
            (
                "image_resized",
                "3464×3464 JPEG → JPEG 2000 px",
                "image/jpeg",
                photo12,
                {"width": 2000},
                "jpeg",
                p12,
                "decoded",
            ),
            (
                "image_resized",
                "7071×7071 JPEG (50 MP) → JPEG 1600 px",
                "image/jpeg",
                photo,
                {"width": 1600},
                "jpeg",
                7071**2 * 3,
                "decoded",
            ),
            (
                "image_resized",
                "7000×7000 RGBA PNG → JPEG 4000 px",
                "image/png",
                rgba16,
                {"width": 4000},
                "jpeg",
                7000 * 7000 * 4,
                "decoded",
            ),
            ("encoder_avif", "3464×3464 JPEG → AVIF", "image/jpeg", photo12, {}, "avif", p12, "decoded"),
            ("encoder_webp", "3464×3464 JPEG → WebP", "image/jpeg", photo12, {}, "webp", p12, "decoded"),
            ("encoder_gif", "3464×3464 JPEG → GIF", "image/jpeg", photo12, {}, "gif", p12, "decoded"),
            (
                "image_pdf",
                "7000×7000 RGBA PNG (16-bit) → PDF",
                "image/png",
                rgba16,
                {},
                "pdf",
                7000 * 7000 * 4,
                "decoded",
            ),
            (
                "image_pdf",
                "3464×3464 RGB PNG of noise → PDF",
                "image/png",
                noise_png,
                {},
                "pdf",
                p12,
                "decoded",
            ),
            (
                "jpeg_pdf_reencoded",
                "3464×3464 CMYK JPEG → PDF",
                "image/jpeg",
                cmyk,
                {},
                "pdf",
                3464 * 3464 * 4,
                "decoded",
            ),
            (
                "jpeg_pdf_as_is",
                "7071×7071 RGB JPEG (50 MP) → PDF",
                "image/jpeg",
                photo,
                {},
                "pdf",
                size(photo),
                "file",
            ),
            (
                "pdf_render",
                "3 A4 pages at 600 dpi → PNG",
                "application/pdf",
                document,
                {"dpi": 600},
                "png",
                4961 * 7016 * 4,
                "bitmap",
            ),
            ("document", "CSV → PDF", "text/csv", table, {}, "pdf", size(table), "file"),
            (
                "document",
                "JSON table → PDF",
                "application/json",
                table_json,
                {},
                "pdf",
                size(table_json),
                "file",
            ),
            ("document", "text → PDF", "text/plain", text, {}, "pdf", size(text), "file"),
            (
                "markdown",
                "Markdown (134 pages) → PDF",
                "text/markdown",
                notes,
                {},
                "pdf",
                size(notes),
                "file",
            ),
        ]
        print(
            f"{'factor':<19} {'case':<40} {'added MiB':>9} {'per unit':>8} {'of':<8} {'estimate MiB':>12} {'headroom':>8}"
        )
        for factor, label, content_type, path, options, target, units, of in cases:
            added = run_case(content_type, target, options, path)
            kind = find([content_type], target).kind

            def opener(p: Path = path) -> Any:
                return p.open("rb")

            estimate = estimate_job(kind, target, [EstimateInput(content_type, size(path), opener)], options)
            print(
                f"{factor:<19} {label:<40} {added / MiB:>9.1f} {added / units:>8.2f} {of:<8} "
                f"{estimate.peak_bytes / MiB:>12.1f} {estimate.peak_bytes / added:>7.2f}×"
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
        print()
        print(
            "one malloc arena per process (actors/memory.py) against glibc's default, 4 threads, 12 MP → 1600 px:"
        )
        for attempt in range(2):
            one, default = photos_per_s(photo12, "one"), photos_per_s(photo12, "default")
            print(
                f"  run {attempt + 1}: one arena {one:5.2f} photos/s, default {default:5.2f}, ratio {one / default:4.2f}"
            )


if __name__ == "__main__":
    main()
