"""Roles and administration: /admin/users, the `roles` claim, disabled accounts."""

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.models import User
from app.observability.audit import LOGGER_NAME, JsonLines
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user

PROBLEM_JSON = "application/problem+json"
ADMIN = "root@example.com"
VIEW_FIELDS = {
    "id",
    "email",
    "email_verified",
    "first_name",
    "last_name",
    "phone_number",
    "created_at",
    "two_factor_enabled",
    "is_active",
    "roles",
    "last_login_at",
}


def claims_of(access_token: str) -> dict[str, Any]:
    payload = access_token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 3))
    return claims


@pytest.fixture
def admin_headers(client: TestClient, db: Session) -> dict[str, str]:
    make_user(db, email=ADMIN, roles=["admin"])
    return bearer(login(client, ADMIN)["access_token"])


@pytest.fixture
def ada(db: Session) -> User:
    return make_user(db, phone_number="+447700900123")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []
        self.formatter = JsonLines()

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(json.loads(self.format(record)))


@pytest.fixture
def audit_log() -> Iterator[list[dict[str, Any]]]:
    capture = Capture()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(capture)
    yield capture.events
    logger.removeHandler(capture)


def assert_problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["type"] == type_
    assert body["status"] == status
    return body


# The roles claim


def test_access_tokens_carry_the_users_roles_sorted_and_an_empty_list_without_any(
    client: TestClient, db: Session
) -> None:
    make_user(db, email="ops@example.com", roles=["support", "admin", "billing"])
    make_user(db)

    assert claims_of(login(client, "ops@example.com")["access_token"])["roles"] == [
        "admin",
        "billing",
        "support",
    ]
    assert claims_of(login(client)["access_token"])["roles"] == []


def test_roles_changed_by_an_admin_reach_the_tokens_at_the_next_refresh(
    client: TestClient, admin_headers: dict[str, str], ada: User
) -> None:
    pair = login(client)
    assert claims_of(pair["access_token"])["roles"] == []

    changed = client.patch(
        f"/admin/users/{ada.id}", json={"roles": ["editor", "auditor"]}, headers=admin_headers
    )
    assert changed.status_code == 200, changed.text

    refreshed = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    assert claims_of(refreshed.json()["access_token"])["roles"] == ["auditor", "editor"]


# Who may call /admin


def test_without_a_token_admin_routes_answer_401(client: TestClient) -> None:
    response = client.get("/admin/users")
    assert_problem(response, 401, "/problems/authentication-required")


def test_a_user_without_the_admin_role_gets_403_insufficient_scope(
    client: TestClient, ada: User
) -> None:
    headers = bearer(login(client)["access_token"])
    for method, path in [
        ("GET", "/admin/users"),
        ("GET", f"/admin/users/{ada.id}"),
        ("PATCH", f"/admin/users/{ada.id}"),
        ("DELETE", f"/admin/users/{ada.id}"),
    ]:
        response = client.request(method, path, headers=headers, json={"roles": ["admin"]})
        assert_problem(response, 403, "/problems/forbidden")
        assert response.headers["WWW-Authenticate"] == (
            'Bearer realm="http://testserver", error="insufficient_scope"'
        )
    # Nothing changed: the PATCH did not make ada an admin.
    assert claims_of(login(client)["access_token"])["roles"] == []


def test_a_demoted_admin_loses_its_power_at_once_with_the_same_token(
    client: TestClient, db: Session, admin_headers: dict[str, str]
) -> None:
    other = make_user(db, email="second@example.com", roles=["admin"])
    other_headers = bearer(login(client, "second@example.com")["access_token"])
    assert client.get("/admin/users", headers=other_headers).status_code == 200

    demoted = client.patch(f"/admin/users/{other.id}", json={"roles": []}, headers=admin_headers)
    assert demoted.status_code == 200

    assert_problem(client.get("/admin/users", headers=other_headers), 403, "/problems/forbidden")


# Listing


