"""LOG_FORMAT=json: every line a real server writes is one JSON object of the contract's
shape, uvicorn's and a traceback's included, and a request's lines carry its id."""

import json
import re
import sys
from collections.abc import Callable
from typing import Any

import httpx2
from sqlalchemy.orm import Session

from tests.conftest import SERVE, LiveServer
from tests.factories import bearer, login, make_user
from tests.observability.failing_app import BOOM_PATH

FAILING_APP = (
    sys.executable,
    "-m",
    "uvicorn",
    "tests.observability.failing_app:create",
    "--factory",
)
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
LEVELS = {"debug", "info", "warning", "error", "critical"}


def parse(log: str) -> list[dict[str, Any]]:
    """Every line of the log as JSON; fails on the first line that is not."""
    lines = []
    for number, line in enumerate(log.splitlines(), start=1):
        try:
            parsed = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(parsed, dict), line
        assert RFC3339_UTC.fullmatch(parsed["time"]), line
        assert parsed["level"] in LEVELS, line
        assert isinstance(parsed["logger"], str), line
        assert "message" in parsed or "event" in parsed, line
        lines.append(parsed)
    return lines


def test_every_line_of_a_scenario_is_json_with_its_request_id(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    make_user(db)
    server = live_server(command=FAILING_APP)
    with httpx2.Client(base_url=server.url) as client:
        pair = login(client)
        wrong = client.post(
            "/account/login", json={"email": "ada@example.com", "password": "wrong one here"}
        )
        ok = client.get("/test", headers=bearer(pair["access_token"]))
        own_id = client.get("/health", headers={"X-Request-ID": "operator-chosen-id"})
    # Last, on a connection of its own: uvicorn closes the connection after an error.
    boom = httpx2.get(f"{server.url}{BOOM_PATH}")
    assert boom.status_code == 500
    lines = parse(server.stop_and_read_log())

    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "uvicorn.access", "app.audit", "app"} <= loggers
    assert any(line.get("message") == "Application startup complete." for line in lines)

    def of(response: httpx2.Response) -> list[dict[str, Any]]:
        return [
            line for line in lines if line.get("request_id") == response.headers["X-Request-ID"]
        ]

    # The failed login: its audit event and its access line.
    assert [line["logger"] for line in of(wrong)] == ["app.audit", "uvicorn.access"]
    assert [line["logger"] for line in of(ok)] == ["uvicorn.access"]
    assert of(ok)[0]["status"] == 200
    assert of(ok)[0]["path"] == "/test"
    assert [line["logger"] for line in of(own_id)] == ["uvicorn.access"]
    # The unhandled error: the service's line and uvicorn's, each with the traceback.
    failure = of(boom)
    tracebacks = [line for line in failure if "exc_info" in line]
    assert {line["logger"] for line in tracebacks} == {"app", "uvicorn.error"}
    for line in tracebacks:
        assert line["level"] == "error"
        assert line["exc_info"].startswith("Traceback (most recent call last):")
        assert "Boom: an error nobody handles" in line["exc_info"]
    assert any(line["logger"] == "uvicorn.access" and line["status"] == 500 for line in failure)
    # Lines outside any request have no request id.
    startup = [line for line in lines if line.get("message") == "Application startup complete."]
    assert "request_id" not in startup[0]


def test_serve_logs_json_and_prints_the_demo_password_plain(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server("--demo", command=SERVE)
    httpx2.get(f"{server.url}/health")
    log = server.stop_and_read_log()

    person: list[str] = []
    rest: list[str] = []
    for line in log.splitlines():
        (person if line.startswith("demo account:") else rest).append(line)
    assert len(person) == 1
    lines = parse("\n".join(rest))
    assert any(line["logger"] == "alembic.runtime.migration" for line in lines)
    assert any(line["logger"] == "uvicorn.access" for line in lines)
    assert any(line.get("message", "").startswith("Uvicorn running on") for line in lines)


def test_log_format_text_is_for_a_terminal(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    make_user(db)
    server = live_server(LOG_FORMAT="text")
    with httpx2.Client(base_url=server.url) as client:
        response = client.post(
            "/account/login", json={"email": "ada@example.com", "password": "wrong one\nhere"}
        )
    log = server.stop_and_read_log()

    request_id = response.headers["X-Request-ID"]
    failed = [line for line in log.splitlines() if "login_failed" in line]
    assert len(failed) == 1
    assert f"[{request_id}]" in failed[0]
    assert 'reason="wrong password"' in failed[0]
    assert not any(line.startswith("{") for line in log.splitlines())
    assert any(
        f"[{request_id}]" in line and "POST /account/login" in line for line in log.splitlines()
    )
