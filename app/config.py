"""Settings, read from the environment or a `.env` file; field names are the variable names."""

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import limits
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.security.keys import HMAC_ALGORITHMS

PLACEHOLDER_MARK = "change-me"
MIN_HMAC_KEY_BYTES = 32
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
DEFAULT_DATABASE_URL = "sqlite:///./jwt_auth.db"
# Set by `jwt-auth-api serve` for its processes: only there does SIGTERM drain first.
SERVE_MARKER = "JWT_AUTH_API_SERVE"
# The drivers the service runs with (the CLI and Alembic switch to the synchronous one).
DATABASE_DRIVERS = {
    "sqlite": {"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"},
    "postgresql": {"postgresql", "postgresql+psycopg"},
}
DATABASE_URL_EXAMPLES = "sqlite:///./jwt_auth.db or postgresql+psycopg://user:password@host/db"
# Every lifetime stays below ten years, so that now + lifetime (and the expiry of every
# token, session and record derived from it) is a representable timestamp.
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600

TokenAlgorithm = Literal["HS256", "RS256", "ES256", "EdDSA"]
MailBackendName = Literal["console", "smtp", "disabled"]
SmtpSecurity = Literal["starttls", "tls", "none"]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _empty_is_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _secret_problem(value: str) -> str | None:
    """Why an HMAC secret is refused, without quoting it; None when it is acceptable."""
    if PLACEHOLDER_MARK in value:
        return (
            "is the .env.example placeholder; set a random value of at least "
            f"{MIN_HMAC_KEY_BYTES} bytes (python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))')"
        )
    if len(value.encode()) < MIN_HMAC_KEY_BYTES:
        return f"must be at least {MIN_HMAC_KEY_BYTES} bytes of UTF-8"
    return None


