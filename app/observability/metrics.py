"""Prometheus series of the contract ("Operations"), with fixed label sets.

Every label value is declared here and set to 0 at import, so a series exists before its
first event and a dashboard's rate() has a baseline. No label value ever comes from user
input: routes are templates (or `unmatched`), methods standard ones (or `other`).

Counting happens in one place per family: audit events are counted by `count_event` (the
audit log calls it for every event it records, logged or not); what is not audited calls
the small functions below (`access_token_rejected`, `login`, `refresh`, `mail`, ...).

Under `jwt-auth-api serve --workers N` the environment names PROMETHEUS_MULTIPROC_DIR
before any worker imports this module: prometheus-client then keeps each process's values
in files there, and /metrics adds up every worker's (`exposition`).
"""

import asyncio
import bisect
import os
import time
from collections.abc import Callable, Mapping
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

LOGIN_RESULTS: Final = (
    "success",
    "invalid_credentials",
    "throttled",
    "two_factor_required",
    "account_disabled",
    "email_not_verified",
    "shed",
)
REFRESH_RESULTS: Final = ("rotated", "retried", "reuse_detected", "invalid")
SESSION_END_REASONS: Final = (
    "logout",
    "logout_all",
    "session_delete",
    "password_change",
    "password_reset",
    "reuse",
    "two_factor_enabled",
    "user_disabled",
    "user_deleted",
)
# In the contract's order, which is also the order of the checks: a token is counted
# under the first check it fails.
REJECTION_REASONS: Final = (
    "token_too_large",
    "malformed_token",
    "unknown_key",
    "algorithm_not_allowed",
    "wrong_token_type",
    "unsupported_critical_header",
    "bad_signature",
    "token_expired",
    "token_not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "missing_claim",
    "invalid_claim",
    "session_ended",
    "unknown_user",
)
MAIL_KINDS: Final = ("verify_email", "reset_password", "test")
MAIL_RESULTS: Final = ("sent", "retried", "failed")
METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
UNMATCHED = "unmatched"
# Finer than prometheus-client's default at the fast end: /test answers in a millisecond.
DURATION_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

LOGINS = Counter("auth_logins", "Login attempts by result.", ["result"])
REFRESHES = Counter("auth_refreshes", "Refresh-token uses by result.", ["result"])
SESSIONS_ENDED = Counter("auth_sessions_ended", "Sessions ended, by why.", ["reason"])
ACCESS_TOKENS_REJECTED = Counter(
    "auth_access_tokens_rejected",
    "Access tokens refused, by the first check they failed.",
    ["reason"],
)
MAILS = Counter("auth_mails", "Mail delivery attempts by kind and result.", ["kind", "result"])
REVOCATION_RELOADS = Counter(
    "auth_revocation_reloads", "Reads of newly ended sessions into the revoked-session set."
)
PASSWORD_HASH_QUEUE_DEPTH = Gauge(
    "auth_password_hash_queue_depth",
    "Password hash operations waiting for a hashing thread.",
    multiprocess_mode="livesum",
)
REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its response.",
    ["method", "route", "status"],
    buckets=DURATION_BUCKETS,
)

_logins = {result: LOGINS.labels(result) for result in LOGIN_RESULTS}
_refreshes = {result: REFRESHES.labels(result) for result in REFRESH_RESULTS}
_sessions_ended = {reason: SESSIONS_ENDED.labels(reason) for reason in SESSION_END_REASONS}
_rejections = {reason: ACCESS_TOKENS_REJECTED.labels(reason) for reason in REJECTION_REASONS}
_mails = {(k, r): MAILS.labels(k, r) for k in MAIL_KINDS for r in MAIL_RESULTS}


def login(result: str) -> None:
    """One login attempt; `result` is one of LOGIN_RESULTS."""
    _logins[result].inc()


def refresh(result: str) -> None:
    """One refresh-token use; `result` is one of REFRESH_RESULTS."""
    _refreshes[result].inc()


