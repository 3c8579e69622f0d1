"""A client socket whose requests must keep pace: read timeouts and a minimum rate, per connection.

The API's gunicorn worker (service/server.py) hands gunicorn a PacedSocket instead of the client's
socket, so every read of a request (its head and its body) is bounded: a client that sends nothing
for `read_timeout_s`, or that after the first `read_timeout_s` of a request has sent less than
`min_bytes_per_s` on average, is cut off. The deadline counts only the client's own bytes: a read
is always given the bytes already waiting in the kernel, so a pause of ours (a slow storage write)
is never blamed on the client. Stdlib only, so that service/app.py can name ClientTooSlow.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any


class ClientTooSlow(Exception):
    """The client sent nothing for the read timeout, or its request fell below the minimum rate.

    An Exception, not an OSError: storage code turns OSErrors into "storage unavailable" (503),
    and this is the client's doing. service/app.py answers it with 408 and closes the connection.
    """


#: Shortest wait for the next bytes once the rate deadline has passed: bytes already in the kernel
#: are still taken (the pause was ours), none arriving at once means the client is behind.
_LAST_CHANCE_S = 0.05


class PacedSocket:
    """Wraps a connected client socket; everything but recv and the timeout plumbing is passed on."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        read_timeout_s: float,
        min_bytes_per_s: float,
        idle_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sock = sock
        self._read_timeout_s = read_timeout_s
        self._min_bytes_per_s = min_bytes_per_s
        self._idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._cap_s: float | None = sock.gettimeout()  # what gunicorn asked for with settimeout
        self._began: float | None = None  # when the current request's first bytes arrived
        self._received = 0  # bytes of the current request so far
        self._served = False  # a response was sent on this connection (later reads may idle)
        #: The request being read (gunicorn's), marked to close the connection when it is cut off:
        #: gunicorn ignores a Connection header set by the application.
        self.request: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def settimeout(self, timeout: float | None) -> None:
        self._cap_s = timeout
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._cap_s

    def recv(self, size: int) -> bytes:
        timeout = self._timeout()
        self._sock.settimeout(timeout if self._cap_s is None else min(timeout, self._cap_s))
        try:
            data = self._sock.recv(size)
        except TimeoutError:  # socket.timeout is TimeoutError since Python 3.10
            if self._began is None and self._cap_s is None:
                return b""  # idle between requests: close quietly, as at a keep-alive timeout
            if self._cap_s is not None and self._cap_s <= timeout:
                raise  # gunicorn's own deadline (draining a body it will not use)
            if self.request is not None:
                self.request.must_close = True
            raise ClientTooSlow(self._why()) from None
        finally:
            self._sock.settimeout(self._cap_s)
        if data and self._began is None:
            self._began = self._clock()
        self._received += len(data)
        return data

    def send(self, data: Any, *args: Any) -> int:
        self._answering()
        return self._sock.send(data, *args)

    def sendall(self, data: Any, *args: Any) -> None:
        self._answering()
        self._sock.sendall(data, *args)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        self._answering()
        return self._sock.sendfile(file, offset, count)

    def _answering(self) -> None:
        """A response goes out: the request was read (or refused), the next read begins another."""
        self._began = None
        self._received = 0
        self._served = True

    def _timeout(self) -> float:
        if self._began is None:
            return self._idle_timeout_s if self._served else self._read_timeout_s
        # Any pace during the first read_timeout_s; after that, the request's bytes must keep up
        # with the minimum rate, counted from its first byte.
        deadline = self._began + self._read_timeout_s + self._received / self._min_bytes_per_s
        return min(self._read_timeout_s, max(deadline - self._clock(), _LAST_CHANCE_S))

    def _why(self) -> str:
        if self._began is None:
            return f"no request arrived within {self._read_timeout_s:g} s"
        elapsed = self._clock() - self._began
        return (
            f"the request arrived too slowly: {self._received} bytes in {elapsed:.0f} s "
            f"(at least {self._min_bytes_per_s:g} bytes/s after the first {self._read_timeout_s:g} s, "
            f"and never {self._read_timeout_s:g} s without any)"
        )