def test_the_admin_user_view_has_the_profile_the_account_state_and_sorted_roles(
    client: TestClient, db: Session, admin_headers: dict[str, str]
) -> None:
    never = make_user(db, email="never@example.com", roles=["zeta", "alpha"])

    (item,) = client.get("/admin/users?email=never@", headers=admin_headers).json()["items"]

    assert set(item) == VIEW_FIELDS
    assert item["id"] == never.id
    assert item["email"] == "never@example.com"
    assert item["roles"] == ["alpha", "zeta"]
    assert item["is_active"] is True
    assert item["last_login_at"] is None
    assert item["email_verified"] is False
    assert item["two_factor_enabled"] is False
    assert item["created_at"].endswith("Z")

    admin = client.get("/admin/users?email=root", headers=admin_headers).json()["items"][0]
    assert admin["roles"] == ["admin"]
    assert admin["last_login_at"] is not None
    assert admin["last_login_at"].endswith("Z")


def test_pagination_over_250_users_with_inserts_between_pages_has_no_duplicates_or_gaps(
    client: TestClient, db: Session, admin_headers: dict[str, str]
) -> None:
    db.add_all(
        User(
            email=f"user{n:03}@example.com",
            password_hash="x",
            created_at=datetime.now(UTC).replace(microsecond=0),
        )
        for n in range(250)
    )
    db.commit()
    before = set(db.scalars(select(User.id)))
    seen: list[int] = []
    cursor: str | None = None
    inserted = 0
    while True:
        params: dict[str, Any] = {"limit": 40}
        if cursor is not None:
            params["cursor"] = cursor
        page = client.get("/admin/users", params=params, headers=admin_headers)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # Someone registers while the admin pages through.
        make_user(db, email=f"late{inserted}@example.com")
        inserted += 1

    assert inserted >= 6
    assert len(seen) == len(set(seen)), "no user twice"
    assert seen == sorted(seen)
    assert before <= set(seen), "no user missed"
    # Users added meanwhile come after every earlier one, so the last pages show them.
    assert len(seen) == len(before) + inserted


def test_next_cursor_is_null_on_the_last_page_and_limit_defaults_to_50(
    client: TestClient, db: Session, admin_headers: dict[str, str]
) -> None:
    for n in range(55):
        make_user(db, email=f"u{n}@example.com", password_hash="x")
    first = client.get("/admin/users", headers=admin_headers).json()
    assert len(first["items"]) == 50
    rest = client.get(
        "/admin/users", params={"cursor": first["next_cursor"]}, headers=admin_headers
    ).json()
    assert len(rest["items"]) == 6  # 55 and the admin
    assert rest["next_cursor"] is None
    exact = client.get("/admin/users", params={"limit": 56}, headers=admin_headers).json()
    assert len(exact["items"]) == 56
    assert exact["next_cursor"] is None


def test_the_email_filter_is_a_prefix_of_the_canonical_form_with_wildcards_literal(
    client: TestClient, db: Session, admin_headers: dict[str, str]
) -> None:
    for email in ("ann@example.com", "anna@example.com", "bob@example.com", "a_b@example.com"):
        make_user(db, email=email)
    make_user(db, email="a%c@example.com")

    def emails(prefix: str) -> list[str]:
        response = client.get("/admin/users", params={"email": prefix}, headers=admin_headers)
        assert response.status_code == 200, response.text
        return [item["email"] for item in response.json()["items"]]

    assert emails("ANN") == ["ann@example.com", "anna@example.com"]
    full_width_a = "\uff41"
    assert emails(f"  {full_width_a}NN@") == ["ann@example.com"]  # trimmed, NFKC, lower-cased
    assert emails("a_") == ["a_b@example.com"]
    assert emails("a%") == ["a%c@example.com"]
    assert emails("nobody") == []


def test_a_forged_but_well_formed_cursor_continues_after_the_id_it_names(
    client: TestClient, db: Session, admin_headers: dict[str, str], ada: User
) -> None:
    def cursor(value: str) -> str:
        return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")

    after_all = client.get(
        "/admin/users", params={"cursor": cursor("999999")}, headers=admin_headers
    )
    assert after_all.status_code == 200
    assert after_all.json() == {"items": [], "next_cursor": None}
    from_start = client.get("/admin/users", params={"cursor": cursor("0")}, headers=admin_headers)
    assert [item["id"] for item in from_start.json()["items"]] == sorted(
        db.scalars(select(User.id))
    )


# Reading one


def test_get_one_user_and_404_for_an_unknown_id(
    client: TestClient, admin_headers: dict[str, str], ada: User
) -> None:
    response = client.get(f"/admin/users/{ada.id}", headers=admin_headers)
    assert response.status_code == 200
    assert response.json()["email"] == "ada@example.com"
    assert response.json()["phone_number"] == "+447700900123"
    assert_problem(
        client.get(f"/admin/users/{ada.id + 1000}", headers=admin_headers),
        404,
        "/problems/not-found",
    )


