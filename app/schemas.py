"""Request and response bodies, named as in the contract."""

import contextlib
import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Literal

import idna
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.models import EMAIL_MAX_LENGTH, NAME_MAX_LENGTH
from app.security.totp import MAX_CODE_LENGTH

MAX_ROLES = 16


def _storable(value: str) -> str:
    # PostgreSQL refuses NUL in text and UTF-8 cannot carry a lone surrogate:
    # refuse both here (422) instead of failing in the driver or in argon2 (500).
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(_storable)]


def canonical_email(value: str) -> str:
    """The one form in which emails are stored and compared: trimmed, NFKC, lower-case, the
    domain in its Unicode form (an IDNA `xn--` domain is decoded, RFC 5891 §5.2), so that
    `josé@exämple.de` and `josé@xn--exmple-cua.de` are one account.

    Migration 0006 holds a copy of this function; a change here needs a data migration.
    """
    value = unicodedata.normalize("NFKC", value.strip()).lower()
    local, at, domain = value.rpartition("@")
    if not at:
        return value
    # Not a valid IDNA domain: left as it is, for the email check to refuse.
    with contextlib.suppress(idna.IDNAError, UnicodeError):
        domain = idna.decode(domain)
    return f"{local}@{unicodedata.normalize('NFKC', domain).lower()}"


# RFC 5321 §4.5.3.1: 64 for the local part, 255 for the domain, plus "@"; longer input is
# refused before any normalisation, throttling or hashing.
MAX_EMAIL_INPUT_LENGTH = 320


def _email(value: str) -> str:
    if len(value) > MAX_EMAIL_INPUT_LENGTH:
        raise ValueError("is not a valid email address")
    value = canonical_email(value)
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValueError("is not a valid email address")
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        # The library's message can quote parts of the input; ours does not.
        raise ValueError("is not a valid email address") from None
    return value


Email = Annotated[Text, AfterValidator(_email)]
Name = Annotated[Text, StringConstraints(max_length=NAME_MAX_LENGTH)]
# E.164: "+" then 8 to 15 digits.
PhoneNumber = Annotated[str, StringConstraints(pattern=r"^\+[0-9]{8,15}$")]


# A one-time code as typed: anything up to this length is checked (and a wrong one counted),
# never refused as malformed, so a 422 says nothing about a code.
Code = Annotated[Text, StringConstraints(max_length=MAX_CODE_LENGTH)]


class LoginRequest(BaseModel):
    email: Email
    # No policy at login: any wrong password, short or long, is "invalid credentials".
    password: Text
    otp: Code | None = Field(default=None, description="a 6-digit TOTP code (two-factor on)")
    recovery_code: Code | None = Field(
        default=None, description="a recovery code `xxxxx-xxxxx` instead of `otp`"
    )

    @model_validator(mode="after")
    def _one_factor(self) -> "LoginRequest":
        if self.otp is not None and self.recovery_code is not None:
            raise ValueError("send otp or recovery_code, not both")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"email": "demo@example.com", "password": "the demo password"}]
        }
    )


class RegisterRequest(BaseModel):
    email: Email
    password: Text
    first_name: Name | None = None
    last_name: Name | None = None
    phone_number: PhoneNumber | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "password": "correct horse battery staple",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                    "phone_number": "+447700900123",
                }
            ]
        }
    )


class RefreshRequest(BaseModel):
    # Optional for cookie mode, where the browser sends the token as a cookie; without cookie
    # mode the route still requires it. Absent is allowed, null is not (a wrong type).
    refresh_token: Annotated[
        Text | None,
        WithJsonSchema(
            {"type": "string", "description": "required unless TOKEN_COOKIE_MODE is on"}
        ),
    ] = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"refresh_token": "raO8mzPm2Dpnua5n2H3fOUJe3cIqg0NpJLk-sydifTE"}]
        }
    )

    @field_validator("refresh_token", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Runs only on a submitted value, never on the default.
        if value is None:
            raise PydanticCustomError("string_type", "Input should be a valid string")
        return value


class PasswordChangeRequest(BaseModel):
    current_password: Text
    new_password: Text

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "current_password": "the demo password",
                    "new_password": "a new and much longer passphrase",
                }
            ]
        }
    )


