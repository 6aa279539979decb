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
