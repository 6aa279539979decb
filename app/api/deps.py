"""FastAPI dependencies, each answering one question about the request."""

import asyncio
import dataclasses
import logging
import string
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Body, Depends, Request, Security
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.cookies import csrf_header_matches, is_cross_site, refresh_cookie
from app.config import Settings
from app.db import database_work
from app.errors import (
    AppError,
    AuthenticationRequired,
    CrossSiteRequest,
    CsrfFailed,
    Forbidden,
    InvalidAuthorizationRequest,
    InvalidToken,
    ServiceUnavailable,
    Throttled,
    ValidationFailed,
)
from app.models import User
from app.observability import metrics
from app.observability.audit import Audit, Event
from app.runtime import Runtime
from app.schemas import RefreshRequest
from app.security import access_tokens
from app.security.access_tokens import TokenRejected
from app.security.addresses import ip_bucket
from app.services import accounts, sessions
from app.services.sessions import Client

log = logging.getLogger("app.auth")


# Cheap dependencies are `async def`: FastAPI would run a plain `def` in the threadpool.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent.

    An error rolls the request's work back, except an error that carries a
    security decision (`keeps_changes`), such as a family revoked on reuse:
    that decision is committed and the error still answers.

    The request's whole database work (pool wait, connecting, statements, commit)
    has DATABASE_TIMEOUT_SECONDS; past it TimeoutError, which answers 503.
    """
    runtime = request.app.state.runtime
    async with database_work(runtime.sessionmaker, runtime.settings.DATABASE_TIMEOUT_SECONDS) as db:
        try:
            yield db
        except AppError as exc:
            if exc.keeps_changes:
                await db.commit()
                await sessions.confirm_ended(db)
            else:
                await db.rollback()
            raise
        except asyncio.CancelledError:
            # The deadline (or a shutdown): database_work drops the connection instead.
            raise
        except BaseException:
            await db.rollback()
            raise
        else:
            await db.commit()
            await sessions.confirm_ended(db)


# Committed or rolled back before the response is sent (FastAPI 0.121+ function scope).
DbSession = Annotated[AsyncSession, Depends(get_db, scope="function")]


def _client(request: Request) -> Client:
    # request.client is the socket peer, or the X-Forwarded-For client when
    # uvicorn trusts the proxy (TRUSTED_PROXIES).
    return Client.of(
        request.client.host if request.client else None, request.headers.get("user-agent")
    )


def _audit(request: Request, client: Client) -> Audit:
    return Audit(
        # Set by the SecurityHeaders middleware, which also answers it as X-Request-ID.
        request_id=request.scope.get("state", {}).get("request_id"),
        ip=client.ip,
        user_agent=client.user_agent,
        path=request.scope["path"],
    )


async def get_client(request: Request) -> Client:
    return _client(request)


ClientInfo = Annotated[Client, Depends(get_client)]


async def get_audit(request: Request, client: ClientInfo) -> Audit:
    """Where the audit events of this request come from."""
    return _audit(request, client)


AuditDep = Annotated[Audit, Depends(get_audit)]


async def get_throttled_client(client: ClientInfo, runtime: RuntimeDep, audit: AuditDep) -> Client:
    """The client, counted against IP_RATE_LIMIT (endpoints that take credentials)."""
    try:
        await runtime.throttle.client(ip_bucket(client.ip) if client.ip else None)
    except Throttled:
        audit.record(Event.RATE_LIMITED, limit="ip")
        raise
    return client


ThrottledClient = Annotated[Client, Depends(get_throttled_client)]


async def refuse_cross_site(request: Request, runtime: RuntimeDep) -> None:
    """Cookie mode: a route that sets the refresh cookie refuses another origin's request
    (403) before any credential is looked at. Without it a page anywhere could post a
    form with the attacker's password and swap the victim's session for the attacker's
    (login CSRF); the SameSite cookie cannot prevent what sets it."""
    settings = runtime.settings
    if settings.TOKEN_COOKIE_MODE and is_cross_site(
        request, issuer=settings.TOKEN_ISSUER, allowed_origins=settings.CORS_ORIGINS
    ):
        raise CrossSiteRequest()


SameOrigin = Depends(refuse_cross_site)


async def get_presented_refresh_token(
    request: Request,
    runtime: RuntimeDep,
    body: Annotated[RefreshRequest | None, Body()] = None,
) -> str | None:
    """Which refresh token the client presents: the body's, or in cookie mode the cookie's.

    None only in cookie mode, when neither body nor cookie holds one.
    """
    if body is not None and body.refresh_token is not None:
        # No ambient credential: a token a script put in the body needs no CSRF check.
        return body.refresh_token
    if not runtime.settings.TOKEN_COOKIE_MODE:
        # The body and its field are required, exactly as the schema said before cookie mode.
        loc = ["body"] if body is None else ["body", "refresh_token"]
        raise ValidationFailed([{"loc": loc, "msg": "Field required"}])
    token = refresh_cookie(request)
    if token is None:
        return None
    # The browser attaches the cookie to any request: only our pages can repeat the CSRF
    # cookie in a header. Refused before the token is looked at, so it stays unspent.
    if not csrf_header_matches(request):
        raise CsrfFailed()
    return token


PresentedRefreshToken = Annotated[str | None, Depends(get_presented_refresh_token)]


TCHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
MALFORMED_BEARER = "malformed bearer credentials: separate Bearer and the token with a space"


def _bearer_token(request: Request) -> str:
    """RFC 6750 §2.1 bearer credentials, read strictly.

    FastAPI's own classes answer a bare `Bearer` challenge, accept an empty
    token and let the first of two Authorization headers win; this does not.
    """
    values: list[bytes] = [
        value for name, value in request.scope["headers"] if name == b"authorization"
    ]
    # RFC 6750 §2: a client uses one method of sending the token per request.
    query_token = b"access_token" in request.scope["query_string"] and (
        "access_token" in request.query_params
    )
    if len(values) > 1 or (values and query_token):
        raise InvalidAuthorizationRequest()
    if not values:
        # RFC 9700 §4.3.2: a token in the query string alone is never read.
        raise AuthenticationRequired()
    header = values[0].decode("latin-1")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        if header[:6].lower() == "bearer" and header[6:7] and header[6] not in TCHARS:
            # `Bearer<TAB>token`, `Bearer,token`: the bearer scheme (a tchar ends it, RFC
            # 9110 §5.6.2), mistyped; RFC 6750 §2.1 allows only spaces before the token.
            raise InvalidToken(MALFORMED_BEARER)
        raise AuthenticationRequired()
    token = credentials.strip(" ")
    if not token:
        metrics.access_token_rejected("missing token")
        raise InvalidToken("missing token")
    return token


async def authenticate(request: Request) -> access_tokens.AccessClaims:
    """The bearer check: who is calling, from a valid access token alone (no database read,
    no thread hop); raises the AppError that answers a refused request."""
    runtime: Runtime = request.app.state.runtime
    # A forged or malformed token is not an audit event: anyone can send thousands a
    # second to a route no rate limit guards, and each would cost a log line (a
    # log flood). A genuine token of an ended session is: it may have been stolen.
    try:
        claims = runtime.access_tokens.decode(_bearer_token(request))
    except TokenRejected as exc:
        # Counted although not audited: the operator still sees a forging attempt.
        metrics.access_token_rejected(exc.reason)
        raise InvalidToken(exc.reason) from None
    try:
        # Marker and session in one Redis round trip; a lost store is rebuilt first.
        ended = await runtime.revoked.contains(claims.session_id)
    except ServiceUnavailable:
        raise
    except Exception:
        # Without the revoked set a logged-out token could pass: fail closed.
        log.exception("cannot read the revoked-session set")
        raise ServiceUnavailable() from None
    if ended:
        _rejected(request, "session ended", claims)
        raise InvalidToken("session ended")
    return claims


# Where ServiceRoute leaves the claims it verified, for the dependency to return.
VERIFIED_CLAIMS = "access_claims"


class BearerAuth(OAuth2PasswordBearer):
    """The bearer check as a dependency, declared as the OAuth2 password scheme, so Swagger
    UI's Authorize button logs in through /account/token. A verified token is cached by
    digest; on a ServiceRoute the check may already have run before FastAPI solved anything."""

    async def __call__(self, request: Request) -> access_tokens.AccessClaims:  # type: ignore[override]
        verified: access_tokens.AccessClaims | None = request.scope.get("state", {}).get(
            VERIFIED_CLAIMS
        )
        return verified if verified is not None else await authenticate(request)


def _rejected(
    request: Request, reason: str, claims: access_tokens.AccessClaims | None = None
) -> None:
    # ASVS 5.0 16.3.2: a failed authorization is logged, with the reason, never the token.
    metrics.access_token_rejected(reason)
    _audit(request, _client(request)).record(
        Event.ACCESS_TOKEN_REJECTED,
        user_id=claims.user_id if claims else None,
        session_id=claims.session_id if claims else None,
        reason=reason,
    )


bearer = BearerAuth(
    tokenUrl="/account/token",
    scheme_name="OAuth2PasswordBearer",
    description="Log in with the demo account through /account/token.",
)

AccessClaims = Annotated[access_tokens.AccessClaims, Security(bearer)]


async def get_caller_audit(audit: AuditDep, claims: AccessClaims) -> Audit:
    """The audit of a bearer-authenticated request: events name the caller and its session."""
    return dataclasses.replace(audit, user_id=claims.user_id, session_id=claims.session_id)


CallerAudit = Annotated[Audit, Depends(get_caller_audit)]


async def get_current_user(claims: AccessClaims, db: DbSession) -> User:
    user = await db.get(User, claims.user_id)
    if user is None:
        metrics.access_token_rejected("unknown user")
        raise InvalidToken("unknown user")
    if not user.is_active:
        # Disabling ends every session; this holds even if a revocation was lost.
        raise InvalidToken("account disabled")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(role: str) -> Callable[..., Awaitable[User]]:
    """A dependency: the caller's user row, if that user has `role` now.

    The role is read from the database in the same statement as the row, never
    from the token alone: a demoted admin loses its power at once.
    """

    async def caller_with_role(claims: AccessClaims, db: DbSession, audit: CallerAudit) -> User:
        found = await accounts.user_with_role(db, user_id=claims.user_id, role=role)
        if found is None:
            raise InvalidToken("unknown user")
        user, has_role = found
        if not user.is_active:
            raise InvalidToken("account disabled")
        if not has_role:
            audit.record(Event.ACCESS_FORBIDDEN, required_role=role)
            # RFC 6750 §3.1: insufficient_scope, 403.
            raise Forbidden(f"the {role} role is required")
        return user

    return caller_with_role


AdminUser = Annotated[User, Depends(require_role("admin"))]
