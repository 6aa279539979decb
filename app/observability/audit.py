"""The security audit log: one JSON object per line on the `app.audit` logger, to stderr
(the line format is app.observability.logging's; each event also moves its metric).

Every line carries the event, when (UTC), who (user id, session id), from where (client
IP, user agent), the request id (also the response's X-Request-ID) and the path. Only ids,
reasons and counts are ever passed in: never a token, a password, a hash or a key (ASVS
5.0 16.2.5; a test searches a whole scenario's log for each of them). JSON encoding keeps
each event on one line whatever a client puts in its user agent (ASVS 5.0 16.4.1).

Services record what only they see (which account a failed login was for, which session
a replayed refresh token belonged to); routes record outcomes that span several services.
Plain Python: services receive an `Audit` as a value, built per request by `deps.py`.
"""

import logging
import uuid
from dataclasses import dataclass
from enum import StrEnum

from app.observability import metrics
from app.observability.logging import AUDIT_LOGGER, JsonFormatter

LOGGER_NAME = AUDIT_LOGGER
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
    EMAIL_VERIFICATION_SENT = "email_verification_sent"
    EMAIL_VERIFIED = "email_verified"
    PASSWORD_RESET_REQUESTED = "password_reset_requested"  # noqa: S105 - an event name
    PASSWORD_RESET = "password_reset"  # noqa: S105 - an event name
    ACCOUNT_UPDATED = "account_updated"
    ACCOUNT_DELETED = "account_deleted"
    TWO_FACTOR_ENABLED = "two_factor_enabled"
    TWO_FACTOR_DISABLED = "two_factor_disabled"
    RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"
    RECOVERY_CODE_USED = "recovery_code_used"
    TWO_FACTOR_FAILED = "two_factor_failed"


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
        Event.TWO_FACTOR_FAILED,
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
        # Counted whether or not the line is logged: metrics see every event.
        metrics.count_event(event, self.path, details)
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


# The formatter of every log line (app.observability.logging); the audit's name for it.
JsonLines = JsonFormatter
