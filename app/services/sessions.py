"""Login sessions: families of rotating refresh tokens (RFC 9700 §4.14)."""

import json
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, NoReturn, TypeVar, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    Executable,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import Label
from sqlalchemy.sql.selectable import ScalarSelect

from app.errors import (
    AccountDisabled,
    InvalidCredentials,
    InvalidToken,
    NotFound,
    RefreshTokenReused,
    ServiceUnavailable,
)
from app.models import (
    IP_MAX_LENGTH,
    USER_AGENT_MAX_LENGTH,
    EndedSession,
    RefreshToken,
    User,
    UserRole,
)
from app.observability.audit import Audit, Event
from app.security.access_tokens import AccessTokenCodec
from app.security.refresh_tokens import MAX_REFRESH_TOKEN_LENGTH, digest, new_refresh_token
from app.stores.revocations import RevokedSessions

T = TypeVar("T")
log = logging.getLogger("app")
# Concurrent retries each revoke the child the one before issued; bounded all the same.
RETRY_ATTEMPTS = 5
# RFC 8176 authentication methods: a password alone, or a password and a one-time code.
PASSWORD_ONLY = ("pwd",)
MULTI_FACTOR = ("mfa", "otp", "pwd")


def _amr_of(stored: str | None) -> tuple[str, ...]:
    # Rows from before `amr` was recorded began with a password alone.
    return tuple(stored.split()) if stored else PASSWORD_ONLY


@dataclass(frozen=True, slots=True)
class Client:
    ip: str | None
    user_agent: str | None

    @classmethod
    def of(cls, ip: str | None, user_agent: str | None) -> "Client":
        return cls(
            ip=ip[:IP_MAX_LENGTH] if ip else None,
            user_agent=user_agent[:USER_AGENT_MAX_LENGTH] if user_agent else None,
        )


@dataclass(frozen=True, slots=True)
class TokenIssuer:
    codec: AccessTokenCodec
    access_ttl: timedelta
    refresh_ttl: timedelta
    session_max: timedelta
    # REFRESH_REUSE_GRACE_SECONDS: zero (the default) makes every spent token reuse.
    reuse_grace: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True)
class Grant:
    session_id: uuid.UUID
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


@dataclass(frozen=True, slots=True)
class ActiveSession:
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime
    user_agent: str | None
    ip: str | None


def _live(
    now: datetime | ColumnElement[datetime],
    token: type[RefreshToken] | ReadOnlyColumnCollection[str, Column[Any]] = RefreshToken,
) -> ColumnElement[bool]:
    """A token that can still be exchanged: unspent, unrevoked, within both lifetimes."""
    return and_(
        token.spent_at.is_(None),
        token.revoked_at.is_(None),
        token.expires_at > now,
        token.session_expires_at > now,
    )


def _roles_column(owner: ColumnElement[int], table: Table, dialect: str) -> Label[Any]:
    """The roles of the user `owner` names, as one column of a RETURNING clause on `table`:
    an array (PostgreSQL) or JSON text (SQLite), read by `_roles`. Saves a round trip."""
    user_roles = cast(Table, UserRole.__table__).c
    if dialect == "postgresql":
        roles = select(func.array_agg(user_roles.role)).where(user_roles.user_id == owner)
    else:
        # SQLite renders RETURNING columns unqualified: user_roles.user_id would shadow the
        # owner's column, so the subquery names it `owner`.
        owned = select(user_roles.role, user_roles.user_id.label("owner")).subquery()
        roles = select(func.json_group_array(owned.c.role)).where(owned.c.owner == owner)
    return roles.correlate(table).scalar_subquery().label("roles")


def _seconds(later: datetime, now: datetime) -> int:
    return max(0, int((later - now).total_seconds()))


# The row of a new refresh token, its columns named by the parameters: built once.
_INSERT_TOKEN = insert(cast(Table, RefreshToken.__table__)).returning(RefreshToken.id)


