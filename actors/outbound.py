"""Every connection exportd makes to a URL a client gave: webhooks and URL inputs (issue 14).

One policy (OutboundPolicy) decides whether a URL may be reached, and the two functions that
connect, `post` (webhooks: no redirects) and `download` (URL inputs: a few redirects, each checked
again), only ever connect to an address the policy checked:

- The URL is parsed once, here. Only http and https; http only in development. No credentials in
  the URL (`user:pass@host`): they would sit readable in the job record and in logs, and a URL
  with an `@` is the classic way to make two parsers disagree about the host.
- The host is resolved once (`policy.resolve`, getaddrinfo by default) and EVERY address it
  resolves to is checked; one refused address refuses the URL. Refused: unspecified, loopback,
  private, link-local (the cloud metadata addresses 169.254.169.254 and fd00:ec2::254 among
  them), shared/CGNAT (100.64.0.0/10), multicast, reserved and anything else that is not a
  global unicast address. IPv6 addresses that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d,
  IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16) are judged by
  the IPv4 address they carry; Teredo (2001::/32) is refused. Networks in
  EXPORTD_OUTBOUND_ALLOW_NETS are allowed whatever they are (a receiver inside the cluster).
- IPv4 hosts written the old ways that inet_aton accepts (2130706433, 0x7f000001, 017700000001,
  127.1) are read as the address they mean, without asking the resolver, and checked as such.
- The connection goes to the checked address itself (the request URL holds the IP literal), with
  the original Host header, and for https the SNI and certificate check against the host name.
  There is no second lookup, so a name that resolves to a public address for the check and to
  an internal one a moment later (DNS rebinding) still reaches only the checked address.
- Proxies from the environment are ignored (trust_env off); responses are read raw
  (Accept-Encoding: identity), so a size cap counts the bytes that arrive, not a decompression.

Heavy parts (httpx) are imported when a connection is made, so the API can check URLs at submit
without loading an HTTP client.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import ssl
import threading
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Longest URL accepted (the job record and the logs hold it).
MAX_URL_CHARS = 2048

#: What `post` reads of a response body at most, unless told otherwise.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024

USER_AGENT = "exportd"

_REDIRECTS = (301, 302, 303, 307, 308)

#: Named addresses, so that a refusal says what the address is.
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_COMPAT = ipaddress.ip_network("::/96")  # IPv4-compatible (deprecated), and :: and ::1
_TEREDO = ipaddress.ip_network("2001::/32")

#: A host that may be an IPv4 address in one of the forms inet_aton reads (decimal, octal, hex, short).
_LEGACY_IPV4 = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)


class UrlNotAllowed(Exception):
    """The URL is refused by the outbound policy. str(exc) is the reason, a sentence."""

    code = "url_not_allowed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutboundError(Exception):
    """A connection failed or its answer was not usable.

    `transient`: worth trying again later (timeouts, connection errors, 5xx); False for answers
    that will not change (a 404, too many redirects).
    """

    def __init__(self, code: str, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient


class DownloadTooLarge(OutboundError):
    """The download is larger than its cap; what had arrived was removed."""

    def __init__(self, message: str) -> None:
        super().__init__("input_too_large", message, transient=False)


def url_context(upload_id: str) -> str:
    """What a URL input's URL is sealed to in its job record (storage/sealing.py)."""
    return f"{upload_id}:url"


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, as getaddrinfo gives them (TCP). Raises OSError."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def parse_allow_nets(raw: str) -> tuple[IPNetwork, ...]:
    """ "10.0.0.0/8, fd12::/16, 127.0.0.1" -> networks. Raises ValueError naming the bad entry."""
    nets: list[IPNetwork] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a network in CIDR form (e.g. 10.0.0.0/8): {exc}") from None
    return tuple(nets)


@dataclass(frozen=True)
class Target:
    """A URL the policy allowed: where to connect, and what to say there."""

    url: str  # the URL as checked (no fragment, no credentials)
    scheme: str  # http or https
    host: str  # the host name (IDNA, lower case) or the IP address as text, without brackets
    port: int
    path: str  # path and query, at least "/"
    addresses: tuple[IPAddress, ...]  # every address the host resolved to, all checked

    @property
    def host_is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def url_for(self, address: IPAddress) -> str:
        """The request URL that connects to `address` (an IP literal: nothing left to resolve)."""
        literal = f"[{address.compressed}]" if address.version == 6 else address.compressed
        return f"{self.scheme}://{literal}:{self.port}{self.path}"