class ProfileUpdate(BaseModel):
    """Any of the profile fields, validated as at registration; null clears one, an absent
    one is left as it is. The email cannot change here."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"first_name": "Ada", "phone_number": None}]},
    )

    first_name: Name | None = None
    last_name: Name | None = None
    phone_number: PhoneNumber | None = None


class AccountDeletion(BaseModel):
    password: Text

    model_config = ConfigDict(json_schema_extra={"examples": [{"password": "the password"}]})


# A link token is 43 base64url characters; anything else, of any length within the body
# limit, is an invalid link (400), not a malformed body.
LinkToken = Annotated[Text, Field(description="the token from the link's #token= fragment")]


class EmailVerification(BaseModel):
    token: LinkToken

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"token": "raO8mzPm2Dpnua5n2H3fOUJe3cIqg0NpJLk-sydifTE"}]}
    )


class PasswordReset(BaseModel):
    token: LinkToken
    new_password: Text

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "raO8mzPm2Dpnua5n2H3fOUJe3cIqg0NpJLk-sydifTE",
                    "new_password": "a new and much longer passphrase",
                }
            ]
        }
    )


class MailRequestBody(BaseModel):
    email: Email

    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "ada@example.com"}]})


class MailRequestAccepted(BaseModel):
    """The one answer of forgot-password and resend, whatever the address."""

    detail: str


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - RFC 6750 token type
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str | None = None
    refresh_expires_in: int | None = Field(
        default=None, description="seconds until the session ends if the token is not used"
    )


class UserProfile(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    email_verified: bool
    first_name: str | None
    last_name: str | None
    phone_number: str | None
    created_at: datetime
    two_factor_enabled: bool


class TotpSetupRequest(BaseModel):
    password: Text

    model_config = ConfigDict(json_schema_extra={"examples": [{"password": "the demo password"}]})


class TotpSetup(BaseModel):
    """The new secret, shown once: enter it, or scan the URI as a QR code, in an app."""

    secret: str = Field(description="base32, 160 bits")
    otpauth_uri: str = Field(description="otpauth://totp/... (SHA-1, 6 digits, 30 s)")


class CodeRequest(BaseModel):
    code: Code

    model_config = ConfigDict(json_schema_extra={"examples": [{"code": "123456"}]})


class RecoveryCodes(BaseModel):
    """Shown once: each code logs in once in place of a TOTP code."""

    recovery_codes: list[str] = Field(description="ten codes `xxxxx-xxxxx`")


class TwoFactorDisableRequest(BaseModel):
    password: Text
    code: Code = Field(description="a TOTP code or a recovery code")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"password": "the demo password", "code": "123456"}]}
    )


# Lower-case names; `admin` is the one the service itself checks.
Role = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]


def _role_set(roles: list[str]) -> list[str]:
    # A set of roles: duplicates collapse, and a token stays far below the 8 KiB limit.
    unique = sorted(set(roles))
    if len(unique) > MAX_ROLES:
        raise ValueError(f"at most {MAX_ROLES} roles")
    return unique


class AdminUserView(BaseModel):
    """The user profile plus what an administrator manages."""

    id: int
    email: str
    email_verified: bool
    first_name: str | None
    last_name: str | None
    phone_number: str | None
    created_at: datetime
    two_factor_enabled: bool
    is_active: bool
    roles: list[str] = Field(description="sorted")
    last_login_at: datetime | None = Field(description="null before the first login")


class AdminUserPage(BaseModel):
    items: list[AdminUserView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null last")


class AdminUserUpdate(BaseModel):
    """Any of the fields; an absent field is left as it is."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"is_active": False}, {"roles": ["admin"]}]},
    )

    is_active: StrictBool | None = None
    roles: Annotated[list[Role], AfterValidator(_role_set)] | None = Field(
        default=None, description=f"replaces the user's roles; at most {MAX_ROLES}"
    )
    two_factor_enabled: Literal[False] | None = Field(
        default=None, description="false switches the user's second factor off"
    )

    @field_validator("is_active", "roles", "two_factor_enabled", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Runs only on a submitted value: absent leaves the field alone, null is no value.
        if value is None:
            raise PydanticCustomError("missing", "must not be null")
        return value


class SessionInfo(BaseModel):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessChecks(BaseModel):
    database: Literal["ok", "unavailable", "not migrated"]
    revocation_store: Literal["ok", "unavailable"]


class Readiness(BaseModel):
    status: Literal["ok"] = "ok"
    checks: ReadinessChecks


class Jwks(BaseModel):
    keys: list[dict[str, str]]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str


class NotReadyProblem(Problem):
    """/health/ready's 503: which dependency failed, and whether a shutdown has begun."""

    checks: ReadinessChecks
    draining: bool | None = None


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str


class ValidationProblem(Problem):
    errors: list[ValidationErrorItem]


class OAuthErrorBody(BaseModel):
    """RFC 6749 §5.2 error response of the token endpoint."""

    error: Literal[
        "invalid_request", "invalid_grant", "unsupported_grant_type", "temporarily_unavailable"
    ]
    error_description: str
