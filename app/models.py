"""Tables: the article's User and its roles, one row per refresh token issued, one per ended
session, the mail outbox, mailed account links and recorded mail requests."""

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime

EMAIL_MAX_LENGTH = 300
NAME_MAX_LENGTH = 300
PHONE_MAX_LENGTH = 16
USER_AGENT_MAX_LENGTH = 512
ROLE_MAX_LENGTH = 32
IP_MAX_LENGTH = 45  # the longest textual IPv6 address
MAIL_KIND_MAX_LENGTH = 32
MAIL_STATUS_MAX_LENGTH = 16
MAIL_ERROR_MAX_LENGTH = 100
SUBJECT_MAX_LENGTH = 200
AMR_MAX_LENGTH = 64
KEY_ID_MAX_LENGTH = 16


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # PostgreSQL uses it for `email LIKE 'prefix%'` (the admin search) in any collation.
        Index("ix_users_email_pattern", "email", postgresql_ops={"email": "varchar_pattern_ops"}),
        # SQLite: AUTOINCREMENT, so a deleted user's id is never given to a new user.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Canonical form (trimmed, NFKC, lower-case), so uniqueness holds across case and width.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    first_name: Mapped[str | None] = mapped_column(String(NAME_MAX_LENGTH))
    last_name: Mapped[str | None] = mapped_column(String(NAME_MAX_LENGTH))
    phone_number: Mapped[str | None] = mapped_column(String(PHONE_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Bumped by every change that must win over a racing login; see
    # app.services.accounts.invalidate_credentials.
    credentials_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # True once a verification or reset link was used (the mailbox is the user's).
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # True once a TOTP factor is confirmed; the login then asks for a second factor.
    two_factor_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class UserRole(Base):
    """One role of a user; `admin` is the one the service itself checks."""

    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(ROLE_MAX_LENGTH), primary_key=True)


class RefreshToken(Base):
    """One refresh token; the tokens of one login session share `session_id` (a family)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(Uuid(), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Only the SHA-256 digest is stored: a database leak yields no usable token.
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    session_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    spent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replaced_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("refresh_tokens.id", ondelete="SET NULL")
    )
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
    ip: Mapped[str | None] = mapped_column(String(IP_MAX_LENGTH))
    # RFC 8176 methods of the login that began the session, space-separated and sorted
    # ("pwd", or "mfa otp pwd"): every refresh mints them again. NULL (older rows) is "pwd".
    amr: Mapped[str | None] = mapped_column(String(AMR_MAX_LENGTH))


class TotpFactor(Base):
    """A user's TOTP secret: pending until a first code confirms it."""

    __tablename__ = "totp_factors"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # Sealed with DATA_ENCRYPTION_KEY (app.security.sealing): a dump holds no secret.
    secret: Mapped[bytes] = mapped_column(LargeBinary())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # NULL while pending.
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # RFC 6238 §5.2: the last 30 s step whose code was accepted; a code of this step or an
    # earlier one is a replay. Moved by a conditional UPDATE, so one of two concurrent
    # uses of a code wins.
    last_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """One single-use recovery code, stored as an HMAC-SHA-256 digest."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The id of the data key whose subkey made the digest (DataKey.kid): a key rotation
    # leaves the codes usable while the previous key is configured.
    key_id: Mapped[str] = mapped_column(String(KEY_ID_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MailOutbox(Base):
    """A mail waiting to go, written in the transaction of the change that asks for it."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # verify_email, reset_password or test
    kind: Mapped[str] = mapped_column(String(MAIL_KIND_MAX_LENGTH))
    # The mails of a deleted user go with it.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX_LENGTH))
    # Sealed with DATA_ENCRYPTION_KEY (it holds a link); NULL once sent or failed.
    body: Mapped[bytes | None] = mapped_column(LargeBinary())
    # pending, sent or failed
    status: Mapped[str] = mapped_column(String(MAIL_STATUS_MAX_LENGTH))
    attempts: Mapped[int] = mapped_column(Integer)
    # When the next attempt is due; a claim moves it past the lease, so a crashed sender's
    # mail becomes due again by itself.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The kind of the last error (an exception class, an SMTP code), never its text.
    last_error: Mapped[str | None] = mapped_column(String(MAIL_ERROR_MAX_LENGTH))


class EndedSession(Base):
    """A session that ended (logout, reuse, a deleted user...), kept one access-token lifetime
    plus the leeway: the revoked-session set is rebuilt from these rows. No foreign key to
    users, so that deleting a user leaves them."""

    __tablename__ = "ended_sessions"

    session_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class AccountLink(Base):
    """A mailed link's token (verify_email or reset_password): only its SHA-256 digest,
    single use, void once expired, used, or superseded by a newer link of its kind."""

    __tablename__ = "account_links"
    # "A newer link voids older ones" looks up the user's links of one kind.
    __table_args__ = (Index("ix_account_links_user_id_kind", "user_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(MAIL_KIND_MAX_LENGTH))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set when used or voided: either way the link is spent.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MailRequest(Base):
    """A forgot-password or resend request, recorded as it came: the same row whether or
    not the address has an account. The outbox sender later turns it into a link and a
    mail, or into nothing, and deletes it."""

    __tablename__ = "mail_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # verify_email or reset_password
    kind: Mapped[str] = mapped_column(String(MAIL_KIND_MAX_LENGTH))
    # Canonical form, as submitted; no foreign key: most may name nobody.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
