"""Refresh tokens: 256 random bits, stored only as their SHA-256 digest."""

import hashlib
import re

from app.security.refresh_tokens import MAX_REFRESH_TOKEN_LENGTH, digest, new_refresh_token


def test_a_refresh_token_is_43_url_safe_characters_of_fresh_randomness() -> None:
    tokens = {new_refresh_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", token) for token in tokens)
    assert len(next(iter(tokens))) < MAX_REFRESH_TOKEN_LENGTH


def test_the_digest_is_the_sha256_of_the_token() -> None:
    token = new_refresh_token()
    assert digest(token) == hashlib.sha256(token.encode()).digest()
    assert len(digest(token)) == 32
    assert digest(token) != digest(new_refresh_token())


def test_text_that_is_not_valid_utf8_still_has_a_digest_instead_of_an_error() -> None:
    # A lone surrogate can arrive from a JSON body ("\ud800"); it is simply no token of ours.
    assert len(digest("\ud800")) == 32
    assert digest("\ud800") != digest("\ud801")