@dataclass(frozen=True)
class PostResult:
    status_code: int
    body: bytes  # at most max_response_bytes of it
    duration_ms: int
    truncated: bool = False  # the body was longer than max_response_bytes


@dataclass(frozen=True)
class DownloadResult:
    filename: str  # from Content-Disposition, else the last segment of the final URL's path ("" if none)
    content_type: str  # the Content-Type header without parameters ("" if none)
    size: int
    final_url: str  # after redirects


@dataclass(frozen=True)
class OutboundPolicy:
    #: http:// URLs too (development); production allows https only.
    allow_http: bool = False
    #: Networks allowed whatever they are (EXPORTD_OUTBOUND_ALLOW_NETS).
    allow_nets: tuple[IPNetwork, ...] = ()
    #: host, port -> addresses as text. Tests stub it; the default asks the system resolver.
    resolve: Callable[[str, int], list[str]] = field(default=system_resolve, compare=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0  # between two reads
    total_timeout_s: float = 120.0  # a whole download (post takes its own timeout_s)
    #: TLS verification: True (the system's and certifi's roots), or an ssl.SSLContext (tests).
    verify: Any = field(default=True, compare=False)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> OutboundPolicy:
        """The policy of these Settings: http only in development, their allow-list."""
        return cls(
            allow_http=bool(settings.development),
            allow_nets=parse_allow_nets(settings.outbound_allow_nets),
            **overrides,
        )

    # -- the check -----------------------------------------------------------------------------

    def check(self, url: str) -> Target:
        """The URL's target, every address it resolves to checked. Raises UrlNotAllowed, or
        OutboundError (code dns_failed, transient) when the host does not resolve."""
        scheme, host, port, path = self._parse(url)
        literal = _ip_literal(host)
        if literal is not None:
            addresses: tuple[IPAddress, ...] = (literal,)
        else:
            addresses = self._resolve(host, port)
        for address in addresses:
            why = self.refusal(address)
            if why:
                shown = host if literal is None or host == address.compressed else f"{host} ({address})"
                subject = (
                    f"the address {shown}"
                    if literal is not None
                    else f"the host {host} resolves to {address}"
                )
                raise UrlNotAllowed(
                    f"{subject}, {why}; exportd does not connect to such addresses "
                    "(the operator can allow a network with EXPORTD_OUTBOUND_ALLOW_NETS)"
                )
        netloc = f"[{host}]" if ":" in host else host
        default = 443 if scheme == "https" else 80
        checked_url = f"{scheme}://{netloc}{'' if port == default else f':{port}'}{path}"
        return Target(url=checked_url, scheme=scheme, host=host, port=port, path=path, addresses=addresses)

    def refusal(self, address: IPAddress) -> str:
        """Why `address` is refused ("" if it is allowed): a clause, e.g. "a private address"."""
        if any(address in net for net in self.allow_nets if net.version == address.version):
            return ""
        if address.version == 6:
            assert isinstance(address, ipaddress.IPv6Address)
            if address.scope_id:
                return "an address with a zone (link-local)"
            if address in _TEREDO:
                return "a Teredo tunnel address"
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                inner = self.refusal(embedded)
                return f"which carries {embedded}, {inner}" if inner else ""
        return _kind_refused(address)

    def _parse(self, url: str) -> tuple[str, str, int, str]:
        if not isinstance(url, str) or not url:
            raise UrlNotAllowed("the URL is empty")
        if len(url) > MAX_URL_CHARS:
            raise UrlNotAllowed(f"the URL is {len(url)} characters long, more than {MAX_URL_CHARS}")
        if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
            raise UrlNotAllowed("the URL holds spaces, control characters or backslashes")
        try:
            parts = urllib.parse.urlsplit(url)
            port_given = parts.port
        except ValueError as exc:
            raise UrlNotAllowed(f"the URL cannot be read: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            accepted = "http and https" if self.allow_http else "https"
            raise UrlNotAllowed(
                f"only {accepted} URLs are accepted, not {scheme or 'a URL without a scheme'}"
            )
        if scheme == "http" and not self.allow_http:
            raise UrlNotAllowed("only https URLs are accepted (http is allowed in development mode only)")
        if "@" in parts.netloc:
            raise UrlNotAllowed(
                "credentials in the URL (user:password@host) are not accepted: they would be kept "
                "readable in the job record; give a URL that carries its own authorisation (a signed URL)"
            )
        raw_host = parts.hostname or ""
        if not raw_host:
            raise UrlNotAllowed("the URL has no host")
        host = _normal_host(raw_host)
        port = port_given if port_given is not None else (443 if scheme == "https" else 80)
        if port == 0:
            raise UrlNotAllowed("the URL's port must be from 1 to 65535")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return scheme, host, port, path

    def _resolve(self, host: str, port: int) -> tuple[IPAddress, ...]:
        try:
            raw = self.resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise OutboundError("dns_failed", f"the host {host} could not be resolved ({exc})") from None
        addresses: list[IPAddress] = []
        for text in raw:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                raise UrlNotAllowed(
                    f"the host {host} resolves to {text!r}, which is not an IP address"
                ) from None
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise OutboundError("dns_failed", f"the host {host} resolves to no address")
        return tuple(addresses)


def _normal_host(raw: str) -> str:
    """The host in the form it is resolved and compared in: IDNA ASCII, lower case, no trailing dot
    for IP literals. Raises UrlNotAllowed."""
    host = raw.lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise UrlNotAllowed(f"the host {raw!r} is not a valid international domain name") from None
    if not re.fullmatch(r"[a-z0-9._:%\-_]+", host) or ("%" in host and ":" not in host):
        # A % belongs only to an IPv6 zone; a percent-encoded name is not resolved as written.
        raise UrlNotAllowed(f"the host {raw!r} holds characters a host name cannot have")
    return host


def _ip_literal(host: str) -> IPAddress | None:
    """The IP address `host` is written as, in any form a resolver would read as one, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    bare = host[:-1] if host.endswith(".") else host
    if bare and _LEGACY_IPV4.fullmatch(bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64) or (address in _COMPAT and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _kind_refused(address: IPAddress) -> str:
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address in _METADATA:
        return "the cloud metadata address (link-local)"
    if address.is_link_local:
        return "a link-local address"
    if address.version == 4 and address in _CGNAT:
        return "a shared (CGNAT) address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return ""


# -- connecting ----------------------------------------------------------------------------------


def _httpx() -> Any:
    import httpx

    return httpx


_default_tls: ssl.SSLContext | None = None
_default_tls_lock = threading.Lock()


def _tls(verify: Any) -> Any:
    """`verify` as httpx takes it; True becomes one shared context (building one costs ~50 ms)."""
    global _default_tls
    if verify is not True:
        return verify
    with _default_tls_lock:
        if _default_tls is None:
            _default_tls = _httpx().create_ssl_context()
        return _default_tls


@contextlib.contextmanager
def _exchange(
    policy: OutboundPolicy,
    target: Target,
    method: str,
    *,
    headers: dict[str, str],
    body: bytes | None,
    deadline: float,
) -> Iterator[httpx.Response]:
    """The response of one request to `target`'s checked addresses (the next one only when one
    cannot be connected to). Raises OutboundError."""
    httpx = _httpx()

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OutboundError("timeout", f"{target.host} did not answer in time")
        return remaining

    sent = {k: v for k, v in headers.items() if k.lower() not in ("host", "accept-encoding")}
    sent.setdefault("User-Agent", USER_AGENT)
    sent["Host"] = target.host_header
    sent["Accept-Encoding"] = "identity"  # the size cap counts bytes as they arrive
    extensions: dict[str, Any] = {}
    if target.scheme == "https" and not target.host_is_ip:
        # SNI and the certificate check are against the host name, not the address dialled.
        extensions["sni_hostname"] = target.host
    last: OutboundError | None = None
    with httpx.Client(
        transport=httpx.HTTPTransport(verify=_tls(policy.verify), retries=0),
        follow_redirects=False,
        trust_env=False,
    ) as client:
        for address in target.addresses:
            remaining = left()
            timeout = httpx.Timeout(
                connect=min(policy.connect_timeout_s, remaining),
                read=min(policy.read_timeout_s, remaining),
                write=min(policy.read_timeout_s, remaining),
                pool=min(policy.connect_timeout_s, remaining),
            )
            request = client.build_request(
                method, target.url_for(address), headers=sent, content=body, timeout=timeout,
                extensions=extensions,
            )  # fmt: skip
            try:
                response = client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = _transport_error(exc, target, address)
                continue
            except httpx.TransportError as exc:
                raise _transport_error(exc, target, address) from None
            try:
                yield response
            except httpx.TransportError as exc:
                raise _transport_error(exc, target, address) from None
            finally:
                response.close()
            return
    assert last is not None
    raise last


def _transport_error(exc: Exception, target: Target, address: IPAddress) -> OutboundError:
    httpx = _httpx()
    where = target.host if target.host == address.compressed else f"{target.host} ({address})"
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return OutboundError("timeout", f"{where} did not answer in time ({type(exc).__name__})")
    if "CERTIFICATE_VERIFY_FAILED" in detail or "certificate" in detail.lower():
        return OutboundError(
            "tls_failed", f"the TLS certificate of {target.host} could not be verified: {detail}"
        )
    if isinstance(exc, (httpx.ConnectError,)):
        return OutboundError("connect_failed", f"could not connect to {where}: {detail}")
    return OutboundError("connection_failed", f"the connection to {where} failed: {detail}")


def _read_capped(response: httpx.Response, cap: int, deadline: float, host: str) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            return b"".join(chunks)[:cap], True
        if time.monotonic() > deadline:
            raise OutboundError("timeout", f"{host} did not finish its answer in time")
    return b"".join(chunks), False


def post(
    policy: OutboundPolicy,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float = 10,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> PostResult:
    """POST `body` to `url` under the policy; no redirects (a 3xx is the answer). Any status is a
    result; raises UrlNotAllowed, or OutboundError for timeouts and connection errors."""
    start = time.monotonic()
    deadline = start + timeout_s
    target = policy.check(url)
    with _exchange(policy, target, "POST", headers=headers, body=body, deadline=deadline) as response:
        data, truncated = _read_capped(response, max_response_bytes, deadline, target.host)
        status = response.status_code
    return PostResult(
        status_code=status,
        body=data,
        duration_ms=round((time.monotonic() - start) * 1000),
        truncated=truncated,
    )


def download(
    policy: OutboundPolicy,
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    max_redirects: int = 3,
    timeout_s: float | None = None,
    headers: dict[str, str] | None = None,
) -> DownloadResult:
    """GET `url` into `dest`, following at most `max_redirects` redirects, each checked again.

    The size cap holds while the body streams: past it, what arrived is removed. Raises
    UrlNotAllowed, DownloadTooLarge, OutboundError (`transient` says whether to try again).
    """
    deadline = time.monotonic() + (timeout_s if timeout_s is not None else policy.total_timeout_s)
    current = url
    for hop in range(max_redirects + 1):
        target = policy.check(current)
        with _exchange(
            policy, target, "GET", headers=headers or {}, body=None, deadline=deadline
        ) as response:
            status = response.status_code
            if status in _REDIRECTS and response.headers.get("location"):
                location = response.headers["location"]
                current = urllib.parse.urljoin(target.url, location)
                if hop == max_redirects:
                    raise OutboundError(
                        "too_many_redirects",
                        f"{_without_query(url)} redirects more than {max_redirects} times",
                        transient=False,
                    )
                continue
            if not 200 <= status < 300:
                raise OutboundError(
                    "http_status",
                    f"{target.host} answered {status} {response.reason_phrase}".rstrip(),
                    transient=status >= 500 or status in (408, 425, 429),
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise DownloadTooLarge(
                    f"{_without_query(target.url)} is {int(declared)} bytes, more than the limit of {max_bytes} bytes"
                )
            size = _stream_to(response, dest, max_bytes, deadline, target)
            return DownloadResult(
                filename=_filename(response.headers.get("content-disposition", ""), target.path),
                content_type=response.headers.get("content-type", "").split(";")[0].strip().lower(),
                size=size,
                final_url=target.url,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _stream_to(response: httpx.Response, dest: Path, max_bytes: int, deadline: float, target: Target) -> int:
    size = 0
    try:
        with dest.open("wb") as fh:
            for chunk in response.iter_raw():
                size += len(chunk)
                if size > max_bytes:
                    raise DownloadTooLarge(
                        f"{_without_query(target.url)} is larger than the limit of {max_bytes} bytes"
                    )
                if time.monotonic() > deadline:
                    raise OutboundError("timeout", f"{target.host} did not send the whole file in time")
                fh.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return size


def _without_query(url: str) -> str:
    """A URL as messages show it: its query (often a signature) left out."""
    return url.split("?", 1)[0].split("#", 1)[0]


def _filename(disposition: str, path: str) -> str:
    """The file's name from Content-Disposition, else the URL path's last segment: no directories,
    no control characters, at most 200 characters ("" if none)."""
    name = ""
    if disposition:
        msg = Message()
        msg["content-disposition"] = disposition
        name = str(msg.get_filename() or "")
    if not name:
        name = urllib.parse.unquote(path.split("?", 1)[0].rsplit("/", 1)[-1])
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip(" .")
    return name[:200]
