"""Errors outside any route, health checks, the key set, the OpenAPI document and /docs."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

PROBLEM_JSON = "application/problem+json"
UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/none"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert set(body) >= {"type", "title", "status", "detail"}
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    return body


@pytest.fixture
def openapi(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture
def unreachable_database_client(settings_env: dict[str, str]) -> Iterator[TestClient]:
    settings = Settings(**{**settings_env, "DATABASE_URL": UNREACHABLE_POSTGRES})  # type: ignore[arg-type]
    with TestClient(create_app(settings), base_url="http://testserver") as test_client:
        yield test_client


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/nowhere", id="unknown-path"),
        pytest.param("/account/nowhere", id="unknown-path-under-account"),
    ],
)
def test_an_unknown_path_is_a_404_problem(client: TestClient, path: str) -> None:
    response = client.get(path)

    body = assert_problem(response, 404)
    assert body["type"] == "/problems/not-found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        pytest.param("GET", "/account/login", "POST", id="get-login"),
        pytest.param("DELETE", "/account/register", "POST", id="delete-register"),
        pytest.param("POST", "/health", "GET", id="post-health"),
        pytest.param("PUT", "/account/token", "POST", id="put-token"),
    ],
)
def test_a_wrong_method_is_a_405_problem_with_an_allow_header(
    client: TestClient, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path)

    body = assert_problem(response, 405)
    assert body["type"] == "/problems/method-not-allowed"
    assert allowed in [value.strip() for value in response.headers["Allow"].split(",")]


def test_health_says_the_process_is_alive(client: TestClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_is_200_when_the_database_answers(client: TestClient) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "revocation_store": "ok"},
    }


def test_readiness_is_a_503_problem_while_health_stays_200_when_the_database_is_unreachable(
    unreachable_database_client: TestClient,
) -> None:
    ready = unreachable_database_client.get("/health/ready")
    health = unreachable_database_client.get("/health")

    body = assert_problem(ready, 503)
    assert "127.0.0.1" not in ready.text
    assert "psycopg" not in ready.text.lower()
    assert "none" not in body["detail"]
    assert body["checks"] == {"database": "unavailable", "revocation_store": "ok"}
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


def test_the_key_set_is_empty_with_hs256(client: TestClient) -> None:
    response = client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response.json() == {"keys": []}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/health", id="health"),
        pytest.param("/health/ready", id="ready"),
        pytest.param("/.well-known/jwks.json", id="jwks"),
        pytest.param("/account/login", id="login"),
        pytest.param("/account/token", id="token"),
    ],
)
def test_the_openapi_document_lists_the_path(openapi: dict[str, Any], path: str) -> None:
    assert path in openapi["paths"]
    assert openapi["openapi"].startswith("3.")


def test_the_openapi_document_declares_the_oauth2_password_flow_of_the_token_endpoint(
    openapi: dict[str, Any],
) -> None:
    schemes = openapi["components"]["securitySchemes"].values()

    password_flows = [
        scheme["flows"]["password"]
        for scheme in schemes
        if scheme["type"] == "oauth2" and "password" in scheme.get("flows", {})
    ]
    assert [flow["tokenUrl"] for flow in password_flows] == ["/account/token"]


def test_protected_operations_require_the_oauth2_scheme(openapi: dict[str, Any]) -> None:
    scheme_names = set(openapi["components"]["securitySchemes"])

    for path, method in [("/account/me", "get"), ("/test", "get"), ("/account/sessions", "get")]:
        security = openapi["paths"][path][method]["security"]
        assert any(set(requirement) & scheme_names for requirement in security), path


def test_every_protected_operation_documents_the_400_of_two_ways_of_sending_a_token(
    openapi: dict[str, Any],
) -> None:
    # RFC 6750 §3.1: two Authorization headers, or one and a query-string token, are an
    # invalid_request (400) on every operation behind the bearer check.
    protected = [
        (path, method)
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and operation.get("security")
    ]

    assert len(protected) == 16
    assert [
        (path, method)
        for path, method in protected
        if "400" not in openapi["paths"][path][method]["responses"]
    ] == []


def _error_responses(openapi: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    yield path, method, status, response


def test_every_error_response_in_the_openapi_document_is_problem_json(
    openapi: dict[str, Any],
) -> None:
    wrong = []
    for path, method, status, response in _error_responses(openapi):
        if path == "/account/token" and status in ("400", "429"):
            continue  # RFC 6749 §5.2 shape, application/json
        if list(response.get("content", {})) != [PROBLEM_JSON]:
            wrong.append(f"{method.upper()} {path} {status}: {list(response.get('content', {}))}")

    assert wrong == []


@pytest.mark.parametrize("status", ["400", "429"])
def test_the_token_endpoint_errors_are_documented_in_the_rfc_6749_shape(
    openapi: dict[str, Any], status: str
) -> None:
    response = openapi["paths"]["/account/token"]["post"]["responses"][status]

    assert list(response["content"]) == ["application/json"]
    ref = response["content"]["application/json"]["schema"]["$ref"]
    schema = openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(schema["required"]) >= {"error"}
    assert "error_description" in schema["properties"]


def test_every_operation_with_a_body_documents_its_422_and_413(openapi: dict[str, Any]) -> None:
    missing = []
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS and "requestBody" in operation:
                responses = operation["responses"]
                statuses = {"413"} if path == "/account/token" else {"413", "422"}
                missing += [f"{method.upper()} {path} {s}" for s in statuses - set(responses)]

    assert missing == []


@pytest.mark.parametrize(
    "path", [pytest.param("/docs", id="docs"), pytest.param("/docs/oauth2-redirect", id="redirect")]
)
def test_the_docs_pages_reference_no_external_url(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "http://" not in response.text
    assert "https://" not in response.text
    assert not re.search(r"""(?:src|href)\s*=\s*["']//""", response.text)


