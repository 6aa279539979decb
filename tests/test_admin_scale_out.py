"""Administration across instances: what one instance's admin does holds on the other at once.

Run with DATABASE_URL=postgresql+psycopg://... and RATE_LIMIT_STORAGE_URL=redis://...;
without both these tests are deselected.
"""

from collections.abc import Callable

import httpx2
import pytest
from sqlalchemy.orm import Session

from tests.conftest import LiveServer
from tests.factories import bearer, login, make_user

pytestmark = pytest.mark.multi_instance


def test_a_disabled_users_live_access_token_is_refused_at_once_on_another_instance(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    ada = make_user(db)
    make_user(db, email="root@example.com", roles=["admin"])
    a, b = live_server(), live_server()
    with (
        httpx2.Client(base_url=a.url, timeout=30) as to_a,
        httpx2.Client(base_url=b.url, timeout=30) as to_b,
    ):
        pair = login(to_b)
        assert to_b.get("/test", headers=bearer(pair["access_token"])).status_code == 200
        admin = bearer(login(to_a, "root@example.com")["access_token"])

        disabled = to_a.patch(f"/admin/users/{ada.id}", json={"is_active": False}, headers=admin)
        assert disabled.status_code == 200

        for instance in (to_a, to_b):
            cut = instance.get("/test", headers=bearer(pair["access_token"]))
            assert cut.status_code == 401
            assert 'error="invalid_token"' in cut.headers["WWW-Authenticate"]
        refresh = to_b.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refresh.status_code == 401


def test_a_deleted_users_live_access_token_is_refused_at_once_on_another_instance(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    ada = make_user(db)
    make_user(db, email="root@example.com", roles=["admin"])
    a, b = live_server(), live_server()
    with (
        httpx2.Client(base_url=a.url, timeout=30) as to_a,
        httpx2.Client(base_url=b.url, timeout=30) as to_b,
    ):
        pair = login(to_b)
        admin = bearer(login(to_a, "root@example.com")["access_token"])

        assert to_a.delete(f"/admin/users/{ada.id}", headers=admin).status_code == 204

        assert to_b.get("/test", headers=bearer(pair["access_token"])).status_code == 401
