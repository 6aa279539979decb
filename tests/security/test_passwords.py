"""Password rules (length after NFKC, blocklist, no composition rules) and argon2id hashing."""

import asyncio

import pytest

from app.security.passwords import (
    PASSWORD_MAX_LENGTH,
    HashQueueFull,
    PasswordHasher,
    common_passwords,
    cpu_count,
    normalize_password,
    password_problem,
)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        pytest.param("short", "must be at least 15 characters", id="too-short"),
        pytest.param("x" * (PASSWORD_MAX_LENGTH + 1), "must be at most 256 characters", id="long"),
        pytest.param("1q2w3e4r5t6y7u8i9o0p", "is too common", id="common"),
        pytest.param("QAZWSXEDCRFVTGB", "is too common", id="common-any-case"),
        pytest.param("lowercase letters only here", None, id="no-composition-rules"),
        pytest.param("x" * PASSWORD_MAX_LENGTH, None, id="exactly-the-maximum"),
    ],
)
def test_a_new_password_is_judged_by_length_and_blocklist_only(
    password: str, problem: str | None
) -> None:
    assert password_problem(password, min_length=15) == problem


def test_length_is_counted_in_code_points_after_nfkc() -> None:
    # U+FB03 (the "ffi" ligature) is one code point that NFKC turns into three.
    assert normalize_password("\ufb03") == "ffi"
    assert password_problem("\ufb03" * 5, min_length=15) is None
    assert password_problem("\ufb03" * 4, min_length=15) is not None


def test_the_shipped_blocklist_is_loaded_and_lower_cased() -> None:
    words = common_passwords()
    assert len(words) > 10_000
    assert "password" in words
    assert all(word == word.lower() for word in list(words)[:500])


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(memory_kib=1024, time_cost=1, parallelism=1)


def test_a_hash_is_argon2id_with_the_configured_parameters(hasher: PasswordHasher) -> None:
    hashed = asyncio.run(hasher.hash("a long enough test passphrase"))
    assert hashed.startswith("$argon2id$v=19$m=1024,t=1,p=1$")


def test_verification_accepts_the_nfkc_equivalent_of_the_password(
    hasher: PasswordHasher,
) -> None:
    async def scenario() -> tuple[bool, str | None]:
        # Full-width letters (U+FF21 onwards) are NFKC-equal to ASCII ones.
        full_width = "".join(chr(ord(c) + 0xFEE0) for c in "FULL") + "-WIDTH passphrase"
        hashed = await hasher.hash(full_width)
        return await hasher.verify("FULL-WIDTH passphrase", hashed)

    assert asyncio.run(scenario()) == (True, None)


def test_a_hash_with_other_parameters_is_upgraded_on_verification(
    hasher: PasswordHasher,
) -> None:
    old = PasswordHasher(memory_kib=2048, time_cost=1, parallelism=1)

    async def scenario() -> tuple[bool, str | None]:
        return await hasher.verify("the password", await old.hash("the password"))

    valid, new_hash = asyncio.run(scenario())
    assert valid
    assert new_hash is not None
    assert new_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")


def test_an_unknown_account_still_costs_one_verification(hasher: PasswordHasher) -> None:
    before = hasher.verifications
    assert asyncio.run(hasher.verify("any password", None)) == (False, None)
    assert hasher.verifications == before + 1


def test_a_full_argon2_queue_refuses_at_once_and_frees_its_places() -> None:
    # Costly enough that the first operations are still running when the last arrive.
    hasher = PasswordHasher(memory_kib=19456, time_cost=4, parallelism=1, queue_limit=2)
    places = cpu_count() + 2

    async def scenario() -> tuple[list[object], str]:
        results = await asyncio.gather(
            *(hasher.hash(f"password number {n}") for n in range(places + 3)),
            return_exceptions=True,
        )
        # Every place is free again: one more operation is admitted.
        return list(results), await hasher.hash("one more password")

    try:
        results, after = asyncio.run(scenario())
    finally:
        hasher.shutdown()
    refused = [result for result in results if isinstance(result, HashQueueFull)]
    assert len(refused) == 3
    assert all(isinstance(result, str) for result in results[:places])
    assert after.startswith("$argon2id$")
    assert hasher.queue_depth == 0
