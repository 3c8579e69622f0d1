"""The client verbs of `exportd`: export, job, cancel and formats, talking to a running service over HTTP.

Exit codes: 0 the export succeeded (or, with --no-wait, was accepted), 1 the job failed or the
service refused the request, 2 usage error, 3 the service cannot be reached (or answered 503),
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_URL = "http://127.0.0.1:8080"

VERBS = ("export", "job", "cancel", "formats")


def add_parsers(sub: Any) -> None:
    """Add the client verbs to `exportd`'s subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("EXPORTD_URL", DEFAULT_URL),
                        help=f"the service (EXPORTD_URL; default {DEFAULT_URL})")  # fmt: skip
    common.add_argument("--api-key", default=os.environ.get("EXPORTD_API_KEY"),
                        help="sent as Authorization: Bearer (EXPORTD_API_KEY)")  # fmt: skip
    common.add_argument("--json", action="store_true", help="print JSON on stdout, for scripts")

    export = sub.add_parser("export", parents=[common], help="convert files on a running exportd",
                            description="Upload files, convert them and download the results. " + _EXITS)  # fmt: skip
    export.add_argument("files", nargs="+", type=Path, help="input files")
    export.add_argument("--to", required=True, metavar="FORMAT", help="output format (see `exportd formats`)")
    export.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a conversion option; VALUE is JSON (800, true, [\"exif\"]) or else a string")  # fmt: skip
    export.add_argument("-o", "--output", type=Path, default=Path("."), help="directory for the results")
    export.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    export.add_argument("--timeout", type=float, default=None, help="seconds to wait for the job at most")

    job = sub.add_parser("job", parents=[common], help="show a job of a running exportd",
                         description="Show a job; exit 1 if it failed. " + _EXITS)  # fmt: skip
    job.add_argument("id")
    job.add_argument("--wait", type=float, default=0, help="seconds to wait for it to finish (long poll)")

    cancel = sub.add_parser("cancel", parents=[common], help="cancel a job of a running exportd",
                            description="Cancel a queued or running job (harmless if it was canceled "
                            "already); exit 1 if it had succeeded or failed. " + _EXITS)  # fmt: skip
    cancel.add_argument("id")
    cancel.add_argument("--wait", type=float, default=0, help="seconds to wait for a running job to stop")

    sub.add_parser("formats", parents=[common], help="list the conversions of a running exportd",
                   description="Every conversion with its options. " + _EXITS)  # fmt: skip


_EXITS = "Exit codes: 0 succeeded, 1 job failed or request refused, 2 usage, 3 service unreachable."


class _Reporter:
    """Progress on a terminal (rich), plain lines otherwise, nothing with --json."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = not quiet and sys.stderr.isatty()
        self._progress: Any = None

    @contextmanager
    def bars(self) -> Iterator[None]:
        if not self.tty:
            yield
            return
        import rich.progress as rp
        from rich.console import Console

        self._progress = rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), rp.DownloadColumn(),
                                  rp.TransferSpeedColumn(), rp.TimeElapsedColumn(), transient=False,
                                     console=Console(stderr=True))  # fmt: skip
        with self._progress:
            yield
        self._progress = None

    def transfer(self, verb: str) -> Callable[[str, int, int | None], None]:
        tasks: dict[str, Any] = {}

        def step(name: str, done: int, total: int | None) -> None:
            if self._progress is not None:
                if name not in tasks:
                    tasks[name] = self._progress.add_task(f"{verb} {name}", total=total)
                self._progress.update(tasks[name], completed=done, total=total)
            elif not self.quiet and (done == 0 or done == total) and name not in tasks:
                if done == 0:
                    self.line(f"{verb} {name}" + (f" ({total:,} bytes)" if total else ""))
                else:
                    tasks[name] = True

        return step

    def status(self) -> Callable[[Any], None]:
        started = time.monotonic()
        task: list[Any] = []
        last: list[str] = []

        def poll(job: Any) -> None:
            text = f"job {job.id}: {job.status}"
            if self._progress is not None:
                if not task:
                    task.append(self._progress.add_task(text, total=None))
                self._progress.update(task[0], description=text)
            elif last != [job.status]:
                self.line(f"{text} ({time.monotonic() - started:.1f} s)")
            last[:] = [job.status]

        return poll

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)


class UsageError(Exception):
    pass


def _options(pairs: list[str]) -> dict[str, Any]:
    """--option NAME=VALUE pairs as JSON options. Raises UsageError."""
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--option takes NAME=VALUE, not {pair!r}")
        try:
            options[name] = json.loads(value)
        except ValueError:
            options[name] = value  # page_size=A4
    return options


def _print_job(job: Any, *, as_json: bool, files: list[Path] | None = None) -> None:
    if as_json:
        print(json.dumps({**job.raw, **({"files": [str(p) for p in files]} if files is not None else {})}))
        return
    print(f"{job.id} {job.status}")
    if job.error_code:
        print(f"error {job.error_code}: {job.error_message}")
    for out in job.outputs:
        print(f"{out.name}\t{out.size} bytes\t{out.url}")


def _export(client: Any, args: argparse.Namespace, report: _Reporter) -> int:
    from exportd.client import JobFailed

    missing = [str(p) for p in args.files if not p.exists() or p.is_dir()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    options = _options(args.option)
    with report.bars():
        job = client.export(args.files, args.to, options, progress=report.transfer("uploading"))
        if args.no_wait:
            if args.json:
                _print_job(job, as_json=True)
            else:
                print(job.id)
            return EXIT_OK
        poll = report.status()
        poll(job)
        try:
            job = client.wait(job, timeout_s=args.timeout, on_poll=poll)
        except JobFailed as failed:
            if args.json:
                _print_job(failed.job, as_json=True)
            print(f"exportd: the export failed: {failed.message} ({failed.code})", file=sys.stderr)
            return EXIT_FAILED
        if job.status == "canceled":
            print(f"exportd: job {job.id} was canceled", file=sys.stderr)
            _print_job(job, as_json=args.json)
            return EXIT_FAILED
        if not job.finished:
            print(f"exportd: job {job.id} still {job.status} after {args.timeout:g} s", file=sys.stderr)
            _print_job(job, as_json=args.json)
            return EXIT_FAILED
        paths = client.download(job, args.output, progress=report.transfer("downloading"))
    if args.json:
        _print_job(job, as_json=True, files=paths)
    else:
        for path in paths:
            print(path)
    return EXIT_OK


def _formats(client: Any, args: argparse.Namespace) -> int:
    body = client.formats()
    if args.json:
        print(json.dumps(body))
        return EXIT_OK
    for c in body["conversions"]:
        print(f"{c['from']} -> {c['to']}: {c['description']}")
        for name, spec in c["options"].items():
            print(
                f"    {name} ({spec['type']}, default {json.dumps(spec['default'])}): {spec['description']}"
            )
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run one client verb; its exit code."""
    from exportd.client import Client, ExportdError, ServiceUnreachable

    report = _Reporter(quiet=args.json)
    try:
        with Client(args.url, args.api_key) as client:
            if args.command == "export":
                return _export(client, args, report)
            if args.command == "job":
                job = client.job(args.id, wait_s=args.wait)
                _print_job(job, as_json=args.json)
                return EXIT_FAILED if job.status == "failed" else EXIT_OK
            if args.command == "cancel":
                job = client.cancel(args.id, wait_s=args.wait)
                _print_job(job, as_json=args.json)
                return EXIT_OK
            return _formats(client, args)
    except UsageError as exc:
        print(f"exportd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceUnreachable as exc:
        print(f"exportd: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ExportdError as exc:
        print(f"exportd: refused: {exc.message} ({exc.code})", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("exportd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
