"""A resource server that trusts our access tokens knowing only the service's JWKS URL.

It shares no secret with the service: it fetches the public keys from
`/.well-known/jwks.json` (PyJWT's PyJWKClient keeps the set for a while and fetches it again
when a token names a kid it has not seen, which is how it follows a key rotation), and checks
each token with the same care as the service: the key named by `kid` decides the algorithm,
`typ` must be `at+jwt`, `crit` is refused, `iss`, `aud`, `exp`, `nbf` and `iat` are checked
with no leeway by default. What it cannot know is that a session has ended: it accepts an
access token until the token expires, so keep `TOKEN_ACCESS_TTL_SECONDS` short.

Run it beside the service (the service must sign with RS256, ES256 or EdDSA):

    JWKS_URL=http://127.0.0.1:8000/.well-known/jwks.json \\
    TOKEN_ISSUER=http://localhost:8000 TOKEN_AUDIENCE=API \\
    uvicorn --app-dir examples resource_server:app --port 8001

    curl -s http://127.0.0.1:8001/hello -H "Authorization: Bearer $ACCESS"
    curl -s http://127.0.0.1:8001/admin/hello -H "Authorization: Bearer $ACCESS"
    curl -s http://127.0.0.1:8001/mfa/hello -H "Authorization: Bearer $ACCESS"

`/admin/hello` needs the role `admin` in the token's `roles` claim. The claim holds the
roles the user had when the token was minted (a role given or taken by an administrator
reaches the tokens at their next refresh), so a resource server's role checks lag by at
most one access-token lifetime; a token minted before roles existed has none.
`/mfa/hello` needs `mfa` in the token's `amr` claim (RFC 8176): a login with a TOTP or
recovery code, kept by every refresh of that session.

Settings (environment variables): `JWKS_URL`, `TOKEN_ISSUER` and `TOKEN_AUDIENCE` (required,
equal to the service's), `TOKEN_LEEWAY_SECONDS` (default 0), `JWKS_CACHE_SECONDS` (how long
the key set is kept, default 300), `JWKS_REFETCH_COOLDOWN_SECONDS` (least time between two
fetches caused by unknown kids, default 30; it stops a flood of made-up kids from hammering
the service).
"""

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request

MAX_TOKEN_LENGTH = 8 * 1024
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - RFC 9068 media type
# A JWKS holds public keys only: an HMAC algorithm here would be the RFC 8725 §2.1 confusion.
ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]


@dataclass(frozen=True)
class Config:
    jwks_url: str
    issuer: str
    audience: str
    leeway_seconds: int = 0
    jwks_cache_seconds: int = 300
    refetch_cooldown_seconds: int = 30

    @classmethod
    def from_environment(cls) -> "Config":
        missing = [
            name
            for name in ("JWKS_URL", "TOKEN_ISSUER", "TOKEN_AUDIENCE")
            if not os.environ.get(name)
        ]
        if missing:
            sys.exit(f"configuration error: {', '.join(missing)} must be set")
        try:
            return cls(
                jwks_url=os.environ["JWKS_URL"],
                issuer=os.environ["TOKEN_ISSUER"],
                audience=os.environ["TOKEN_AUDIENCE"],
                leeway_seconds=int(os.environ.get("TOKEN_LEEWAY_SECONDS", "0")),
                jwks_cache_seconds=int(os.environ.get("JWKS_CACHE_SECONDS", "300")),
                refetch_cooldown_seconds=int(os.environ.get("JWKS_REFETCH_COOLDOWN_SECONDS", "30")),
            )
        except ValueError:
            sys.exit("configuration error: the *_SECONDS settings must be whole numbers")


class Unauthorized(HTTPException):
    """RFC 6750 §3: 401 with a Bearer challenge; the description never echoes the token."""

    def __init__(self, description: str | None = None) -> None:
        challenge = "Bearer"
        if description is not None:
            challenge += f' error="invalid_token", error_description="{description}"'
        super().__init__(
            401, description or "a bearer access token is required", {"WWW-Authenticate": challenge}
        )


