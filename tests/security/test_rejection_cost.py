"""What a bearer check may do, counted: the guard of the forged-token and valid-token paths.

A forged signature is refused after reading the header alone (the claims are never parsed),
and a valid token's check reads no database row. Counted calls, not timings, so the test
holds on any machine.
"""

import asyncio
import gc
import json
from collections.abc import Callable, Iterator
from typing import Any

import fastapi.dependencies.utils
import fastapi.routing
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.types import Message

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
    calls.counts.clear()
    with pytest.raises(Exception, match="bad signature"):
        codec.decode(token)
    assert calls["json.loads"] <= 1  # the header, unless it is the one the codec mints
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
    """PostgreSQL: one statement (spend, child, link); SQLite: the child, then the spend.

    The spend reads the user's claims and roles itself: no statement of its own for them.
    """
    make_user(db)
    pair = login(client)
    statements.clear()
    response = client.post("/account/refresh", json={"refresh_token": pair["refresh_token"]})
    assert response.status_code == 200, response.text
    sent = [s for s in statements if s not in {"pool checkout", "BEGIN", "BEGIN IMMEDIATE"}]
    expected = 1 if db.get_bind().dialect.name == "postgresql" else 2
    assert len(sent) == expected, sent
    assert not any(s.lstrip().upper().startswith("SELECT") for s in sent[1:]), sent


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Counts FastAPI's dependency solving, once per request that reaches it."""
    counter = Calls()
    monkeypatch.setattr(
        fastapi.routing,
        "solve_dependencies",
        counter.wrap("solve", fastapi.dependencies.utils.solve_dependencies),
    )
    return counter


def test_a_forged_token_is_refused_before_fastapi_solves_a_dependency(
    client: TestClient, db: Session, solved: Calls
) -> None:
    make_user(db)
    token = login(client)["access_token"]
    solved.counts.clear()
    assert client.get("/account/me", headers=bearer(forged(token))).status_code == 401
    assert solved["solve"] == 0
    # The counter counts: a valid token goes on to the endpoint through FastAPI.
    assert client.get("/account/me", headers=bearer(token)).status_code == 200
    assert solved["solve"] == 1


def test_an_endpoint_that_takes_the_claims_alone_is_called_without_fastapi(
    client: TestClient, db: Session, solved: Calls
) -> None:
    make_user(db)
    token = login(client)["access_token"]
    solved.counts.clear()
    response = client.get("/test", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == "Only authenticated user can consume this endpoint"
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert solved["solve"] == 0


def _headers_for(case: str, token: str) -> dict[str, str] | list[tuple[str, str]]:
    cases: dict[str, dict[str, str] | list[tuple[str, str]]] = {
        "no header": {},
        "another scheme": {"Authorization": f"Basic {token}"},
        "two headers": [("Authorization", f"Bearer {token}")] * 2,
        "tab after Bearer": {"Authorization": f"Bearer\t{token}"},
        "empty token": {"Authorization": "Bearer "},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "forged signature": bearer(forged(token)),
        "ended session": bearer(token),
    }
    return cases[case]


@pytest.mark.parametrize(
    "case",
    [
        "no header",
        "another scheme",
        "two headers",
        "tab after Bearer",
        "empty token",
        "garbage",
        "forged signature",
        "ended session",
    ],
)
def test_a_refusal_before_fastapi_answers_exactly_as_the_dependency_does(
    client: TestClient, db: Session, case: str
) -> None:
    # GET /account/me checks the token first; PATCH /account/me takes a body, so its
    # check runs as a FastAPI dependency. Both must answer a bad token alike.
    make_user(db)
    token = login(client)["access_token"]
    if case == "ended session":
        assert client.post("/account/logout-all", headers=bearer(token)).status_code == 204
    headers = _headers_for(case, token)
    early = client.get("/account/me", headers=headers)
    late = client.patch("/account/me", headers=headers, json={})
    assert early.status_code == late.status_code
    assert early.status_code in (400, 401)
    assert early.json() == late.json()
    assert early.headers["WWW-Authenticate"] == late.headers["WWW-Authenticate"]
    assert early.headers["Content-Type"] == "application/problem+json"
    assert early.headers["X-Content-Type-Options"] == "nosniff"
    assert early.headers["X-Request-ID"] != late.headers["X-Request-ID"]


async def _get(app: FastAPI, headers: list[tuple[bytes, bytes]]) -> int:
    """One GET /test straight through the ASGI app; the status it answered."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/test",
        "raw_path": b"/test",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


def test_a_refused_token_leaves_no_garbage_for_the_collector(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    # A reference cycle per refusal (an error held beside its own traceback) would make a
    # flood of forged tokens run the garbage collector, whose full passes stall every request.
    make_user(db)
    headers = [(b"authorization", f"Bearer {forged(login(client)['access_token'])}".encode())]

    async def refuse_many() -> tuple[list[int], int]:
        await _get(app, headers)
        gc.collect()
        gc.disable()
        try:
            statuses = [await _get(app, headers) for _ in range(50)]
            return statuses, gc.collect()
        finally:
            gc.enable()

    statuses, garbage = asyncio.run(refuse_many())
    assert statuses == [401] * 50
    assert garbage == 0
