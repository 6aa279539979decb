"""Plain factory functions for tests: users in the database, logins through the API."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx2
from fastapi.testclient import TestClient
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.orm import Session

from app.models import User, UserRole
from app.security.passwords import normalize_password

DEFAULT_PASSWORD = "a long enough test passphrase"
_hasher = PasswordHash((Argon2Hasher(memory_cost=1024, time_cost=1, parallelism=1),))


def hash_password(password: str, hasher: PasswordHash = _hasher) -> str:
    return hasher.hash(normalize_password(password))


def make_user(
    db: Session,
    *,
    email: str = "ada@example.com",
    password: str = DEFAULT_PASSWORD,
    phone_number: str | None = None,
    password_hash: str | None = None,
    roles: Sequence[str] = (),
    is_active: bool = True,
    email_verified: bool = False,
) -> User:
    """A committed user; `email` must already be canonical (lower-case)."""
    user = User(
        email=email,
        password_hash=password_hash or hash_password(password),
        first_name="Ada",
        last_name="Lovelace",
        phone_number=phone_number,
        created_at=datetime.now(UTC).replace(microsecond=0),
        is_active=is_active,
        email_verified=email_verified,
    )
    db.add(user)
    db.flush()
    db.add_all(UserRole(user_id=user.id, role=role) for role in roles)
    db.commit()
    return user


def login(
    client: TestClient | httpx2.Client,
    email: str = "ada@example.com",
    password: str = DEFAULT_PASSWORD,
) -> dict[str, Any]:
    """Log in through the API and return the token pair; fails the test on anything but 200."""
    response = client.post("/account/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
