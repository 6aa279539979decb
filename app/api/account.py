"""/account: login, refresh, logout, registration, profile, password and sessions."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.api.cookies import clear_session_cookies
from app.api.deps import (
    AccessClaims,
    AuditDep,
    CallerAudit,
    CurrentUser,
    DbSession,
    PresentedRefreshToken,
    RuntimeDep,
    SameOrigin,
    ThrottledClient,
)
from app.api.grants import token_pair
from app.api.openapi import BEARER_ERRORS, SESSION_COOKIES, problems
from app.api.routing import ServiceRoute
from app.errors import InvalidToken, NotFound
from app.observability import metrics
from app.observability.audit import Event
from app.schemas import (
    LoginRequest,
    PasswordChangeRequest,
    RegisterRequest,
    SessionInfo,
    TokenPair,
    UserProfile,
)
from app.services import accounts, links, sessions

router = APIRouter(prefix="/account", tags=["account"], route_class=ServiceRoute)


@router.post(
    "/login",
    response_model=TokenPair,
    response_model_exclude_none=True,
    responses=SESSION_COOKIES | problems(400, 401, 403, 413, 422, 429),
    dependencies=[SameOrigin],
)
async def login(
    body: LoginRequest,
    db: DbSession,
    runtime: RuntimeDep,
    client: ThrottledClient,
    audit: AuditDep,
    response: Response,
) -> TokenPair:
    """Exchange email and password (and, with two-factor on, `otp` or `recovery_code`) for
    an access token and a refresh token. 401 `/problems/two-factor-required` when the code
    is missing; a wrong code is the 400 `invalid credentials`."""
    grant = await runtime.logins.log_in(
        db,
        email=body.email,
        password=body.password,
        otp=body.otp,
        recovery_code=body.recovery_code,
        client=client,
        audit=audit,
    )
    return token_pair(grant, response, runtime.settings)


@router.post(
    "/refresh",
    response_model=TokenPair,
    response_model_exclude_none=True,
    responses=SESSION_COOKIES | problems(401, 403, 413, 422, 429),
    dependencies=[SameOrigin],
)
async def refresh(
    refresh_token: PresentedRefreshToken,
    db: DbSession,
    runtime: RuntimeDep,
    client: ThrottledClient,
    audit: AuditDep,
    response: Response,
) -> TokenPair:
    """Spend a refresh token for a new pair; a spent token revokes its whole session.

    Cookie mode: with no token in the body, the `refresh_token` cookie is spent, and the
    `X-CSRF-Token` header must equal the `csrf_token` cookie (403 otherwise).
    """
    if refresh_token is None:
        metrics.refresh("invalid")
        raise InvalidToken("no refresh token in the body or the cookie")
    grant = await runtime.logins.refresh(
        db, refresh_token=refresh_token, client=client, audit=audit
    )
    return token_pair(grant, response, runtime.settings)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(403, 413, 422),
)
async def logout(
    refresh_token: PresentedRefreshToken,
    db: DbSession,
    runtime: RuntimeDep,
    audit: AuditDep,
    response: Response,
) -> None:
    """End the session of this refresh token (RFC 7009: an unknown token answers 204 too).

    Cookie mode: the `refresh_token` cookie serves when the body has none (with the
    `X-CSRF-Token` header, as for refresh), and both cookies are cleared.
    """
    if refresh_token is None:
        # Cookie mode with neither body nor cookie: nothing to end, and nothing to clear. A
        # form posted from another site arrives so (SameSite=Strict withholds the cookies),
        # and clearing them would log the browser out from that site.
        return
    await sessions.end(
        db,
        refresh_token=refresh_token,
        revoked=runtime.revoked,
        now=runtime.now(),
        audit=audit,
    )
    if runtime.settings.TOKEN_COOKIE_MODE:
        clear_session_cookies(response, secure=runtime.settings.TOKEN_COOKIE_SECURE)


@router.post(
    "/logout-all", status_code=status.HTTP_204_NO_CONTENT, responses=problems(*BEARER_ERRORS)
)
async def logout_all(
    claims: AccessClaims, db: DbSession, runtime: RuntimeDep, audit: CallerAudit
) -> None:
    """End every session of the caller, cutting their live access tokens too."""
    ended = await sessions.end_all(
        db, user_id=claims.user_id, revoked=runtime.revoked, now=runtime.now()
    )
    audit.record(Event.LOGOUT_ALL, sessions_ended=len(ended))


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserProfile,
    responses=problems(404, 409, 413, 422, 429),
)
async def register(
    body: RegisterRequest,
    db: DbSession,
    runtime: RuntimeDep,
    client: ThrottledClient,
    audit: AuditDep,
    response: Response,
) -> UserProfile:
    """Create an account; 404 when registration is disabled. With mail enabled, a
    verification link is mailed to the address."""
    if not runtime.settings.REGISTRATION_ENABLED:
        raise NotFound()
    user = await accounts.register(
        db,
        hasher=runtime.hasher,
        email=body.email,
        password=body.password,
        min_length=runtime.settings.PASSWORD_MIN_LENGTH,
        now=runtime.now(),
        first_name=body.first_name,
        last_name=body.last_name,
        phone_number=body.phone_number,
    )
    if runtime.mail is not None and await runtime.throttle.mail_allowed(
        links.VERIFY_EMAIL, user.email
    ):
        await links.issue(
            db,
            kind=links.VERIFY_EMAIL,
            user=user,
            policy=runtime.link_policy,
            sealer=runtime.sealer,
            now=runtime.now(),
            audit=audit,
        )
    response.headers["Location"] = "/account/me"
    return UserProfile.model_validate(user)


@router.get("/me", response_model=UserProfile, responses=problems(*BEARER_ERRORS))
async def me(user: CurrentUser) -> UserProfile:
    """The caller's profile."""
    return UserProfile.model_validate(user)


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(400, 401, 413, 422, 429),
)
async def change_password(
    body: PasswordChangeRequest,
    user: CurrentUser,
    client: ThrottledClient,
    db: DbSession,
    runtime: RuntimeDep,
    audit: CallerAudit,
) -> None:
    """Replace the password; every session of the user ends, this one included.

    Counted against IP_RATE_LIMIT, and a wrong current password is a failed attempt of
    the account, like a failed login (429 past LOGIN_MAX_FAILURES).
    """
    await accounts.change_password(
        db,
        hasher=runtime.hasher,
        throttle=runtime.throttle,
        user=user,
        current_password=body.current_password,
        new_password=body.new_password,
        min_length=runtime.settings.PASSWORD_MIN_LENGTH,
        audit=audit,
    )
    # Any password change voids the reset links still outstanding.
    await accounts.void_links(db, user_id=user.id, now=runtime.now(), kind=links.RESET_PASSWORD)
    ended = await sessions.end_all(db, user_id=user.id, revoked=runtime.revoked, now=runtime.now())
    metrics.sessions_ended("password_change", len(ended))


@router.get("/sessions", response_model=list[SessionInfo], responses=problems(*BEARER_ERRORS))
async def list_sessions(
    claims: AccessClaims, db: DbSession, runtime: RuntimeDep
) -> list[SessionInfo]:
    """The caller's live sessions; `current` marks the one this access token belongs to."""
    active = await sessions.list_active(db, user_id=claims.user_id, now=runtime.now())
    return [
        SessionInfo(
            id=session.id,
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            expires_at=session.expires_at,
            user_agent=session.user_agent,
            ip=session.ip,
            current=session.id == claims.session_id,
        )
        for session in active
    ]


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(*BEARER_ERRORS, 404),
)
async def delete_session(
    session_id: Annotated[str, Path(description="a session id from GET /account/sessions")],
    claims: AccessClaims,
    db: DbSession,
    runtime: RuntimeDep,
    audit: CallerAudit,
) -> None:
    """End one of the caller's sessions; any other id, or an ended session, is a 404."""
    try:
        parsed = uuid.UUID(session_id)
    except ValueError:
        raise NotFound("no such session") from None
    await sessions.end_one(
        db,
        user_id=claims.user_id,
        session_id=parsed,
        revoked=runtime.revoked,
        now=runtime.now(),
        audit=audit,
    )
