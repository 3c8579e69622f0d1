"""The API's gunicorn worker: gevent greenlets, and client sockets that must keep pace.

With gthread workers each connection being read, and each request waiting for its job (`?wait`),
held one of a few threads: eight clients sending a byte a second stalled half the requests.
Here each connection is a greenlet (gunicorn's gevent worker), so a slow client, an idle
keep-alive connection or a waiting request costs a greenlet and a socket, not a thread; and its
socket is a PacedSocket (service/pacing.py), so a client that stalls or trickles is cut off.
`exportd serve` names this class; benchmarks/slow_clients.py measures it against the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker

from service.pacing import ClientTooSlow, PacedSocket

log = logging.getLogger("exportd.api")


class ExportdWorker(GeventWorker):  # type: ignore[misc]  # gunicorn has no type hints
    def run(self) -> None:
        # Read here, once gevent has patched the process: importing the settings imports Redis and
        # Dramatiq, which must see the patched threading and socket modules.
        from service.settings import Settings

        settings = Settings.from_env()
        self.read_timeout_s = float(settings.api_read_timeout_s)
        self.min_body_bytes_per_s = float(settings.api_min_body_bytes_per_s)
        super().run()

    def timeout_ctx(self) -> gevent.Timeout:
        # The whole head of a request (and, on a kept-alive connection, the idle time before it)
        # within the read timeout; gunicorn's own uses the keep-alive time, 5 s, for the head too.
        return gevent.Timeout(self.read_timeout_s, False)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        client.setblocking(1)
        paced = PacedSocket(
            client,
            read_timeout_s=self.read_timeout_s,
            min_bytes_per_s=self.min_body_bytes_per_s,
            idle_timeout_s=float(self.cfg.keepalive),
        )
        # GeventWorker.handle only sets the socket blocking (done above), then calls this.
        super(GeventWorker, self).handle(listener, paced, addr)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        sock.request = req  # so that a request cut off mid-body is answered with Connection: close
        super().handle_request(listener_name, req, sock, addr)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if not isinstance(exc, ClientTooSlow):
            super().handle_error(req, client, addr, exc)
            return
        # Cut off while its head was read (the app answers a slow body itself): 408, then close.
        log.info("client too slow", extra={"error": str(exc)})
        body = json.dumps(
            {"type": "urn:exportd:problem:request_timeout", "title": "Request too slow", "status": 408,
             "detail": str(exc), "code": "request_timeout"}
        ).encode()  # fmt: skip
        head = (
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        with contextlib.suppress(OSError):
            client.sendall(head + body)
