"""POST /account/token: the OAuth 2.0 token endpoint (RFC 6749 §4.3 and §6) Swagger UI uses."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from app.api.deps import AuditDep, DbSession, RuntimeDep, SameOrigin, ThrottledClient
from app.api.grants import token_pair
from app.api.openapi import SESSION_COOKIES, problems
from app.errors import (
    AppError,
    InvalidCredentials,
    InvalidTokenRequest,
    TwoFactorRequired,
    UnsupportedGrantType,
    oauth_response,
)
from app.observability.audit import Audit, Event
from app.schemas import MAX_EMAIL_INPUT_LENGTH, OAuthErrorBody, Text, TokenPair, canonical_email


class OAuthErrorRoute(APIRoute):
    """Renders this endpoint's errors in the RFC 6749 §5.2 shape instead of problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def oauth_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError:
                return oauth_response(InvalidTokenRequest())
            except HTTPException as exc:
                if exc.status_code != 400:  # pragma: no cover - body parsing is the only source
                    raise
                return oauth_response(InvalidTokenRequest())
            except AppError as exc:
                if exc.oauth_error is None:
                    raise
                return oauth_response(exc)

        return oauth_handler


router = APIRouter(prefix="/account", tags=["account"], route_class=OAuthErrorRoute)

TWO_FACTOR_ACCOUNT = (
    "this account has two-factor authentication on: log in with POST /account/login "
    "and a one-time code"
)

OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OAuthErrorBody, "description": "RFC 6749 §5.2 error"},
    429: {
        "model": OAuthErrorBody,
        "description": "Too many attempts: temporarily_unavailable; see Retry-After",
    },
    **problems(403, 413),
}


@router.post(
    "/token",
    response_model=TokenPair,
    response_model_exclude_none=True,
    responses=SESSION_COOKIES | OAUTH_ERRORS,
    dependencies=[SameOrigin],
)
async def token(
    db: DbSession,
    runtime: RuntimeDep,
    client: ThrottledClient,
    audit: AuditDep,
    response: Response,
    grant_type: Annotated[str | None, Form(examples=["password"])] = None,
    username: Annotated[
        Text | None, Form(description="the account's email", examples=["demo@example.com"])
    ] = None,
    password: Annotated[Text | None, Form(examples=["the demo password"])] = None,
    refresh_token: Annotated[Text | None, Form(description="with grant_type=refresh_token")] = None,
) -> TokenPair:
    """OAuth 2.0 token endpoint: grant_type=password or grant_type=refresh_token."""
    if grant_type == "password":
        if username is None or password is None:
            raise InvalidTokenRequest("username and password are required")
        try:
            grant = await runtime.logins.log_in(
                db,
                email=_as_email(username, audit),
                password=password,
                client=client,
                audit=audit,
            )
        except TwoFactorRequired:
            # Said only after the right password. The form has no field for a code (Swagger
            # UI's Authorize button cannot send one): such accounts log in at /account/login.
            raise InvalidCredentials(TWO_FACTOR_ACCOUNT) from None
    elif grant_type == "refresh_token":
        if refresh_token is None:
            raise InvalidTokenRequest("refresh_token is required")
        grant = await runtime.logins.refresh(
            db, refresh_token=refresh_token, client=client, audit=audit
        )
    elif grant_type is None:
        raise InvalidTokenRequest("grant_type is required")
    else:
        raise UnsupportedGrantType()
    return token_pair(grant, response, runtime.settings)


def _as_email(username: str, audit: Audit) -> str:
    if len(username) > MAX_EMAIL_INPUT_LENGTH:
        # RFC 5321's longest address: anything longer is nobody's, refused before it can
        # become a throttle key or cost a hash.
        audit.record(Event.LOGIN_FAILED, reason="unknown email")
        raise InvalidCredentials()
    email = canonical_email(username)
    if "@" not in email:
        # Cannot be anyone's email: the same answer as a wrong password.
        audit.record(Event.LOGIN_FAILED, reason="unknown email")
        raise InvalidCredentials()
    return email
