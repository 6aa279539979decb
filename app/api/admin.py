"""/admin/users: list, read, update and delete users; the caller needs the `admin` role."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from app.api.deps import AdminUser, CallerAudit, DbSession, RuntimeDep
from app.api.openapi import BEARER_ERRORS, problems
from app.api.routing import ServiceRoute
from app.models import EMAIL_MAX_LENGTH
from app.schemas import AdminUserPage, AdminUserUpdate, AdminUserView, Text, canonical_email
from app.services import admin

router = APIRouter(prefix="/admin", tags=["admin"], route_class=ServiceRoute)

ADMIN_ERRORS = (*BEARER_ERRORS, 403)
UserId = Annotated[int, Path(ge=1, le=admin.MAX_USER_ID, description="a user's id")]


def _view(managed: admin.ManagedUser) -> AdminUserView:
    user = managed.user
    return AdminUserView(
        id=user.id,
        email=user.email,
        email_verified=user.email_verified,
        first_name=user.first_name,
        last_name=user.last_name,
        phone_number=user.phone_number,
        created_at=user.created_at,
        two_factor_enabled=user.two_factor_enabled,
        is_active=user.is_active,
        roles=managed.roles,
        last_login_at=user.last_login_at,
    )


@router.get("/users", response_model=AdminUserPage, responses=problems(*ADMIN_ERRORS, 422))
async def list_users(
    caller: AdminUser,
    db: DbSession,
    email: Annotated[
        Text | None,
        Query(max_length=EMAIL_MAX_LENGTH, description="prefix of the canonical email"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[
        str | None, Query(description="next_cursor of the previous page (opaque)")
    ] = None,
) -> AdminUserPage:
    """Users ordered by id, a page at a time; `email` filters by prefix."""
    page = await admin.list_users(
        db,
        email_prefix=canonical_email(email) if email is not None else None,
        limit=limit,
        cursor=cursor,
    )
    return AdminUserPage(items=[_view(item) for item in page.items], next_cursor=page.next_cursor)


@router.get(
    "/users/{user_id}", response_model=AdminUserView, responses=problems(*ADMIN_ERRORS, 404, 422)
)
async def get_user(user_id: UserId, caller: AdminUser, db: DbSession) -> AdminUserView:
    """One user."""
    return _view(await admin.get_user(db, user_id=user_id))


@router.patch(
    "/users/{user_id}",
    response_model=AdminUserView,
    responses=problems(*ADMIN_ERRORS, 404, 409, 413, 422),
)
async def update_user(
    user_id: UserId,
    body: AdminUserUpdate,
    caller: AdminUser,
    db: DbSession,
    runtime: RuntimeDep,
    audit: CallerAudit,
) -> AdminUserView:
    """Set `is_active` or the roles, or switch two-factor off (`two_factor_enabled: false`,
    for a user who lost the device); `is_active: false` ends every session of the user at once.

    409 when an administrator would disable itself or remove its own `admin` role.
    """
    managed = await admin.update_user(
        db,
        actor=caller,
        user_id=user_id,
        is_active=body.is_active,
        roles=body.roles,
        two_factor_enabled=body.two_factor_enabled,
        revoked=runtime.revoked,
        now=runtime.now(),
        audit=audit,
    )
    return _view(managed)


@router.delete(
    "/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(*ADMIN_ERRORS, 404, 409, 422),
)
async def delete_user(
    user_id: UserId, caller: AdminUser, db: DbSession, runtime: RuntimeDep, audit: CallerAudit
) -> None:
    """Delete the user, its sessions and tokens; its live access tokens die at once.

    409 when an administrator would delete itself.
    """
    await admin.delete_user(
        db, actor=caller, user_id=user_id, revoked=runtime.revoked, now=runtime.now(), audit=audit
    )
