"""Sealing data at rest: AES-256-GCM under DATA_ENCRYPTION_KEY, with rotation."""

import secrets

import pytest

from app.security.sealing import Sealer, SealError

OLD = secrets.token_bytes(32)
NEW = secrets.token_bytes(32)


def test_a_sealed_value_opens_to_what_was_sealed_and_hides_it() -> None:
    sealer = Sealer(NEW)

    sealed = sealer.seal(b"a link worth an account", purpose="mail")

    assert b"a link worth an account" not in sealed
    assert sealer.open(sealed, purpose="mail") == b"a link worth an account"


def test_sealing_twice_gives_two_different_values() -> None:
    sealer = Sealer(NEW)
    assert sealer.seal(b"same", purpose="mail") != sealer.seal(b"same", purpose="mail")


def test_a_value_sealed_under_a_previous_key_opens_during_a_rotation() -> None:
    sealed = Sealer(OLD).seal(b"queued yesterday", purpose="mail")

    assert Sealer(NEW, [OLD]).open(sealed, purpose="mail") == b"queued yesterday"


def test_a_value_sealed_under_a_retired_key_is_refused() -> None:
    sealed = Sealer(OLD).seal(b"queued last year", purpose="mail")

    with pytest.raises(SealError, match="not configured"):
        Sealer(NEW).open(sealed, purpose="mail")


def test_new_values_are_sealed_under_the_current_key() -> None:
    sealed = Sealer(NEW, [OLD]).seal(b"today", purpose="mail")

    assert Sealer(NEW).open(sealed, purpose="mail") == b"today"
    with pytest.raises(SealError):
        Sealer(OLD).open(sealed, purpose="mail")


@pytest.mark.parametrize("position", [0, 5, 15, 30, -1], ids=lambda p: f"byte {p}")
def test_an_altered_value_is_refused(position: int) -> None:
    sealer = Sealer(NEW)
    sealed = bytearray(sealer.seal(b"untouched", purpose="mail"))
    sealed[position] ^= 0x01

    with pytest.raises(SealError):
        sealer.open(bytes(sealed), purpose="mail")


def test_a_value_sealed_for_one_purpose_does_not_open_for_another() -> None:
    sealer = Sealer(NEW)
    sealed = sealer.seal(b"a totp secret", purpose="totp")

    with pytest.raises(SealError):
        sealer.open(sealed, purpose="mail")


@pytest.mark.parametrize(
    "garbage", [b"", b"\x01", b"\x02" + bytes(60)], ids=["empty", "short", "v2"]
)
def test_garbage_is_refused(garbage: bytes) -> None:
    with pytest.raises(SealError):
        Sealer(NEW).open(garbage, purpose="mail")


def test_a_key_shorter_than_32_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Sealer(b"x" * 31)


def test_subkeys_are_stable_per_name_and_key_and_independent_of_each_other() -> None:
    current = Sealer(NEW, [OLD])

    assert current.current.subkey("recovery codes") == Sealer(NEW).current.subkey("recovery codes")
    assert current.current.subkey("recovery codes") != current.current.subkey("other")
    assert current.current.subkey("recovery codes") != Sealer(OLD).current.subkey("recovery codes")
    assert len(current.current.subkey("recovery codes")) == 32


def test_a_key_is_found_by_its_id_while_it_is_configured() -> None:
    rotated = Sealer(NEW, [OLD])
    old_kid = Sealer(OLD).current.kid

    assert [key.kid for key in rotated.keys] == [rotated.current.kid, old_kid]
    assert rotated.key(old_kid) is not None
    assert Sealer(NEW).key(old_kid) is None
    assert Sealer(NEW).key("not hex") is None