# Disabling


def test_disabling_a_user_ends_every_session_and_blocks_login_until_enabled(
    client: TestClient,
    admin_headers: dict[str, str],
    ada: User,
    audit_log: list[dict[str, Any]],
) -> None:
    first, second = login(client), login(client)
    assert client.get("/test", headers=bearer(first["access_token"])).status_code == 200

    disabled = client.patch(
        f"/admin/users/{ada.id}", json={"is_active": False}, headers=admin_headers
    )

    assert disabled.status_code == 200
    assert disabled.json()["is_active"] is False
    for pair in (first, second):
        cut = client.get("/test", headers=bearer(pair["access_token"]))
        assert cut.status_code == 401
        assert 'error="invalid_token"' in cut.headers["WWW-Authenticate"]
        assert client.get("/account/me", headers=bearer(pair["access_token"])).status_code == 401
        refresh = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refresh.status_code == 401
    right = client.post(
        "/account/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )
    assert_problem(right, 403, "/problems/account-disabled")
    assert "access_token" not in right.text
    wrong = client.post("/account/login", json={"email": "ada@example.com", "password": "nope"})
    assert_problem(wrong, 400, "/problems/invalid-credentials")

    (event,) = [e for e in audit_log if e["event"] == "user_disabled"]
    assert event["target_user_id"] == ada.id
    assert event["actor_id"] == event["user_id"] != ada.id
    assert event["sessions_ended"] == 2

    enabled = client.patch(
        f"/admin/users/{ada.id}", json={"is_active": True}, headers=admin_headers
    )
    assert enabled.json()["is_active"] is True
    assert [e["target_user_id"] for e in audit_log if e["event"] == "user_enabled"] == [ada.id]
    login(client)


def test_the_token_endpoint_names_a_disabled_account_only_after_the_right_password(
    client: TestClient, admin_headers: dict[str, str], ada: User
) -> None:
    client.patch(f"/admin/users/{ada.id}", json={"is_active": False}, headers=admin_headers)

    def grant(password: str) -> Any:
        return client.post(
            "/account/token",
            data={"grant_type": "password", "username": "ada@example.com", "password": password},
        )

    right, wrong = grant(DEFAULT_PASSWORD), grant("not the password")
    assert right.status_code == wrong.status_code == 400
    assert right.json()["error"] == wrong.json()["error"] == "invalid_grant"
    assert "disabled" in right.json()["error_description"]
    assert "disabled" not in wrong.json()["error_description"]


def test_wrong_passwords_on_a_disabled_account_still_count_towards_the_lockout(
    client: TestClient, admin_headers: dict[str, str], ada: User
) -> None:
    client.patch(f"/admin/users/{ada.id}", json={"is_active": False}, headers=admin_headers)
    wrong = {"email": "ada@example.com", "password": "not the password"}
    statuses = [client.post("/account/login", json=wrong).status_code for _ in range(6)]
    assert statuses == [400] * 5 + [429]


def test_an_admin_cannot_disable_demote_or_delete_itself(
    client: TestClient, db: Session, admin_headers: dict[str, str]
) -> None:
    me = db.scalars(select(User).where(User.email == ADMIN)).one()
    refused: list[dict[str, Any]] = [{"is_active": False}, {"roles": []}, {"roles": ["support"]}]
    for body in refused:
        response = client.patch(f"/admin/users/{me.id}", json=body, headers=admin_headers)
        assert_problem(response, 409, "/problems/conflict")
    assert_problem(
        client.delete(f"/admin/users/{me.id}", headers=admin_headers), 409, "/problems/conflict"
    )
    # Adding a role to itself is fine, and nothing of the refused changes stuck.
    kept = client.patch(
        f"/admin/users/{me.id}", json={"roles": ["support", "admin"]}, headers=admin_headers
    )
    assert kept.status_code == 200
    assert kept.json()["roles"] == ["admin", "support"]
    assert kept.json()["is_active"] is True


# Roles


def test_roles_are_replaced_deduplicated_and_audited_with_actor_and_target(
    client: TestClient, admin_headers: dict[str, str], ada: User, audit_log: list[dict[str, Any]]
) -> None:
    url = f"/admin/users/{ada.id}"
    first = client.patch(url, json={"roles": ["b-role", "a_role", "b-role"]}, headers=admin_headers)
    assert first.json()["roles"] == ["a_role", "b-role"]
    second = client.patch(url, json={"roles": ["c"]}, headers=admin_headers)
    assert second.json()["roles"] == ["c"]
    assert client.get(url, headers=admin_headers).json()["roles"] == ["c"]
    # The same set again changes nothing and is no event.
    client.patch(url, json={"roles": ["c"]}, headers=admin_headers)
    # An empty body changes nothing.
    assert client.patch(url, json={}, headers=admin_headers).json()["roles"] == ["c"]

    events = [e for e in audit_log if e["event"] == "roles_changed"]
    assert [e["roles"] for e in events] == ["a_role,b-role", "c"]
    assert all(e["target_user_id"] == ada.id and e["actor_id"] for e in events)


def test_sixteen_roles_are_allowed_and_seventeen_are_not(
    client: TestClient, admin_headers: dict[str, str], ada: User
) -> None:
    url = f"/admin/users/{ada.id}"
    sixteen = [f"role{n}" for n in range(16)]
    assert client.patch(url, json={"roles": sixteen}, headers=admin_headers).status_code == 200
    too_many = client.patch(url, json={"roles": [*sixteen, "one-more"]}, headers=admin_headers)
    assert_problem(too_many, 422, "/problems/validation-error")
    assert client.get(url, headers=admin_headers).json()["roles"] == sorted(sixteen)


def test_two_factor_enabled_false_is_accepted_and_true_is_not(
    client: TestClient, admin_headers: dict[str, str], ada: User
) -> None:
    url = f"/admin/users/{ada.id}"
    off = client.patch(url, json={"two_factor_enabled": False}, headers=admin_headers)
    assert off.status_code == 200
    assert off.json()["two_factor_enabled"] is False
    on = client.patch(url, json={"two_factor_enabled": True}, headers=admin_headers)
    assert_problem(on, 422, "/problems/validation-error")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"roles": ["Admin"]}, id="upper-case"),
        pytest.param({"roles": ["1admin"]}, id="leading-digit"),
        pytest.param({"roles": ["ad min"]}, id="space"),
        pytest.param({"roles": ["admin,support"]}, id="comma"),
        pytest.param({"roles": ["r\u00f4le"]}, id="non-ascii"),
        pytest.param({"roles": ["adm\x00in"]}, id="nul"),
        pytest.param('{"roles": ["\\ud800"]}', id="lone-surrogate"),
        pytest.param('{"roles": ["admin"]', id="malformed-json"),
        pytest.param({"roles": ["a" * 33]}, id="too-long"),
        pytest.param({"roles": [""]}, id="empty"),
        pytest.param({"roles": "admin"}, id="not-a-list"),
        pytest.param({"roles": [1]}, id="not-strings"),
        pytest.param({"roles": None}, id="null-roles"),
        pytest.param({"is_active": None}, id="null-is-active"),
        pytest.param({"is_active": "false"}, id="string-bool"),
        pytest.param({"is_active": 0}, id="int-bool"),
        pytest.param({"email": "x@example.com"}, id="unknown-field"),
        pytest.param([], id="not-an-object"),
    ],
)
def test_bad_patch_bodies_are_422_and_change_nothing(
    client: TestClient, admin_headers: dict[str, str], ada: User, body: Any
) -> None:
    url = f"/admin/users/{ada.id}"
    if isinstance(body, str):  # raw JSON text, which the client would not produce
        response = client.patch(
            url, content=body, headers={**admin_headers, "Content-Type": "application/json"}
        )
    else:
        response = client.patch(url, json=body, headers=admin_headers)
    problem = assert_problem(response, 422, "/problems/validation-error")
    assert "admin,support" not in json.dumps(problem)
    after = client.get(url, headers=admin_headers).json()
    assert after["roles"] == []
    assert after["is_active"] is True


