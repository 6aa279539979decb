"""Settings, read from the environment or a `.env` file; field names are the variable names."""

import ipaddress
import os
import secrets
import sys
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import limits
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from app.security.keys import HMAC_ALGORITHMS, KeySet, KeySettingError, load_keys

PLACEHOLDER_MARK = "change-me"
MIN_HMAC_KEY_BYTES = 32
SECRET_KEY_FILE = ".token_secret_key"  # noqa: S105 - a file name
DEFAULT_DATABASE_URL = "sqlite:///./jwt_auth.db"

TokenAlgorithm = Literal["HS256", "RS256", "ES256", "EdDSA"]


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


class DatabaseSettings(BaseSettings):
    """The one setting migrations need: they run without any token secret."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    DATABASE_URL: str = DEFAULT_DATABASE_URL


class AlgorithmSettings(BaseSettings):
    """The one setting `keys generate` needs: it runs before the key file exists."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    TOKEN_ALGORITHM: TokenAlgorithm = "HS256"  # noqa: S105


class Settings(DatabaseSettings):
    ENVIRONMENT: Literal["development", "production"] = "development"
    DATABASE_POOL_SIZE: int = Field(default=5, ge=1)
    DATABASE_MAX_OVERFLOW: int = Field(default=10, ge=0)
    DATABASE_POOL_RECYCLE_SECONDS: int = Field(default=1800, ge=-1)
    DATABASE_POOL_PRE_PING: bool = True

    TOKEN_SECRET_KEY: str | None = None
    TOKEN_ISSUER: str = "http://localhost:8000"  # noqa: S105
    TOKEN_AUDIENCE: str = "API"  # noqa: S105
    TOKEN_ALGORITHM: TokenAlgorithm = "HS256"  # noqa: S105
    TOKEN_PRIVATE_KEY_FILE: Path | None = None
    TOKEN_PREVIOUS_PUBLIC_KEY_FILES: Annotated[list[Path], NoDecode] = []
    TOKEN_PREVIOUS_SECRET_KEYS: Annotated[list[str], NoDecode] = []
    TOKEN_ACCESS_TTL_SECONDS: int = Field(default=1200, ge=1)
    TOKEN_REFRESH_TTL_SECONDS: int = Field(default=604800, ge=1)
    TOKEN_SESSION_MAX_SECONDS: int = Field(default=2592000, ge=1)
    TOKEN_LEEWAY_SECONDS: int = Field(default=0, ge=0)
    # Browser apps: the refresh token also travels in an HttpOnly cookie, never in a body.
    TOKEN_COOKIE_MODE: bool = False
    TOKEN_COOKIE_SECURE: bool = True

    REGISTRATION_ENABLED: bool = True
    PASSWORD_MIN_LENGTH: int = Field(default=15, ge=1, le=256)
    PASSWORD_HASH_MEMORY_KIB: int = Field(default=19456, ge=8)
    PASSWORD_HASH_TIME_COST: int = Field(default=2, ge=1)
    PASSWORD_HASH_PARALLELISM: int = Field(default=1, ge=1)

    LOGIN_MAX_FAILURES: int = Field(default=5, ge=1)
    LOGIN_WINDOW_SECONDS: int = Field(default=900, ge=1)
    IP_RATE_LIMIT: str = "100/minute"
    RATE_LIMIT_STORAGE_URL: str = "memory://"
    TRUSTED_PROXIES: Annotated[list[str], NoDecode] = []
    CORS_ORIGINS: Annotated[list[str], NoDecode] = []

    _split_lists = field_validator(
        "TRUSTED_PROXIES",
        "CORS_ORIGINS",
        "TOKEN_PREVIOUS_PUBLIC_KEY_FILES",
        "TOKEN_PREVIOUS_SECRET_KEYS",
        mode="before",
    )(_split_commas)
    _unset_when_empty = field_validator("TOKEN_PRIVATE_KEY_FILE", mode="before")(_empty_is_none)

    @field_validator("TOKEN_SECRET_KEY")
    @classmethod
    def _secret_is_strong(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = _secret_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("TOKEN_PREVIOUS_SECRET_KEYS")
    @classmethod
    def _previous_secrets_are_strong(cls, values: list[str]) -> list[str]:
        # A previous secret still verifies tokens: it must be as strong as the current one.
        for position, value in enumerate(values, start=1):
            problem = _secret_problem(value)
            if problem is not None:
                raise ValueError(f"secret {position} {problem}")
        return values

    @field_validator("RATE_LIMIT_STORAGE_URL")
    @classmethod
    def _storage_is_known(cls, value: str) -> str:
        if value != "memory://" and not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be memory:// or a redis:// or rediss:// URL")
        return value

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

    @field_validator("TRUSTED_PROXIES")
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
    def _production_is_explicit(self) -> "Settings":
        if self.ENVIRONMENT == "production":
            if self.uses_hmac and self.TOKEN_SECRET_KEY is None:
                raise ValueError("TOKEN_SECRET_KEY is required when ENVIRONMENT=production")
            if self.sqlite_path in (None, ":memory:") and self.is_sqlite:
                raise ValueError("DATABASE_URL: an in-memory SQLite database loses every account")
        return self

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
    def shared_storage(self) -> bool:
        """Whether throttling and revoked sessions are shared across processes (Redis)."""
        return self.RATE_LIMIT_STORAGE_URL != "memory://"

    @property
    def secret_key(self) -> bytes:
        if self.TOKEN_SECRET_KEY is None:  # pragma: no cover - load_settings fills it
            raise RuntimeError("TOKEN_SECRET_KEY is not set")
        return self.TOKEN_SECRET_KEY.encode()


class ConfigurationError(SystemExit):
    """Start-up stops with one line naming the variable at fault."""

    def __init__(self, message: str) -> None:
        print(f"configuration error: {message}", file=sys.stderr)
        super().__init__(2)
        self.message = message


def _development_secret(settings: Settings) -> str:
    """A random key kept in a 0600 file beside the SQLite database, so tokens survive a restart."""
    path = settings.sqlite_path
    folder = Path(path).parent if path and path != ":memory:" else Path.cwd()
    key_file = folder / SECRET_KEY_FILE
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"TOKEN_SECRET_KEY is not set and {key_file} cannot be created ({exc.strerror})"
        ) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return key_file.read_text().strip()


