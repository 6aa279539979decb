"""Every error the service answers, declared once with its status, title and type.

Two renderers: RFC 9457 problem+json everywhere, and RFC 6749 §5.2 on the
OAuth 2.0 token endpoint. No exception's own text ever reaches a client.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

from starlette.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"
    default_detail: ClassVar[str] = "the server could not complete the request"
    # RFC 6749 §5.2 error code when raised on the token endpoint; None keeps problem+json.
    oauth_error: ClassVar[str | None] = None
    # A security decision that must be committed although the request fails.
    keeps_changes: ClassVar[bool] = False

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    @property
    def type(self) -> str:
        return f"/problems/{self.slug}"

    def headers(self, realm: str) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }


def _bearer_challenge(realm: str, **params: str) -> str:
    # RFC 6750 §3: auth-params are quoted strings; quotes and backslashes are escaped.
    parts = [f'realm="{_quote(realm)}"'] + [f'{k}="{_quote(v)}"' for k, v in params.items()]
    return "Bearer " + ", ".join(parts)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class AuthenticationRequired(AppError):
    """No bearer credentials at all: RFC 6750 §3.1 says the challenge carries no error code."""

    status = 401
    slug = "authentication-required"
    title = "Authentication required"
    default_detail = "a bearer access token is required"

    def headers(self, realm: str) -> dict[str, str]:
        return {"WWW-Authenticate": _bearer_challenge(realm)}


class InvalidToken(AppError):
    status = 401
    slug = "invalid-token"
    title = "Invalid token"
    default_detail = "the token is invalid"
    oauth_error = "invalid_grant"

    def headers(self, realm: str) -> dict[str, str]:
        return {
            "WWW-Authenticate": _bearer_challenge(
                realm, error="invalid_token", error_description=self.detail
            )
        }


class RefreshTokenReused(InvalidToken):
    # RFC 9700 §4.14.2: a replayed refresh token revokes its whole family, and
    # that revocation stands although the request answers 401.
    keeps_changes = True
    default_detail = "refresh token reuse detected; the session has been revoked"


class InvalidAuthorizationRequest(AppError):
    """RFC 6750 §3.1 invalid_request: more than one way of sending the token."""

    status = 400
    slug = "invalid-request"
    title = "Invalid request"
    default_detail = "send exactly one Authorization header and no token in the query string"

    def headers(self, realm: str) -> dict[str, str]:
        return {"WWW-Authenticate": _bearer_challenge(realm, error="invalid_request")}


class InvalidCredentials(AppError):
    status = 400
    slug = "invalid-credentials"
    title = "Invalid credentials"
    default_detail = "invalid credentials"
    oauth_error = "invalid_grant"


class WrongPassword(AppError):
    status = 400
    slug = "wrong-password"
    title = "Wrong password"
    default_detail = "the current password is wrong"


class InvalidLink(AppError):
    """A mailed link's token that is unknown, used, expired or superseded: one answer for
    all, so the body says nothing about which."""

    status = 400
    slug = "invalid-link"
    title = "Invalid link"
    default_detail = "this link is invalid or has expired; ask for a new one"


class TwoFactorRequired(AppError):
    """The right password of an account with two-factor on, without a code: said only after
    the password was checked, and no failed attempt (the client asks for the code next)."""

    status = 401
    slug = "two-factor-required"
    title = "Two-factor authentication required"
    default_detail = "this account needs a one-time code: send otp or recovery_code"
    oauth_error = "invalid_grant"

    def headers(self, realm: str) -> dict[str, str]:
        return {"WWW-Authenticate": _bearer_challenge(realm)}


class InvalidCode(AppError):
    """A wrong, expired or replayed one-time code (counted as a failed attempt)."""

    status = 400
    slug = "invalid-code"
    title = "Invalid code"
    default_detail = "the code is wrong, expired or already used"


class CsrfFailed(AppError):
    """Cookie mode: a refresh token taken from the cookie needs the double-submit CSRF header."""

    status = 403
    slug = "csrf-failed"
    title = "CSRF check failed"
    default_detail = "the X-CSRF-Token header must equal the csrf_token cookie"


class AccountDisabled(AppError):
    """The right password of a disabled account (said only after the password was checked)."""

    status = 403
    slug = "account-disabled"
    title = "Account disabled"
    default_detail = "this account is disabled"
    oauth_error = "invalid_grant"


class EmailNotVerified(AppError):
    """REQUIRE_VERIFIED_EMAIL: the right password of an account whose address is unverified
    (said only after the password was checked)."""

    status = 403
    slug = "email-not-verified"
    title = "Email not verified"
    default_detail = "verify the email address first: use the link mailed to it"
    oauth_error = "invalid_grant"


class Forbidden(AppError):
    """A valid token whose user lacks the role the route needs (RFC 6750 §3.1)."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"
    default_detail = "the caller lacks the role this resource needs"

    def headers(self, realm: str) -> dict[str, str]:
        return {"WWW-Authenticate": _bearer_challenge(realm, error="insufficient_scope")}


