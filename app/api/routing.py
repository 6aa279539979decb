"""ServiceRoute, the route class of the service's routers: what every request to a route
has checked before FastAPI reads a parameter or solves a dependency."""

import email.message
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from app.api.deps import VERIFIED_CLAIMS, authenticate, bearer, get_runtime, get_settings
from app.errors import (
    AppError,
    AuthenticationRequired,
    InvalidAuthorizationRequest,
    InvalidToken,
    UnsupportedMediaType,
    problem_response,
)
from app.runtime import Runtime

# Dependencies that never refuse a request: a route whose first other dependency is the
# bearer check may run that check before FastAPI solves anything.
_NEVER_REFUSE: frozenset[Callable[..., object]] = frozenset({get_runtime, get_settings})
# The refusals of the bearer check, each rendered once per realm and reason: a flood of
# forged tokens costs one header parse and one HMAC per request, and no response object.
_REFUSALS = (AuthenticationRequired, InvalidAuthorizationRequest, InvalidToken)
_MAX_RENDERED = 64
_rendered: dict[tuple[type[AppError], str, str], tuple[Message, Message]] = {}


def _messages(error: AppError, realm: str) -> tuple[Message, Message]:
    """The two ASGI messages answering `error`; the bearer check's own, built once."""
    key = (type(error), error.detail, realm)
    messages = _rendered.get(key)
    if messages is None:
        response = problem_response(error, realm)
        start: Message = {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
        messages = (start, {"type": "http.response.body", "body": response.body})
        if isinstance(error, _REFUSALS) and len(_rendered) < _MAX_RENDERED:
            _rendered[key] = messages
    return messages


def _realm(scope: Scope) -> str:
    runtime: Runtime = scope["app"].state.runtime
    return runtime.settings.TOKEN_ISSUER


def _solve_order(dependant: Dependant) -> Iterator[Callable[..., object] | None]:
    """The dependencies' callables in the order FastAPI solves them (depth first)."""
    for sub in dependant.dependencies:
        yield from _solve_order(sub)
        yield sub.call


def _is_json(content_type: str) -> bool:
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _unsupported_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """A body (Content-Length above 0, or chunked) whose Content-Type is not JSON."""
    content_type = None
    has_body = False
    for name, value in headers:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"content-length":
            has_body = has_body or value.strip(b" \t0") != b""
        elif name == b"transfer-encoding":
            has_body = True
    return has_body and (content_type is None or not _is_json(content_type))


def _claims_parameter(route: APIRoute) -> str | None:
    """The parameter of an endpoint that takes the caller's claims and nothing else, and
    answers a Response itself; None for any other endpoint."""
    endpoint = route.endpoint
    parameters = inspect.signature(endpoint).parameters
    returns = inspect.signature(endpoint, eval_str=True).return_annotation
    subs = route.dependant.dependencies
    if (
        len(parameters) == 1
        and len(subs) == 1
        and subs[0].call is bearer
        and subs[0].name in parameters
        and inspect.iscoroutinefunction(endpoint)
        and isinstance(returns, type)
        and issubclass(returns, Response)
    ):
        return subs[0].name
    return None


class ServiceRoute(APIRoute):
    """Two checks before FastAPI reads a parameter or solves a dependency.

    - A route that reads a JSON body refuses a body of another Content-Type with 415,
      rather than a 422 about its shape; an absent body (cookie-mode refresh and logout)
      passes, and a form route (the token endpoint) answers for itself.
    - A route without a body, whose first dependency that can refuse is the bearer check,
      runs that check here: a refused token is answered from messages rendered once per
      reason, with no exception raised through FastAPI and Starlette; a verified one is
      left in the scope for the dependency, which returns it. An endpoint that takes
      those claims alone and answers a Response itself (`GET /test`) is called here.

    A method the route does not serve still answers 405 first.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        body = self.body_field
        self.takes_json = body is not None and not isinstance(body.field_info, params.Form)
        first = next(
            (call for call in _solve_order(self.dependant) if call not in _NEVER_REFUSE), None
        )
        self.checks_bearer_first = body is None and first is bearer
        self.claims_parameter = _claims_parameter(self) if self.checks_bearer_first else None

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in (self.methods or ()):
            refusal: tuple[Message, Message] | None = None
            if self.takes_json and _unsupported_body(scope["headers"]):
                refusal = _messages(UnsupportedMediaType(), _realm(scope))
            elif self.checks_bearer_first:
                try:
                    claims = await authenticate(Request(scope, receive))
                except AppError as refused:
                    # Rendered here, so that no local outlives the block holding the error:
                    # the error's traceback holds this frame, and the two would make a
                    # reference cycle per refused request for the garbage collector.
                    refusal = _messages(refused, _realm(scope))
                else:
                    if self.claims_parameter is not None:
                        response = await self.endpoint(**{self.claims_parameter: claims})
                        await response(scope, receive, send)
                        return
                    scope.setdefault("state", {})[VERIFIED_CLAIMS] = claims
            if refusal is not None:
                start, body = refusal
                await send(start)
                await send(body)
                return
        await super().handle(scope, receive, send)
