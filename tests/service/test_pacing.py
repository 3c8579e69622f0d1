"""service/pacing.py on a real socket pair, with a clock the test moves (the real server: test_serve.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from service.pacing import ClientTooSlow, PacedSocket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def paced(server: socket.socket, clock: Clock) -> PacedSocket:
    return PacedSocket(server, read_timeout_s=0.5, min_bytes_per_s=100, idle_timeout_s=0.2, clock=clock)


def test_a_pause_of_the_server_is_not_blamed_on_the_client(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    clock = Clock()
    sock = paced(server, clock)
    client.sendall(b"POST / HTTP/1.1\r\n")
    assert sock.recv(100) == b"POST / HTTP/1.1\r\n"
    client.sendall(b"x" * 5000)  # sent at once, while the server was busy elsewhere for a minute
    clock.now += 60
    assert sock.recv(10000) == b"x" * 5000


def test_a_request_behind_the_minimum_rate_is_cut_off_once_the_grace_has_passed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    clock = Clock()
    sock = paced(server, clock)
    client.sendall(b"POST / HTTP/1.1\r\n")
    sock.recv(100)
    clock.now += 0.5 + 17 / 100 + 0.01  # the grace, and the time its 17 bytes bought, have passed
    with pytest.raises(ClientTooSlow, match="too slowly"):
        sock.recv(100)  # nothing more came


def test_a_stalled_request_is_cut_off_after_the_read_timeout(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    sock = paced(server, Clock())  # the clock stands still: only the read timeout can fire
    client.sendall(b"x" * 10_000)
    sock.recv(10_000)
    with pytest.raises(ClientTooSlow):
        sock.recv(100)


def test_an_idle_connection_between_requests_is_closed_quietly(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    sock = paced(server, Clock())
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")
    sock.recv(100)
    sock.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")  # answered: the next read waits for a new request
    assert sock.recv(100) == b""  # after the idle timeout, as the end of the connection


def test_gunicorn_s_own_deadline_raises_its_own_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    sock = paced(server, Clock())
    client.sendall(b"x")
    sock.recv(1)
    sock.settimeout(0.05)  # gunicorn draining an unread body within a deadline
    with pytest.raises(TimeoutError) as caught:
        sock.recv(100)
    assert not isinstance(caught.value, ClientTooSlow)
    assert sock.gettimeout() == 0.05 and server.gettimeout() == 0.05
