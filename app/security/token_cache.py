"""A cache of verified access tokens, so a client repeating its token skips the signature check.

Keyed by the token's SHA-256 digest; a hit still checks expiry (the only check whose
answer changes with time) and the caller still checks revocation.
"""

import hashlib
from collections import OrderedDict
from typing import Protocol

from app.clock import Clock, system_clock
from app.security.access_tokens import AccessClaims, TokenRejected

MAX_ENTRIES = 10_000


class Decoder(Protocol):
    def decode(self, token: str) -> AccessClaims: ...


class VerifiedTokens:
    def __init__(
        self,
        decoder: Decoder,
        *,
        leeway_seconds: int,
        max_entries: int = MAX_ENTRIES,
        clock: Clock = system_clock,
    ):
        self._decoder = decoder
        self._clock = clock
        self._leeway = leeway_seconds
        self._max_entries = max_entries
        self._verified: OrderedDict[bytes, AccessClaims] = OrderedDict()

    def decode(self, token: str) -> AccessClaims:
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        claims = self._verified.get(key)
        if claims is None:
            claims = self._decoder.decode(token)  # raises on any failed check; nothing cached
            self._verified[key] = claims
            if len(self._verified) > self._max_entries:
                self._verified.popitem(last=False)
        # Same rule as PyJWT's: expired once exp <= now - leeway.
        if claims.expires_at <= self._clock() - self._leeway:
            self._verified.pop(key, None)
            raise TokenRejected("token expired")
        return claims