class CrossSiteRequest(AppError):
    """Cookie mode: a request from another origin must not set the refresh cookie (login
    CSRF would put the victim's browser in the attacker's session). problem+json on the
    token endpoint too: it is no OAuth error."""

    status = 403
    slug = "cross-site-request"
    title = "Cross-site request refused"
    default_detail = "a request from another origin cannot start or continue a session here"


class NotFound(AppError):
    status = 404
    slug = "not-found"
    title = "Not found"
    default_detail = "no such resource"


class MethodNotAllowed(AppError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"
    default_detail = "this method is not allowed on this resource"


class EmailTaken(AppError):
    status = 409
    slug = "email-taken"
    title = "Email already registered"
    default_detail = "an account with this email already exists"


class Conflict(AppError):
    status = 409
    slug = "conflict"
    title = "Conflict"
    default_detail = "the request conflicts with the current state of the resource"


class RequestTooLarge(AppError):
    status = 413
    slug = "request-too-large"
    title = "Request body too large"
    default_detail = "the request body exceeds 64 KiB"


class UnsupportedMediaType(AppError):
    """A JSON endpoint given a body of another Content-Type (RFC 9110 §15.5.16)."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"
    default_detail = "send the body as JSON with Content-Type: application/json"


class ValidationFailed(AppError):
    status = 422
    slug = "validation-error"
    title = "Invalid request body"
    default_detail = "the request is malformed"
    oauth_error = "invalid_request"

    def __init__(self, errors: Sequence[dict[str, Any]], detail: str | None = None) -> None:
        super().__init__(detail)
        self.errors = list(errors)

    def body(self) -> dict[str, Any]:
        return super().body() | {"errors": self.errors}


class WeakPassword(ValidationFailed):
    def __init__(self, field: str, message: str) -> None:
        super().__init__([{"loc": ["body", field], "msg": message}], f"{field}: {message}")


class Throttled(AppError):
    status = 429
    slug = "too-many-requests"
    title = "Too many requests"
    default_detail = "too many attempts; try again later"
    # RFC 6749 §5.2 has no code for this; temporarily_unavailable is the closest.
    oauth_error = "temporarily_unavailable"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self, realm: str) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(AppError):
    """A dependency is down, slow or saturated: RFC 9110 §15.6.4, with when to retry."""

    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"
    default_detail = "the service cannot answer right now; try again shortly"

    def __init__(self, detail: str | None = None, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self, realm: str) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotReady(ServiceUnavailable):
    """/health/ready: a dependency is missing, or a shutdown has begun."""

    default_detail = "the service is not ready to serve requests"

    def __init__(self, checks: dict[str, str], *, draining: bool = False) -> None:
        failed = [name for name, result in checks.items() if result != "ok"]
        if draining:
            detail = "the service is shutting down"
        elif failed:
            detail = "not ready: " + ", ".join(f"{name} {checks[name]}" for name in failed)
        else:
            detail = None
        super().__init__(detail)
        self.checks = checks
        self.draining = draining

    def body(self) -> dict[str, Any]:
        body = super().body() | {"checks": self.checks}
        if self.draining:
            body["draining"] = True
        return body


class UnsupportedGrantType(AppError):
    status = 400
    slug = "unsupported-grant-type"
    title = "Unsupported grant type"
    default_detail = "grant_type must be password or refresh_token"
    oauth_error = "unsupported_grant_type"


class InvalidTokenRequest(AppError):
    status = 400
    slug = "invalid-request"
    title = "Invalid request"
    default_detail = "the token request is malformed"
    oauth_error = "invalid_request"


ERRORS_BY_STATUS: dict[int, type[AppError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: RequestTooLarge,
    415: UnsupportedMediaType,
    503: ServiceUnavailable,
}


def oauth_body(error: AppError) -> dict[str, str]:
    return {"error": error.oauth_error or "invalid_request", "error_description": error.detail}


def problem_response(error: AppError, realm: str) -> JSONResponse:
    return JSONResponse(
        error.body(),
        status_code=error.status,
        headers=error.headers(realm),
        media_type=PROBLEM_JSON,
    )


def oauth_response(error: AppError) -> JSONResponse:
    # RFC 6749 §5.2: token endpoint errors are 400 (429 while throttled), never cached.
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if isinstance(error, Throttled):
        headers |= error.headers("")
    status = 429 if isinstance(error, Throttled) else 400
    return JSONResponse(oauth_body(error), status_code=status, headers=headers)
