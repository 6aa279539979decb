"""Cookie mode for browser apps (TOKEN_COOKIE_MODE): the refresh token in an HttpOnly cookie,
guarded by a double-submit CSRF token.

No script can read the refresh token, so an injected script cannot carry the session away.
The browser sends that cookie by itself, so a request that spends it must show it comes from
a page of ours: SameSite=Strict keeps other sites' requests from carrying the cookie at all,
and the X-CSRF-Token header must repeat the csrf_token cookie, which only our own pages can
read (OWASP CSRF Prevention Cheat Sheet, double-submit cookie).
"""

import hmac
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

REFRESH_COOKIE = "refresh_token"
CSRF_COOKIE = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# Only /account/refresh and /account/logout read the refresh cookie; no other path sees it.
REFRESH_COOKIE_PATH = "/account"
# Scripts on every page of the app read the CSRF token.
CSRF_COOKIE_PATH = "/"


def set_session_cookies(
    response: Response, *, refresh_token: str, max_age: int, secure: bool
) -> None:
    """The refresh token (HttpOnly) and a fresh CSRF token (script-readable), both SameSite=Strict;
    both live as long as the refresh token."""
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=max_age,
        path=REFRESH_COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(32),
        max_age=max_age,
        path=CSRF_COOKIE_PATH,
        secure=secure,
        httponly=False,
        samesite="strict",
    )


def clear_session_cookies(response: Response, *, secure: bool) -> None:
    # A cookie is only replaced by one with the same name, path and domain.
    response.delete_cookie(
        REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, secure=secure, httponly=True, samesite="strict"
    )
    response.delete_cookie(
        CSRF_COOKIE, path=CSRF_COOKIE_PATH, secure=secure, httponly=False, samesite="strict"
    )


def refresh_cookie(request: Request) -> str | None:
    return request.cookies.get(REFRESH_COOKIE) or None


def csrf_header_matches(request: Request) -> bool:
    """Double submit: the X-CSRF-Token header equals the csrf_token cookie, compared in
    constant time; a missing or empty cookie matches nothing."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    return bool(cookie) and hmac.compare_digest(header.encode(), cookie.encode())


DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, the port made explicit; None if unreadable."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def is_cross_site(request: Request, *, issuer: str, allowed_origins: Iterable[str]) -> bool:
    """Whether a request comes from a page of another origin, as far as the browser says.

    Refused: `Sec-Fetch-Site: cross-site`, or an `Origin` that is neither the request's own
    (its scheme as uvicorn sees it, which is X-Forwarded-Proto behind a trusted proxy, and
    its Host), nor TOKEN_ISSUER's, nor in CORS_ORIGINS (the opaque origin `null` only when
    listed there). A request with neither header (curl, a server) is no browser's.
    """
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    allowed = list(allowed_origins)
    if origin.strip() == "null":
        return "null" not in allowed
    presented = _origin(origin)
    if presented is None:
        return True
    host = request.headers.get("host", "")
    own = [f"{request.url.scheme}://{host}", issuer, *allowed]
    return presented not in {_origin(candidate) for candidate in own}
