"""/metrics: the contract's series move by exactly what happened, for allowed clients only."""

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.models import User
from app.observability import metrics
from tests.attacks.forge import decoded, hmac_signed, unsigned
from tests.conftest import ROOT, LiveServer
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user
from tests.observability.scrape import key, moved, samples

AUTH_SERIES = ("auth_",)
LOCAL = ("127.0.0.1", 50000)
CONTRACT_SERIES = {
    "auth_logins_total": ("result", metrics.LOGIN_RESULTS),
    "auth_refreshes_total": ("result", metrics.REFRESH_RESULTS),
    "auth_sessions_ended_total": ("reason", metrics.SESSION_END_REASONS),
    "auth_access_tokens_rejected_total": ("reason", metrics.REJECTION_REASONS),
}


@pytest.fixture
def local(app: Any) -> Iterator[TestClient]:
    """A client at 127.0.0.1, which the default METRICS_ALLOWED_CLIENTS lets in."""
    with TestClient(app, base_url="http://testserver", client=LOCAL) as client:
        yield client


def scrape(client: TestClient | httpx2.Client) -> dict[Any, float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def forged(token: str, secret: str, **header: Any) -> str:
    """The token's claims under another header, signed with `secret`."""
    return hmac_signed(decoded(token, 0) | header, decoded(token, 1), secret.encode())


def resigned(token: str, secret: str, **claims: Any) -> str:
    payload = {k: v for k, v in (decoded(token, 1) | claims).items() if v is not None}
    return hmac_signed(decoded(token, 0), payload, secret.encode())


def test_a_scripted_scenario_moves_each_series_by_exactly_what_happened(
    local: TestClient, db: Session, settings: Settings
) -> None:
    make_user(db)
    before = scrape(local)

    pair = login(local)
    wrong = {"email": "ada@example.com", "password": "not the password at all"}
    assert local.post("/account/login", json=wrong).status_code == 400
    assert (
        local.post("/account/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
        == 200
    )
    # Reuse: the same refresh token again ends the whole session.
    assert (
        local.post("/account/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
        == 401
    )
    forgery = forged(pair["access_token"], "another secret of at least 32 bytes!!")
    assert local.get("/test", headers=bearer(forgery)).status_code == 401
    after = scrape(local)

    assert moved(before, after, AUTH_SERIES) == {
        key("auth_logins_total", result="success"): 1,
        key("auth_logins_total", result="invalid_credentials"): 1,
        key("auth_refreshes_total", result="rotated"): 1,
        key("auth_refreshes_total", result="reuse_detected"): 1,
        key("auth_sessions_ended_total", reason="reuse"): 1,
        key("auth_access_tokens_rejected_total", reason="bad_signature"): 1,
    }
    counts = {
        k: v
        for k, v in moved(before, after, ["http_request_duration_seconds_count"]).items()
        if k[0] == "http_request_duration_seconds_count"
    }

    def requests(method: str, route: str, status: str) -> Any:
        return key("http_request_duration_seconds_count", method=method, route=route, status=status)

    assert counts == {
        requests("POST", "/account/login", "200"): 1,
        requests("POST", "/account/login", "400"): 1,
        requests("POST", "/account/refresh", "200"): 1,
        requests("POST", "/account/refresh", "401"): 1,
        requests("GET", "/test", "401"): 1,
        # The first scrape, measured once its answer was sent.
        requests("GET", "/metrics", "200"): 1,
    }


def test_every_series_and_label_value_of_the_contract_is_there_before_its_first_event(
    local: TestClient,
) -> None:
    found = scrape(local)

    for name, (label, values) in CONTRACT_SERIES.items():
        for value in values:
            assert key(name, **{label: value}) in found, (name, value)
    for kind in metrics.MAIL_KINDS:
        for result in metrics.MAIL_RESULTS:
            assert key("auth_mails_total", kind=kind, result=result) in found
    assert key("auth_revocation_reloads_total") in found
    assert key("auth_password_hash_queue_depth") in found


def test_the_functions_other_parts_call_move_their_own_series_only(local: TestClient) -> None:
    before = scrape(local)

    metrics.mail("verify_email", "sent")
    metrics.mail("reset_password", "failed")
    metrics.revocation_reload()
    metrics.login("shed")
    metrics.refresh("retried")
    metrics.sessions_ended("user_deleted", 3)

    assert moved(before, scrape(local), AUTH_SERIES) == {
        key("auth_mails_total", kind="verify_email", result="sent"): 1,
        key("auth_mails_total", kind="reset_password", result="failed"): 1,
        key("auth_revocation_reloads_total"): 1,
        key("auth_logins_total", result="shed"): 1,
        key("auth_refreshes_total", result="retried"): 1,
        key("auth_sessions_ended_total", reason="user_deleted"): 3,
    }


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(lambda t, s: "x" * 9000, "token_too_large", id="too-large"),
        pytest.param(lambda t, s: "not a token", "malformed_token", id="malformed"),
        pytest.param(lambda t, s: forged(t, s, kid="someone-else"), "unknown_key", id="kid"),
        pytest.param(
            lambda t, s: unsigned(decoded(t, 0) | {"alg": "none"}, decoded(t, 1)),
            "algorithm_not_allowed",
            id="alg-none",
        ),
        pytest.param(lambda t, s: forged(t, s, typ="JWT"), "wrong_token_type", id="typ"),
        pytest.param(
            lambda t, s: forged(t, s, crit=["exp"]), "unsupported_critical_header", id="crit"
        ),
        # Expired and from another issuer: the signature is checked first, then exp.
        pytest.param(
            lambda t, s: resigned(t, s + "!", exp=1, iss="https://elsewhere"),
            "bad_signature",
            id="signature-before-claims",
        ),
        pytest.param(
            lambda t, s: resigned(t, s, exp=int(time.time()) - 60),
            "token_expired",
            id="expired",
        ),
        pytest.param(
            lambda t, s: resigned(t, s, nbf=int(time.time()) + 3600),
            "token_not_yet_valid",
            id="nbf",
        ),
        pytest.param(
            lambda t, s: resigned(t, s, iss="https://elsewhere"), "wrong_issuer", id="iss"
        ),
        pytest.param(lambda t, s: resigned(t, s, aud="another-api"), "wrong_audience", id="aud"),
        pytest.param(lambda t, s: resigned(t, s, jti=None), "missing_claim", id="no-jti"),
        pytest.param(lambda t, s: resigned(t, s, sid="not-a-uuid"), "invalid_claim", id="sid"),
    ],
)
def test_a_refused_access_token_is_counted_under_the_first_check_it_fails(
    local: TestClient,
    db: Session,
    settings: Settings,
    make: Callable[[str, str], str],
    reason: str,
) -> None:
    make_user(db)
    token = login(local)["access_token"]
    assert settings.TOKEN_SECRET_KEY is not None
    bad = make(token, settings.TOKEN_SECRET_KEY.get_secret_value())
    before = scrape(local)

    assert local.get("/test", headers=bearer(bad)).status_code == 401

    assert moved(before, scrape(local), ["auth_access_tokens_rejected"]) == {
        key("auth_access_tokens_rejected_total", reason=reason): 1
    }


def test_tokens_of_an_ended_session_or_a_deleted_user_are_counted_too(
    local: TestClient, db: Session
) -> None:
    make_user(db)
    ended = login(local)
    local.post("/account/logout", json={"refresh_token": ended["refresh_token"]})
    gone = login(local)["access_token"]
    db.execute(delete(User))
    db.commit()
    before = scrape(local)

    assert local.get("/test", headers=bearer(ended["access_token"])).status_code == 401
    assert local.get("/account/me", headers=bearer(gone)).status_code == 401
    assert local.get("/test", headers={"Authorization": "Bearer "}).status_code == 401

    assert moved(before, scrape(local), ["auth_access_tokens_rejected"]) == {
        key("auth_access_tokens_rejected_total", reason="session_ended"): 1,
        key("auth_access_tokens_rejected_total", reason="unknown_user"): 1,
        key("auth_access_tokens_rejected_total", reason="malformed_token"): 1,
    }


def test_ended_sessions_are_counted_by_why_they_ended(local: TestClient, db: Session) -> None:
    make_user(db)
    first, second, third = login(local), login(local), login(local)
    before = scrape(local)

    local.post("/account/logout", json={"refresh_token": first["refresh_token"]})
    sessions = local.get("/account/sessions", headers=bearer(third["access_token"])).json()
    other = next(s["id"] for s in sessions if not s["current"])
    local.delete(f"/account/sessions/{other}", headers=bearer(third["access_token"]))
    fourth = login(local)
    assert (
        local.post(
            "/account/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": "a new passphrase here"},
            headers=bearer(fourth["access_token"]),
        ).status_code
        == 204
    )
    fifth = login(local, password="a new passphrase here")
    login(local, password="a new passphrase here")
    local.post("/account/logout-all", headers=bearer(fifth["access_token"]))
    # An unknown token: RFC 7009 answers 204 too, and nothing ends.
    local.post("/account/logout", json={"refresh_token": "never issued"})
    del second

    assert moved(before, scrape(local), ["auth_sessions_ended", "auth_logins"]) == {
        key("auth_sessions_ended_total", reason="logout"): 1,
        key("auth_sessions_ended_total", reason="session_delete"): 1,
        # The third session and the fourth were live when the password changed.
        key("auth_sessions_ended_total", reason="password_change"): 2,
        key("auth_sessions_ended_total", reason="logout_all"): 2,
        key("auth_logins_total", result="success"): 3,
    }


