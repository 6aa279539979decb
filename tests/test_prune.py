"""`jwt-auth-api prune`: rows of families that ended over one access-token lifetime ago go.

Spent rows of live families stay: they are what detects reuse.
"""

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import cli
from app.config import Settings
from app.main import create_app
from app.models import RefreshToken, User
from app.security.refresh_tokens import digest
from tests.factories import bearer, login, make_user

ACCESS_TTL = timedelta(seconds=1200)
REFRESH_TTL = timedelta(days=7)
SESSION_MAX = timedelta(days=30)


@pytest.fixture
def prune_env(monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str]) -> None:
    """The command reads its settings from the environment, as an operator runs it."""
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TOKEN_ACCESS_TTL_SECONDS", str(int(ACCESS_TTL.total_seconds())))


def run_prune(*args: str) -> None:
    assert cli.main(["prune", *args]) == 0


@dataclass
class Family:
    session_id: uuid.UUID
    raw_tokens: list[str]

    @property
    def tip(self) -> str:
        return self.raw_tokens[-1]


def add_family(
    db: Session,
    user: User,
    *,
    started_at: datetime,
    rotations: int = 2,
    idle_expires_at: datetime | None = None,
    session_expires_at: datetime | None = None,
    revoked_at: datetime | None = None,
) -> Family:
    """A family of `rotations` spent rows and one unspent tip, committed.

    The tip idles until `idle_expires_at` (by default one refresh TTL after its
    creation); a revoked family has `revoked_at` on every row, as the service sets it.
    """
    session_id = uuid.uuid4()
    raw_tokens = [secrets.token_urlsafe(32) for _ in range(rotations + 1)]
    step = timedelta(hours=1)
    rows = []
    for index, raw in enumerate(raw_tokens):
        created_at = started_at + index * step
        is_tip = index == rotations
        rows.append(
            RefreshToken(
                session_id=session_id,
                user_id=user.id,
                token_digest=digest(raw),
                created_at=created_at,
                expires_at=(idle_expires_at if is_tip and idle_expires_at else None)
                or created_at + REFRESH_TTL,
                session_expires_at=session_expires_at or started_at + SESSION_MAX,
                last_used_at=None if is_tip else created_at + step,
                spent_at=None if is_tip else created_at + step,
                revoked_at=revoked_at,
                user_agent="pytest",
                ip="127.0.0.1",
            )
        )
    db.add_all(rows)
    db.commit()
    return Family(session_id=session_id, raw_tokens=raw_tokens)


def rows_left(db: Session, family: Family) -> int:
    db.commit()  # A new transaction sees what the command committed.
    count = db.scalar(
        select(func.count())
        .select_from(RefreshToken)
        .where(RefreshToken.session_id == family.session_id)
    )
    assert count is not None
    return count


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def days_ago(days: float) -> datetime:
    return now_utc() - timedelta(days=days)


def two_lifetimes_ago() -> datetime:
    return now_utc() - 2 * ACCESS_TTL


@dataclass(frozen=True)
class Case:
    started_days_ago: float
    idle_expired_seconds_ago: float | None = None
    absolute_end_seconds_ago: float | None = None
    revoked_seconds_ago: float | None = None


