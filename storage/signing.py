"""Download links: HMAC-SHA256 over the object key and the expiry, with a key id for rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from urllib.parse import quote, urlencode

_DOMAIN = b"exportd-link-v1"  # binds a signature to this use of the key

# ASCII digits only: str.isdigit() also accepts "²", which int() refuses. Twelve digits reach the
# year 33658; more would only make int() slower (or, past 4,300 digits, raise).
_EXPIRY = re.compile(r"[0-9]{1,12}")


class LinkError(Exception):
    """Base of refused links."""


class BadSignature(LinkError):
    """The link was not made by a current key for this object and expiry."""


class LinkExpired(LinkError):
    """The link was genuine but its time is up."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Signer:
    """Signs with the first key; verifies with any key, so old links live through a rotation."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self._active_kid = keys[0][0]
        self._keys = dict(keys)

    def _mac(self, secret: bytes, object_key: str, expires: int) -> str:
        message = b"\n".join((_DOMAIN, object_key.encode(), str(expires).encode()))
        return _b64(hmac.new(secret, message, hashlib.sha256).digest())

    def query(self, object_key: str, *, expires: int) -> str:
        """The query string that authorises reading `object_key` until `expires` (epoch seconds)."""
        sig = self._mac(self._keys[self._active_kid], object_key, expires)
        return urlencode({"exp": expires, "kid": self._active_kid, "sig": sig})

    def url(self, base_url: str, object_key: str, *, expires: int) -> str:
        """A full download link for an object under /v1/files/."""
        return f"{base_url}/v1/files/{quote(object_key)}?{self.query(object_key, expires=expires)}"

    def verify(
        self, object_key: str, *, exp: str | None, kid: str | None, sig: str | None, now: float
    ) -> int:
        """The link's expiry (epoch seconds), once it is genuine and current.

        Raises BadSignature or LinkExpired.
        """
        if not exp or not kid or not sig or not _EXPIRY.fullmatch(exp):
            raise BadSignature("the link is missing its signature")
        expires = int(exp)
        secret = self._keys.get(kid)
        # Compute a MAC even for an unknown kid so timing does not tell which key ids exist.
        expected = self._mac(secret or b"\0" * 32, object_key, expires)
        if not hmac.compare_digest(expected.encode(), sig.encode()) or secret is None:
            raise BadSignature("the link's signature is not valid")
        if expires < now:
            raise LinkExpired("the link has expired")
        return expires
