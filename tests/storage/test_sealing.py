"""Secret options sealed in job records: readable only with a configured key, bound to their job."""

from __future__ import annotations

import pytest

from storage.sealing import Sealer, Unsealable, is_sealed

K1 = ("k1", b"a" * 40)
K2 = ("k2", b"b" * 40)


def test_a_sealed_value_hides_the_secret_and_opens_with_its_key() -> None:
    token = Sealer((K1,)).seal("hunter2", context="job1:password")
    assert is_sealed(token) and "hunter2" not in token
    assert Sealer((K1,)).unseal(token, context="job1:password") == "hunter2"


def test_a_sealed_value_opens_after_rotation_while_its_key_is_listed() -> None:
    token = Sealer((K1,)).seal("hunter2", context="c")
    assert Sealer((K2, K1)).unseal(token, context="c") == "hunter2"
    with pytest.raises(Unsealable, match="no longer configured"):
        Sealer((K2,)).unseal(token, context="c")


def test_a_tampered_or_moved_sealed_value_is_refused() -> None:
    sealer = Sealer((K1,))
    token = sealer.seal("hunter2", context="job1:password")
    with pytest.raises(Unsealable):
        sealer.unseal(token, context="job2:password")  # copied into another job's record
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(Unsealable):
        sealer.unseal(flipped, context="job1:password")
