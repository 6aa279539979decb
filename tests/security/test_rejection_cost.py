"""What a bearer check may do, counted: the guard of the forged-token and valid-token paths.

A forged signature is refused after reading the header alone (the claims are never parsed),
and a valid token's check reads no database row. Counted calls, not timings, so the test
holds on any machine.
"""

import json
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.runtime import Runtime
from tests.factories import bearer, login, make_user
from tests.security.test_access_tokens import make_codec, sign, valid_claims, valid_header


class Calls:
    """How often each wrapped function ran."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] = self.counts.get(name, 0) + 1
            return function(*args, **kwargs)

        return counted

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Counts every JSON parse (ours and PyJWT's) and every PyJWT decode."""
    counter = Calls()
    monkeypatch.setattr(json, "loads", counter.wrap("json.loads", json.loads))
    monkeypatch.setattr(jwt, "decode", counter.wrap("jwt.decode", jwt.decode))
    monkeypatch.setattr(
        jwt.api_jwt.PyJWT,
        "_decode_payload",
        counter.wrap("claims", jwt.api_jwt.PyJWT._decode_payload),
    )
    return counter


def forged(token: str) -> str:
    """`token` with the first character of its signature changed."""
    head, _, signature = token.rpartition(".")
    return f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


def test_a_forged_signature_is_refused_after_parsing_the_header_only(calls: Calls) -> None:
    token = forged(sign(valid_header(), valid_claims()))
    codec = make_codec()
    with pytest.raises(Exception, match="bad signature"):
        codec.decode(token)
    assert calls["json.loads"] == 1  # the header
    assert calls["jwt.decode"] == 0
    assert calls["claims"] == 0


def test_a_forged_token_with_invalid_claims_still_gets_the_signature_reason(
    calls: Calls,
) -> None:
    # Claims that would fail every check: the signature is the first failing one.
    token = forged(sign(valid_header(), {"exp": "soon", "iss": "elsewhere"}))
    with pytest.raises(Exception, match="bad signature"):
        make_codec().decode(token)
    assert calls["claims"] == 0


def test_the_claims_of_a_genuine_token_are_parsed(calls: Calls) -> None:
    # The counters count: a correctly signed token does reach the claims.
    make_codec().decode(sign(valid_header(), valid_claims()))
    assert calls["claims"] == 1


@pytest.fixture
def statements(app: FastAPI, client: TestClient) -> Iterator[list[str]]:
    """Every SQL statement the app's engine sends, and every connection it checks out."""
    runtime: Runtime = app.state.runtime
    engine = runtime.engine.sync_engine
    sent: list[str] = []

    def on_execute(*args: Any) -> None:
        sent.append(str(args[2]))

    def on_checkout(*args: Any) -> None:
        sent.append("pool checkout")

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine.pool, "checkout", on_checkout)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine.pool, "checkout", on_checkout)


def test_a_valid_bearer_check_reads_no_database_row(
    client: TestClient, db: Session, statements: list[str]
) -> None:
    make_user(db)
    token = login(client)["access_token"]
    statements.clear()
    for _ in range(3):  # the first check verifies, the next ones hit the cache
        response = client.get("/test", headers=bearer(token))
        assert response.status_code == 200, response.text
    assert statements == []


def test_a_forged_token_is_refused_without_a_database_read_or_claims_parsing(
    client: TestClient, db: Session, statements: list[str], calls: Calls
) -> None:
    make_user(db)
    token = login(client)["access_token"]
    statements.clear()
    calls.counts.clear()
    response = client.get("/test", headers=bearer(forged(token)))
    assert response.status_code == 401
    assert 'error_description="bad signature"' in response.headers["WWW-Authenticate"]
    assert statements == []
    assert calls["claims"] == 0
    assert calls["jwt.decode"] == 0


def test_a_refresh_spends_and_issues_in_the_fewest_statements(
    client: TestClient, db: Session, statements: list[str]
) -> None:
    """PostgreSQL: one statement (spend, child, link); SQLite: the spend, the child, the link.

    The spend reads the user's claims and roles itself: no statement of its own for them.
    """
    make_user(db)
    pair = login(client)
    statements.clear()
    response = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
    assert response.status_code == 200, response.text
    sent = [s for s in statements if s not in {"pool checkout", "BEGIN", "BEGIN IMMEDIATE"}]
    expected = 1 if db.get_bind().dialect.name == "postgresql" else 3
    assert len(sent) == expected, sent
    assert not any(s.lstrip().upper().startswith("SELECT") for s in sent[1:]), sent