class Settings(BaseSettings):
    """Every setting, read once from the environment (or `.env`); field names are the
    variables. Checks that need more than one field, or the environment's purpose
    (production), are `refusal()`, applied by load_settings: migrations run without the
    secrets a server needs."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    DATABASE_URL: str = DEFAULT_DATABASE_URL
    # Bounds a request's whole database work; migrations use it for connecting only.
    DATABASE_TIMEOUT_SECONDS: float = Field(default=5, gt=0)

    ENVIRONMENT: Literal["development", "production"] = "development"
    DATABASE_POOL_SIZE: int = Field(default=5, ge=1)
    DATABASE_MAX_OVERFLOW: int = Field(default=10, ge=0)
    DATABASE_POOL_RECYCLE_SECONDS: int = Field(default=1800, ge=-1)
    DATABASE_POOL_PRE_PING: bool = True
    DATABASE_STARTUP_TIMEOUT_SECONDS: float = Field(default=30, ge=0)
    SHUTDOWN_DRAIN_SECONDS: float = Field(default=0, ge=0)

    TOKEN_SECRET_KEY: SecretStr | None = None
    TOKEN_ISSUER: str = "http://localhost:8000"  # noqa: S105
    TOKEN_AUDIENCE: str = "API"  # noqa: S105
    TOKEN_ALGORITHM: TokenAlgorithm = "HS256"  # noqa: S105
    TOKEN_PRIVATE_KEY_FILE: Path | None = None
    TOKEN_PREVIOUS_PUBLIC_KEY_FILES: Annotated[list[Path], NoDecode] = []
    TOKEN_PREVIOUS_SECRET_KEYS: Annotated[list[SecretStr], NoDecode] = []
    TOKEN_ACCESS_TTL_SECONDS: int = Field(default=1200, ge=1, le=MAX_TTL_SECONDS)
    TOKEN_REFRESH_TTL_SECONDS: int = Field(default=604800, ge=1, le=MAX_TTL_SECONDS)
    TOKEN_SESSION_MAX_SECONDS: int = Field(default=2592000, ge=1, le=MAX_TTL_SECONDS)
    TOKEN_LEEWAY_SECONDS: int = Field(default=0, ge=0, le=MAX_TTL_SECONDS)
    # Off by default: a retry of a spent refresh token within this window is not reuse.
    REFRESH_REUSE_GRACE_SECONDS: int = Field(default=0, ge=0, le=MAX_TTL_SECONDS)
    # Browser apps: the refresh token also travels in an HttpOnly cookie, never in a body.
    TOKEN_COOKIE_MODE: bool = False
    TOKEN_COOKIE_SECURE: bool = True

    REGISTRATION_ENABLED: bool = True
    PASSWORD_MIN_LENGTH: int = Field(default=15, ge=1, le=256)
    PASSWORD_HASH_MEMORY_KIB: int = Field(default=19456, ge=8)
    PASSWORD_HASH_TIME_COST: int = Field(default=2, ge=1)
    PASSWORD_HASH_PARALLELISM: int = Field(default=1, ge=1)
    PASSWORD_HASH_QUEUE_LIMIT: int = Field(default=32, ge=0)

    LOGIN_MAX_FAILURES: int = Field(default=5, ge=1)
    LOGIN_WINDOW_SECONDS: int = Field(default=900, ge=1, le=MAX_TTL_SECONDS)
    IP_RATE_LIMIT: str = "100/minute"
    RATE_LIMIT_STORAGE_URL: str = "memory://"
    TRUSTED_PROXIES: Annotated[list[str], NoDecode] = []
    CORS_ORIGINS: Annotated[list[str], NoDecode] = []

    # Encrypts data at rest (queued mail bodies, TOTP secrets) and keys the recovery-code
    # digests; previous keys still decrypt (and verify) during a rotation.
    DATA_ENCRYPTION_KEY: SecretStr | None = None
    DATA_PREVIOUS_ENCRYPTION_KEYS: Annotated[list[SecretStr], NoDecode] = []
    # The issuer label authenticator apps show for the otpauth:// URI.
    TOTP_ISSUER_NAME: str = Field(default="JWT auth API", min_length=1, max_length=100)

    MAIL_BACKEND: MailBackendName = "console"
    MAIL_FROM: str = "JWT auth API <no-reply@localhost>"
    MAIL_RETRY_BASE_SECONDS: float = Field(default=5, gt=0)
    MAIL_MAX_ATTEMPTS: int = Field(default=10, ge=1)
    # How often each process looks for mail queued by another one; its own wake it at once.
    MAIL_POLL_SECONDS: float = Field(default=10, gt=0)
    SMTP_HOST: str | None = None
    SMTP_PORT: int = Field(default=587, ge=1, le=65535)
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: SecretStr | None = None
    SMTP_SECURITY: SmtpSecurity = "starttls"
    SMTP_TIMEOUT_SECONDS: float = Field(default=10, gt=0)

    # Account lifecycle: where mailed links point (TOKEN_ISSUER when unset), how long they
    # last, how many mails of one kind one address gets, and whether login needs a verified
    # address.
    ACCOUNT_LINK_BASE_URL: str | None = None
    EMAIL_VERIFY_TTL_SECONDS: int = Field(default=86400, ge=1, le=MAX_TTL_SECONDS)
    PASSWORD_RESET_TTL_SECONDS: int = Field(default=3600, ge=1, le=MAX_TTL_SECONDS)
    MAIL_PER_ADDRESS_LIMIT: str = "3/hour"
    REQUIRE_VERIFIED_EMAIL: bool = False

    METRICS_ENABLED: bool = True
    # The client address the app sees: after TRUSTED_PROXIES' X-Forwarded-For.
    METRICS_ALLOWED_CLIENTS: Annotated[list[str], NoDecode] = ["127.0.0.1", "::1"]
    LOG_FORMAT: Literal["json", "text"] = "json"

    _split_lists = field_validator(
        "TRUSTED_PROXIES",
        "METRICS_ALLOWED_CLIENTS",
        "CORS_ORIGINS",
        "TOKEN_PREVIOUS_PUBLIC_KEY_FILES",
        "TOKEN_PREVIOUS_SECRET_KEYS",
        "DATA_PREVIOUS_ENCRYPTION_KEYS",
        mode="before",
    )(_split_commas)
    _unset_when_empty = field_validator(
        "TOKEN_PRIVATE_KEY_FILE",
        "DATA_ENCRYPTION_KEY",
        "SMTP_HOST",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "ACCOUNT_LINK_BASE_URL",
        mode="before",
    )(_empty_is_none)

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url_is_supported(cls, value: str) -> str:
        # The message never quotes the URL: it may hold a password.
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"is not a database URL such as {DATABASE_URL_EXAMPLES}") from None
        if url.drivername == "postgres":
            raise ValueError(
                "uses postgres://, which SQLAlchemy does not read; write postgresql+psycopg://"
            )
        supported = DATABASE_DRIVERS.get(url.get_backend_name(), set())
        if url.drivername not in supported:
            raise ValueError(
                f"uses {url.drivername}://, which is not supported; use {DATABASE_URL_EXAMPLES}"
            )
        return value

    @field_validator("TOKEN_SECRET_KEY", "DATA_ENCRYPTION_KEY")
    @classmethod
    def _key_is_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        problem = _secret_problem(value.get_secret_value())
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("TOKEN_PREVIOUS_SECRET_KEYS", "DATA_PREVIOUS_ENCRYPTION_KEYS")
    @classmethod
    def _previous_keys_are_strong(
        cls, values: list[SecretStr], info: ValidationInfo
    ) -> list[SecretStr]:
        # A previous key still verifies or decrypts: it must be as strong as the current one.
        noun = "secret" if info.field_name == "TOKEN_PREVIOUS_SECRET_KEYS" else "key"
        for position, value in enumerate(values, start=1):
            problem = _secret_problem(value.get_secret_value())
            if problem is not None:
                raise ValueError(f"{noun} {position} {problem}")
        return values

    @field_validator("RATE_LIMIT_STORAGE_URL")
    @classmethod
    def _storage_is_known(cls, value: str) -> str:
        if value != "memory://" and not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be memory:// or a redis:// or rediss:// URL")
        return value

    @field_validator("MAIL_PER_ADDRESS_LIMIT")
    @classmethod
    def _mail_limit_parses(cls, value: str) -> str:
        value = value.strip()
        try:
            limits.parse_many(value)
        except ValueError:
            raise ValueError("must read like 3/hour (the limits notation)") from None
        return value

    @field_validator("ACCOUNT_LINK_BASE_URL")
    @classmethod
    def _link_base_is_a_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL such as https://app.example.com")
        if parts.query or parts.fragment:
            raise ValueError("must have no query and no fragment")
        return value.rstrip("/")

    @field_validator("IP_RATE_LIMIT")
    @classmethod
    def _ip_limit_parses(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                limits.parse_many(value)
            except ValueError:
                raise ValueError("must read like 100/minute (the limits notation)") from None
        return value

    @field_validator("TRUSTED_PROXIES", "METRICS_ALLOWED_CLIENTS")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or CIDR") from None
        return value

    @field_validator("CORS_ORIGINS")
    @classmethod
    def _origins_are_explicit(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "null":
                # The opaque origin of sandboxed frames and file:// pages: only when listed.
                continue
            # Credentials are allowed (the refresh cookie), and the Fetch standard refuses
            # a wildcard with credentials: name each origin (ASVS 5.0 3.4.2).
            if "*" in origin:
                raise ValueError(
                    "must list each origin; a wildcard is refused because credentials are allowed"
                )
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.username is not None
                or parts.path
                or parts.query
                or parts.fragment
            ):
                # The browser's Origin is scheme://host[:port]; anything else never matches.
                raise ValueError(
                    f"{origin!r} is not an origin like https://app.example.com (no path, "
                    "no trailing slash)"
                )
        return value

    @model_validator(mode="after")
    def _mail_is_complete(self) -> "Settings":
        if self.MAIL_BACKEND == "smtp" and self.SMTP_HOST is None:
            raise ValueError("SMTP_HOST is required when MAIL_BACKEND=smtp")
        if self.REQUIRE_VERIFIED_EMAIL and self.MAIL_BACKEND == "disabled":
            raise ValueError(
                "REQUIRE_VERIFIED_EMAIL=true needs mail: with MAIL_BACKEND=disabled no address "
                "could ever be verified"
            )
        return self

    def refusal(self) -> str | None:
        """Why a server or a command that signs, seals or mails must not start with these
        settings (production refuses what development fills in); None when it may."""
        if self.ENVIRONMENT != "production":
            return None
        if self.uses_hmac and self.TOKEN_SECRET_KEY is None:
            return "TOKEN_SECRET_KEY is required when ENVIRONMENT=production"
        if self.sqlite_path in (None, ":memory:") and self.is_sqlite:
            return "DATABASE_URL: an in-memory SQLite database loses every account"
        if self.DATA_ENCRYPTION_KEY is None:
            return "DATA_ENCRYPTION_KEY is required when ENVIRONMENT=production"
        if self.MAIL_BACKEND == "console":
            return (
                "MAIL_BACKEND=console prints mail instead of sending it; set smtp or "
                "disabled when ENVIRONMENT=production"
            )
        if self.SMTP_SECURITY == "none" and self.SMTP_HOST not in LOOPBACK_HOSTS:
            return (
                "SMTP_SECURITY=none sends mail in clear text; it is for a relay on localhost only"
            )
        return None

    @property
    def account_link_base_url(self) -> str:
        """Where mailed links point: ACCOUNT_LINK_BASE_URL, else TOKEN_ISSUER."""
        return self.ACCOUNT_LINK_BASE_URL or self.TOKEN_ISSUER.rstrip("/")

    @property
    def uses_hmac(self) -> bool:
        """TOKEN_SECRET_KEY signs only under an HMAC algorithm; the others use a key file."""
        return self.TOKEN_ALGORITHM in HMAC_ALGORITHMS

    @cached_property
    def is_sqlite(self) -> bool:
        return make_url(self.DATABASE_URL).get_backend_name() == "sqlite"

    @cached_property
    def sqlite_path(self) -> str | None:
        url = make_url(self.DATABASE_URL)
        if url.get_backend_name() != "sqlite":
            return None
        return url.database or ":memory:"

    @property
    def retention_seconds(self) -> int:
        """How long an ended session's access tokens may still be presented: one
        access-token lifetime plus the leeway. Revoked ids and ended-session records are
        kept that long."""
        return self.TOKEN_ACCESS_TTL_SECONDS + self.TOKEN_LEEWAY_SECONDS

    @property
    def shared_storage(self) -> bool:
        """Whether throttling and revoked sessions are shared across processes (Redis)."""
        return self.RATE_LIMIT_STORAGE_URL != "memory://"

    @property
    def secret_key(self) -> bytes:
        if self.TOKEN_SECRET_KEY is None:  # pragma: no cover - load_settings fills it
            raise RuntimeError("TOKEN_SECRET_KEY is not set")
        return self.TOKEN_SECRET_KEY.get_secret_value().encode()


class ConfigurationError(Exception):
    """Start-up stops with one line naming the variable at fault: the command line and
    `uvicorn app.main:app` print it (`configuration error: ...`) and exit 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def configuration_error(exc: ValidationError) -> ConfigurationError:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return ConfigurationError(f"{field} {message}" if field else message)


def read_settings() -> Settings:
    """The settings as the environment gives them, without the secrets a server needs:
    enough for migrations and `keys generate`, which run before any key exists."""
    try:
        return Settings()
    except ValidationError as exc:
        raise configuration_error(exc) from None
