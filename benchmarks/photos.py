"""Photo conversions against naive Pillow (and img2pdf), measured in one run on 12-megapixel photos.

    .venv/bin/python benchmarks/photos.py [--photos 5] [--album 20] [--worker-threads 2]
    .venv/bin/python benchmarks/photos.py --service-only

Prints, per case: milliseconds per photo (the median over every photo of several rounds, each
round in a fresh subprocess), the peak memory of the process that ran it (each case
runs in a fresh subprocess, so one case's memory never counts against another), the speed-up
against the naive baseline measured in the same run, and for downscales the PSNR of our output
against the naive one (goal: >= 40 dB at >= 2.5x the speed), both outputs' PSNR against the
unencoded naive resize, and the time of a full decode alone, which bounds any speed-up where the
decoder cannot decode at reduced size (HEIC, PNG).

Then the whole service (HTTP API, Redis, worker pool of 2 processes) against the bare converter
in 2 processes, twice: with the photos uploaded beforehand, and with each photo sent in its export
request. Not a timed test: figures only.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageChops, ImageDraw, ImageFilter  # noqa: E402

PHOTO_SIZE = (4032, 3024)  # 12.2 MP, what most phones take
TARGET_W = 1600


# -- inputs --------------------------------------------------------------------------------


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Smooth light, shapes with sharp edges, fine texture and sensor grain: encoders and resamplers
    work on it about as hard as on a real photo (flat colour would make them unrealistically fast)."""
    rng = random.Random(seed)
    red = Image.linear_gradient("L").rotate(90).resize((width, height))
    green = Image.linear_gradient("L").resize((width, height))
    base = Image.merge("RGB", (red, green, Image.new("L", (width, height), rng.randrange(40, 200))))
    draw = ImageDraw.Draw(base)
    for _ in range(80):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randrange(width // 80, width // 6)
        draw.ellipse(
            (x - r, y - r, x + r, y + r), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256))
        )
    small = (width // 8, height // 8)
    texture = Image.frombytes("RGB", small, rng.randbytes(small[0] * small[1] * 3))
    picture = Image.blend(base, texture.resize((width, height), Image.Resampling.BICUBIC), 0.25)
    picture = picture.filter(ImageFilter.GaussianBlur(1.2))
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
    return Image.blend(picture, grain, 0.06)


def make_inputs(
    directory: Path, photos: int, album: int, *, jpeg_only: bool = False
) -> dict[str, list[Path]]:
    import pillow_heif

    pillow_heif.register_heif_opener()
    made: dict[str, list[Path]] = {"jpeg": [], "heic": [], "png_alpha": [], "album": []}
    for index in range(max(photos, album)):
        picture = photo_like(*PHOTO_SIZE, seed=index)
        jpeg = directory / f"photo{index}.jpg"
        picture.save(jpeg, "JPEG", quality=92)
        made["album"].append(jpeg)
        if index < photos:
            made["jpeg"].append(jpeg)
            if jpeg_only:
                continue
            heic = directory / f"photo{index}.heic"
            picture.save(heic, "HEIF", quality=85)
            made["heic"].append(heic)
            rgba = picture.convert("RGBA")
            mask = Image.new("L", PHOTO_SIZE, 0)
            ImageDraw.Draw(mask).ellipse((200, 200, PHOTO_SIZE[0] - 200, PHOTO_SIZE[1] - 200), fill=255)
            rgba.putalpha(mask)
            png = directory / f"cutout{index}.png"
            rgba.save(png, "PNG", compress_level=6)
            made["png_alpha"].append(png)
    return made


# -- the cases, each run in its own process ----------------------------------------------------


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _peak_rss_kb() -> int:
    """This process's peak resident memory. VmHWM, not getrusage: ru_maxrss survives fork and exec,
    so a child would report the parent's peak (here, the parent holds the generated photos)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_case(case: str, paths: list[Path], out_dir: Path) -> dict[str, object]:
    """Convert `paths` as `case` says; the time per photo (after one warm-up) and the peak memory."""
    import pillow_heif

    from exporters.base import InputFile, Limits, parse_options
    from exporters.registry import find
    from exporters.sniff import SNIFF_BYTES, sniff

    pillow_heif.register_heif_opener()

    def as_input(path: Path) -> InputFile:
        head = path.read_bytes()[: SNIFF_BYTES + 1]
        return InputFile(path, path.name, sniff(head[:SNIFF_BYTES], complete=len(head) <= SNIFF_BYTES))

    def ours(fmt: str, **raw: object) -> Callable[[Path, Path], Path]:
        def convert(path: Path, out: Path) -> Path:
            source = as_input(path)
            conversion = find([source.content_type], fmt)
            options = parse_options(conversion.options, raw)
            (output,) = conversion.convert([source], out, options, limits=Limits())
            return output.path

        return convert

    def naive(fmt: str, **params: object) -> Callable[[Path, Path], Path]:
        def convert(path: Path, out: Path) -> Path:
            with Image.open(path) as image:
                height = round(image.size[1] * TARGET_W / image.size[0])
                resized = image.resize((TARGET_W, height), Image.Resampling.LANCZOS)
                if resized.mode == "RGBA" and fmt == "JPEG":
                    flat = Image.new("RGB", resized.size, (255, 255, 255))
                    flat.paste(resized, mask=resized.getchannel("A"))
                    resized = flat
                target = out / (path.stem + "." + fmt.lower())
                resized.save(target, fmt, **params)
                return target

        return convert

    def decode_only(path: Path, out: Path) -> Path:
        with Image.open(path) as image:
            image.load()
        return path

    def ideal(path: Path, out: Path) -> Path:
        """The naive resize, not encoded: what both outputs are compared with for quality."""
        with Image.open(path) as image:
            height = round(image.size[1] * TARGET_W / image.size[0])
            target = out / (path.stem + ".png")
            resized = image.resize((TARGET_W, height), Image.Resampling.LANCZOS)
            if resized.mode == "RGBA":  # the outputs are JPEGs: compare with what they show
                flat = Image.new("RGB", resized.size, (255, 255, 255))
                flat.paste(resized, mask=resized.getchannel("A"))
                resized = flat
            resized.save(target, compress_level=1)
            return target

    per_photo: dict[str, Callable[[Path, Path], Path]] = {
        "jpeg_1600_jpeg:ours": ours("jpeg", width=TARGET_W, quality=85),
        "jpeg_1600_jpeg:naive": naive("JPEG", quality=85),
        "jpeg_1600_webp:ours": ours("webp", width=TARGET_W, quality=80),
        "jpeg_1600_webp:naive": naive("WEBP", quality=80, method=4),
        "heic_1600_jpeg:ours": ours("jpeg", width=TARGET_W, quality=85),
        "heic_1600_jpeg:naive": naive("JPEG", quality=85),
        "png_alpha_1600_jpeg:ours": ours("jpeg", width=TARGET_W, quality=85),
        "png_alpha_1600_jpeg:naive": naive("JPEG", quality=85),
    }
    for name in list(per_photo):
        if name.endswith(":naive"):
            per_photo[name.replace(":naive", ":decode")] = decode_only
            per_photo[name.replace(":naive", ":ideal")] = ideal
    before_kb = _peak_rss_kb()
    outputs: list[str] = []
    times: list[float] = []  # per photo, where the case converts one photo at a time
    if case in per_photo:
        convert = per_photo[case]
        convert(paths[0], out_dir)  # warm-up: imports, codec set-up
        for path in paths:
            began = time.perf_counter()
            outputs.append(str(convert(path, out_dir)))
            times.append((time.perf_counter() - began) * 1000)
        ms = _median(times)
    elif case == "album:ours":
        began = time.perf_counter()
        source = [as_input(p) for p in paths]
        conversion = find([s.content_type for s in source], "pdf")
        options = parse_options(conversion.options, {"page_size": "fit"})
        (output,) = conversion.convert(source, out_dir, options, limits=Limits())
        ms = (time.perf_counter() - began) * 1000 / len(paths)
        outputs.append(str(output.path))
    elif case == "album:img2pdf":
        import img2pdf  # type: ignore[import-untyped]

        began = time.perf_counter()
        target = out_dir / "img2pdf.pdf"
        target.write_bytes(img2pdf.convert([str(p) for p in paths]))
        ms = (time.perf_counter() - began) * 1000 / len(paths)
        outputs.append(str(target))
    else:
        raise SystemExit(f"unknown case {case}")
    peak_kb = _peak_rss_kb()
    return {"ms": ms, "times": times or [ms], "peak_mb": peak_kb / 1024, "grew_mb": (peak_kb - before_kb) / 1024,
            "outputs": outputs}  # fmt: skip


def in_subprocess(case: str, paths: list[Path], out_dir: Path) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, __file__, "--case", case, "--out", str(out_dir), *map(str, paths)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def in_rounds(case: str, paths: list[Path], out_dir: Path, rounds: int) -> dict[str, Any]:
    """`case` run `rounds` times, each in a fresh process: the median time of every photo converted
    in every round, and the highest peak memory. This machine's speed drifts by several per cent
    within a minute; a median over many photos and rounds is steadier than one run's mean."""
    runs = [in_subprocess(case, paths, out_dir) for _ in range(rounds)]
    return {
        "ms": _median([t for run in runs for t in run["times"]]),
        "peak_mb": max(run["peak_mb"] for run in runs),
        "outputs": runs[0]["outputs"],
    }


def psnr(ours: Path, reference: Path) -> float:
    with Image.open(ours) as a, Image.open(reference) as b:
        histogram = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).histogram()
        mse = sum((i % 256) ** 2 * n for i, n in enumerate(histogram)) / (a.size[0] * a.size[1] * 3)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=5, help="photos per single-photo case")
    parser.add_argument("--album", type=int, default=20, help="photos in the PDF album")
    parser.add_argument("--service-jobs", type=int, default=80,
                        help="photos sent through the whole service (0 to skip that part)")  # fmt: skip
    parser.add_argument("--service-only", action="store_true", help="only the whole-service part")
    parser.add_argument(
        "--rounds", type=int, default=3, help="fresh processes per single-photo case, for medians"
    )
    parser.add_argument("--service-rounds", type=int, default=5,
                        help="service runs of each kind, each between two bare runs, for medians")  # fmt: skip
    parser.add_argument("--worker-threads", type=int, default=2,
                        help="threads per worker process in the whole-service part (the service's default is 4; "
                             "on 2 cores, 2 let one job's waits on disk and Redis overlap another's decoding)")  # fmt: skip
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, [Path(p) for p in args.paths], Path(args.out))))
        return

    with tempfile.TemporaryDirectory(prefix="exportd-bench-") as tmp:
        work = Path(tmp)
        print(f"making inputs: {args.album} photos of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ...", flush=True)
        if args.service_only:
            made = make_inputs(work, args.photos, 0, jpeg_only=True)
            for pinned in (False, True):
                service_throughput(made["jpeg"], args.service_jobs, work / f"service-{pinned}",
                                   args.worker_threads, rounds=args.service_rounds, pinned=pinned)  # fmt: skip
            return
        inputs = make_inputs(work, args.photos, args.album)
        print()
        from exporters.resample import engine

        print(f"resampling: {engine()}; each case in a fresh process, one thread, after one warm-up;")
        print(f"times are medians over every photo of {args.rounds} rounds")
        print()
        print(f"{'case':<22}{'ours ms':>9}{'naive ms':>10}{'speed-up':>10}{'PSNR dB':>9}{'to ideal':>14}"
              f"{'decode ms':>11}{'ceiling':>9}{'ours peak MB':>14}{'naive peak MB':>15}")  # fmt: skip
        for name, kind in (("jpeg_1600_jpeg", "jpeg"), ("jpeg_1600_webp", "jpeg"),
                           ("heic_1600_jpeg", "heic"), ("png_alpha_1600_jpeg", "png_alpha")):  # fmt: skip
            ours, naive, decode = (
                in_rounds(f"{name}:{side}", inputs[kind], work / name / side, args.rounds)
                for side in ("ours", "naive", "decode")
            )
            ideal = in_subprocess(f"{name}:ideal", inputs[kind], work / name / "ideal")
            pairs = list(zip(ours["outputs"], naive["outputs"], ideal["outputs"], strict=True))
            quality = min(psnr(Path(o), Path(n)) for o, n, _ in pairs)
            ours_ideal = min(psnr(Path(o), Path(i)) for o, _, i in pairs)
            naive_ideal = min(psnr(Path(n), Path(i)) for _, n, i in pairs)
            # Without a reduced decode, no resizer can beat naive by more than naive / full decode.
            ceiling = f"{naive['ms'] / decode['ms']:.2f}x" if kind != "jpeg" else "-"
            print(f"{name:<22}{ours['ms']:>9.0f}{naive['ms']:>10.0f}{naive['ms'] / ours['ms']:>9.2f}x"
                  f"{quality:>9.1f}{f'{ours_ideal:.1f} / {naive_ideal:.1f}':>14}{decode['ms']:>11.0f}"
                  f"{ceiling:>9}{ours['peak_mb']:>14.0f}{naive['peak_mb']:>15.0f}")  # fmt: skip
        print()
        print("PSNR dB: ours against the naive output (goal >= 40). To ideal: ours / naive, each against")
        print("the naive resize before encoding (higher is closer). Decode ms: a full decode alone; where")
        print("the decoder cannot reduce (HEIC, PNG), naive / decode is the ceiling of any speed-up.")
        album = inputs["album"]
        ours = in_rounds("album:ours", album, work / "album" / "ours", args.rounds)
        base = in_rounds("album:img2pdf", album, work / "album" / "img2pdf", args.rounds)
        jpeg_bytes = sum(p.stat().st_size for p in album)
        ours_size = Path(ours["outputs"][0]).stat().st_size
        base_size = Path(base["outputs"][0]).stat().st_size
        print()
        print(f"{len(album)} photos -> PDF album (page_size fit), {jpeg_bytes / 1e6:.1f} MB of JPEGs in:")
        print(
            f"  ours    {ours['ms']:>6.0f} ms/photo  {ours_size / 1e6:>7.2f} MB  peak {ours['peak_mb']:.0f} MB"
        )
        print(
            f"  img2pdf {base['ms']:>6.0f} ms/photo  {base_size / 1e6:>7.2f} MB  peak {base['peak_mb']:.0f} MB"
        )
        print(
            f"  ratio   {base['ms'] / ours['ms']:>6.2f}x faster  size {ours_size / base_size:.3f} of img2pdf's"
        )
        if args.service_jobs:
            for pinned in (False, True):
                service_throughput(inputs["jpeg"], args.service_jobs, work / f"service-{pinned}",
                                   args.worker_threads, rounds=args.service_rounds, pinned=pinned)  # fmt: skip


