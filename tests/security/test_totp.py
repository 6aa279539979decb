"""TOTP windows at step boundaries (the time is passed in, nothing sleeps) and recovery codes."""

import base64
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from app.security import totp

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
# The first instant of a 30 s step.
STEP_START = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
STEP = totp.step_at(STEP_START)


def code_of(step: int) -> str:
    return pyotp.TOTP(SECRET).at(step * 30)


@pytest.mark.parametrize(
    ("offset_seconds", "code_step", "accepted_step"),
    [
        (0, STEP, STEP),
        (0, STEP - 1, STEP - 1),
        (0, STEP + 1, STEP + 1),
        (29, STEP - 1, STEP - 1),
        (29, STEP + 1, STEP + 1),
        (30, STEP - 1, None),
        (-1, STEP + 1, None),
        (-1, STEP - 2, STEP - 2),
        (0, STEP - 2, None),
        (0, STEP + 2, None),
        (59, STEP, STEP),
        (60, STEP, None),
        (90, STEP, None),
    ],
    ids=[
        "current step at its start",
        "previous step at the start",
        "next step at the start",
        "previous step at the last second",
        "next step at the last second",
        "two steps back once the step turns",
        "two steps ahead a second before the turn",
        "previous of the previous step a second before",
        "two steps back",
        "two steps ahead",
        "the previous step at the end of the next",
        "two steps back as the step after next begins",
        "three steps back",
    ],
)
def test_a_code_is_accepted_within_one_step_either_side(
    offset_seconds: int, code_step: int, accepted_step: int | None
) -> None:
    now = STEP_START + timedelta(seconds=offset_seconds)
    assert totp.matching_step(SECRET, code_of(code_step), now=now) == accepted_step


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12 456"], ids=repr)
def test_text_that_cannot_be_a_code_matches_no_step(code: str) -> None:
    assert totp.matching_step(SECRET, code, now=STEP_START) is None


def test_surrounding_spaces_are_ignored() -> None:
    assert totp.matching_step(SECRET, f" {code_of(STEP)} ", now=STEP_START) == STEP


def test_a_new_secret_has_160_bits_and_gives_an_otpauth_uri() -> None:
    secret = totp.new_secret()
    assert len(base64.b32decode(secret)) == 20
    assert totp.new_secret() != secret
    uri = totp.otpauth_uri(secret, account="ada@example.com", issuer="JWT auth API")
    assert uri.startswith("otpauth://totp/JWT%20auth%20API:ada%40example.com?")
    assert f"secret={secret}" in uri
    assert "issuer=JWT%20auth%20API" in uri


def test_recovery_codes_are_ten_distinct_codes_of_the_alphabet() -> None:
    codes = totp.new_recovery_codes()
    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        first, dash, second = code.partition("-")
        assert dash == "-"
        assert len(first) == len(second) == 5
        assert set(first + second) <= set("0123456789abcdefghjkmnpqrstvwxyz")


def test_the_alphabet_leaves_out_letters_that_read_as_digits() -> None:
    assert len(totp.RECOVERY_ALPHABET) == 32
    assert not set("ilou") & set(totp.RECOVERY_ALPHABET)
    # Over many codes every character of the alphabet appears, and no other.
    seen = set("".join(totp.new_recovery_codes(200)).replace("-", ""))
    assert seen == set(totp.RECOVERY_ALPHABET)


@pytest.mark.parametrize(
    ("typed", "normalized"),
    [
        ("abcde-fghjk", "abcdefghjk"),
        ("ABCDE-FGHJK", "abcdefghjk"),
        ("abcdefghjk", "abcdefghjk"),
        (" abcde-fghjk ", "abcdefghjk"),
        ("abcde-fghji", None),
        ("abcde-fghj", None),
        ("abcde-fghjkm", None),
        ("", None),
    ],
    ids=repr,
)
def test_recovery_codes_compare_without_dash_or_case(typed: str, normalized: str | None) -> None:
    assert totp.normalize_recovery_code(typed) == normalized


def test_recovery_digests_depend_on_the_key() -> None:
    one = totp.recovery_digest(b"k" * 32, "abcdefghjk")
    assert len(one) == 32
    assert one == totp.recovery_digest(b"k" * 32, "abcdefghjk")
    assert one != totp.recovery_digest(b"j" * 32, "abcdefghjk")
