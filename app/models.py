"""Tables: the article's User, and one row per refresh token issued."""

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime

EMAIL_MAX_LENGTH = 300
NAME_MAX_LENGTH = 300
PHONE_MAX_LENGTH = 16
USER_AGENT_MAX_LENGTH = 512
IP_MAX_LENGTH = 45  # the longest textual IPv6 address


class User(Base):
    __tablename__ = "users"
    # SQLite: AUTOINCREMENT, so the id of a deleted user is never handed out again (its
    # tokens would name the newcomer). PostgreSQL's serial never reuses one anyway.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 - SQLAlchemy's own attribute

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
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


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