def test_logins_refused_by_a_throttle_are_counted_as_throttled(
    settings_env: dict[str, str], db: Session
) -> None:
    make_user(db)
    app = create_app(Settings(**{**settings_env, "LOGIN_MAX_FAILURES": "1"}))  # type: ignore[arg-type]
    with TestClient(app, client=LOCAL) as client:
        before = scrape(client)
        wrong = {"email": "ada@example.com", "password": "not the password at all"}
        assert client.post("/account/login", json=wrong).status_code == 400
        assert client.post("/account/login", json=wrong).status_code == 429
        after = scrape(client)

    assert moved(before, after, ["auth_logins"]) == {
        key("auth_logins_total", result="invalid_credentials"): 1,
        key("auth_logins_total", result="throttled"): 1,
    }


def test_a_client_not_allowed_gets_the_404_of_a_missing_route(client: TestClient) -> None:
    # TestClient's own client address is "testclient", in no allowed network.
    refused = client.get("/metrics")
    missing = client.get("/no-such-route")

    assert refused.status_code == 404
    assert refused.json() == missing.json()
    assert refused.headers["content-type"] == missing.headers["content-type"]
    assert "auth_logins_total" not in refused.text


def test_allowed_clients_may_be_networks(settings_env: dict[str, str]) -> None:
    app = create_app(Settings(**{**settings_env, "METRICS_ALLOWED_CLIENTS": "10.0.0.0/8, ::1"}))  # type: ignore[arg-type]
    with TestClient(app, client=("10.1.2.3", 4000)) as inside:
        assert inside.get("/metrics").status_code == 200
    with TestClient(app, client=("127.0.0.1", 4000)) as loopback:
        assert loopback.get("/metrics").status_code == 404
    with TestClient(app, client=("::ffff:10.9.9.9", 4000)) as mapped:
        assert mapped.get("/metrics").status_code == 200


