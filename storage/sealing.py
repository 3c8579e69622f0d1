"""Secret option values (a PDF's password) sealed before they are stored in a job record.

A job record lives in Redis for the whole retention period; a secret in it must not be readable
there. The API seals each secret value with AES-256-GCM under a key derived (HKDF-SHA256) from the
current signing key, which the workers have too; a worker unseals it just before the conversion.
Rotation works as for links: the first key seals, every listed key can unseal, by its key id.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "sealed:v1:"
_INFO = b"exportd option sealing v1"


class Unsealable(Exception):
    """A sealed value whose key is gone (rotated out) or whose bytes were altered."""


def _derive(secret: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)
    return AESGCM(key)


class Sealer:
    def __init__(self, keys: tuple[tuple[str, bytes], ...]) -> None:
        if not keys:
            raise ValueError("sealing needs at least one signing key")
        self._sealing_kid = keys[0][0]
        self._ciphers = {kid: _derive(secret) for kid, secret in keys}

    def seal(self, value: str, *, context: str) -> str:
        """`value` sealed, bound to `context` (e.g. the job id and option name)."""
        nonce = os.urandom(12)
        sealed = self._ciphers[self._sealing_kid].encrypt(nonce, value.encode(), context.encode())
        return f"{PREFIX}{self._sealing_kid}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def unseal(self, token: str, *, context: str) -> str:
        """Raises Unsealable."""
        if not is_sealed(token):
            raise Unsealable("not a sealed value")
        kid, _, data = token.removeprefix(PREFIX).partition(":")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise Unsealable(f"the key {kid!r} that sealed it is no longer configured")
        try:
            raw = base64.urlsafe_b64decode(data)
            return cipher.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise Unsealable("the sealed value was altered") from exc


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)
