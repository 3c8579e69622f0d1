"""The outbound policy (actors/outbound.py): what may be reached, and that only it is reached.

Nothing here sends traffic off this machine. Non-loopback addresses are only ever checked at the
policy level, with the resolver stubbed and every socket connect refused by a guard; the
end-to-end tests talk to real HTTP servers on 127.0.0.1 (and ::1) with an allow-list of
127.0.0.1/32 only.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.outbound import (
    DownloadTooLarge,
    OutboundError,
    OutboundPolicy,
    UrlNotAllowed,
    download,
    parse_allow_nets,
    post,
)
from tests.receiver import QuietHandler

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"

#: What the stub resolver knows. A name not in it fails the test.
NAMES: dict[str, list[str]] = {
    "public.test": [PUBLIC_V4, PUBLIC_V6],
    "localhost": ["127.0.0.1", "::1"],
    "internal.test": ["10.1.2.3"],
    "mixed.test": [PUBLIC_V4, "10.0.0.1"],  # one public, one private: refused
    "mixed6.test": [PUBLIC_V6, "fd12::1"],
    "meta.test": ["169.254.169.254"],
    "meta6.test": ["fd00:ec2::254"],
    "mapped.test": ["::ffff:169.254.169.254"],
    "cgnat.test": ["100.64.0.1"],
    "zero.test": ["0.0.0.0"],
    "nat64-public.test": ["64:ff9b::5db8:d70e"],
    "garbage.test": ["not-an-address"],
}


class StubResolver:
    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = NAMES if names is None else names
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not known to the test's resolver")
        return list(self.names[host])


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to resolve or connect fails the test: the policy decides without the network."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a connection or lookup was attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def policy(**kw: Any) -> OutboundPolicy:
    return OutboundPolicy(**{"allow_http": True, "resolve": StubResolver(), **kw})


# -- the matrix, at the policy level ---------------------------------------------------------------

#: URL, and a word the refusal's reason must contain.
REFUSED = [
    # IPv4 loopback in every form a resolver reads
    ("http://127.0.0.1/", "loopback"),
    ("http://2130706433/", "loopback"),  # decimal
    ("http://0x7f000001/", "loopback"),  # hex
    ("http://0X7F000001/", "loopback"),
    ("http://017700000001/", "loopback"),  # octal
    ("http://0177.0.0.1/", "loopback"),  # octal dotted
    ("http://0x7f.0.0.1/", "loopback"),  # hex dotted
    ("http://127.1/", "loopback"),  # short
    ("http://127.0.0.1./", "loopback"),  # trailing dot
    ("http://2130706434/", "loopback"),  # 127.0.0.2
    ("http://localhost/", "loopback"),  # a name resolving to loopback
    # IPv6 loopback and IPv4-carrying forms
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "127.0.0.1"),  # IPv4-mapped
    ("http://[::ffff:7f00:1]/", "127.0.0.1"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[::7f00:1]/", "127.0.0.1"),  # IPv4-compatible (deprecated)
    ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),  # NAT64 of 169.254.169.254
    ("http://[64:ff9b::7f00:1]/", "loopback"),  # NAT64 of 127.0.0.1
    ("http://[64:ff9b:1::a00:1]/", "private"),  # local-use NAT64 of 10.0.0.1
    ("http://[2002:a9fe:a9fe::1]/", "metadata"),  # 6to4 of 169.254.169.254
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
    # cloud metadata, link-local
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "zone"),
    # private, CGNAT, unspecified, multicast, broadcast, reserved, documentation, benchmarking
    ("http://10.0.0.1/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://100.64.0.1/", "CGNAT"),
    ("http://100.127.255.254/", "CGNAT"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "private"),
    ("http://240.0.0.1/", "private"),
    ("http://192.0.2.1/", "private"),  # TEST-NET-1
    ("http://198.18.0.1/", "private"),
    ("http://[2001:db8::1]/", "private"),
    # names resolving to refused addresses
    ("http://internal.test/", "10.1.2.3"),
    ("http://mixed.test/", "10.0.0.1"),  # one public, one private address
    ("http://mixed6.test/", "fd12::1"),
    ("http://meta.test/", "metadata"),
    ("http://meta6.test/", "metadata"),
    ("http://mapped.test/", "metadata"),
    ("http://cgnat.test/", "CGNAT"),
    ("http://zero.test/", "unspecified"),
    ("http://garbage.test/", "not an IP address"),
    # not a URL exportd fetches
    ("ftp://public.test/file", "https"),
    ("file:///etc/passwd", "https"),
    ("gopher://public.test/", "https"),
    ("javascript:alert(1)", "https"),
    ("public.test/photo.jpg", "https"),
    ("http://user:secret@public.test/", "credentials"),
    ("http://public.test@10.0.0.1/", "credentials"),
    ("http://public.test\\@10.0.0.1/", "backslash"),
    ("http://public.test /", "spaces"),
    ("http:///path", "no host"),
    ("http://%31%32%37.0.0.1/", "characters"),  # percent-encoded 127
    ("http://127.0.0.1%2f@public.test/", "credentials"),
    ("http://public.test:99999/", "cannot be read"),
    ("http://" + "a" * 2100 + ".test/", "characters long"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED, ids=[u[:60] for u, _ in REFUSED])
def test_the_policy_refuses(url: str, why: str, no_network: None) -> None:
    with pytest.raises(UrlNotAllowed) as caught:
        policy().check(url)
    assert why in caught.value.reason
    assert caught.value.code == "url_not_allowed" and str(caught.value) == caught.value.reason


ALLOWED = [
    (f"http://{PUBLIC_V4}/", [PUBLIC_V4]),
    (f"https://{PUBLIC_V4}:8443/a?b=c", [PUBLIC_V4]),
    (f"https://[{PUBLIC_V6}]/", [PUBLIC_V6]),
    ("https://public.test/photo.jpg", [PUBLIC_V4, PUBLIC_V6]),
    ("https://PUBLIC.test/", [PUBLIC_V4, PUBLIC_V6]),
    ("https://nat64-public.test/", ["64:ff9b::5db8:d70e"]),  # DNS64 of a public address
    ("https://[::ffff:93.184.215.14]/", ["::ffff:5db8:d70e"]),
    ("https://1572394766/", [PUBLIC_V4]),  # 93.184.215.14 in decimal: read as what it means
]


@pytest.mark.parametrize(("url", "addresses"), ALLOWED, ids=[u for u, _ in ALLOWED])
def test_the_policy_allows_public_addresses(url: str, addresses: list[str], no_network: None) -> None:
    target = policy().check(url)
    assert [str(a) for a in target.addresses] == [str(ipaddress.ip_address(a)) for a in addresses]


def test_the_matrix_is_large() -> None:
    assert len(REFUSED) >= 25 and len({u for u, _ in REFUSED}) == len(REFUSED)


def test_each_host_is_resolved_once_and_ip_forms_not_at_all(no_network: None) -> None:
    resolver = StubResolver()
    p = policy(resolve=resolver)
    target = p.check("https://public.test/x")
    assert resolver.calls == [("public.test", 443)]
    assert (target.host, target.port, target.path, target.host_header) == (
        "public.test",
        443,
        "/x",
        "public.test",
    )
    for url in ("http://2130706433/", "http://0x7f000001/", "http://[::ffff:127.0.0.1]/"):
        with pytest.raises(UrlNotAllowed):
            p.check(url)
    assert resolver.calls == [("public.test", 443)]


def test_production_refuses_http_and_allows_https(no_network: None) -> None:
    production = OutboundPolicy(allow_http=False, resolve=StubResolver())
    with pytest.raises(UrlNotAllowed, match="only https"):
        production.check(f"http://{PUBLIC_V4}/")
    assert production.check("https://public.test/").scheme == "https"


def test_allow_nets_let_a_network_through_and_nothing_else(no_network: None) -> None:
    p = policy(allow_nets=parse_allow_nets("10.0.0.0/8, 127.0.0.1/32"))
    assert p.check("http://internal.test/").addresses == (ipaddress.ip_address("10.1.2.3"),)
    assert p.check("http://0x7f000001:8080/").port == 8080
    assert p.check("http://[::ffff:127.0.0.1]/")  # the IPv4 address it carries is allowed
    with pytest.raises(UrlNotAllowed, match="::1"):
        p.check("http://localhost/")  # 127.0.0.1 is allowed, its ::1 is not: every address counts
    with pytest.raises(UrlNotAllowed, match="loopback"):
        p.check("http://127.0.0.2/")
    with pytest.raises(UrlNotAllowed, match="metadata"):
        p.check("http://169.254.169.254/")


def test_a_host_that_does_not_resolve_is_a_transient_error(no_network: None) -> None:
    with pytest.raises(OutboundError) as caught:
        policy().check("https://nowhere.test/")
    assert caught.value.code == "dns_failed" and caught.value.transient


def test_allow_nets_are_validated() -> None:
    assert parse_allow_nets("") == ()
    assert [str(n) for n in parse_allow_nets(" 10.0.0.0/8 ,fd12::/16,,")] == ["10.0.0.0/8", "fd12::/16"]
    for bad in ("10.0.0.1/8", "10.0.0.0/33", "example.com", "10.0.0.0/8;rm"):
        with pytest.raises(ValueError, match="CIDR"):
            parse_allow_nets(bad)


def test_a_bad_allow_list_stops_the_process_at_start() -> None:
    from service.settings import ConfigError, Settings

    env = {"EXPORTD_ENV": "development", "EXPORTD_DATA_DIR": "/tmp/exportd-outbound-test"}
    good = Settings.from_env({**env, "EXPORTD_OUTBOUND_ALLOW_NETS": "127.0.0.1/32,fd12::/16"})
    assert OutboundPolicy.from_settings(good).allow_nets == parse_allow_nets("127.0.0.1/32,fd12::/16")
    assert OutboundPolicy.from_settings(good).allow_http
    with pytest.raises(ConfigError, match="EXPORTD_OUTBOUND_ALLOW_NETS"):
        Settings.from_env({**env, "EXPORTD_OUTBOUND_ALLOW_NETS": "10.0.0.1/8"})


# -- end to end, against real servers on loopback --------------------------------------------------


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: int = socket.AF_INET) -> None:
        self.address_family = family
        super().__init__(address, Handler)
        self.seen: list[tuple[str, str, str, bytes]] = []  # method, path, Host, body

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up early (timeouts, size caps) is what those tests do


BIG = b"x" * 200_000


class Handler(QuietHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append(("POST", self.path, self.headers["Host"], body))
        if self.path == "/redirect":
            self.answer(302, b"", {"Location": "/elsewhere"})
        elif self.path == "/big":
            self.answer(200, BIG)
        elif self.path == "/slow":
            time.sleep(2)
            self.answer(200, b"late")
        else:
            self.answer(200, b"thanks")

    def do_GET(self) -> None:
        self.server.seen.append(("GET", self.path, self.headers["Host"], b""))
        path = self.path.split("?", 1)[0]
        if path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            if n < 4:
                self.answer(302, b"", {"Location": f"/chain/{n + 1}"})
            else:
                self.answer(200, b"end of chain", {"Content-Type": "text/plain"})
        elif path == "/to-metadata":
            self.answer(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/to-name":
            self.answer(301, b"", {"Location": f"http://rebind.test:{self.server.port}/file"})
        elif path == "/big":
            self.answer(200, BIG)
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"%x\r\n%s\r\n" % (20_000, b"y" * 20_000))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"z")
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/missing":
            self.answer(404, b"no")
        elif path == "/down":
            self.answer(503, b"later")
        else:
            self.answer(
                200,
                b"file body",
                {
                    "Content-Type": "image/png; charset=binary",
                    "Content-Disposition": 'attachment; filename="a b.png"',
                },
            )


def _serve(server: Receiver) -> Iterator[Receiver]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve(Receiver(("127.0.0.1", 0)))


@pytest.fixture
def receiver6() -> Iterator[Receiver]:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = Receiver(("::1", 0), socket.AF_INET6)
    except OSError:
        pytest.skip("::1 cannot be bound here")
    yield from _serve(server)


@pytest.fixture
def dialled(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a TCP connection was opened to (the HTTP client's sockets), recorded."""
    seen: list[Any] = []
    real = socket.create_connection

    def spy(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        seen.append(address[0])
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    return seen


LOCAL = parse_allow_nets("127.0.0.1/32")


def local_policy(resolve: Callable[[str, int], list[str]] | None = None, **kw: Any) -> OutboundPolicy:
    return OutboundPolicy(
        allow_http=True,
        allow_nets=LOCAL,
        resolve=resolve or StubResolver({"hooks.test": ["127.0.0.1"]}),
        **kw,
    )


def test_post_reaches_the_allowed_receiver_with_the_host_header(
    receiver: Receiver, dialled: list[Any]
) -> None:
    result = post(
        local_policy(),
        f"http://hooks.test:{receiver.port}/hook",
        b'{"a":1}',
        {"Content-Type": "application/json"},
    )
    assert (result.status_code, result.body, result.truncated) == (200, b"thanks", False)
    assert 0 <= result.duration_ms < 5000
    assert receiver.seen == [("POST", "/hook", f"hooks.test:{receiver.port}", b'{"a":1}')]
    assert dialled == ["127.0.0.1"]


@pytest.mark.parametrize(
    "host", ["127.0.0.2", "[::1]", "0x7f000002", "2130706434", "0.0.0.0", "0", "localhost"]
)
def test_loopback_outside_the_allow_list_is_refused_before_connecting(
    host: str, receiver: Receiver, receiver6: Receiver, dialled: list[Any]
) -> None:
    # 0.0.0.0 would reach the receiver on 127.0.0.1 if it were dialled; [::1] has its own.
    port = receiver6.port if host == "[::1]" else receiver.port
    p = local_policy(resolve=StubResolver({"localhost": ["127.0.0.1", "::1"]}))
    with pytest.raises(UrlNotAllowed):
        post(p, f"http://{host}:{port}/hook", b"{}", {})
    with pytest.raises(UrlNotAllowed):
        download(p, f"http://{host}:{port}/file", Path("/nonexistent/never-written"), max_bytes=1000)
    assert dialled == [] and receiver.seen == [] and receiver6.seen == []


def test_a_redirect_is_the_answer_for_post(receiver: Receiver) -> None:
    result = post(local_policy(), f"http://127.0.0.1:{receiver.port}/redirect", b"{}", {})
    assert result.status_code == 302
    assert [s[1] for s in receiver.seen] == ["/redirect"]  # not followed


def test_post_reads_at_most_its_cap(receiver: Receiver) -> None:
    result = post(local_policy(), f"http://127.0.0.1:{receiver.port}/big", b"{}", {}, max_response_bytes=1000)
    assert (len(result.body), result.truncated) == (1000, True)


def test_download_writes_the_file_and_names_it(receiver: Receiver, tmp_path: Path) -> None:
    dest = tmp_path / "in"
    result = download(
        local_policy(), f"http://hooks.test:{receiver.port}/photos/x.png?sig=1", dest, max_bytes=1000
    )
    assert dest.read_bytes() == b"file body"
    assert (result.filename, result.content_type, result.size) == ("a b.png", "image/png", 9)
    assert result.final_url == f"http://hooks.test:{receiver.port}/photos/x.png?sig=1"


def test_a_redirect_to_the_metadata_address_is_refused_without_connecting(
    receiver: Receiver, tmp_path: Path, dialled: list[Any]
) -> None:
    with pytest.raises(UrlNotAllowed, match="metadata"):
        download(
            local_policy(), f"http://127.0.0.1:{receiver.port}/to-metadata", tmp_path / "in", max_bytes=1000
        )
    assert dialled == ["127.0.0.1"] and not (tmp_path / "in").exists()


def test_redirects_are_followed_three_times_and_no_more(receiver: Receiver, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{receiver.port}"
    result = download(local_policy(), f"{base}/chain/1", tmp_path / "ok", max_bytes=1000)  # 3 redirects
    assert (tmp_path / "ok").read_bytes() == b"end of chain" and result.final_url == f"{base}/chain/4"
    receiver.seen.clear()
    with pytest.raises(OutboundError) as caught:
        download(local_policy(), f"{base}/chain/0?sig=secret", tmp_path / "no", max_bytes=1000)  # 4 redirects
    assert (caught.value.code, caught.value.transient) == ("too_many_redirects", False)
    assert (
        str(caught.value) == f"{base}/chain/0 redirects more than 3 times"
    )  # no query: it may be a signature
    assert [s[1] for s in receiver.seen] == ["/chain/0?sig=secret", "/chain/1", "/chain/2", "/chain/3"]
    assert not (tmp_path / "no").exists()


class Rebinding:
    """A resolver whose answers change: first `first`, then `then` for every later lookup."""

    def __init__(self, first: str, then: str) -> None:
        self.answers = [first]
        self.then = then
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return [self.answers.pop(0) if self.answers else self.then]


def test_dns_rebinding_cannot_move_the_connection(receiver: Receiver, dialled: list[Any]) -> None:
    # Checked as 127.0.0.1 (allowed); any later lookup would say 169.254.169.254.
    rebinding = Rebinding("127.0.0.1", "169.254.169.254")
    result = post(local_policy(resolve=rebinding), f"http://rebind.test:{receiver.port}/hook", b"{}", {})
    assert result.status_code == 200 and rebinding.calls == 1
    assert dialled == ["127.0.0.1"]  # the checked address, not a second lookup
    assert receiver.seen[0][2] == f"rebind.test:{receiver.port}"


def test_dns_rebinding_on_a_redirect_is_caught_by_the_recheck(
    receiver: Receiver, tmp_path: Path, dialled: list[Any]
) -> None:
    # The first URL is an IP literal; the redirect names a host whose lookup now says 10.0.0.1.
    rebinding = Rebinding("10.0.0.1", "10.0.0.1")
    with pytest.raises(UrlNotAllowed, match=r"10\.0\.0\.1"):
        download(
            local_policy(resolve=rebinding),
            f"http://127.0.0.1:{receiver.port}/to-name",
            tmp_path / "in",
            max_bytes=1000,
        )
    assert dialled == ["127.0.0.1"]


def test_a_slow_answer_times_out(receiver: Receiver) -> None:
    started = time.monotonic()
    with pytest.raises(OutboundError) as caught:
        post(local_policy(read_timeout_s=0.3), f"http://127.0.0.1:{receiver.port}/slow", b"{}", {})
    assert (caught.value.code, caught.value.transient) == ("timeout", True)
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    with pytest.raises(OutboundError, match="in time"):
        post(local_policy(), f"http://127.0.0.1:{receiver.port}/slow", b"{}", {}, timeout_s=0.4)
    assert time.monotonic() - started < 1.5


def test_a_download_that_drips_hits_the_total_timeout(receiver: Receiver, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(OutboundError) as caught:  # every byte is in time; the whole is not
        download(
            local_policy(total_timeout_s=0.5),
            f"http://127.0.0.1:{receiver.port}/drip",
            tmp_path / "in",
            max_bytes=1000,
        )
    assert caught.value.code == "timeout" and time.monotonic() - started < 2
    assert not (tmp_path / "in").exists()


def test_nothing_listening_is_a_transient_connection_error(tmp_path: Path) -> None:
    from tests.helpers import free_port

    with pytest.raises(OutboundError) as caught:
        download(local_policy(), f"http://127.0.0.1:{free_port()}/", tmp_path / "in", max_bytes=10)
    assert (caught.value.code, caught.value.transient) == ("connect_failed", True)


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
def test_the_size_cap_holds_with_or_without_a_length(path: str, receiver: Receiver, tmp_path: Path) -> None:
    dest = tmp_path / "in"
    with pytest.raises(DownloadTooLarge, match="100000 bytes"):
        download(local_policy(), f"http://127.0.0.1:{receiver.port}{path}", dest, max_bytes=100_000)
    assert not dest.exists()  # the partial file is removed
    ok = download(local_policy(), f"http://127.0.0.1:{receiver.port}{path}", dest, max_bytes=1_000_000)
    assert ok.size == dest.stat().st_size == 200_000


@pytest.mark.parametrize(("path", "transient"), [("/missing", False), ("/down", True)])
def test_an_error_status_says_whether_to_try_again(
    path: str, transient: bool, receiver: Receiver, tmp_path: Path
) -> None:
    with pytest.raises(OutboundError) as caught:
        download(local_policy(), f"http://127.0.0.1:{receiver.port}{path}", tmp_path / "in", max_bytes=1000)
    assert (caught.value.code, caught.value.transient) == ("http_status", transient)
    assert (
        str(caught.value)
        == f"127.0.0.1 answered {'404 Not Found' if path == '/missing' else '503 Service Unavailable'}"
    )


# -- https: SNI and the certificate are checked against the name, the address is the checked one ---


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path, ssl.SSLContext]:
    """A self-made CA, a server certificate for `name` signed by it, and a client context trusting it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exportd test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return cert_path, key_path, client


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, ssl.SSLContext, list[str | None]]]:
    cert, key, client = _certificate(tmp_path, "hooks.test")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    server = Receiver(("127.0.0.1", 0))
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    for served in _serve(server):
        yield served, client, names


def test_https_sends_the_name_as_sni_and_verifies_the_certificate_against_it(
    tls_receiver: tuple[Receiver, ssl.SSLContext, list[str | None]], dialled: list[Any]
) -> None:
    server, client, names = tls_receiver
    resolver = StubResolver({"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    p = OutboundPolicy(allow_http=False, allow_nets=LOCAL, resolve=resolver, verify=client)
    result = post(p, f"https://hooks.test:{server.port}/hook", b"{}", {})
    assert result.status_code == 200 and names == ["hooks.test"] and dialled == ["127.0.0.1"]
    assert server.seen[0][2] == f"hooks.test:{server.port}"
    # Same address, another name: the certificate does not match it, so nothing is sent.
    with pytest.raises(OutboundError) as caught:
        post(p, f"https://other.test:{server.port}/hook", b"{}", {})
    assert caught.value.code == "tls_failed"
    assert len(server.seen) == 1