# -- the whole service against the bare converter ---------------------------------------------------


def _bare_process() -> None:
    """A bare converter's process, tuned as the workers are (actors/memory.py): the baseline then
    differs from the service only by the service."""
    from actors.memory import keep_large_buffers

    keep_large_buffers()


def _bare_process_on(cores: set[int]) -> None:
    import os

    os.sched_setaffinity(0, cores)
    _bare_process()


def _bare(path: str, out_dir: str) -> float:
    """Convert one photo into `out_dir`, where its output stays (as the service keeps its outputs
    in storage); the CPU seconds it took."""
    from exporters.base import InputFile, Limits, parse_options
    from exporters.images import JpegOptions, to_jpeg

    cpu = time.process_time()
    out = Path(tempfile.mkdtemp(prefix="bare-", dir=out_dir))
    options = parse_options(JpegOptions, {"width": TARGET_W, "quality": 85})
    to_jpeg([InputFile(Path(path), "photo.jpg", "image/jpeg")], out, options, limits=Limits())
    return time.process_time() - cpu


def service_throughput(
    photos: list[Path], jobs: int, work: Path, threads: int = 2, *, rounds: int = 5, pinned: bool = False
) -> None:
    """Photos per second through HTTP + Redis + 2 worker processes, against the converter alone in 2
    processes: what the service itself costs at saturation (goal: at most 10 %).

    The bare converter and the service take turns, `rounds` times: each service run is compared with
    the mean of the bare runs just before and after it, and the median of those is the figure, since
    this machine's speed drifts by several per cent within a minute. While the bare converter runs,
    every process of the service (Redis included) is stopped with SIGSTOP, so its idle polling
    costs the baseline nothing; while the service runs, the bare converter's processes wait idle.

    pinned: one worker process (and the bare converter's one process) on core 0, and the API, Redis
    and this client on core 1, as when the API runs on other machines than the workers: what the
    service costs on the worker side alone."""
    import concurrent.futures
    import functools
    import http.client
    import multiprocessing
    import os
    import signal
    import threading

    import psutil

    from service.cli import start_local_redis
    from storage.jobs import TERMINAL
    from tests.helpers import free_port, multipart, wait_for_pool

    paths = [str(photos[i % len(photos)]) for i in range(jobs)]
    work.mkdir(parents=True, exist_ok=True)
    own_cores = os.sched_getaffinity(0)
    setup = _bare_process if not pinned else functools.partial(_bare_process_on, {0})
    processes = 1 if pinned else 2  # of the worker pool, and of the bare converter
    bare_pool = multiprocessing.get_context("spawn").Pool(processes, setup)
    if pinned:
        os.sched_setaffinity(0, {1})  # this client, and Redis and the API started from here
    redis_proc, redis_url = start_local_redis(work)
    port = free_port()
    # Without API keys: this measures the pipeline (a key costs each request a few Redis round trips).
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPORTD_ENV": "development", "EXPORTD_AUTH": "disabled",
           # One caller, no quotas: this measures the pipeline, not a tenant's limits.
           "EXPORTD_TENANT_REQUESTS_PER_SECOND": "1000000", "EXPORTD_TENANT_MAX_RUNNING": "1000000", "EXPORTD_TENANT_MAX_QUEUED": "1000000",
           "EXPORTD_DATA_DIR": str(work),
           "EXPORTD_REDIS_URL": redis_url, "EXPORTD_PORT": str(port), "EXPORTD_WORKER_PROCESSES": str(processes),
           "EXPORTD_WORKER_THREADS": str(threads), "EXPORTD_API_PROCESSES": "1",  # logs at the default level (INFO), to /dev/null
           "EXPORTD_WORKER_ALIVE_FILE": str(work / "alive"), "EXPORTD_WORKER_METRICS_PORT": "0",
           # The photo pool serves the exports queue alone, as the Helm chart deploys it (the Office
           # queue has its own Deployment): no idle consumer polls an empty queue on these cores.
           "EXPORTD_WORKER_QUEUES": "exports"}  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-m", "service.cli", role], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=functools.partial(os.sched_setaffinity, 0, {0}) if pinned and role == "worker" else None)
             for role in ("worker", "serve")]  # fmt: skip
    bodies = {p: multipart([("file", ("photo.jpg", Path(p).read_bytes())), ("format", "jpeg"),
                            ("options", json.dumps({"width": TARGET_W, "quality": 85}))]) for p in set(paths)}  # fmt: skip

    local = threading.local()

    def call(method: str, path: str, body: bytes | None = None, ctype: str = "") -> Any:
        """One request on this thread's kept-alive connection, as an HTTP client library would do."""
        headers = {"Content-Type": ctype} if ctype else {}
        for attempt in range(2):
            if getattr(local, "conn", None) is None:
                local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                local.conn.request(method, path, body=body, headers=headers)
                resp = local.conn.getresponse()
                data = resp.read()
                break
            except (ConnectionError, http.client.HTTPException):
                local.conn.close()
                local.conn = None
                if attempt:
                    raise
        if resp.status >= 400:
            raise OSError(f"{method} {path}: HTTP {resp.status} {data[:200]!r}")
        return json.loads(data)

    def submit(path: str) -> str:
        body, ctype = bodies[path]
        return str(call("POST", "/v1/exports", body, ctype)["id"])

    def upload(path: str) -> str:
        return str(
            call("POST", "/v1/uploads?filename=photo.jpg", Path(path).read_bytes(), "image/jpeg")["id"]
        )

    def export_upload(upload_id: str) -> str:
        request = {"inputs": [upload_id], "format": "jpeg", "options": {"width": TARGET_W, "quality": 85}}
        return str(call("POST", "/v1/exports", json.dumps(request).encode(), "application/json")["id"])

    def wait_all(ids: list[str]) -> None:
        # One request per job, as a client that needs every result makes: each waits on the API
        # (?wait) until its job finishes, and jobs finish about in the order they were sent.
        for job_id in ids:
            job = call("GET", f"/v1/exports/{job_id}?wait=30")
            while job["status"] not in TERMINAL:
                job = call("GET", f"/v1/exports/{job_id}?wait=30")
            if job["status"] == "failed":
                raise SystemExit(f"service job failed: {job['error']}")

    me = psutil.Process()
    results: dict[str, list[dict[str, float]]] = {"bare": [], "uploaded": [], "with upload": []}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                call("GET", "/readyz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the service did not start") from None
                time.sleep(0.2)
        wait_for_pool(f"http://127.0.0.1:{port}")
        # Warm-up, twice over every worker thread and bare process: each has its buffers in place
        # (the first touch of memory is costly on a VM) before anything is timed.
        wait_all([submit(p) for p in paths[: 2 * processes * threads]])
        bare_out = work / "bare"
        bare_out.mkdir()
        bare_pool.starmap(_bare, [(p, str(bare_out)) for p in paths[: 2 * processes]], chunksize=1)

        roles = {"redis": [psutil.Process(redis_proc.pid)]}
        for proc, role in zip(procs, ("workers", "api"), strict=True):
            roles[role] = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        service_procs = [p for family in roles.values() for p in family]

        def cpu_by_role() -> dict[str, float]:
            return {role: sum(sum(p.cpu_times()[:2]) for p in ps) for role, ps in roles.items()}

        def measure(send: Callable[[str], str], items: list[str]) -> dict[str, float]:
            client_before = sum(me.cpu_times()[:2])
            roles_before = cpu_by_role()
            began = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(4) as clients:
                ids = list(clients.map(send, items))
            wait_all(ids)
            rate = jobs / (time.perf_counter() - began)
            roles_after = cpu_by_role()
            by_role = {role: (roles_after[role] - roles_before[role]) / jobs * 1000 for role in roles_after}
            client_ms = (sum(me.cpu_times()[:2]) - client_before) / jobs * 1000
            return {"rate": rate, "cpu_ms": sum(by_role.values()), **by_role, "client": client_ms}

        def bare() -> dict[str, float]:
            for proc in service_procs:
                proc.send_signal(signal.SIGSTOP)
            try:
                began = time.perf_counter()
                cpu_s = sum(bare_pool.starmap(_bare, [(p, str(bare_out)) for p in paths], chunksize=1))
                rate = jobs / (time.perf_counter() - began)
            finally:
                for proc in service_procs:
                    proc.send_signal(signal.SIGCONT)
            for made in bare_out.iterdir():  # not timed, as the service's outputs are not deleted
                shutil.rmtree(made)
            return {"rate": rate, "cpu_ms": cpu_s / jobs * 1000}

        # Each service run lies between two bare runs and is compared with their mean, so the drift
        # of this machine's speed within a minute cancels out.
        results["bare"].append(bare())
        for _ in range(rounds):
            # 1. Photos already uploaded (as a client that keeps its uploads, or sends them as they
            #    are made): the export requests go through the API, the conversions through the pool.
            uploaded = [upload(p) for p in paths]  # not timed
            results["uploaded"].append(measure(export_upload, uploaded))
            results["bare"].append(bare())
            # 2. Each photo sent with its export request, one multipart POST: the API also receives
            #    and stores the 4 MB, on the same two cores.
            results["with upload"].append(measure(submit, paths))
            results["bare"].append(bare())
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        redis_proc.terminate()
        redis_proc.wait(10)
        bare_pool.terminate()
        os.sched_setaffinity(0, own_cores)

    base = {key: _median([r[key] for r in results["bare"]]) for key in ("rate", "cpu_ms")}
    print()
    if pinned:
        print(f"worker side alone: 1 worker process of {threads} threads on core 0; the API, Redis and this")
        print("benchmark's HTTP client on core 1; the bare converter in 1 process on core 0.")
    else:
        print(f"whole service: 12 MP JPEG -> 1600 px JPEG, 2 worker processes of {threads} threads, with the")
        print("API, Redis and this benchmark's HTTP client on the same 2 cores as the pool.")
    print(
        f"{jobs} photos a run, {rounds} rounds; each service run between two bare runs. Medians, then each run's figure:"
    )
    rates = " ".join(f"{r['rate']:.2f}" for r in results["bare"])
    print(f"  {'bare converter':<26}{base['rate']:6.2f} photos/s  CPU {base['cpu_ms']:3.0f} ms/photo"
          f"{'':<52}runs: {rates}")  # fmt: skip
    bare_rates = [r["rate"] for r in results["bare"]]
    for offset, name in enumerate(("uploaded", "with upload")):
        runs = results[name]
        m = {key: _median([r[key] for r in runs]) for key in runs[0]}
        # Run i of this kind lies between bare runs 2i + offset and 2i + offset + 1.
        overheads = [
            (1 - r["rate"] / ((bare_rates[2 * i + offset] + bare_rates[2 * i + offset + 1]) / 2)) * 100
            for i, r in enumerate(runs)
        ]
        print(
            f"  {'API + pool, ' + name:<26}{m['rate']:6.2f} photos/s  CPU {m['cpu_ms']:3.0f} ms/photo "
            f"(workers {m['workers']:.0f}, API {m['api']:.0f}, Redis {m['redis']:.0f}; client {m['client']:.0f})"
            f"  overhead {_median(overheads):4.1f} %  runs: {' '.join(f'{o:.1f}' for o in overheads)}"
        )
    print("  overhead: 1 - service photos/s / bare photos/s, against the mean of the bare runs just before")
    print("  and after it (goal: at most 10 %); the median of the runs.")


if __name__ == "__main__":
    main()
