"""/account/2fa: TOTP setup and confirmation, recovery codes, switching two-factor off.

Every route is under IP_RATE_LIMIT, and every wrong password or code is a failed attempt
of the account, counted with the logins. Responses holding a secret or codes are never
cached.
"""

from fastapi import APIRouter, Response, status

from app.api.deps import (
    AccessClaims,
    CallerAudit,
    CurrentUser,
    DbSession,
    RuntimeDep,
    ThrottledClient,
)
from app.api.openapi import BEARER_ERRORS, problems
from app.api.routing import ServiceRoute
from app.schemas import (
    CodeRequest,
    RecoveryCodes,
    TotpSetup,
    TotpSetupRequest,
    TwoFactorDisableRequest,
)
from app.services import two_factor

router = APIRouter(prefix="/account/2fa", tags=["two-factor"], route_class=ServiceRoute)


def _not_stored(response: Response) -> None:
    # A secret or recovery codes must not stay in a cache or a browser's history.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post(
    "/totp",
    response_model=TotpSetup,
    responses=problems(*BEARER_ERRORS, 403, 409, 413, 422, 429),
)
async def begin_totp(
    body: TotpSetupRequest,
    user: CurrentUser,
    client: ThrottledClient,
    db: DbSession,
    runtime: RuntimeDep,
    audit: CallerAudit,
    response: Response,
) -> TotpSetup:
    """A new TOTP secret (RFC 6238: SHA-1, 6 digits, 30 s), pending until confirmed; it
    replaces any pending one. Needs the password (a wrong one is counted); 409 when
    two-factor is on; 403 while mail is enabled and the address is unverified."""
    setup = await two_factor.begin_setup(
        db,
        hasher=runtime.hasher,
        throttle=runtime.throttle,
        sealer=runtime.sealer,
        user=user,
        password=body.password,
        issuer_name=runtime.settings.TOTP_ISSUER_NAME,
        mail_enabled=runtime.settings.MAIL_BACKEND != "disabled",
        now=runtime.now(),
        audit=audit,
    )
    _not_stored(response)
    return TotpSetup(secret=setup.secret, otpauth_uri=setup.otpauth_uri)


@router.post(
    "/totp/confirm",
    response_model=RecoveryCodes,
    responses=problems(*BEARER_ERRORS, 409, 413, 422, 429),
)
async def confirm_totp(
    body: CodeRequest,
    user: CurrentUser,
    claims: AccessClaims,
    client: ThrottledClient,
    db: DbSession,
    runtime: RuntimeDep,
    audit: CallerAudit,
    response: Response,
) -> RecoveryCodes:
    """Switch two-factor on with a code of the pending secret; the ten recovery codes, shown
    once. Every other session of the user ends. 400 `/problems/invalid-code` (counted);
    409 when nothing is pending."""
    codes = await two_factor.confirm(
        db,
        throttle=runtime.throttle,
        sealer=runtime.sealer,
        revoked=runtime.revoked,
        user=user,
        code=body.code,
        current_session=claims.session_id,
        now=runtime.now(),
        audit=audit,
    )
    _not_stored(response)
    return RecoveryCodes(recovery_codes=codes)


@router.post(
    "/recovery-codes",
    response_model=RecoveryCodes,
    responses=problems(*BEARER_ERRORS, 409, 413, 422, 429),
)
async def regenerate_recovery_codes(
    body: CodeRequest,
    user: CurrentUser,
    client: ThrottledClient,
    db: DbSession,
    runtime: RuntimeDep,
    audit: CallerAudit,
    response: Response,
) -> RecoveryCodes:
    """Ten new recovery codes for a TOTP code; the old ones are void. 400
    `/problems/invalid-code` (counted); 409 when two-factor is off."""
    codes = await two_factor.regenerate_recovery_codes(
        db,
        throttle=runtime.throttle,
        sealer=runtime.sealer,
        user=user,
        code=body.code,
        now=runtime.now(),
        audit=audit,
    )
    _not_stored(response)
    return RecoveryCodes(recovery_codes=codes)


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(*BEARER_ERRORS, 409, 413, 422, 429),
)
async def disable_two_factor(
    body: TwoFactorDisableRequest,
    user: CurrentUser,
    client: ThrottledClient,
    db: DbSession,
    runtime: RuntimeDep,
    audit: CallerAudit,
) -> None:
    """Switch two-factor off with the password and a TOTP or recovery code; a wrong
    password and a wrong code get the same 400 `invalid credentials` (counted)."""
    await two_factor.disable(
        db,
        hasher=runtime.hasher,
        throttle=runtime.throttle,
        sealer=runtime.sealer,
        user=user,
        password=body.password,
        code=body.code,
        now=runtime.now(),
        audit=audit,
    )