def sessions_ended(reason: str, count: int = 1) -> None:
    """`count` sessions ended for `reason` (one of SESSION_END_REASONS)."""
    if count:
        _sessions_ended[reason].inc(count)


def mail(kind: str, result: str) -> None:
    """One delivery attempt of a mail of `kind` (MAIL_KINDS) with its `result` (MAIL_RESULTS)."""
    _mails[kind, result].inc()


def revocation_reload() -> None:
    """One read of newly ended sessions into the revoked-session set."""
    REVOCATION_RELOADS.inc()


def password_hash_queue_depth(depth: int) -> None:
    """How many hash operations of this process wait now (summed over workers)."""
    PASSWORD_HASH_QUEUE_DEPTH.set(depth)


# The access-token checks' reasons (app.security.access_tokens, app.api.deps) as series labels.
_REJECTION_LABELS: Final = {
    "token too large": "token_too_large",
    "malformed token": "malformed_token",
    "missing token": "malformed_token",
    "unknown or missing key id": "unknown_key",
    "algorithm not allowed": "algorithm_not_allowed",
    "wrong token type": "wrong_token_type",
    "unsupported critical header": "unsupported_critical_header",
    "bad signature": "bad_signature",
    "token expired": "token_expired",
    "token not yet valid": "token_not_yet_valid",
    "wrong issuer": "wrong_issuer",
    "wrong audience": "wrong_audience",
    "session ended": "session_ended",
    "unknown user": "unknown_user",
}


def rejection_label(reason: str) -> str:
    """The series label of a rejection reason; any other claim problem is invalid_claim."""
    label = _REJECTION_LABELS.get(reason)
    if label is not None:
        return label
    return "missing_claim" if reason.startswith("missing claim") else "invalid_claim"


def access_token_rejected(reason: str) -> None:
    """One access token refused, counted whether or not it is audited (forged ones are not)."""
    _rejections[rejection_label(reason)].inc()


# Audit events (app.audit.Event values) and what each one counts. Paths distinguish the
# same event on different endpoints: the IP limit refusing a login is a throttled login,
# and a spent refresh token presented to logout ends its session as a logout.
LOGIN_PATHS: Final = frozenset({"/account/login"})
LOGOUT_PATHS: Final = frozenset({"/account/logout"})


def _rate_limited(path: str | None, details: Mapping[str, object]) -> None:
    if path in LOGIN_PATHS:
        _logins["throttled"].inc()


def _reuse_detected(path: str | None, details: Mapping[str, object]) -> None:
    _refreshes["reuse_detected"].inc()
    if path not in LOGOUT_PATHS:
        _sessions_ended["reuse"].inc()


def _logout(path: str | None, details: Mapping[str, object]) -> None:
    # An unknown token (RFC 7009: still a 204) is logged with a reason and ends nothing.
    if "reason" not in details:
        _sessions_ended["logout"].inc()


def _logout_all(path: str | None, details: Mapping[str, object]) -> None:
    ended = details.get("sessions_ended")
    sessions_ended("logout_all", ended if isinstance(ended, int) else 1)


def _login_failed(path: str | None, details: Mapping[str, object]) -> None:
    # The right password of a disabled or unverified account, or of a two-factor account
    # without a code, is logged as a failed login with its reason.
    _logins[LOGIN_FAILURE_RESULTS.get(str(details.get("reason")), "invalid_credentials")].inc()


LOGIN_FAILURE_RESULTS: Final = {
    "account disabled": "account_disabled",
    "two-factor required": "two_factor_required",
    "email not verified": "email_not_verified",
}


def _two_factor_failed(path: str | None, details: Mapping[str, object]) -> None:
    # A wrong code at login is a failed login; elsewhere (confirm, disable) it is no login.
    if path in LOGIN_PATHS:
        _logins["invalid_credentials"].inc()


