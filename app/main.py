"""The application: create_app(settings) wires routers, error handlers, middleware and lifespan."""

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from importlib.resources import files
from types import FrameType
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp

from app.api import account, admin, demo, health, protected, token
from app.api import metrics as metrics_route
from app.api.deps import require_json_body
from app.api.middleware import BodyLimit, SecurityHeaders, page_policy
from app.api.openapi import install_openapi
from app.config import SERVE_MARKER, Settings, load_settings
from app.db import schema_state
from app.errors import (
    ERRORS_BY_STATUS,
    AppError,
    ServiceUnavailable,
    ValidationFailed,
    problem_response,
)
from app.observability import metrics
from app.observability.logging import configure_logging
from app.observability.metrics import RequestDurations, flush_request_durations
from app.runtime import Runtime
from app.security.passwords import HashQueueFull
from app.stores.revocations import ReloadFailed

log = logging.getLogger("app")
# Where a full argon2 queue sheds a login (the contract's `shed` result).
LOGIN_PATHS = frozenset({"/account/login", "/account/token"})

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
# The database unreachable, refusing, cut, or past DATABASE_TIMEOUT_SECONDS (a statement
# timeout, the pool's wait, the request's deadline): each answers 503, never a 500.
DATABASE_FAULTS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeout,
    TimeoutError,
)
CLOSE_TIMEOUT_SECONDS = 3
# A full argon2 queue drains within a few hash times.
HASH_QUEUE_RETRY_AFTER_SECONDS = 1


def _realm(request: Request) -> str:
    runtime: Runtime = request.app.state.runtime
    return runtime.settings.TOKEN_ISSUER


async def _error_response(request: Request, exc: Exception) -> Response:
    """The one place errors become responses: problem+json, never an exception's own text."""
    realm = _realm(request)
    if isinstance(exc, AppError):
        return problem_response(exc, realm)
    if isinstance(exc, DATABASE_FAULTS):
        # The class only: a driver's message may quote the statement and its parameters.
        log.warning(
            "database unavailable on %s %s: %s",
            request.method,
            request.url.path,
            type(getattr(exc, "orig", None) or exc).__name__,
        )
        return problem_response(ServiceUnavailable("the database is unavailable"), realm)
    if isinstance(exc, HashQueueFull):
        if request.url.path in LOGIN_PATHS:
            metrics.login("shed")
        return problem_response(
            ServiceUnavailable(
                "too many password checks are waiting",
                retry_after=HASH_QUEUE_RETRY_AFTER_SECONDS,
            ),
            realm,
        )
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


def _drain_on_sigterm(runtime: Runtime) -> None:
    """Under `serve`: SIGTERM makes /health/ready answer 503 at once, requests are still
    served for SHUTDOWN_DRAIN_SECONDS, then uvicorn's own handler begins its graceful
    shutdown (bounded by timeout_graceful_shutdown). A second SIGTERM skips the rest."""
    drain = runtime.settings.SHUTDOWN_DRAIN_SECONDS
    if os.environ.get(SERVE_MARKER) != "1" or drain <= 0:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    uvicorn_handler = signal.getsignal(signal.SIGTERM)
    if not callable(uvicorn_handler):
        return
    loop = asyncio.get_running_loop()

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        if runtime.draining:
            uvicorn_handler(sig, frame)
            return
        runtime.draining = True
        # A signal handler may interrupt the loop anywhere: hand over through its self-pipe.
        loop.call_soon_threadsafe(loop.call_later, drain, uvicorn_handler, sig, frame)
        log.warning("SIGTERM: draining for %g s before shutting down", drain)

    signal.signal(signal.SIGTERM, on_sigterm)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    _drain_on_sigterm(runtime)
    await runtime.hasher.prepare()
    try:
        # Bounded like any database work: a frozen database must not hold up start-up.
        async with asyncio.timeout(runtime.settings.DATABASE_TIMEOUT_SECONDS):
            migrated = await schema_state(runtime.engine) == "ok"
    except Exception:
        migrated = True  # unreachable, not unmigrated: the reload below says which is down
    if not migrated:
        # Requests would fail on missing tables; /health/ready answers 503 meanwhile.
        log.warning("the database is not migrated; run `jwt-auth-api migrate`")
    try:
        if migrated:
            await runtime.load_revoked_sessions()
    except ReloadFailed as exc:
        # Serve anyway (/health answers); bearer checks retry and fail closed meanwhile.
        log.warning(
            "%s unreachable at start-up; bearer checks answer 503 until it answers",
            exc.dependency,
        )
    # Mail queued before a restart (or by a process that died) goes now.
    runtime.start_mail()
    follower = asyncio.create_task(runtime.follow_ended_sessions())
    try:
        yield
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        flush_request_durations()
        try:
            # Bounded: closing must not wait on a database that stopped answering.
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await runtime.close()
        except TimeoutError:
            log.warning("shutdown: connections not closed within %s s", CLOSE_TIMEOUT_SECONDS)


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
    Starlette's ServerErrorMiddleware carry them too; request durations outside those."""

    page_policies: dict[str, str]
    measure_requests: bool = False

    def build_middleware_stack(self) -> ASGIApp:
        stack = SecurityHeaders(super().build_middleware_stack(), self.page_policies)
        return RequestDurations(stack) if self.measure_requests else stack


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    logging.getLogger("uvicorn.access").addFilter(_ACCESS_LOG_FILTER)
    # Also reaches uvicorn's own loggers when started as `uvicorn app.main:app`.
    configure_logging(settings.LOG_FORMAT)
    app = Service(
        title="JWT auth API",
        version=version("jwt-auth-api"),
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

    # Every kind but Exception is answered by Starlette's ExceptionMiddleware: a normal
    # response, so the client's keep-alive connection stays usable. Exception reaches
    # ServerErrorMiddleware, which re-raises after its 500 and uvicorn closes the
    # connection: database faults must not end up there.
    for kind in (
        AppError,
        RequestValidationError,
        HTTPException,
        *DATABASE_FAULTS,
        HashQueueFull,
        Exception,
    ):
        app.add_exception_handler(kind, _error_response)
    app.add_middleware(BodyLimit)
    if settings.CORS_ORIGINS:
        # Outside the body limit, so a 413 still tells an allowed origin's script why.
        # Credentials (the refresh cookie) are allowed, hence explicit origins only.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
        )

    # The protected route first: routes are matched in order, and it is the hot one.
    for module in (protected, account, token, admin, health, demo):
        app.include_router(module.router)
    if settings.METRICS_ENABLED:
        app.include_router(metrics_route.router)
        app.measure_requests = True
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


def __getattr__(name: str) -> FastAPI:
    """`uvicorn app.main:app`: the app is built from the environment when first asked for.

    Importing this module does nothing (no settings read, no key file written); the
    factory form `uvicorn --factory app.main:create_app` is the same app.
    """
    if name == "app":
        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
