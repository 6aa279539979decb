"""The one place errors become responses: problem+json (RFC 9457), never an exception's
own text; database faults and a full argon2 queue answer 503 with Retry-After as normal
responses, so the client's connection stays usable."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.responses import Response

from app.errors import (
    ERRORS_BY_STATUS,
    AppError,
    ServiceUnavailable,
    ValidationFailed,
    problem_response,
)
from app.observability import metrics
from app.runtime import Runtime
from app.security.passwords import HashQueueFull

log = logging.getLogger("app")
# Where a full argon2 queue sheds a login (the contract's `shed` result).
LOGIN_PATHS = frozenset({"/account/login", "/account/token"})
# The database unreachable, refusing, cut, or past DATABASE_TIMEOUT_SECONDS (a statement
# timeout, the pool's wait, the request's deadline): each answers 503, never a 500.
DATABASE_FAULTS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeout,
    TimeoutError,
)
# A full argon2 queue drains within a few hash times.
HASH_QUEUE_RETRY_AFTER_SECONDS = 1


def _realm(request: Request) -> str:
    runtime: Runtime = request.app.state.runtime
    return runtime.settings.TOKEN_ISSUER


async def error_response(request: Request, exc: Exception) -> Response:
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


def install_error_handlers(app: FastAPI) -> None:
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
        app.add_exception_handler(kind, error_response)
