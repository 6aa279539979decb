"""Password rules (length after NFKC, blocklist, no composition rules) and argon2id hashing."""

import asyncio

import pytest
from pwdlib.hashers.argon2 import Argon2Hasher

from app.security.passwords import (
    PASSWORD_MAX_LENGTH,
    HashQueueFull,
    PasswordHasher,
    common_passwords,
    contains_email_piece,
    cpu_count,
    email_pieces,
    has_too_few_distinct_characters,
    is_repetition,
    is_sequence,
    normalize_password,
    password_problem,
)

# 256 code points, no rule broken: the maximum is allowed.
MAXIMAL = ("the quick brown fox jumps over a lazy dog " * 7)[: PASSWORD_MAX_LENGTH - 1] + "!"


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        pytest.param("short", "must be at least 15 characters", id="too-short"),
        pytest.param("x" * (PASSWORD_MAX_LENGTH + 1), "must be at most 256 characters", id="long"),
        pytest.param("1q2w3e4r5t6y7u8i9o0p", "is too common", id="common"),
        pytest.param("QAZWSXEDCRFVTGB", "is too common", id="common-any-case"),
        pytest.param("lowercase letters only here", None, id="no-composition-rules"),
        pytest.param(MAXIMAL, None, id="exactly-the-maximum"),
    ],
)
def test_a_new_password_is_judged_by_length_and_blocklist_only(
    password: str, problem: str | None
) -> None:
    assert password_problem(password, min_length=15) == problem


def test_length_is_counted_in_code_points_after_nfkc() -> None:
    # U+FB03 (the "ffi" ligature) is one code point that NFKC turns into three.
    assert normalize_password("\ufb03") == "ffi"
    assert password_problem("quick brownz\ufb03", min_length=15) is None
    assert password_problem("quick brown\ufb03", min_length=15) is not None


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        pytest.param(" " * 15, True, id="spaces"),
        pytest.param("aaaaaaaaaaaaaaa", True, id="one-letter"),
        pytest.param("abababababababab", True, id="two-letters"),
        pytest.param("AaBbCcDdAaBbCcDd", True, id="four-letters-case-folded"),
        pytest.param("abcdeabcdeabcde", False, id="five-letters"),
    ],
)
def test_too_few_distinct_characters_are_counted_case_folded(password: str, expected: bool) -> None:
    assert has_too_few_distinct_characters(password) is expected


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        pytest.param("123456789012345", True, id="digits-wrap-9-to-0"),
        pytest.param("987654321098765", True, id="digits-down-wrap-0-to-9"),
        pytest.param("abcdefghijklmnop", True, id="alphabet"),
        pytest.param("ZYXWVUTSRQPONMLK", True, id="alphabet-down-upper-case"),
        pytest.param("AbCdEfGhIjKlMnOp", True, id="alphabet-mixed-case"),
        pytest.param("uvwxyzabcdefghij", False, id="alphabet-does-not-wrap"),
        pytest.param("123456789012346", False, id="one-step-off"),
        pytest.param("1234567abcdefgh", False, id="digits-then-letters"),
    ],
)
def test_a_run_is_each_character_the_next_or_each_the_previous(
    password: str, expected: bool
) -> None:
    assert is_sequence(password) is expected


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        pytest.param("passwordpassword", True, id="twice"),
        pytest.param("abcabcabcabcabc", True, id="five-times"),
        pytest.param("xyzzyxyzzyxyzzy", True, id="three-times"),
        pytest.param("passwordpassword!", False, id="plus-one"),
        pytest.param("Passwordpassword", False, id="case-matters"),
    ],
)
def test_a_repetition_is_one_shorter_string_repeated(password: str, expected: bool) -> None:
    assert is_repetition(password) is expected


@pytest.mark.parametrize(
    ("email", "pieces"),
    [
        pytest.param("ada.lovelace@example.com", ["lovelace"], id="dot"),
        pytest.param("grace_hopper-navy@example.com", ["grace", "hopper", "navy"], id="_-"),
        pytest.param("alan+turing@example.com", ["alan"], id="tag-dropped"),
        pytest.param("Bob@example.com", [], id="shorter-than-4"),
    ],
)
def test_the_pieces_of_the_local_part(email: str, pieces: list[str]) -> None:
    assert email_pieces(email) == pieces


@pytest.mark.parametrize(
    ("password", "email", "expected"),
    [
        pytest.param("my name is LOVELACE, hi", "ada.lovelace@example.com", True, id="piece"),
        pytest.param("alan.turing@example.com", "alan.turing@example.com", True, id="own-email"),
        pytest.param("codebreaker turing x", "alan+turing@example.com", False, id="tag"),
        pytest.param("example domain phrase", "ada@example.com", False, id="domain"),
    ],
)
def test_a_piece_of_the_email_is_found_case_insensitively(
    password: str, email: str, expected: bool
) -> None:
    assert contains_email_piece(password, email) is expected


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        pytest.param(" " * 15, "must have at least 5 different characters", id="spaces"),
        pytest.param(
            "123456789012345", "must not be a run of consecutive letters or digits", id="run"
        ),
        pytest.param(
            "passwordpassword", "must not be one shorter string repeated", id="repetition"
        ),
        pytest.param(
            "ada.lovelace@example.com",
            "must not contain a part of the email address",
            id="own-email",
        ),
        pytest.param("a long enough test passphrase", None, id="fine"),
    ],
)
def test_each_rule_has_its_own_message(password: str, problem: str | None) -> None:
    assert password_problem(password, min_length=15, email="ada.lovelace@example.com") == problem


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


@pytest.fixture
def argon2_verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every argon2 verification actually computed (the real one, counted on its way)."""
    computed: list[str] = []
    real_verify = Argon2Hasher.verify

    def counting_verify(self: Argon2Hasher, password: str | bytes, hash: str | bytes) -> bool:
        computed.append(str(hash))
        return real_verify(self, password, hash)

    monkeypatch.setattr(Argon2Hasher, "verify", counting_verify)
    return computed


def test_an_unknown_account_still_costs_one_verification(
    hasher: PasswordHasher, argon2_verifications: list[str]
) -> None:
    async def scenario() -> tuple[tuple[bool, str | None], tuple[bool, str | None]]:
        stored = await hasher.hash("the account's real passphrase")
        known = await hasher.verify("a wrong passphrase guessed", stored)
        known_cost = len(argon2_verifications)
        unknown = await hasher.verify("a wrong passphrase guessed", None)
        assert len(argon2_verifications) - known_cost == known_cost
        return known, unknown

    known, unknown = asyncio.run(scenario())
    assert known == unknown == (False, None)
    # One argon2 computation each, the unknown account's against a real argon2id hash.
    assert len(argon2_verifications) == 2
    assert argon2_verifications[1].startswith("$argon2id$v=19$m=1024,t=1,p=1$")


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
