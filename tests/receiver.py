"""A real HTTP receiver of webhooks on 127.0.0.1, for tests: it records every request and answers
as the test scripts it (a status, after a delay)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A test server's handler: logs nothing, and answers whole (HTTP/1.1, with Content-Length)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    #: Answers for the next requests, in order: (status, delay in seconds); then `default`.
    script: list[tuple[int, float]] = field(default_factory=list)
    default: tuple[int, float] = (200, 0.0)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def next_answer(self) -> tuple[int, float]:
        with self.arrived:
            return self.script.pop(0) if self.script else self.default

    def wait_for(self, count: int, timeout_s: float = 30, path: str | None = None) -> list[Received]:
        """Until `count` requests (to `path`, if given) have arrived; returns them."""
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while True:
                got = [r for r in self.requests if path is None or r.path == path]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(got)} webhook requests arrived, not {count}: {got}")
                self.arrived.wait(left)


def receiver() -> Iterator[Receiver]:
    """Start one (a generator for a pytest fixture); it stops afterwards."""
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            rec = state["r"]
            with rec.arrived:
                rec.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                             time.time()))  # fmt: skip
                rec.arrived.notify_all()
            status, delay = rec.next_answer()
            time.sleep(delay)
            answer = b'{"ok": true}'
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:  # the client gave up (a timeout) or was killed
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec = Receiver(server)
    state["r"] = rec
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
