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
import uuid
from typing import Any

import gevent
from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

from service.early import SERVER_PROBLEMS
from service.pacing import ClientTooSlow, PacedSocket

log = logging.getLogger("exportd.api")


def problem_answer(status: int, reason: str, detail: str) -> bytes:
    """A whole HTTP answer (head and problem+json body) that closes the connection.

    Its X-Request-ID is a new one, as for every answer: the head was not read, so the client's is not known.
    """
    code = {408: "request_timeout", **SERVER_PROBLEMS}.get(status, "internal_error")
    body = json.dumps(
        {"type": f"urn:exportd:problem:{code}", "title": reason, "status": status,
         "detail": detail[:300] or reason, "code": code}
    ).encode()  # fmt: skip
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-ID: {uuid.uuid4().hex}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    return head + body


def _write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    # gunicorn's own write_error sends an HTML page; its callers pass the status, reason and message.
    sock.sendall(problem_answer(status_int, reason, mesg))


class ExportdWorker(GeventWorker):  # type: ignore[misc]  # gunicorn has no type hints
    def run(self) -> None:
        # Read here, once gevent has patched the process: importing the settings imports Redis and
        # Dramatiq, which must see the patched threading and socket modules.
        from service.settings import Settings

        settings = Settings.from_env()
        # gunicorn answers a head it cannot take (a request line over 4094 bytes: 414, headers too
        # large: 431, malformed: 400) with util.write_error before the app runs: as problem+json here.
        util.write_error = _write_problem
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
        with contextlib.suppress(OSError):
            client.sendall(problem_answer(408, "Request Timeout", str(exc)))