async def _issue(
    db: AsyncSession,
    issuer: TokenIssuer,
    *,
    user_id: int,
    email: str,
    phone: str | None,
    session_id: uuid.UUID,
    session_expires_at: datetime,
    client: Client,
    now: datetime,
    roles: Sequence[str] = (),
    amr: Sequence[str] = PASSWORD_ONLY,
) -> tuple[int, Grant]:
    """Store a new refresh token of the session and mint its pair; the row's id."""
    refresh_token = new_refresh_token()
    amr = sorted(set(amr))
    row = {
        "session_id": session_id,
        "user_id": user_id,
        "token_digest": digest(refresh_token),
        "created_at": now,
        "expires_at": now + issuer.refresh_ttl,
        "session_expires_at": session_expires_at,
        "user_agent": client.user_agent,
        "ip": client.ip,
        # The session keeps its login's methods: each refresh mints them again.
        "amr": " ".join(amr),
    }
    # A Core INSERT: the ORM's unit of work would cost more than the statement.
    row_id = (await db.execute(_INSERT_TOKEN, row)).scalar_one()
    grant = _grant(
        issuer,
        refresh_token,
        user_id=user_id,
        email=email,
        phone=phone,
        session_id=session_id,
        session_expires_at=session_expires_at,
        now=now,
        roles=roles,
        amr=amr,
    )
    return row_id, grant


def _grant(
    issuer: TokenIssuer,
    refresh_token: str,
    *,
    user_id: int,
    email: str,
    phone: str | None,
    session_id: uuid.UUID,
    session_expires_at: datetime,
    now: datetime,
    roles: Sequence[str] = (),
    amr: Sequence[str] = PASSWORD_ONLY,
) -> Grant:
    """The answer for a refresh token issued at `now`: its access token minted beside it."""
    # An access token never outlives its family.
    access_expires_at = min(now + issuer.access_ttl, session_expires_at)
    access_token = issuer.codec.mint(
        user_id=user_id,
        email=email,
        phone=phone,
        session_id=session_id,
        issued_at=now,
        expires_at=access_expires_at,
        roles=roles,
        amr=amr,
    )
    return Grant(
        session_id=session_id,
        access_token=access_token,
        expires_in=_seconds(access_expires_at, now),
        refresh_token=refresh_token,
        refresh_expires_in=_seconds(min(now + issuer.refresh_ttl, session_expires_at), now),
    )


@cache
def _login_update(dialect: str) -> Executable:
    """The login's UPDATE of its user (see `start`), built once per dialect."""
    users = cast(Table, User.__table__)
    return (
        update(users)
        .where(
            users.c.id == bindparam("user_id"),
            users.c.credentials_version == bindparam("version"),
            users.c.is_active.is_(True),
        )
        .values(last_login_at=bindparam("now"))
        .returning(users.c.email, users.c.phone_number, _roles_column(users.c.id, users, dialect))
    )


async def start(
    db: AsyncSession,
    *,
    issuer: TokenIssuer,
    user: User,
    client: Client,
    now: datetime,
    audit: Audit,
    amr: Sequence[str] = PASSWORD_ONLY,
) -> Grant:
    """Begin a new session (family) for a user who just proved who they are, by the methods
    `amr` names (RFC 8176).

    The UPDATE locks the user row that a password change or reset, disabling, deletion
    and two-factor confirmation also write (accounts.invalidate_credentials), and checks
    it again: a login whose password check read the row before such a change committed
    never yields a live session, and answers as if it had begun after the change.
    """
    current = (
        await db.execute(
            _login_update(db.get_bind().dialect.name),
            {"user_id": user.id, "version": user.credentials_version, "now": now},
        )
    ).one_or_none()
    if current is None:
        # Lost to a change: disabled is 403 (after the right password), anything else 400.
        active = await db.scalar(select(User.is_active).where(User.id == user.id))
        raise AccountDisabled() if active is False else InvalidCredentials()
    set_committed_value(user, "last_login_at", now)
    _, grant = await _issue(
        db,
        issuer,
        user_id=user.id,
        email=current.email,
        phone=current.phone_number,
        session_id=uuid.uuid4(),
        session_expires_at=now + issuer.session_max,
        client=client,
        now=now,
        roles=_roles(current.roles),
        amr=amr,
    )
    audit.record(Event.LOGIN_SUCCEEDED, user_id=user.id, session_id=grant.session_id)
    return grant


