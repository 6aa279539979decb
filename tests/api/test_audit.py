"""The audit log: one JSON event per security decision, naming who, from where, and which
request (its X-Request-ID), and nothing secret."""

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.observability.audit import LOGGER_NAME, Audit, Event, JsonLines
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user

AuditEvent = dict[str, Any]
USER_AGENT = "audit-test/1.0"


class Capture(logging.Handler):
    """Keeps each audit record as the JSON object the stderr handler would print."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.events: list[AuditEvent] = []
        self.formatter = JsonLines()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.events.append(json.loads(self.lines[-1]))


@pytest.fixture
def audit_log(client: TestClient) -> Iterator[list[AuditEvent]]:
    capture = Capture()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(capture)
    client.headers["User-Agent"] = USER_AGENT
    yield capture.events
    logger.removeHandler(capture)


def only(events: list[AuditEvent], event: Event) -> AuditEvent:
    matching = [line for line in events if line["event"] == event.value]
    assert len(matching) == 1, events
    return matching[0]


def session_of(access_token: str) -> str:
    payload = access_token.split(".")[1]
    sid: str = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"]
    return sid


def assert_context(line: AuditEvent, response: Response, path: str) -> None:
    """The event names the request that caused it, and the client."""
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["ip"] == "testclient"
    assert line["user_agent"] == USER_AGENT
    assert line["path"] == path
    assert line["time"].endswith("Z")


def test_a_login_records_the_user_and_the_new_session(
    client: TestClient, db: Session, audit_log: list[AuditEvent]
) -> None:
    user = make_user(db)

    response = client.post(
        "/account/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )

    line = only(audit_log, Event.LOGIN_SUCCEEDED)
    assert line["level"] == "info"
    assert line["user_id"] == user.id
    assert line["session_id"] == session_of(response.json()["access_token"])
    assert_context(line, response, "/account/login")


@pytest.mark.parametrize(
    ("email", "reason", "known"),
    [
        pytest.param("ada@example.com", "wrong password", True, id="wrong-password"),
        pytest.param("nobody@example.com", "unknown email", False, id="unknown-email"),
    ],
)
def test_a_failed_login_records_why_while_the_client_learns_nothing(
    client: TestClient,
    db: Session,
    audit_log: list[AuditEvent],
    email: str,
    reason: str,
    known: bool,
) -> None:
    # ASVS 5.0 16.3.1: unsuccessful authentication attempts are logged.
    user = make_user(db)

    response = client.post("/account/login", json={"email": email, "password": "not it at all"})

    assert response.status_code == 400
    line = only(audit_log, Event.LOGIN_FAILED)
    assert line["level"] == "warning"
    assert line["reason"] == reason
    assert line["user_id"] == (user.id if known else None)
    assert line["session_id"] is None
    assert_context(line, response, "/account/login")


def test_a_throttled_login_records_the_account_under_attack(
    client: TestClient, db: Session, audit_log: list[AuditEvent], settings: Settings
) -> None:
    user = make_user(db)
    for _ in range(settings.LOGIN_MAX_FAILURES):
        client.post("/account/login", json={"email": user.email, "password": "a wrong guess"})

    response = client.post(
        "/account/token",
        data={"grant_type": "password", "username": user.email, "password": DEFAULT_PASSWORD},
    )

    assert response.status_code == 429
    line = only(audit_log, Event.LOGIN_THROTTLED)
    assert line["user_id"] == user.id
    assert_context(line, response, "/account/token")


def test_refresh_and_reuse_record_the_session(
    client: TestClient, db: Session, audit_log: list[AuditEvent]
) -> None:
    user = make_user(db)
    pair = login(client)
    session_id = session_of(pair["access_token"])

    refreshed = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
    replayed = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})

    assert (refreshed.status_code, replayed.status_code) == (200, 401)
    rotation = only(audit_log, Event.TOKEN_REFRESHED)
    assert (rotation["user_id"], rotation["session_id"]) == (user.id, session_id)
    assert_context(rotation, refreshed, "/account/refresh")
    # RFC 9700 §4.14.2: the replay is what an operator must see.
    reuse = only(audit_log, Event.REFRESH_REUSE_DETECTED)
    assert reuse["level"] == "warning"
    assert (reuse["user_id"], reuse["session_id"]) == (user.id, session_id)
    assert_context(reuse, replayed, "/account/refresh")


def test_logout_records_the_ended_session_or_that_the_token_was_unknown(
    client: TestClient, db: Session, audit_log: list[AuditEvent]
) -> None:
    user = make_user(db)
    pair = login(client)

    known = client.post("/account/logout", json={"refresh_token": pair["refresh_token"]})
    unknown = client.post("/account/logout", json={"refresh_token": "never issued"})

    assert (known.status_code, unknown.status_code) == (204, 204)
    first, second = [line for line in audit_log if line["event"] == Event.LOGOUT]
    assert (first["user_id"], first["session_id"]) == (user.id, session_of(pair["access_token"]))
    assert_context(first, known, "/account/logout")
    assert (second["user_id"], second["session_id"]) == (None, None)
    assert second["reason"] == "unknown refresh token"


def test_logout_with_a_spent_token_records_reuse_and_the_logout(
    client: TestClient, db: Session, audit_log: list[AuditEvent]
) -> None:
    make_user(db)
    pair = login(client)
    client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})

    client.post("/account/logout", json={"refresh_token": pair["refresh_token"]})

    assert only(audit_log, Event.REFRESH_REUSE_DETECTED)["path"] == "/account/logout"
    assert only(audit_log, Event.LOGOUT)["session_id"] == session_of(pair["access_token"])


def test_logout_all_records_the_caller_and_how_many_sessions_ended(
    client: TestClient, db: Session, audit_log: list[AuditEvent]
) -> None:
    user = make_user(db)
    login(client)
    pair = login(client)

    response = client.post("/account/logout-all", headers=bearer(pair["access_token"]))

    line = only(audit_log, Event.LOGOUT_ALL)
    assert (line["user_id"], line["session_id"]) == (user.id, session_of(pair["access_token"]))
    assert line["sessions_ended"] == 2
    assert_context(line, response, "/account/logout-all")


def test_a_password_change_records_success_and_failure(
    client: TestClient, db: Session, audit_log: list[AuditEvent]
) -> None:
    user = make_user(db)
    token = login(client)["access_token"]
    new_password = "another long passphrase for ada"

    wrong = client.post(
        "/account/password",
        json={"current_password": "not the password", "new_password": new_password},
        headers=bearer(token),
    )
    right = client.post(
        "/account/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": new_password},
        headers=bearer(token),
    )

    assert (wrong.status_code, right.status_code) == (400, 204)
    failed = only(audit_log, Event.PASSWORD_CHANGE_FAILED)
    assert (failed["user_id"], failed["session_id"]) == (user.id, session_of(token))
    assert_context(failed, wrong, "/account/password")
    changed = only(audit_log, Event.PASSWORD_CHANGED)
    assert (changed["user_id"], changed["session_id"]) == (user.id, session_of(token))
    assert_context(changed, right, "/account/password")


def test_deleting_a_session_records_which_one_ended_and_who_ended_it(
    client: TestClient, db: Session, audit_log: list[AuditEvent]
) -> None:
    user = make_user(db)
    other = session_of(login(client)["access_token"])
    token = login(client)["access_token"]

    response = client.delete(f"/account/sessions/{other}", headers=bearer(token))

    assert response.status_code == 204
    line = only(audit_log, Event.SESSION_REVOKED)
    assert (line["user_id"], line["session_id"]) == (user.id, session_of(token))
    assert line["ended_session_id"] == other


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer not-a-jwt", id="malformed"),
        pytest.param("Bearer ", id="empty"),
        pytest.param("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", id="alg-none"),
    ],
)
def test_a_forged_or_malformed_access_token_costs_no_audit_line(
    client: TestClient, audit_log: list[AuditEvent], authorization: str
) -> None:
    # Anyone can send these by the thousand to /test, which no rate limit guards: one
    # audit line each would let them flood the log. They still answer 401.
    response = client.get("/test", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert audit_log == []


def test_an_access_token_of_an_ended_session_is_recorded_with_its_owner(
    client: TestClient, db: Session, audit_log: list[AuditEvent]
) -> None:
    user = make_user(db)
    pair = login(client)
    client.post("/account/logout", json={"refresh_token": pair["refresh_token"]})

    client.get("/test", headers=bearer(pair["access_token"]))

    line = only(audit_log, Event.ACCESS_TOKEN_REJECTED)
    assert line["reason"] == "session ended"
    assert (line["user_id"], line["session_id"]) == (user.id, session_of(pair["access_token"]))


def test_a_request_without_credentials_is_not_an_audit_event(
    client: TestClient, audit_log: list[AuditEvent]
) -> None:
    assert client.get("/test").status_code == 401
    assert audit_log == []


def test_the_ip_rate_limit_is_recorded(settings_env: dict[str, str], db: Session) -> None:
    settings = Settings(**{**settings_env, "IP_RATE_LIMIT": "1/hour"})  # type: ignore[arg-type]
    capture = Capture()
    logging.getLogger(LOGGER_NAME).addHandler(capture)
    try:
        with TestClient(create_app(settings)) as client:
            client.post("/account/refresh", json={"refresh_token": "a"})
            response = client.post("/account/refresh", json={"refresh_token": "b"})
    finally:
        logging.getLogger(LOGGER_NAME).removeHandler(capture)

    assert response.status_code == 429
    line = only(capture.events, Event.RATE_LIMITED)
    assert line["limit"] == "ip"
    assert line["request_id"] == response.headers["X-Request-ID"]


def test_each_event_is_one_ascii_line_whatever_the_user_agent_holds() -> None:
    # ASVS 5.0 16.4.1: a client cannot forge a second log line or a terminal escape.
    capture = Capture()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(capture)
    hostile = 'x"}\n{"event":"login_succeeded","user_id":1}\r\x1b[2J\u2028caf\u00e9'
    try:
        Audit(request_id="r1", ip="127.0.0.1", user_agent=hostile).record(
            Event.LOGIN_FAILED, reason="wrong password"
        )
    finally:
        logger.removeHandler(capture)

    [line] = capture.lines
    assert "\n" not in line
    assert "\r" not in line
    assert line.isascii()
    assert json.loads(line)["user_agent"] == hostile


def test_the_audit_logger_writes_json_lines_to_stderr(
    client: TestClient, db: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    make_user(db)
    capsys.readouterr()

    login(client)

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["login_succeeded"]
    assert uuid.UUID(lines[0]["request_id"])
