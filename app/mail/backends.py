"""Where mail goes: an SMTP relay, standard output (development), or nowhere.

A backend sends one message or raises `MailNotSent`; `permanent` marks an answer that
retrying cannot change (the relay refused the recipient), so the sender gives up at once.
"""

import asyncio
import sys
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol

import aiosmtplib
import idna

from app.config import Settings

CONSOLE_FRAME = "=" * 72


class MailNotSent(Exception):
    """The mail did not go; `reason` is safe to log (never the body or a server's text)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class MailBackend(Protocol):
    name: str

    async def send(self, message: EmailMessage) -> str:
        """Deliver `message`; return what accepted it, in one line without the body."""
        ...


def build_message(*, sender: str, to: str, subject: str, body: str, now: datetime) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ascii_domain(to)
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=_domain(sender))
    message.set_content(body)
    return message


def ascii_domain(address: str) -> str:
    """The address with its domain in IDNA (A-label) form: canonical addresses keep the
    Unicode domain (josé@exämple.de), which a relay without SMTPUTF8 refuses."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return address


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].strip(" >") or "localhost"


class ConsoleBackend:
    """Development: the whole message on standard output, framed, outside the log."""

    name = "console"

    async def send(self, message: EmailMessage) -> str:
        headers = "".join(f"{key}: {value}\n" for key, value in message.items())
        content = message.get_content() if not message.is_multipart() else message.as_string()
        sys.stdout.write(
            f"{CONSOLE_FRAME}\nmail (MAIL_BACKEND=console: printed, not sent)\n{CONSOLE_FRAME}\n"
            f"{headers}\n{content.rstrip()}\n{CONSOLE_FRAME}\n"
        )
        sys.stdout.flush()
        return "printed on standard output (MAIL_BACKEND=console)"


class DisabledBackend:
    name = "disabled"

    async def send(self, message: EmailMessage) -> str:
        raise MailNotSent("mail is disabled (MAIL_BACKEND=disabled)", permanent=True)


class SmtpBackend:
    """A relay over STARTTLS, implicit TLS, or plain SMTP on localhost."""

    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str,
        username: str | None,
        password: str | None,
        timeout: float,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.timeout = timeout

    async def send(self, message: EmailMessage) -> str:
        try:
            # The timeout bounds the whole exchange, not each command: a relay that
            # trickles its answers cannot hold the sender (or its lease) for longer.
            async with asyncio.timeout(self.timeout):
                await aiosmtplib.send(
                    message,
                    hostname=self.host,
                    port=self.port,
                    username=self.username,
                    password=self.password,
                    use_tls=self.security == "tls",
                    start_tls=self.security == "starttls",
                    timeout=self.timeout,
                )
        except TimeoutError:
            raise MailNotSent(f"the relay did not answer within {self.timeout:g} s") from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({refusal.code for refusal in exc.recipients})
            permanent = all(500 <= code < 600 for code in codes)
            raise MailNotSent(
                f"the relay refused the recipient (SMTP {', '.join(map(str, codes))})",
                permanent=permanent,
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise MailNotSent(f"the relay answered SMTP {exc.code}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise MailNotSent(f"cannot reach the relay ({type(exc).__name__})") from None
        return f"the relay at {self.host}:{self.port} accepted it"


def backend_for(settings: Settings) -> MailBackend:
    if settings.MAIL_BACKEND == "smtp":
        if settings.SMTP_HOST is None:  # pragma: no cover - Settings refuses it
            raise RuntimeError("SMTP_HOST is not set")
        return SmtpBackend(
            host=settings.SMTP_HOST,
            port=settings.SMTP_PORT,
            security=settings.SMTP_SECURITY,
            username=settings.SMTP_USERNAME,
            password=(
                settings.SMTP_PASSWORD.get_secret_value() if settings.SMTP_PASSWORD else None
            ),
            timeout=settings.SMTP_TIMEOUT_SECONDS,
        )
    if settings.MAIL_BACKEND == "console":
        return ConsoleBackend()
    return DisabledBackend()
