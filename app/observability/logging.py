"""Log lines: one JSON object each (LOG_FORMAT=json), or plain text for a terminal.

Every line, whoever writes it (the service, the audit log, uvicorn's error and access
loggers, a library through the root logger), goes through one formatter: `time` (RFC 3339,
UTC), `level` (lower case), `logger`, `message` (an audit line has its `event` and fields
instead), `request_id` while a request is being served, and a traceback as `exc_info`.

The request id reaches lines that never saw the request through a context variable the
SecurityHeaders middleware sets: each request runs in a task of its own, with its own copy.

Under `jwt-auth-api serve` uvicorn is configured by `uvicorn_log_config` before it logs
anything; under a plain `uvicorn app.main:app` the app swaps the formatter of uvicorn's
handlers when it is built (`configure_logging`), keeping uvicorn's levels and
--no-access-log. Lines printed for a person (the demo password, command-line errors) are
print()s, not log lines.
"""

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

LogFormat = Literal["json", "text"]

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access")
AUDIT_LOGGER: Final = "app.audit"


def rfc3339(created: float) -> str:
    when = datetime.fromtimestamp(created, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RequestIdFilter(logging.Filter):
    """Stamps every record passing a handler with the id of the request being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    # uvicorn's access record: (client, method, path without the query, HTTP version, status).
    args = record.args
    if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        return {"client": args[0], "method": args[1], "path": args[2], "status": args[4]}
    return {}


class JsonFormatter(_JsonFormatter):
    """The contract's line shape; ASCII-only JSON, so no control character or newline a
    client sent (a user agent, say) can break a line or forge one (ASVS 5.0 16.4.1)."""

    def __init__(self) -> None:
        super().__init__(json_default=str, json_ensure_ascii=True)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = rfc3339(record.created)
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        audit = getattr(record, "audit", None)
        if audit is not None:
            # The audit event names the line; its fields (request_id included) follow.
            log_data.update(audit)
        else:
            log_data["message"] = record.message
            request_id = getattr(record, "request_id", None)
            if request_id is not None:
                log_data["request_id"] = request_id
            log_data.update(_access_fields(record))
        log_data.update(message_dict)

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        return json.dumps(log_data, default=str, ensure_ascii=True, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """For a terminal: `time level logger [request id] message key=value...`."""

    def format(self, record: logging.LogRecord) -> str:
        audit = getattr(record, "audit", None)
        request_id = getattr(record, "request_id", None)
        fields = ""
        if audit is not None:
            request_id = audit.get("request_id") or request_id
            # Strings quoted and escaped: a newline a client sent cannot forge a line.
            fields = "".join(
                f" {key}={json.dumps(value) if isinstance(value, str) else value}"
                for key, value in audit.items()
                if key not in ("event", "request_id") and value is not None
            )
        line = (
            f"{rfc3339(record.created)} {record.levelname.lower():7} {record.name}"
            f"{f' [{request_id}]' if request_id else ''} {record.getMessage()}{fields}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current sys.stderr (test runners swap it), one line per record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _our_handler(logger: logging.Logger) -> StderrHandler:
    for handler in logger.handlers:
        if isinstance(handler, StderrHandler):
            return handler
    handler = StderrHandler()
    logger.addHandler(handler)
    return handler


def configure_logging(log_format: LogFormat) -> None:
    """Put every logger of this process on one line format; safe to call again.

    The root logger gets one stderr handler (its level stays what it was: warnings and
    up, unless someone chose otherwise). The audit log keeps a handler of its own at
    INFO and does not propagate, so an event is never printed twice. uvicorn's handlers,
    if uvicorn configured any, get the same formatter and the request id.
    """
    chosen = formatter(log_format)
    _our_handler(logging.getLogger()).setFormatter(chosen)
    audit = logging.getLogger(AUDIT_LOGGER)
    _our_handler(audit).setFormatter(chosen)
    audit.setLevel(logging.INFO)
    audit.propagate = False
    for name in UVICORN_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(chosen)
            if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
                handler.addFilter(RequestIdFilter())


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any]:
    """uvicorn's `log_config` (logging.config.dictConfig) for `serve`: its own loggers and
    levels, our formatter and request id, and the root logger on the same handler."""
    formatter_class = "JsonFormatter" if log_format == "json" else "TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"line": {"()": f"{__name__}.{formatter_class}"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "filters": ["request_id"],
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


class DropQueryStrings(logging.Filter):
    """uvicorn's access log prints the query string, where a client may have put a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], *args[3:])
        return True


ACCESS_LOG_FILTER = DropQueryStrings()
