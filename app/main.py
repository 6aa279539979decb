"""The application: create_app(settings) wires routers, error handlers, middleware and lifespan."""

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from types import FrameType

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.types import ASGIApp

from app.api import (
    account,
    account_lifecycle,
    account_pages,
    admin,
    demo,
    health,
    protected,
    token,
    two_factor,
)
from app.api import metrics as metrics_route
from app.api.docs import serve_docs
from app.api.handlers import install_error_handlers
from app.api.middleware import BodyLimit, SecurityHeaders
from app.api.openapi import install_openapi
from app.config import SERVE_MARKER, ConfigurationError, Settings
from app.db import schema_state
from app.keyfiles import load_settings
from app.observability.logging import ACCESS_LOG_FILTER, configure_logging
from app.observability.metrics import RequestDurations, flush_request_durations
from app.runtime import Runtime
from app.stores.revocations import ReloadFailed

log = logging.getLogger("app")

# Browsers may send these to a CORS_ORIGINS origin's scripts, and read these back.
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "X-CSRF-Token", "X-Request-ID"]
CORS_RESPONSE_HEADERS = ["WWW-Authenticate", "Retry-After", "Location", "X-Request-ID"]
CLOSE_TIMEOUT_SECONDS = 3


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
    logging.getLogger("uvicorn.access").addFilter(ACCESS_LOG_FILTER)
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
    )
    app.state.runtime = Runtime.build(settings)

    install_error_handlers(app)
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
    for module in (
        protected,
        account,
        account_lifecycle,
        token,
        two_factor,
        admin,
        health,
        demo,
        account_pages,
    ):
        app.include_router(module.router)
    if settings.METRICS_ENABLED:
        app.include_router(metrics_route.router)
        app.measure_requests = True
    app.page_policies = serve_docs(app)
    install_openapi(app)
    return app


def __getattr__(name: str) -> FastAPI:
    """`uvicorn app.main:app`: the app is built from the environment when first asked for.

    Importing this module does nothing (no settings read, no key file written); the
    factory form `uvicorn --factory app.main:create_app` is the same app.
    """
    if name == "app":
        try:
            built = create_app()
        except ConfigurationError as exc:
            # uvicorn would print a traceback: one line naming the variable instead.
            print(f"configuration error: {exc.message}", file=sys.stderr)
            raise SystemExit(2) from None
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
