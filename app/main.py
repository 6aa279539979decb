"""The application: create_app(settings) wires routers, error handlers, middleware and lifespan."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp

from app.api import account, demo, meta, protected, token
from app.audit import install_audit_log
from app.config import Settings, load_settings
from app.db import schema_state
from app.deps import require_json_body
from app.errors import ERRORS_BY_STATUS, AppError, ValidationFailed, problem_response
from app.middleware import BodyLimit, SecurityHeaders, page_policy
from app.openapi import install_openapi
from app.runtime import Runtime

log = logging.getLogger("app")

SWAGGER_STATIC = "/docs/static"
# Swagger UI 5 (the first to read OpenAPI 3.1, which FastAPI writes), shipped in a wheel.
SWAGGER_ASSETS = files("fastapi_offline") / "static"
DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# Swagger UI loads its script and style from /docs/static, fetches /openapi.json and calls
# the API; its one inline script is allowed by hash. Its icons are data: URIs.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self' {script_hashes}; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# The OAuth2 redirect page is one inline script that hands its query to the opener.
OAUTH2_REDIRECT_POLICY = (
    "default-src 'none'; script-src {script_hashes}; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# Browsers may send these to a CORS_ORIGINS origin's scripts, and read these back.
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "X-CSRF-Token", "X-Request-ID"]
CORS_RESPONSE_HEADERS = ["WWW-Authenticate", "Retry-After", "Location", "X-Request-ID"]


def _realm(request: Request) -> str:
    runtime: Runtime = request.app.state.runtime
    return runtime.settings.TOKEN_ISSUER


async def _error_response(request: Request, exc: Exception) -> Response:
    """The one place errors become responses: problem+json, never an exception's own text."""
    realm = _realm(request)
    if isinstance(exc, AppError):
        return problem_response(exc, realm)
    if isinstance(exc, RequestValidationError):
        # FastAPI's default echoes the submitted values (a password, say): ours keeps loc and msg.
        errors = [
            {"loc": list(error["loc"]), "msg": str(error["msg"]).removeprefix("Value error, ")}
            for error in exc.errors()
        ]
        return problem_response(ValidationFailed(errors), realm)
    if isinstance(exc, HTTPException):
        error_class = ERRORS_BY_STATUS.get(exc.status_code)
        if error_class is not None:
            error: AppError = error_class()
        elif exc.status_code == 400:
            error = ValidationFailed([], "the request body could not be parsed")
        else:
            error = AppError()
        response = problem_response(error, realm)
        response.headers.update(exc.headers or {})
        return response
    log.error(
        "unhandled error on %s %s (request %s)",
        request.method,
        request.url.path,
        request.scope.get("state", {}).get("request_id"),
        exc_info=exc,
    )
    return problem_response(AppError(), realm)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    await runtime.hasher.prepare()
    try:
        if await schema_state(runtime.engine) != "ok":
            # Requests would fail on missing tables; /health/ready answers 503 meanwhile.
            log.warning("the database is not migrated; run `jwt-auth-api migrate`")
        else:
            await runtime.load_revoked_sessions()
    except Exception:
        # Serve anyway (/health answers); bearer checks retry and fail closed meanwhile.
        log.warning("database unreachable at start-up; bearer checks wait for it")
    yield
    await runtime.close()


class _DropQueryStrings(logging.Filter):
    """uvicorn's access log prints the query string, where a client may have put a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], *args[3:])
        return True


_ACCESS_LOG_FILTER = _DropQueryStrings()


def _operation_id(route: APIRoute) -> str:
    return route.name


class Service(FastAPI):
    """FastAPI with the security headers outside every other layer, so that the 500s of
    Starlette's ServerErrorMiddleware carry them too."""

    page_policies: dict[str, str]

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), self.page_policies)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    logging.getLogger("uvicorn.access").addFilter(_ACCESS_LOG_FILTER)
    install_audit_log()
    app = Service(
        title="JWT auth API",
        version="0.1.0",
        description="Login with short-lived JWT access tokens and rotating refresh tokens.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=_operation_id,
        swagger_ui_init_oauth={"usePkceWithAuthorizationCodeGrant": False},
        # Every route with a JSON body: 415 for a body of another Content-Type.
        dependencies=[Depends(require_json_body)],
    )
    app.state.runtime = Runtime.build(settings)

    for kind in (AppError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(kind, _error_response)
    app.add_middleware(BodyLimit)
    if settings.CORS_ORIGINS:
        # Outside the body limit, so a 413 still tells an allowed origin's script why.
        # Credentials (the refresh cookie) are allowed, hence explicit origins only.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
        )

    # The protected route first: routes are matched in order, and it is the hot one.
    for module in (protected, account, token, meta, demo):
        app.include_router(module.router)
    app.page_policies = _serve_docs(app)
    install_openapi(app)
    return app


def _serve_docs(app: FastAPI) -> dict[str, str]:
    """Swagger UI 5 from the fastapi-offline package's assets: /docs works offline.

    Both pages are built once (they never change), and their Content-Security-Policy
    allows exactly their inline scripts.
    """
    app.mount(SWAGGER_STATIC, StaticFiles(directory=str(SWAGGER_ASSETS)), name="swagger-ui")
    params: dict[str, Any] = {"persistAuthorization": False}
    docs_page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{app.title} - Swagger UI",
        oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        swagger_js_url=f"{SWAGGER_STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_STATIC}/favicon.png",
        swagger_ui_parameters=params,
    ).body
    redirect_page = get_swagger_ui_oauth2_redirect_html().body

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page)

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return HTMLResponse(redirect_page)

    return {
        DOCS_URL: page_policy(bytes(docs_page), DOCS_POLICY),
        OAUTH2_REDIRECT_URL: page_policy(bytes(redirect_page), OAUTH2_REDIRECT_POLICY),
    }


app = create_app()
