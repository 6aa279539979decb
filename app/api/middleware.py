"""ASGI middleware: the request body limit, applied before anything parses a body, and the
security headers and request id of every response."""

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import RequestTooLarge, problem_response
from app.observability.logging import REQUEST_ID

MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """Refuse bodies over the limit with 413, chunked ones (no Content-Length) included.

    The body is read here, at most `max_bytes` of it, and replayed to the app,
    so no parser ever sees an oversized body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await problem_response(RequestTooLarge(), "")(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await problem_response(RequestTooLarge(), "")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# Strict for every JSON answer: nothing may load, nothing may frame it (ASVS 5.0 3.4.3, 3.4.6).
API_CONTENT_SECURITY_POLICY = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'"
REQUEST_ID_HEADER = b"x-request-id"
# A client's own request id is kept only when it cannot carry anything into a header or a
# log line; anything else is replaced by a fresh one.
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


# The variant nibble of an RFC 9562 UUID is 10xx in binary: 8, 9, a or b.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_request_id() -> str:
    """A random UUID (RFC 9562 version 4) formatted straight from 16 random bytes: on the
    hot path, half the cost of str(uuid.uuid4())."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def incoming_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The client's X-Request-ID when it is a short safe token, else None."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            return value.decode() if _SAFE_REQUEST_ID.fullmatch(value) else None
    return None


def page_policy(html: bytes, directives: str) -> str:
    """A Content-Security-Policy for an HTML page: `directives` with the page's inline
    scripts allowed by their SHA-256 hashes (CSP Level 3 hash-source), not 'unsafe-inline'."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in re.findall(rb"<script>(.*?)</script>", html, re.DOTALL)
    )
    return directives.format(script_hashes=hashes)


class SecurityHeaders:
    """Security headers and a request id on every response: errors, 404s and 500s included.

    X-Content-Type-Options, Referrer-Policy (RFC 9700 §4.2: no URL leaks through Referer)
    and a Content-Security-Policy: the strict API one, or a page's own (Swagger UI needs
    its scripts). The request id is the client's X-Request-ID when safe, else a new UUID;
    the app reads it from `scope["state"]["request_id"]`, log lines from a context
    variable. Pure ASGI, so the hot path pays
    one UUID and a list copy.
    """

    def __init__(self, app: ASGIApp, page_policies: Mapping[str, str] | None = None) -> None:
        self.app = app
        fixed = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
        self._api_headers = [
            *fixed,
            (b"content-security-policy", API_CONTENT_SECURITY_POLICY.encode()),
        ]
        self._page_headers = {
            path: [*fixed, (b"content-security-policy", policy.encode())]
            for path, policy in (page_policies or {}).items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope["headers"]) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        # Every log line of this request (uvicorn's access line included) carries it. Not
        # reset afterwards: uvicorn logs an unhandled error after the app returns, and the
        # request's task, whose context this is, ends with the request.
        REQUEST_ID.set(request_id)
        added = [
            *self._page_headers.get(scope["path"], self._api_headers),
            (REQUEST_ID_HEADER, request_id.encode()),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                # A page that sets its own (the demo client's policy) keeps it: two
                # policies would both apply, and the API's would block the page's scripts.
                present = {name.lower() for name, _ in headers}
                headers += [header for header in added if header[0] not in present]
                # A new list: the response may reuse its own for another send.
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