# Carried unchanged from a spent token to its child: the spend returns them and the
# child's INSERT copies them (a column added here reaches both).
_INHERITED: tuple[InstrumentedAttribute[Any], ...] = (
    RefreshToken.session_id,
    RefreshToken.user_id,
    RefreshToken.session_expires_at,
    # RFC 8176: a refreshed token keeps the methods of the login that began its session.
    RefreshToken.amr,
)


def _spend(
    now: ColumnElement[datetime], token_digest: ColumnElement[bytes], dialect: str, **values: Any
) -> Update:
    """The conditional UPDATE that spends a live token, returning what its child needs.

    Of two concurrent refreshes exactly one gets the row back. The RETURNING also
    reads the user's claims and roles, saving round trips.
    """
    # Core tables, not the ORM classes: an ORM-enabled UPDATE would compute its cache key
    # and prepare a session synchronization on every execution.
    table = cast(Table, RefreshToken.__table__)
    tokens, users = table.c, cast(Table, User.__table__).c

    def of_user(column: ColumnElement[T]) -> ScalarSelect[T]:
        return select(column).where(users.id == tokens.user_id).correlate(table).scalar_subquery()

    return (
        update(table)
        .where(tokens.token_digest == token_digest, _live(now, tokens))
        .values(spent_at=now, last_used_at=now, **values)
        .returning(
            tokens.id,
            tokens.replaced_by_id,
            *(tokens[c.key] for c in _INHERITED),
            of_user(users.email).label("email"),
            of_user(users.phone_number).label("phone_number"),
            _roles_column(tokens.user_id, table, dialect),
        )
    )


def _roles(value: Any) -> list[str]:
    """The roles a `_roles_column` returned, sorted: an array (PostgreSQL) or JSON text
    (SQLite)."""
    if value is None:
        return []
    found = json.loads(value) if isinstance(value, str) else value
    return sorted(str(role) for role in found if role is not None)


@dataclass(frozen=True)
class _Rotation:
    """The statements of a rotation, built once per dialect with bound parameters: no
    expression is constructed, and no cache key computed, per refresh."""

    spend: Executable
    # SQLite only: the child's INSERT, copying the live parent row (or inserting nothing).
    child: Executable | None = None


# The child's own columns, bound per refresh (the inherited ones come from the parent).
_CHILD_COLUMNS = ("token_digest", "created_at", "expires_at", "user_agent", "ip")


def _new(column: str) -> str:
    """The parameter binding `column` of the child: a column's own name is reserved."""
    return f"new_{column}"


@cache
def _rotation(dialect: str) -> _Rotation:
    table = cast(Table, RefreshToken.__table__)
    now: ColumnElement[datetime] = bindparam("now")
    token_digest: ColumnElement[bytes] = bindparam("spent_digest")
    children = [*(c.key for c in _INHERITED), *_CHILD_COLUMNS]
    bound = [bindparam(_new(key), type_=table.c[key].type) for key in _CHILD_COLUMNS]
    if dialect != "postgresql":
        parent, users = table.c, cast(Table, User.__table__)
        return _Rotation(
            spend=_spend(now, token_digest, dialect, replaced_by_id=bindparam("child_id")),
            # Only for a user that exists: a dangling row gets no child (foreign keys).
            child=insert(table)
            .from_select(
                children,
                select(*(parent[c.key] for c in _INHERITED), *bound)
                .join_from(table, users, users.c.id == parent.user_id)
                .where(parent.token_digest == token_digest, _live(now, parent)),
            )
            .returning(table.c.id),
        )
    next_id = func.nextval(func.pg_get_serial_sequence(table.name, RefreshToken.id.key))
    spend = _spend(now, token_digest, dialect, replaced_by_id=next_id).cte("spent")
    child = (
        insert(table)
        .from_select(
            [RefreshToken.id.key, *children],
            select(spend.c.replaced_by_id, *(spend.c[c.key] for c in _INHERITED), *bound),
        )
        .returning(table.c.id)
        .cte("child")
    )
    return _Rotation(spend=select(spend).add_cte(child))