def test_the_docs_page_loads_its_scripts_and_styles_from_docs_static(client: TestClient) -> None:
    html = client.get("/docs").text

    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)

    scripts = [asset for asset in assets if asset.endswith(".js")]
    styles = [asset for asset in assets if asset.endswith(".css")]
    assert scripts
    assert styles
    for asset in assets:
        assert asset.startswith("/docs/static/"), asset
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.content, asset


def _resolve(openapi: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A request body's schema, following a $ref (also inside an optional body's anyOf)."""
    for candidate in [schema, *schema.get("anyOf", [])]:
        ref = candidate.get("$ref")
        if ref is not None:
            resolved: dict[str, Any] = openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]
            return resolved
    return schema


def test_every_operation_with_a_body_shows_a_request_example(openapi: dict[str, Any]) -> None:
    missing = []
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS or "requestBody" not in operation:
                continue
            for media_type, content in operation["requestBody"]["content"].items():
                schema = _resolve(openapi, content["schema"])
                properties = schema.get("properties", {}).values()
                shown = "examples" in schema or any("examples" in p for p in properties)
                if not shown:
                    missing.append(f"{method.upper()} {path} {media_type}")

    assert missing == []


def test_every_protected_operation_documents_its_401_and_the_www_authenticate_header(
    openapi: dict[str, Any],
) -> None:
    protected = 0
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS or not operation.get("security"):
                continue
            protected += 1
            response = operation["responses"].get("401")
            assert response is not None, f"{method.upper()} {path}"
            assert "WWW-Authenticate" in response["headers"], f"{method.upper()} {path}"

    assert protected == 16


@pytest.mark.parametrize("path", ["/account/refresh", "/account/logout"])
def test_the_operations_that_read_the_refresh_cookie_document_the_csrf_403(
    openapi: dict[str, Any], path: str
) -> None:
    response = openapi["paths"][path]["post"]["responses"]["403"]

    assert list(response["content"]) == [PROBLEM_JSON]
    assert "X-CSRF-Token" in response["description"]


def test_the_docs_page_does_not_persist_the_authorization(client: TestClient) -> None:
    html = client.get("/docs").text

    assert re.search(r'"persistAuthorization":\s*false', html)
    assert "localStorage" not in html
