"""The verified-token cache: a repeated token skips the signature check, never the expiry."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.security.access_tokens import AccessClaims, AccessTokenCodec, TokenRejected
from app.security.token_cache import VerifiedTokens
from tests.security.test_access_tokens import make_codec


class CountingDecoder:
    """The real codec, counting the tokens it had to verify."""

    def __init__(self, codec: AccessTokenCodec) -> None:
        self.codec = codec
        self.decoded: list[str] = []

    def decode(self, token: str) -> AccessClaims:
        self.decoded.append(token)
        return self.codec.decode(token)


def _mint(codec: AccessTokenCodec, expires_in: timedelta, user_id: int = 7) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    return codec.mint(
        user_id=user_id,
        email="ada@example.com",
        phone=None,
        session_id=uuid.uuid4(),
        issued_at=now - timedelta(seconds=5),
        expires_at=now + expires_in,
    )


@pytest.fixture
def decoder() -> CountingDecoder:
    return CountingDecoder(make_codec(leeway_seconds=30))


def test_a_repeated_token_is_verified_once_and_answers_the_same_claims(
    decoder: CountingDecoder,
) -> None:
    cache = VerifiedTokens(decoder, leeway_seconds=0)
    token = _mint(decoder.codec, timedelta(minutes=5))
    first, second = cache.decode(token), cache.decode(token)
    assert first == second
    assert first.user_id == 7
    assert decoder.decoded == [token]


def test_a_refused_token_is_not_cached_and_is_checked_again_each_time(
    decoder: CountingDecoder,
) -> None:
    cache = VerifiedTokens(decoder, leeway_seconds=0)
    signed = _mint(decoder.codec, timedelta(minutes=5))
    tampered = signed.rsplit(".", 1)[0] + "." + "A" * 43
    for _ in range(2):
        with pytest.raises(TokenRejected):
            cache.decode(tampered)
    assert decoder.decoded == [tampered, tampered]


def test_a_cached_token_that_expired_is_refused_and_forgotten(decoder: CountingDecoder) -> None:
    now = [time.time()]
    cache = VerifiedTokens(decoder, leeway_seconds=10, clock=lambda: now[0])
    token = _mint(decoder.codec, timedelta(minutes=1))
    claims = cache.decode(token)
    # Within the leeway after exp: still accepted from the cache.
    now[0] = claims.expires_at + 9.5
    assert cache.decode(token) == claims
    now[0] = claims.expires_at + 10
    with pytest.raises(TokenRejected, match="expired"):
        cache.decode(token)
    assert len(decoder.decoded) == 1


def test_the_oldest_entry_leaves_a_full_cache(decoder: CountingDecoder) -> None:
    cache = VerifiedTokens(decoder, leeway_seconds=0, max_entries=2)
    tokens = [_mint(decoder.codec, timedelta(minutes=5), user_id=n) for n in range(3)]
    for token in tokens:
        cache.decode(token)
    cache.decode(tokens[2])
    cache.decode(tokens[0])
    assert decoder.decoded == [*tokens, tokens[0]]
