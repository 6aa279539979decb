"""How a grant becomes a response: the token pair, never cached, and in cookie mode the
refresh token in its cookie instead of the body."""

from fastapi import Response

from app.api.cookies import set_session_cookies
from app.config import Settings
from app.schemas import TokenPair
from app.services.sessions import Grant


def token_pair(grant: Grant, response: Response, settings: Settings) -> TokenPair:
    """The response body of every grant; in cookie mode the refresh token goes in a cookie
    instead, where no script can read it. Routes returning it set response_model_exclude_none."""
    # RFC 6749 §5.1: responses that carry tokens are never cached.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    if settings.TOKEN_COOKIE_MODE:
        set_session_cookies(
            response,
            refresh_token=grant.refresh_token,
            max_age=grant.refresh_expires_in,
            secure=settings.TOKEN_COOKIE_SECURE,
        )
    return TokenPair(
        access_token=grant.access_token,
        expires_in=grant.expires_in,
        refresh_token=None if settings.TOKEN_COOKIE_MODE else grant.refresh_token,
        refresh_expires_in=grant.refresh_expires_in,
    )
