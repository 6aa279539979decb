"""The OpenAPI document: every error response declared as application/problem+json."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.errors import PROBLEM_JSON
from app.schemas import Problem, ValidationProblem

DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, invalid or expired bearer token",
    403: (
        "Cookie mode: a request from another origin (/problems/cross-site-request), or an "
        "X-CSRF-Token header missing or differing from the csrf_token cookie; on /admin: "
        "the caller lacks the admin role (`insufficient_scope`)"
    ),
    404: "Not found",
    409: "Conflict",
    413: "Request body over 64 KiB",
    415: "The body is not JSON (Content-Type other than application/json)",
    422: "Malformed request body",
    429: "Too many attempts; see Retry-After",
    503: "Service unavailable",
}
# Every operation behind the bearer check: 401 for a missing or failed token, 400 for
# more than one way of sending one (RFC 6750 §3.1 invalid_request).
BEARER_ERRORS = (400, 401)
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        # Markdown: the code spans keep <issuer> from being read as an HTML tag.
        "description": 'RFC 6750 challenge: `Bearer realm="<issuer>"`, and for a rejected '
        'token `error="invalid_token", error_description="..."`',
        "schema": {"type": "string"},
    }
}

# Success responses of the routes that issue tokens.
SESSION_COOKIES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A token pair",
        "headers": {
            "Set-Cookie": {
                "description": "TOKEN_COOKIE_MODE only: `refresh_token` (HttpOnly, Secure, "
                "SameSite=Strict, Path=/account) and `csrf_token` (readable by scripts, Path=/); "
                "the body then leaves refresh_token out",
                "schema": {"type": "string"},
            }
        },
    }
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Error responses for a route decorator; rendered as problem+json by `openapi()`."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "model": ValidationProblem if status == 422 else Problem,
            "description": DESCRIPTIONS[status],
        }
        if status == 401:
            response["headers"] = WWW_AUTHENTICATE
        responses[status] = response
    return responses


PROBLEM_SCHEMAS = {
    f"#/components/schemas/{name}" for name in ("Problem", "ValidationProblem", "NotReadyProblem")
}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    responses = operation.get("responses", {})
                    if _validation_never_answers(operation):
                        responses.pop("422", None)
                    if "application/json" in operation.get("requestBody", {}).get("content", {}):
                        # API.md: a body of another Content-Type answers 415.
                        responses.setdefault("415", _unsupported_media_type())
                    _problem_media_type(responses)
            schemas = schema.get("components", {}).get("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _unsupported_media_type() -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[415],
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _validation_never_answers(operation: dict[str, Any]) -> bool:
    """FastAPI adds a 422 to every operation with parameters; ours come only from bodies,
    and the OAuth token endpoint answers malformed input with its own 400."""
    declared = operation["responses"].get("422", {}).get("content", {}).get("application/json", {})
    if declared.get("schema", {}).get("$ref", "").endswith("/ValidationProblem"):
        return False  # declared by the route itself: its query or path can be invalid
    if "requestBody" not in operation:
        return True
    oauth_400 = operation["responses"].get("400", {}).get("content", {}).get("application/json")
    return oauth_400 is not None and oauth_400["schema"]["$ref"].endswith("/OAuthErrorBody")


def _problem_media_type(responses: dict[str, Any]) -> None:
    for status, response in responses.items():
        if int(status) < 400:
            continue
        content = response.get("content", {})
        body = content.get("application/json")
        if body is None:
            continue
        ref = body.get("schema", {}).get("$ref", "")
        if ref.endswith("/HTTPValidationError"):
            body = {"schema": {"$ref": "#/components/schemas/ValidationProblem"}}
        elif ref not in PROBLEM_SCHEMAS:
            continue  # the token endpoint's RFC 6749 errors stay application/json
        response["content"] = {PROBLEM_JSON: body}
