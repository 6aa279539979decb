"""The security audit log: one JSON object per line on the `app.audit` logger, to stderr.

Every line carries the event, when (UTC), who (user id, session id), from where (client
IP, user agent), the request id (also the response's X-Request-ID) and the path. Only ids,
reasons and counts are ever passed in: never a token, a password, a hash or a key (ASVS
5.0 16.2.5; a test searches a whole scenario's log for each of them). JSON encoding keeps
each event on one line whatever a client puts in its user agent (ASVS 5.0 16.4.1).

Services record what only they see (which account a failed login was for, which session
a replayed refresh token belonged to); routes record outcomes that span several services.
Plain Python: services receive an `Audit` as a value, built per request by `deps.py`.
"""

import json
import logging
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

LOGGER_NAME = "app.audit"
log = logging.getLogger(LOGGER_NAME)

Detail = str | int | bool | None


class Event(StrEnum):
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOGIN_THROTTLED = "login_throttled"
    RATE_LIMITED = "rate_limited"
    TOKEN_REFRESHED = "token_refreshed"  # noqa: S105 - an event name
    REFRESH_REUSE_DETECTED = "refresh_reuse_detected"
    REFRESH_RETRIED = "refresh_retried"
    LOGOUT = "logout"
    LOGOUT_ALL = "logout_all"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
    PASSWORD_CHANGE_FAILED = "password_change_failed"  # noqa: S105 - an event name
    SESSION_REVOKED = "session_revoked"
    ACCESS_TOKEN_REJECTED = "access_token_rejected"  # noqa: S105 - an event name
    ACCESS_FORBIDDEN = "access_forbidden"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    ROLES_CHANGED = "roles_changed"
    USER_DELETED = "user_deleted"


# Events that may be an attack in progress (OWASP Logging Vocabulary: authn_*_fail,
# session_token_reuse) are warnings; the others are the normal life of a session.
WARNINGS = frozenset(
    {
        Event.LOGIN_FAILED,
        Event.LOGIN_THROTTLED,
        Event.RATE_LIMITED,
        Event.REFRESH_REUSE_DETECTED,
        Event.PASSWORD_CHANGE_FAILED,
        Event.ACCESS_TOKEN_REJECTED,
        Event.ACCESS_FORBIDDEN,
    }
)


@dataclass(frozen=True, slots=True)
class Audit:
    """The request an event happened in; `user_id` and `session_id` are the caller's once
    an access token has said who that is."""

    request_id: str | None
    ip: str | None
    user_agent: str | None
    path: str | None = None
    user_id: int | None = None
    session_id: uuid.UUID | None = None

    def record(
        self,
        event: Event,
        *,
        user_id: int | None = None,
        session_id: uuid.UUID | None = None,
        **details: Detail,
    ) -> None:
        level = logging.WARNING if event in WARNINGS else logging.INFO
        if not log.isEnabledFor(level):
            return
        session = session_id or self.session_id
        fields: dict[str, Detail] = {
            "event": event.value,
            "user_id": user_id if user_id is not None else self.user_id,
            "session_id": str(session) if session is not None else None,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "request_id": self.request_id,
            "path": self.path,
            **details,
        }
        log.log(level, event.value, extra={"audit": fields})


class JsonLines(logging.Formatter):
    """One JSON object per record; ASCII-only, so no control character or newline survives."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "audit", None) or {"message": record.getMessage()}
        when = datetime.fromtimestamp(record.created, UTC)
        line = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            **fields,
        }
        return json.dumps(line, ensure_ascii=True, separators=(",", ":"), default=str)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current sys.stderr (test runners swap it), one line per event."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(JsonLines())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def install_audit_log() -> None:
    """Send `app.audit` to stderr as JSON lines, once per process however many apps exist.

    The logger does not propagate: a root handler configured elsewhere would print every
    event a second time, in another format.
    """
    if not any(isinstance(handler, StderrHandler) for handler in log.handlers):
        log.addHandler(StderrHandler())
    log.setLevel(logging.INFO)
    log.propagate = False