class AccessTokenVerifier:
    def __init__(self, config: Config) -> None:
        self._config = config
        # Caches the whole key set (never single keys: a key removed from the set must stop
        # verifying once the set is fetched again), and fetches it again on an unknown kid.
        self._jwks = jwt.PyJWKClient(
            config.jwks_url,
            cache_jwk_set=True,
            lifespan=config.jwks_cache_seconds,
            cache_keys=False,
            timeout=5,
            cooldown_duration=config.refetch_cooldown_seconds,
        )

    def verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("unknown or missing key id")
        # RFC 9068 §4 and RFC 7515 §4.1.9: explicit typing, compared case-insensitively.
        typ = header.get("typ")
        if (
            not isinstance(typ, str)
            or typ.lower().removeprefix("application/") != ACCESS_TOKEN_TYPE
        ):
            raise Unauthorized("wrong token type")
        # RFC 7515 §4.1.11: we understand no extension.
        if "crit" in header:
            raise Unauthorized("unsupported critical header")
        try:
            # Only our configured JWKS URL is ever fetched: jku, x5u, jwk and x5c are ignored.
            signing_key = self._jwks.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError:
            raise HTTPException(503, "the key set cannot be fetched") from None
        except jwt.PyJWTError:
            raise Unauthorized("unknown or missing key id") from None
        algorithm = signing_key.algorithm_name
        # RFC 8725 §3.1: the key decides the algorithm, never the token.
        if algorithm not in ALLOWED_ALGORITHMS or header.get("alg") != algorithm:
            raise Unauthorized("algorithm not allowed")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=[algorithm],
                issuer=self._config.issuer,
                audience=self._config.audience,
                leeway=self._config.leeway_seconds,
                options={
                    "require": REQUIRED_CLAIMS,
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_iss": True,
                    "verify_aud": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token not yet valid") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("bad signature") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("wrong audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"missing claim {exc.claim}") from None
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        # RFC 7519 §2: NumericDate is a JSON number; PyJWT would also take "1767225600".
        for name in ("exp", "iat", "nbf"):
            if isinstance(claims[name], bool) or not isinstance(claims[name], int | float):
                raise Unauthorized(f"{name} is not a number")
        if not isinstance(claims["sub"], str):
            raise Unauthorized("malformed subject")
        return claims


config = Config.from_environment()
verifier = AccessTokenVerifier(config)
app = FastAPI(title="Example resource server")


# A plain `def`: FastAPI runs it in the threadpool, so a key-set fetch never blocks the loop.
def access_claims(request: Request) -> dict[str, Any]:
    values = request.headers.getlist("authorization")
    if len(values) != 1:
        raise Unauthorized()
    scheme, _, credentials = values[0].partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized()
    token = credentials.strip(" ")
    if not token:
        raise Unauthorized("missing token")
    return verifier.verify(token)


Claims = Annotated[dict[str, Any], Depends(access_claims)]


class Forbidden(HTTPException):
    """RFC 6750 §3.1: a valid token without the scope (here, the role) the resource needs."""

    def __init__(self, role: str) -> None:
        super().__init__(
            403,
            f"the {role} role is required",
            {"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
        )


def require_role(role: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A dependency: the claims of a token whose `roles` claim holds `role`."""

    def with_role(claims: Claims) -> dict[str, Any]:
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or role not in roles:
            raise Forbidden(role)
        return claims

    return with_role


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/hello")
async def hello(claims: Claims) -> dict[str, Any]:
    """A protected resource: who the token says the caller is."""
    return {"sub": claims["sub"], "email": claims.get("email")}


@app.get("/admin/hello")
async def admin_hello(
    claims: Annotated[dict[str, Any], Depends(require_role("admin"))],
) -> dict[str, Any]:
    """A resource for administrators only: the token's `roles` must include `admin`."""
    return {"sub": claims["sub"], "roles": claims["roles"]}


@app.get("/mfa/hello")
async def mfa_hello(claims: Claims) -> dict[str, Any]:
    """A resource for sessions that began with two factors: RFC 8176 `amr` holds `mfa`.

    The service mints `amr` in every token and keeps it across refreshes; a token minted
    before `amr` existed reads as `["pwd"]`.
    """
    methods = claims.get("amr", ["pwd"])
    if not isinstance(methods, list) or "mfa" not in methods:
        raise HTTPException(
            403,
            "a login with a second factor is required",
            {"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
        )
    return {"sub": claims["sub"], "amr": methods}