@pytest.mark.parametrize(
    ("case", "kept"),
    [
        pytest.param(Case(2, revoked_seconds_ago=2 * 1200), False, id="revoked-long-ago"),
        pytest.param(Case(2, revoked_seconds_ago=1200 + 60), False, id="revoked-just-over-ttl"),
        pytest.param(Case(2, revoked_seconds_ago=0), True, id="revoked-just-now"),
        pytest.param(Case(2, revoked_seconds_ago=1200 - 60), True, id="revoked-within-ttl"),
        pytest.param(Case(10, idle_expired_seconds_ago=2 * 1200), False, id="idle-expired-long"),
        pytest.param(Case(10, idle_expired_seconds_ago=60), True, id="idle-expired-just-now"),
        pytest.param(Case(2, absolute_end_seconds_ago=2 * 1200), False, id="absolute-end-long"),
        pytest.param(Case(2, absolute_end_seconds_ago=60), True, id="absolute-end-just-now"),
        pytest.param(Case(2), True, id="live-with-spent-rows"),
    ],
)
@pytest.mark.usefixtures("prune_env")
def test_prune_deletes_only_families_that_ended_over_one_access_token_lifetime_ago(
    db: Session, case: Case, kept: bool
) -> None:
    user = make_user(db)
    now = now_utc()

    def ago(seconds: float | None) -> datetime | None:
        return None if seconds is None else now - timedelta(seconds=seconds)

    family = add_family(
        db,
        user,
        started_at=now - timedelta(days=case.started_days_ago),
        idle_expires_at=ago(case.idle_expired_seconds_ago),
        session_expires_at=ago(case.absolute_end_seconds_ago),
        revoked_at=ago(case.revoked_seconds_ago),
    )
    live = add_family(db, user, started_at=now - timedelta(days=1))

    run_prune()

    assert rows_left(db, family) == (3 if kept else 0)
    assert rows_left(db, live) == 3


@pytest.mark.usefixtures("prune_env")
def test_prune_keeps_the_spent_rows_that_detect_reuse(client: TestClient, db: Session) -> None:
    user = make_user(db)
    family = add_family(db, user, started_at=days_ago(3), rotations=3)

    run_prune()

    assert rows_left(db, family) == 4
    spent = family.raw_tokens[0]
    response = client.post("/account/refresh", json={"refresh_token": spent})
    assert response.status_code == 401
    # The replay was recognised as reuse: the live tip is refused too.
    tip = client.post("/account/refresh", json={"refresh_token": family.tip})
    assert tip.status_code == 401
    db.commit()
    revoked = db.scalars(
        select(RefreshToken.revoked_at).where(RefreshToken.session_id == family.session_id)
    ).all()
    assert revoked
    assert all(value is not None for value in revoked)


@pytest.mark.usefixtures("prune_env")
def test_prune_works_through_every_batch(db: Session) -> None:
    user = make_user(db)
    ended = [
        add_family(db, user, started_at=days_ago(2), revoked_at=two_lifetimes_ago())
        for _ in range(5)
    ]
    live = add_family(db, user, started_at=days_ago(1))

    run_prune("--batch-size", "2")

    assert [rows_left(db, family) for family in ended] == [0] * 5
    assert rows_left(db, live) == 3


@pytest.mark.usefixtures("prune_env")
def test_a_session_ended_just_now_survives_prune_so_a_restarted_service_still_refuses_it(
    client: TestClient, db: Session, settings: Settings
) -> None:
    """After a restart the revoked-session set is refilled from these rows."""
    make_user(db)
    pair = login(client)
    logout = client.post("/account/logout", json={"refresh_token": pair["refresh_token"]})
    assert logout.status_code == 204
    session_id = uuid.UUID(
        jwt.decode(pair["access_token"], options={"verify_signature": False})["sid"]
    )

    run_prune()

    assert rows_left(db, Family(session_id=session_id, raw_tokens=[])) == 1
    with TestClient(create_app(settings), base_url="http://testserver") as restarted:
        assert restarted.get("/test", headers=bearer(pair["access_token"])).status_code == 401


@pytest.mark.usefixtures("prune_env")
def test_the_prune_cutoff_follows_token_access_ttl_seconds(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN_ACCESS_TTL_SECONDS", "300")
    user = make_user(db)
    # Within the default 1200 s, but over this service's 300 s.
    ended = add_family(
        db, user, started_at=days_ago(2), revoked_at=now_utc() - timedelta(seconds=600)
    )
    recent = add_family(
        db, user, started_at=days_ago(2), revoked_at=now_utc() - timedelta(seconds=200)
    )

    run_prune()

    assert rows_left(db, ended) == 0
    assert rows_left(db, recent) == 3