# Deleting


def test_deleting_a_user_ends_its_tokens_and_removes_its_rows(
    client: TestClient,
    db: Session,
    admin_headers: dict[str, str],
    audit_log: list[dict[str, Any]],
) -> None:
    ada_id = make_user(db, roles=["editor"]).id
    pair = login(client)

    response = client.delete(f"/admin/users/{ada_id}", headers=admin_headers)

    assert response.status_code == 204
    assert client.get("/test", headers=bearer(pair["access_token"])).status_code == 401
    assert client.get("/account/me", headers=bearer(pair["access_token"])).status_code == 401
    refresh = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401
    assert_problem(
        client.get(f"/admin/users/{ada_id}", headers=admin_headers), 404, "/problems/not-found"
    )
    assert_problem(
        client.delete(f"/admin/users/{ada_id}", headers=admin_headers), 404, "/problems/not-found"
    )
    for table in ("refresh_tokens", "user_roles"):
        count = db.execute(
            text(f"SELECT count(*) FROM {table} WHERE user_id = :id"),  # noqa: S608
            {"id": ada_id},
        ).scalar_one()
        assert count == 0, table
    db.rollback()
    (event,) = [e for e in audit_log if e["event"] == "user_deleted"]
    assert event["target_user_id"] == ada_id
    assert event["actor_id"] is not None
    # The address is free again, and the new account gets a new id.
    make_user(db, email="other@example.com")
    again = make_user(db)
    assert again.id > ada_id


