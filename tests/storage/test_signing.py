from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from storage.signing import BadSignature, LinkExpired, Signer

KEYS = [("k2", b"s" * 32), ("k1", b"o" * 32)]


def _params(signer: Signer, key: str, expires: int) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(signer.query(key, expires=expires)).items()}


def test_a_fresh_link_verifies() -> None:
    signer = Signer(KEYS)
    p = _params(signer, "outputs/j/a.pdf", 2000)
    signer.verify("outputs/j/a.pdf", exp=p["exp"], kid=p["kid"], sig=p["sig"], now=1000)
    assert p["kid"] == "k2"  # the first key signs


def test_tampered_signature_is_refused() -> None:
    signer = Signer(KEYS)
    p = _params(signer, "outputs/j/a.pdf", 2000)
    for i in range(len(p["sig"])):
        flipped = p["sig"][:i] + ("A" if p["sig"][i] != "A" else "B") + p["sig"][i + 1 :]
        with pytest.raises(BadSignature):
            signer.verify("outputs/j/a.pdf", exp=p["exp"], kid=p["kid"], sig=flipped, now=1000)


def test_link_for_another_object_or_expiry_is_refused() -> None:
    signer = Signer(KEYS)
    p = _params(signer, "outputs/j/a.pdf", 2000)
    with pytest.raises(BadSignature):
        signer.verify("outputs/j/b.pdf", exp=p["exp"], kid=p["kid"], sig=p["sig"], now=1000)
    with pytest.raises(BadSignature):
        signer.verify("outputs/j/a.pdf", exp="2001", kid=p["kid"], sig=p["sig"], now=1000)


def test_expired_link_is_refused() -> None:
    signer = Signer(KEYS)
    p = _params(signer, "outputs/j/a.pdf", 2000)
    with pytest.raises(LinkExpired):
        signer.verify("outputs/j/a.pdf", exp=p["exp"], kid=p["kid"], sig=p["sig"], now=2001)


def test_unknown_key_id_and_missing_parts_are_refused() -> None:
    signer = Signer(KEYS)
    p = _params(signer, "outputs/j/a.pdf", 2000)
    with pytest.raises(BadSignature):
        signer.verify("outputs/j/a.pdf", exp=p["exp"], kid="nope", sig=p["sig"], now=1000)
    with pytest.raises(BadSignature):
        signer.verify("outputs/j/a.pdf", exp=None, kid=p["kid"], sig=p["sig"], now=1000)
    with pytest.raises(BadSignature):
        signer.verify("outputs/j/a.pdf", exp="-5", kid=p["kid"], sig=p["sig"], now=1000)


def test_links_signed_before_a_key_rotation_still_verify() -> None:
    old = Signer([("k1", b"o" * 32)])
    p = _params(old, "outputs/j/a.pdf", 2000)
    rotated = Signer(KEYS)  # k2 now signs, k1 still verifies
    rotated.verify("outputs/j/a.pdf", exp=p["exp"], kid=p["kid"], sig=p["sig"], now=1000)
    retired = Signer([("k2", b"s" * 32)])
    with pytest.raises(BadSignature):
        retired.verify("outputs/j/a.pdf", exp=p["exp"], kid=p["kid"], sig=p["sig"], now=1000)


@pytest.mark.parametrize("exp", ["²", "١٢٣", "2000 ", "+2000", "2_000", "9" * 5000])
def test_an_expiry_that_is_not_ascii_digits_is_refused_as_a_bad_signature(exp: str) -> None:
    # "²".isdigit() is true while int("²") raises: such a link was a 500, not a 403.
    signer = Signer(KEYS)
    p = _params(signer, "outputs/j/a.pdf", 2000)
    with pytest.raises(BadSignature, match="missing its signature"):
        signer.verify("outputs/j/a.pdf", exp=exp, kid=p["kid"], sig=p["sig"], now=1000)


def test_verify_returns_the_expiry_it_checked() -> None:
    signer = Signer(KEYS)
    p = _params(signer, "outputs/j/a.pdf", 2000)
    assert signer.verify("outputs/j/a.pdf", exp=p["exp"], kid=p["kid"], sig=p["sig"], now=1000) == 2000