def test_metrics_can_be_switched_off(settings_env: dict[str, str]) -> None:
    app = create_app(Settings(**{**settings_env, "METRICS_ENABLED": "false"}))  # type: ignore[arg-type]
    with TestClient(app, client=LOCAL) as client:
        assert client.get("/metrics").status_code == 404


def test_a_client_forwarded_by_a_believed_proxy_is_judged_by_its_own_address(
    live_server: Callable[..., LiveServer],
) -> None:
    # Plain uvicorn believes X-Forwarded-For from 127.0.0.1: the client is then 203.0.113.9.
    server = live_server()

    direct = httpx2.get(f"{server.url}/metrics")
    forwarded = httpx2.get(f"{server.url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"})

    assert direct.status_code == 200
    assert "auth_logins_total" in direct.text
    assert forwarded.status_code == 404


def test_routes_are_templates_and_unknown_methods_are_other(local: TestClient) -> None:
    before = scrape(local)

    local.delete("/account/sessions/6a4b1f1e-0000-4000-8000-000000000000")
    local.get("/no/such/route/at/all")
    local.request("BREW", "/health")

    counts = moved(before, scrape(local), ["http_request_duration_seconds_count"])
    routes = {dict(labels)["route"] for _, labels in counts}
    assert routes == {"/account/sessions/{session_id}", "unmatched", "/health", "/metrics"}
    methods = {dict(labels)["method"] for _, labels in counts}
    assert methods == {"DELETE", "GET", "other"}


def test_the_grafana_dashboard_reads_only_series_the_service_exposes(local: TestClient) -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    names = {name for expr in exprs for name in re.findall(r"\b(?:auth|http)_[a-z_]+", expr)}
    scrape(local)  # a request, so that the request histogram has a series
    exposed = {name for name, _ in scrape(local)}

    assert names
    assert names <= exposed
    assert {"auth_logins_total", "auth_access_tokens_rejected_total"} <= names
    assert "http_request_duration_seconds_bucket" in names