async def rotate(
    db: AsyncSession,
    *,
    issuer: TokenIssuer,
    refresh_token: str,
    client: Client,
    revoked: RevokedSessions,
    now: datetime,
    audit: Audit,
) -> Grant:
    """Spend a refresh token and issue its child; a spent token revokes its family.

    PostgreSQL: one statement (the spend takes the child's id from the sequence, the
    child's INSERT reads the spent row). SQLite, whose transactions run one at a time
    (BEGIN IMMEDIATE): the child's INSERT, copying the parent if it is live, then the
    spend linking it. Core statements, no unit of work.
    """
    if len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
        raise InvalidToken("unknown refresh token")
    token_digest = digest(refresh_token)
    child_token = new_refresh_token()
    child_values: dict[str, Any] = {
        "token_digest": digest(child_token),
        "created_at": now,
        "expires_at": now + issuer.refresh_ttl,
        "user_agent": client.user_agent,
        "ip": client.ip,
    }
    statements = _rotation(db.get_bind().dialect.name)
    params = {"now": now, "spent_digest": token_digest} | {
        _new(key): value for key, value in child_values.items()
    }
    if statements.child is not None:
        # No child (None) when the token is not live or its user is gone; the spend says which.
        params["child_id"] = (await db.execute(statements.child, params)).scalar_one_or_none()
    spent = (await db.execute(statements.spend, params)).one_or_none()
    if spent is None:
        if issuer.reuse_grace > timedelta(0):
            retried = await _retry(db, issuer, token_digest, client=client, now=now, audit=audit)
            if retried is not None:
                return retried
        await _refuse(db, token_digest, revoked=revoked, now=now, audit=audit)
    if spent.email is None:
        # The user is gone (a row left dangling without foreign keys): mint nothing for
        # an id that is nobody's. The request's rollback leaves the token as it was.
        raise InvalidToken("unknown user")
    grant = _grant(
        issuer,
        child_token,
        user_id=spent.user_id,
        email=spent.email,
        phone=spent.phone_number,
        session_id=spent.session_id,
        session_expires_at=spent.session_expires_at,
        now=now,
        # Roles changed by an admin reach the tokens at the next refresh.
        roles=_roles(spent.roles),
        amr=_amr_of(spent.amr),
    )
    audit.record(Event.TOKEN_REFRESHED, user_id=spent.user_id, session_id=spent.session_id)
    return grant