def test_a_deleted_users_id_is_never_given_to_a_new_user(
    client: TestClient, db: Session, admin_headers: dict[str, str]
) -> None:
    last = make_user(db, email="last@example.com")
    assert client.delete(f"/admin/users/{last.id}", headers=admin_headers).status_code == 204
    assert make_user(db, email="next@example.com").id > last.id


# Bad input: 404 or 422, never 500


@pytest.mark.parametrize(
    "user_id",
    ["abc", "0", "-1", "1.5", "1e3", "2147483648", "99999999999999999999999", "%00", "0x10"],
)
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_ids_that_are_not_user_ids_are_404_or_422(
    client: TestClient, admin_headers: dict[str, str], method: str, user_id: str
) -> None:
    response = client.request(
        method, f"/admin/users/{user_id}", json={"is_active": True}, headers=admin_headers
    )
    assert response.status_code in (404, 422), response.text
    assert response.headers["content-type"] == PROBLEM_JSON


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"cursor": "A" * 10_000}, id="10kB-cursor"),
        pytest.param({"cursor": "!!!"}, id="not-base64"),
        pytest.param({"cursor": ""}, id="empty-cursor"),
        pytest.param({"cursor": base64.urlsafe_b64encode(b"abc").decode()}, id="not-a-number"),
        pytest.param({"cursor": base64.urlsafe_b64encode(b"-1").decode()}, id="negative"),
        pytest.param({"cursor": base64.urlsafe_b64encode(b"9" * 30).decode()}, id="too-large"),
        pytest.param({"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, id="binary"),
        pytest.param({"cursor": "MQ==="}, id="bad-padding"),
        pytest.param({"cursor": "\u00e9t\u00e9"}, id="non-ascii"),
        pytest.param({"limit": "0"}, id="limit-0"),
        pytest.param({"limit": "101"}, id="limit-101"),
        pytest.param({"limit": "ten"}, id="limit-text"),
        pytest.param({"email": "a\x00b"}, id="nul-email"),
        pytest.param({"email": "a" * 301}, id="long-email"),
    ],
)
def test_bad_list_queries_are_422(
    client: TestClient, admin_headers: dict[str, str], params: dict[str, str]
) -> None:
    response = client.get("/admin/users", params=params, headers=admin_headers)
    body = assert_problem(response, 422, "/problems/validation-error")
    assert "A" * 100 not in json.dumps(body)


def test_the_openapi_document_lists_the_admin_routes_with_their_errors(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/admin/users"]["get"]["responses"]) >= {"200", "401", "403", "422"}
    one = paths["/admin/users/{user_id}"]
    assert set(one) == {"get", "patch", "delete"}
    assert set(one["patch"]["responses"]) >= {"200", "403", "404", "409", "422"}
    assert set(one["delete"]["responses"]) >= {"204", "403", "404", "409"}


def test_patch_is_an_allowed_cors_method(settings_env: dict[str, str], db: Session) -> None:
    from app.config import Settings
    from app.main import create_app

    app = create_app(Settings(**{**settings_env, "CORS_ORIGINS": "https://app.example"}))  # type: ignore[arg-type]
    with TestClient(app, base_url="http://testserver") as cors_client:
        preflight = cors_client.options(
            "/admin/users/1",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "Authorization, Content-Type",
            },
        )
    assert preflight.status_code == 200
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
