"""The two ways into a session that every router shares: a login (the password, and the
second factor when the account has one) and a refresh. Built once per process with
their collaborators, so a route passes only the request's facts."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidToken, RefreshTokenReused
from app.observability import metrics
from app.observability.audit import Audit
from app.security.passwords import PasswordHasher
from app.security.sealing import Sealer
from app.services import accounts, sessions, two_factor
from app.services.sessions import Client, Grant, TokenIssuer
from app.stores.revocations import RevokedSessions
from app.stores.throttle import Throttle


@dataclass(frozen=True, slots=True)
class Logins:
    hasher: PasswordHasher
    throttle: Throttle
    issuer: TokenIssuer
    revoked: RevokedSessions
    sealer: Sealer
    require_verified: bool
    clock: Callable[[], datetime]

    async def log_in(
        self,
        db: AsyncSession,
        *,
        email: str,
        password: str,
        client: Client,
        audit: Audit,
        otp: str | None = None,
        recovery_code: str | None = None,
    ) -> Grant:
        """A new session for the right credentials, checked in the contract's order:
        throttle, password, second factor, disabled, unverified. TwoFactorRequired when the
        account has a second factor and no code came; the count of failed attempts is
        cleared only once the tokens are issued."""
        now = self.clock()
        presented = two_factor.PresentedFactor(
            otp=otp, recovery_code=recovery_code, sealer=self.sealer, now=now, audit=audit
        )
        user = await accounts.authenticate(
            db,
            hasher=self.hasher,
            throttle=self.throttle,
            email=email,
            password=password,
            audit=audit,
            require_verified=self.require_verified,
            second_factor=presented,
        )
        # authenticate returns a two-factor user only after a good code (RFC 8176 `amr`).
        amr = sessions.MULTI_FACTOR if user.two_factor_enabled else sessions.PASSWORD_ONLY
        grant = await sessions.start(
            db, issuer=self.issuer, user=user, client=client, now=now, audit=audit, amr=amr
        )
        await accounts.login_succeeded(self.throttle, email)
        return grant

    async def refresh(
        self, db: AsyncSession, *, refresh_token: str, client: Client, audit: Audit
    ) -> Grant:
        """Spend a refresh token for a new pair (RFC 9700 §4.14: a spent one ends its
        whole session)."""
        try:
            return await sessions.rotate(
                db,
                issuer=self.issuer,
                refresh_token=refresh_token,
                client=client,
                revoked=self.revoked,
                now=self.clock(),
                audit=audit,
            )
        except RefreshTokenReused:
            raise  # counted as reuse_detected, with the audit event
        except InvalidToken:
            metrics.refresh("invalid")
            raise