async def _retry(
    db: AsyncSession,
    issuer: TokenIssuer,
    token_digest: bytes,
    *,
    client: Client,
    now: datetime,
    audit: Audit,
) -> Grant | None:
    """REFRESH_REUSE_GRACE_SECONDS: a token spent within the window whose child was never
    used is a retry of a refresh whose answer was lost. The unused child is revoked and
    a new one issued, so exactly one child stays live; None when this is not a retry.

    The revoked child is marked spent: presented later it is reuse, and its family ends
    (a thief who retried first loses the session when the real client shows up).
    """
    for _ in range(RETRY_ATTEMPTS):
        # The spent token's row is locked: concurrent retries of one token take turns
        # (PostgreSQL; SQLite runs one writer at a time), each seeing the child the one
        # before issued.
        found = (
            await db.execute(
                select(
                    RefreshToken.id,
                    RefreshToken.session_id,
                    RefreshToken.user_id,
                    RefreshToken.spent_at,
                    RefreshToken.replaced_by_id,
                    RefreshToken.session_expires_at,
                    RefreshToken.amr,
                )
                .where(RefreshToken.token_digest == token_digest)
                .with_for_update()
            )
        ).one_or_none()
        if found is None or found.spent_at is None or found.replaced_by_id is None:
            return None
        if now - _aware(found.spent_at) > issuer.reuse_grace:
            return None
        # A conditional UPDATE again: of two concurrent retries one revokes the child.
        unused = (
            await db.execute(
                update(RefreshToken)
                .where(RefreshToken.id == found.replaced_by_id, _live(now))
                .values(revoked_at=now, spent_at=now)
                .returning(RefreshToken.id)
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
        if unused is None:
            # The child was used (reuse), or a concurrent retry revoked it and issued
            # another: look again at which child the token now names.
            now_replaced_by = await db.scalar(
                select(RefreshToken.replaced_by_id).where(RefreshToken.id == found.id)
            )
            if now_replaced_by == found.replaced_by_id:
                return None
            continue
        user = (
            await db.execute(select(User.email, User.phone_number).where(User.id == found.user_id))
        ).one()
        child_id, grant = await _issue(
            db,
            issuer,
            user_id=found.user_id,
            email=user.email,
            phone=user.phone_number,
            session_id=found.session_id,
            session_expires_at=found.session_expires_at,
            client=client,
            now=now,
            amr=_amr_of(found.amr),
        )
        await db.execute(
            update(RefreshToken)
            .where(RefreshToken.id == found.id)
            .values(replaced_by_id=child_id)
            .execution_options(synchronize_session=False)
        )
        audit.record(Event.REFRESH_RETRIED, user_id=found.user_id, session_id=found.session_id)
        return grant
    return None


async def _refuse(
    db: AsyncSession,
    token_digest: bytes,
    *,
    revoked: RevokedSessions,
    now: datetime,
    audit: Audit,
) -> NoReturn:
    """Explain why a refresh token is not live; a spent one is reuse and ends its family."""
    found = (
        await db.execute(
            select(
                RefreshToken.session_id,
                RefreshToken.user_id,
                RefreshToken.spent_at,
                RefreshToken.revoked_at,
            ).where(RefreshToken.token_digest == token_digest)
        )
    ).one_or_none()
    if found is None:
        raise InvalidToken("unknown refresh token")
    if found.spent_at is not None:
        # RFC 9700 §4.14.2: either the client or an attacker holds a stolen
        # token; we cannot tell which, so the whole family ends.
        await _revoke_family(db, found.session_id, revoked=revoked, now=now)
        audit.record(
            Event.REFRESH_REUSE_DETECTED, user_id=found.user_id, session_id=found.session_id
        )
        raise RefreshTokenReused()
    if found.revoked_at is not None:
        raise InvalidToken("refresh token revoked")
    raise InvalidToken("refresh token expired")


async def _revoke(db: AsyncSession, which: ColumnElement[bool], now: datetime) -> set[uuid.UUID]:
    """Revoke every unrevoked token matching `which`; the sessions they belonged to.

    Repeated until a pass finds nothing: under READ COMMITTED (PostgreSQL) an UPDATE
    that waited for a concurrent rotation's row lock does not see the child that
    rotation inserted, which would stay live; the next statement does see it. A
    rotation that starts later waits for our locks and then finds its token revoked.

    The rows are locked in id order first: two revocations of one family (a logout and
    a reuse, say) would otherwise lock its rows in the order each scan meets them, and
    a row rewritten by a rotation moves, so each could hold a row the other waits for
    (a deadlock, which PostgreSQL ends by failing one of them).
    """
    sessions: set[uuid.UUID] = set()
    in_id_order = (
        select(RefreshToken.id)
        .where(which, RefreshToken.revoked_at.is_(None))
        .order_by(RefreshToken.id)
        # FOR NO KEY UPDATE: the lock the UPDATE itself takes.
        .with_for_update(key_share=True)
    )
    while True:
        ended = await db.execute(
            update(RefreshToken)
            .where(RefreshToken.id.in_(in_id_order.scalar_subquery()))
            .values(revoked_at=now)
            .returning(RefreshToken.session_id)
            .execution_options(synchronize_session=False)
        )
        found = set(ended.scalars())
        if not found:
            return sessions
        sessions |= found


# db.info: the sessions a transaction ended, with the set they were added to.
_ENDED_HERE = "ended_sessions"


async def _record_ended(
    db: AsyncSession, session_ids: Collection[uuid.UUID], *, revoked: RevokedSessions, now: datetime
) -> None:
    """The one way a session ends for the bearer check: a record the set is rebuilt from
    (outliving the user's rows), and the revoked-session set itself."""
    if not session_ids:
        return
    dialect = db.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    # A session ended twice keeps its first end: its access tokens expired no later.
    await db.execute(
        insert(EndedSession)
        # In one order, like the rows above: concurrent inserts of one id wait in turn.
        .values([{"session_id": sid, "ended_at": now} for sid in sorted(session_ids)])
        .on_conflict_do_nothing(index_elements=[EndedSession.session_id])
    )
    # Added before the commit: if the commit fails the session is refused
    # early, which fails closed. Added again once it commits (`confirm_ended`).
    await revoked.add(session_ids)
    db.info.setdefault(_ENDED_HERE, []).append((revoked, list(session_ids)))


async def confirm_ended(db: AsyncSession) -> None:
    """After the commit of a transaction that ended sessions: add them to the set again.

    A set lost between the add before the commit and the commit itself (Redis restarted
    or flushed) was rebuilt from records that were not committed yet: without this add,
    the ended sessions' access tokens would pass until they expire. If Redis is down now
    and comes back empty, its rebuild reads the records, committed by then.
    """
    for revoked, session_ids in db.info.pop(_ENDED_HERE, ()):
        try:
            await revoked.add(session_ids)
        except ServiceUnavailable:
            log.warning(
                "revocation store unavailable: %d ended sessions not added again", len(session_ids)
            )


async def _revoke_family(
    db: AsyncSession, session_id: uuid.UUID, *, revoked: RevokedSessions, now: datetime
) -> None:
    await _revoke(db, RefreshToken.session_id == session_id, now)
    await _record_ended(db, [session_id], revoked=revoked, now=now)


async def end(
    db: AsyncSession,
    *,
    refresh_token: str,
    revoked: RevokedSessions,
    now: datetime,
    audit: Audit,
) -> None:
    """Logout (RFC 7009): end the token's session; an unknown token is not an error."""
    if len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
        audit.record(Event.LOGOUT, reason="unknown refresh token")
        return
    found = (
        await db.execute(
            select(RefreshToken.session_id, RefreshToken.user_id, RefreshToken.spent_at).where(
                RefreshToken.token_digest == digest(refresh_token)
            )
        )
    ).one_or_none()
    if found is None:
        audit.record(Event.LOGOUT, reason="unknown refresh token")
        return
    if found.spent_at is not None:
        # A spent token of a live family is reuse here too: the family ends all the same.
        audit.record(
            Event.REFRESH_REUSE_DETECTED, user_id=found.user_id, session_id=found.session_id
        )
    await _revoke_family(db, found.session_id, revoked=revoked, now=now)
    audit.record(Event.LOGOUT, user_id=found.user_id, session_id=found.session_id)


async def end_all(
    db: AsyncSession,
    *,
    user_id: int,
    revoked: RevokedSessions,
    now: datetime,
    except_session: uuid.UUID | None = None,
) -> set[uuid.UUID]:
    """End every session of a user, but `except_session` when given; the sessions it ended.

    Every path that ends all of a user's sessions goes through here (logout-all, password
    change or reset, disabling or deleting the user, enabling two-factor): the ended-session
    records it writes have no foreign key, so deleting the user's rows afterwards leaves them.
    """
    which = RefreshToken.user_id == user_id
    if except_session is not None:
        which = and_(which, RefreshToken.session_id != except_session)
    ended = await _revoke(db, which, now)
    await _record_ended(db, ended, revoked=revoked, now=now)
    return ended


async def end_one(
    db: AsyncSession,
    *,
    user_id: int,
    session_id: uuid.UUID,
    revoked: RevokedSessions,
    now: datetime,
    audit: Audit,
) -> None:
    """End one of the caller's live sessions; NotFound for any other id."""
    is_live = await db.scalar(
        select(
            exists().where(
                RefreshToken.session_id == session_id,
                RefreshToken.user_id == user_id,
                _live(now),
            )
        )
    )
    if not is_live:
        raise NotFound("no such session")
    await _revoke_family(db, session_id, revoked=revoked, now=now)
    audit.record(Event.SESSION_REVOKED, user_id=user_id, ended_session_id=str(session_id))


async def list_active(db: AsyncSession, *, user_id: int, now: datetime) -> list[ActiveSession]:
    """The user's live sessions, newest first."""
    family = (
        select(
            RefreshToken.session_id,
            func.min(RefreshToken.created_at).label("started_at"),
            func.max(RefreshToken.last_used_at).label("last_used_at"),
        )
        .where(RefreshToken.user_id == user_id)
        .group_by(RefreshToken.session_id)
        .subquery()
    )
    rows = await db.execute(
        select(RefreshToken, family.c.started_at, family.c.last_used_at)
        .join(family, family.c.session_id == RefreshToken.session_id)
        .where(RefreshToken.user_id == user_id, _live(now))
        .order_by(family.c.started_at.desc(), RefreshToken.id.desc())
    )
    return [
        ActiveSession(
            id=token.session_id,
            created_at=_aware(started_at),
            last_used_at=_aware(last_used_at) if last_used_at is not None else None,
            expires_at=min(token.expires_at, token.session_expires_at),
            user_agent=token.user_agent,
            ip=token.ip,
        )
        for token, started_at, last_used_at in rows
    ]


def _aware(value: datetime) -> datetime:
    # Aggregates bypass the column type on SQLite and come back naive (UTC).
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def recently_revoked(
    db: AsyncSession, *, since: datetime
) -> Sequence[tuple[uuid.UUID, datetime]]:
    """(session id, ended at) of sessions ended since `since`, to rebuild the revoked set.

    Read from the ended-session records, never from refresh-token rows: those go with
    a deleted user, and a child revoked by a refresh retry does not end its session.
    """
    rows = await db.execute(
        select(EndedSession.session_id, EndedSession.ended_at).where(EndedSession.ended_at >= since)
    )
    return [(session_id, _aware(ended_at)) for session_id, ended_at in rows]


async def prune_ended_records(db: AsyncSession, *, ended_before: datetime) -> int:
    """Delete the ended-session records older than the retention; the number deleted."""
    result = await db.execute(
        delete(EndedSession)
        .where(EndedSession.ended_at < ended_before)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def prune(db: AsyncSession, *, ended_before: datetime, batch_size: int) -> int:
    """Delete one batch of families that ended before `ended_before`; the number of rows deleted.

    A family has ended when none of its unspent tokens is live or was revoked or
    expired after the cutoff. Spent rows of live families stay: they are what
    detects reuse.
    """
    tip = aliased(RefreshToken)
    recent = exists().where(
        tip.session_id == RefreshToken.session_id,
        tip.spent_at.is_(None),
        or_(tip.revoked_at.is_(None), tip.revoked_at >= ended_before),
        tip.expires_at >= ended_before,
        tip.session_expires_at >= ended_before,
    )
    ended = (
        (
            await db.execute(
                select(RefreshToken.session_id).where(~recent).distinct().limit(batch_size)
            )
        )
        .scalars()
        .all()
    )
    if not ended:
        return 0
    result = await db.execute(
        delete(RefreshToken)
        .where(RefreshToken.session_id.in_(ended))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
