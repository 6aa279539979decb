"""API.md: a JSON endpoint given a body of another Content-Type answers 415."""

import pytest
from fastapi import FastAPI, params
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.api.routing import ServiceRoute
from app.config import Settings
from app.main import create_app
from tests.factories import DEFAULT_PASSWORD, bearer, login, make_user


def csrf(client: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies["csrf_token"]}


UNSUPPORTED = {
    "type": "/problems/unsupported-media-type",
    "title": "Unsupported media type",
    "status": 415,
}
LOGIN_JSON = ('{"email": "ada@example.com", "password": "' + DEFAULT_PASSWORD + '"}').encode()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Content-Type": "text/plain"}, id="text-plain"),
        pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, id="form"),
        pytest.param({"Content-Type": "application/xml"}, id="xml"),
        pytest.param({}, id="no-content-type"),
    ],
)
def test_json_sent_with_another_content_type_is_a_415_problem(
    client: TestClient, db: Session, headers: dict[str, str]
) -> None:
    make_user(db)

    response = client.post("/account/login", content=LOGIN_JSON, headers=headers)

    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert UNSUPPORTED.items() <= response.json().items()
    assert DEFAULT_PASSWORD not in response.text


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON"],
)
def test_json_with_a_json_content_type_is_read(
    client: TestClient, db: Session, content_type: str
) -> None:
    make_user(db)

    response = client.post(
        "/account/login", content=LOGIN_JSON, headers={"Content-Type": content_type}
    )

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/account/register", b'{"email": "x@example.com"}', id="register"),
        pytest.param("POST", "/account/refresh", b'{"refresh_token": "abc"}', id="refresh"),
        pytest.param("POST", "/account/logout", b'{"refresh_token": "abc"}', id="logout"),
        pytest.param("POST", "/account/password", b'{"current_password": "a"}', id="password"),
    ],
)
def test_every_json_endpoint_refuses_a_form_body_with_415(
    client: TestClient, db: Session, method: str, path: str, body: bytes
) -> None:
    make_user(db)
    token = login(client)["access_token"]

    response = client.request(
        method,
        path,
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", **bearer(token)},
    )

    assert response.status_code == 415, response.text
    assert response.json()["type"] == "/problems/unsupported-media-type"


def test_a_missing_json_body_is_still_a_422(client: TestClient) -> None:
    response = client.post("/account/login")

    assert response.status_code == 422
    assert response.json()["type"] == "/problems/validation-error"


def test_the_token_endpoint_answers_a_json_body_with_invalid_request(client: TestClient) -> None:
    response = client.post(
        "/account/token",
        content=b'{"grant_type": "password"}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_cookie_mode_refresh_and_logout_take_no_body_and_no_content_type(
    settings: Settings, db: Session
) -> None:
    make_user(db)
    app: FastAPI = create_app(settings.model_copy(update={"TOKEN_COOKIE_MODE": True}))
    with TestClient(app, base_url="https://testserver") as browser:
        login(browser)

        refreshed = browser.post("/account/refresh", headers=csrf(browser))
        logged_out = browser.post("/account/logout", headers=csrf(browser))

    assert refreshed.status_code == 200, refreshed.text
    assert logged_out.status_code == 204, logged_out.text


def test_every_route_that_reads_a_json_body_refuses_other_content_types(app: FastAPI) -> None:
    # The 415 is the route class's: a router added without it would answer 422 instead.
    routes = [context.original_route for context in iter_route_contexts(app.routes)]
    json_routes = [
        route
        for route in routes
        if isinstance(route, APIRoute)
        and route.body_field is not None
        and not isinstance(route.body_field.field_info, params.Form)
    ]
    assert len(json_routes) > 10
    assert [route.path for route in json_routes if not isinstance(route, ServiceRoute)] == []
