"""A real SMTP relay (aiosmtpd) for the mail tests, a relay that never answers, and a way
to queue mail as the service does: through the outbox service, in a committed transaction."""

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import Engine, select

from app.config import Settings
from app.db import create_engine_for, create_sessionmaker
from app.keyfiles import load_sealer
from app.models import MailOutbox
from app.runtime import utc_now
from app.services import outbox
from app.services.outbox import MailKind

REFUSED_PREFIX = "nobody@"


class _Inbox:
    """aiosmtpd's handler: keeps every delivered message; refuses nobody@... with 550."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.startswith(REFUSED_PREFIX):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.original_content))
        return "250 Message accepted for delivery"


class Relay:
    """aiosmtpd on a fixed port, which can go down and come back on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = _Inbox()
        self._controller: Controller | None = None

    def start(self) -> "Relay":
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[Message]:
        with self.inbox.lock:
            return list(self.inbox.messages)

    def to(self, address: str) -> list[Message]:
        return [message for message in self.messages if message["To"] == address]


class HangingRelay:
    """Accepts connections (the kernel does) and never says a word: no SMTP greeting."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))
        self._socket.listen(64)

    def close(self) -> None:
        self._socket.close()


def smtp_env(port: int, **overrides: object) -> dict[str, str]:
    env: dict[str, object] = {
        "MAIL_BACKEND": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": port,
        "SMTP_SECURITY": "none",
        "SMTP_TIMEOUT_SECONDS": 5,
        "MAIL_RETRY_BASE_SECONDS": 1,
        "MAIL_POLL_SECONDS": 1,
        **overrides,
    }
    return {key: str(value) for key, value in env.items()}


def queue_mail(
    env: dict[str, str],
    *,
    to: str,
    body: str,
    subject: str = "Reset your password",
    kind: MailKind = "reset_password",
) -> int:
    """Queue one mail through the outbox service and commit, as a request would."""
    settings = Settings(**env)  # type: ignore[arg-type]

    async def work() -> int:
        engine = create_engine_for(settings)
        try:
            async with create_sessionmaker(engine)() as db, db.begin():
                mail = await outbox.enqueue(
                    db,
                    sealer=load_sealer(settings),
                    kind=kind,
                    to=to,
                    subject=subject,
                    body=body,
                    now=utc_now(),
                )
                await db.flush()
                return mail.id
        finally:
            await engine.dispose()

    return asyncio.run(work())


def outbox_row(engine: Engine, mail_id: int) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(select(MailOutbox.__table__).where(MailOutbox.id == mail_id)).one()
        return dict(row._mapping)


def wait_until(condition: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