def _configuration_error(exc: ValidationError) -> ConfigurationError:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return ConfigurationError(f"{field} {message}" if field else message)


def load_algorithm() -> TokenAlgorithm:
    """TOKEN_ALGORITHM alone, or stop with one clear line."""
    try:
        return AlgorithmSettings().TOKEN_ALGORITHM
    except ValidationError as exc:
        raise _configuration_error(exc) from None


def load_token_keys(settings: Settings) -> KeySet:
    """The signing and previous keys the settings name, or stop start-up with one clear line."""
    secret = settings.TOKEN_SECRET_KEY if settings.uses_hmac else None
    try:
        return load_keys(
            algorithm=settings.TOKEN_ALGORITHM,
            secret_key=secret.encode() if secret is not None else None,
            private_key_file=settings.TOKEN_PRIVATE_KEY_FILE,
            previous_public_key_files=settings.TOKEN_PREVIOUS_PUBLIC_KEY_FILES,
            previous_secret_keys=[key.encode() for key in settings.TOKEN_PREVIOUS_SECRET_KEYS],
        )
    except KeySettingError as exc:
        raise ConfigurationError(str(exc)) from None


def load_settings(**overrides: object) -> Settings:
    """Read the settings and the key files they name, or stop start-up with one clear line."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        # Only an HMAC algorithm needs a secret; the others sign with TOKEN_PRIVATE_KEY_FILE.
        if settings.TOKEN_SECRET_KEY is None and settings.uses_hmac:
            settings = settings.model_copy(
                update={"TOKEN_SECRET_KEY": _development_secret(settings)}
            )
    except ValidationError as exc:
        raise _configuration_error(exc) from None
    # A missing, unreadable or wrong key file stops start-up here rather than at the first login.
    load_token_keys(settings)
    return settings
