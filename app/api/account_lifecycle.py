"""/account lifecycle: verify the address, reset a forgotten password by mail, edit the
profile, delete the account."""

from fastapi import APIRouter, status

from app.api.deps import (
    AuditDep,
    CallerAudit,
    CurrentUser,
    DbSession,
    RuntimeDep,
    ThrottledClient,
)
from app.api.openapi import BEARER_ERRORS, problems
from app.api.routing import ServiceRoute
from app.errors import NotFound
from app.observability.audit import Event
from app.runtime import Runtime
from app.schemas import (
    AccountDeletion,
    EmailVerification,
    MailRequestAccepted,
    MailRequestBody,
    PasswordReset,
    ProfileUpdate,
    UserProfile,
)
from app.services import accounts, links

router = APIRouter(prefix="/account", tags=["account"], route_class=ServiceRoute)

VERIFICATION_REQUESTED = MailRequestAccepted(
    detail="if the address has an account that is not verified yet, a link is on its way"
)
RESET_REQUESTED = MailRequestAccepted(
    detail="if the address has an account, a link to reset its password is on its way"
)


def _mail_enabled(runtime: Runtime) -> None:
    # MAIL_BACKEND=disabled: nothing could be mailed, so the endpoints do not exist.
    if runtime.mail is None:
        raise NotFound()


@router.post(
    "/verify-email", status_code=status.HTTP_204_NO_CONTENT, responses=problems(400, 413, 422, 429)
)
async def verify_email(
    body: EmailVerification,
    db: DbSession,
    runtime: RuntimeDep,
    client: ThrottledClient,
    audit: AuditDep,
) -> None:
    """Use the token of a verification link: the address is verified. 400 when the link is
    unknown, used, expired or superseded."""
    await links.verify_email(db, token=body.token, now=runtime.now(), audit=audit)


@router.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=MailRequestAccepted,
    responses=problems(404, 413, 422, 429),
)
async def resend_verification(
    body: MailRequestBody,
    db: DbSession,
    runtime: RuntimeDep,
    client: ThrottledClient,
) -> MailRequestAccepted:
    """Ask for a new verification link. The same 202 whether or not the address has an
    account or is verified already; at most MAIL_PER_ADDRESS_LIMIT mails go."""
    _mail_enabled(runtime)
    await links.record_request(db, kind=links.VERIFY_EMAIL, email=body.email, now=runtime.now())
    return VERIFICATION_REQUESTED


@router.post(
    "/forgot-password",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=MailRequestAccepted,
    responses=problems(404, 413, 422, 429),
)
async def forgot_password(
    body: MailRequestBody,
    db: DbSession,
    runtime: RuntimeDep,
    client: ThrottledClient,
    audit: AuditDep,
) -> MailRequestAccepted:
    """Ask for a password reset link. The same 202, with the same work, whether or not the
    address has an account; at most MAIL_PER_ADDRESS_LIMIT mails go."""
    _mail_enabled(runtime)
    await links.record_request(db, kind=links.RESET_PASSWORD, email=body.email, now=runtime.now())
    # No user id: the log must not tell more than the answer does.
    audit.record(Event.PASSWORD_RESET_REQUESTED)
    return RESET_REQUESTED


@router.post(
    "/reset-password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(400, 413, 422, 429),
)
async def reset_password(
    body: PasswordReset,
    db: DbSession,
    runtime: RuntimeDep,
    client: ThrottledClient,
    audit: AuditDep,
) -> None:
    """Set a new password with the token of a reset link: every session of the user ends and
    every other link is void. The link is checked first (400), then the password (422, the
    link stays usable)."""
    await links.reset_password(
        db,
        hasher=runtime.hasher,
        token=body.token,
        new_password=body.new_password,
        min_length=runtime.settings.PASSWORD_MIN_LENGTH,
        revoked=runtime.revoked,
        now=runtime.now(),
        audit=audit,
    )


@router.patch("/me", response_model=UserProfile, responses=problems(*BEARER_ERRORS, 413, 422))
async def update_me(
    body: ProfileUpdate, user: CurrentUser, db: DbSession, audit: CallerAudit
) -> UserProfile:
    """Change profile fields (first_name, last_name, phone_number); null clears one."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    updated = await accounts.update_profile(db, user=user, changes=changes, audit=audit)
    return UserProfile.model_validate(updated)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(*BEARER_ERRORS, 413, 422, 429),
)
async def delete_me(
    body: AccountDeletion,
    user: CurrentUser,
    client: ThrottledClient,
    db: DbSession,
    runtime: RuntimeDep,
    audit: CallerAudit,
) -> None:
    """Delete the caller's account after confirming its password: its sessions, links and
    mails go, and its live access tokens die at once. A wrong password counts like a failed
    login."""
    await accounts.delete_own_account(
        db,
        hasher=runtime.hasher,
        throttle=runtime.throttle,
        user=user,
        password=body.password,
        revoked=runtime.revoked,
        now=runtime.now(),
        audit=audit,
    )