def _ended_by(reason: str) -> Callable[[str | None, Mapping[str, object]], None]:
    """Events that carry how many sessions an operator's action ended."""

    def count(path: str | None, details: Mapping[str, object]) -> None:
        ended = details.get("sessions_ended")
        sessions_ended(reason, ended if isinstance(ended, int) else 0)

    return count


def _counter(child: Counter) -> Callable[[str | None, Mapping[str, object]], None]:
    def count(path: str | None, details: Mapping[str, object]) -> None:
        child.inc()

    return count


EVENT_COUNTS: Final[dict[str, Callable[[str | None, Mapping[str, object]], None]]] = {
    "login_succeeded": _counter(_logins["success"]),
    "login_failed": _login_failed,
    "login_throttled": _counter(_logins["throttled"]),
    "rate_limited": _rate_limited,
    "token_refreshed": _counter(_refreshes["rotated"]),
    "refresh_reuse_detected": _reuse_detected,
    "logout": _logout,
    "logout_all": _logout_all,
    "session_revoked": _counter(_sessions_ended["session_delete"]),
    "refresh_retried": _counter(_refreshes["retried"]),
    "user_disabled": _ended_by("user_disabled"),
    "user_deleted": _ended_by("user_deleted"),
    "password_reset": _ended_by("password_reset"),
    "two_factor_enabled": _ended_by("two_factor_enabled"),
    "two_factor_failed": _two_factor_failed,
}


def count_event(event: str, path: str | None, details: Mapping[str, object]) -> None:
    """Count an audit event in its series (most events move one series; some none)."""
    count = EVENT_COUNTS.get(event)
    if count is not None:
        count(path, details)


def multiprocess() -> bool:
    return MULTIPROCESS_ENV in os.environ


def exposition() -> tuple[bytes, str]:
    """The text exposition of every series: this process's, or every worker's."""
    flush_request_durations()
    if multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# Observations wait here (per label set: the sum, then the count of each bucket, +Inf
# last) and reach the histogram at most FLUSH_SECONDS later, or at a scrape of this
# process: one request then costs list arithmetic instead of several locked increments.
_pending: dict[tuple[str, str, int], list[float]] = {}
_timer: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None
FLUSH_SECONDS = 1.0


def flush_request_durations() -> None:
    """Move the waiting observations into http_request_duration_seconds."""
    global _timer
    _timer = None
    for (method, route, status), pending in _pending.items():
        child = REQUEST_DURATION.labels(method, route, str(status))
        # prometheus-client's own parts of a histogram child (stable since its first
        # releases): one increment per bucket instead of one observe() per request.
        child._sum.inc(pending[0])
        for bucket, count in zip(child._buckets, pending[1:], strict=True):
            if count:
                bucket.inc(count)
    _pending.clear()


def _observe(method: str, route: str, status: int, seconds: float) -> None:
    global _timer
    key = (method, route, status)
    pending = _pending.get(key)
    if pending is None:
        pending = _pending[key] = [0.0] * (len(DURATION_BUCKETS) + 2)
    pending[0] += seconds
    # The first bucket whose bound is >= the duration (Prometheus buckets are "le").
    pending[1 + bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
    loop = asyncio.get_running_loop()
    if _timer is None or _timer[0] is not loop:
        # An idle worker still publishes its last second (multiprocess mode).
        _timer = (loop, loop.call_later(FLUSH_SECONDS, flush_request_durations))


class RequestDurations:
    """Pure ASGI: observes http_request_duration_seconds for every HTTP request.

    Outside every other layer, so a 500 or a 413 is measured too. The route is the
    template Starlette's router matched (it stores it in the scope), read after the
    response; a request no route matched is `unmatched`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = scope.get("route")
            method: str = scope["method"]
            _observe(
                method if method in METHODS else "other",
                getattr(route, "path", None) or UNMATCHED,
                status,
                time.perf_counter() - started,
            )
