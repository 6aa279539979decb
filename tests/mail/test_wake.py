"""A commit that queues mail wakes the sender of its own process at once."""

import asyncio
import time

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from app.config import Settings
from app.main import create_app
from app.models import MailOutbox
from app.runtime import Runtime
from app.services import outbox
from tests.mail.relay import Relay, smtp_env, wait_until


def _queue_in_the_app(client: TestClient, app: FastAPI, *, to: str, commit: bool) -> None:
    runtime: Runtime = app.state.runtime

    async def work() -> None:
        async with runtime.sessionmaker() as db:
            await outbox.enqueue(
                db,
                sealer=runtime.sealer,
                kind="verify_email",
                to=to,
                subject="Verify your email address",
                body="hello",
                now=runtime.now(),
            )
            if commit:
                await db.commit()
            else:
                await db.rollback()

    assert client.portal is not None
    client.portal.call(work)


def test_a_commit_that_queues_mail_wakes_the_sender_long_before_it_polls(
    settings_env: dict[str, str], relay: Relay
) -> None:
    env = {**settings_env, **smtp_env(relay.port, MAIL_POLL_SECONDS=600)}
    app = create_app(Settings(**env))  # type: ignore[arg-type]
    with TestClient(app) as client:
        time.sleep(0.5)  # the sender has looked once at start-up and now sleeps
        _queue_in_the_app(client, app, to="ada@example.com", commit=True)

        wait_until(lambda: relay.to("ada@example.com"), timeout=20, what="the mail")


def test_a_rolled_back_transaction_sends_nothing(
    settings_env: dict[str, str], relay: Relay, sync_engine: Engine
) -> None:
    env = {**settings_env, **smtp_env(relay.port, MAIL_POLL_SECONDS=1)}
    app = create_app(Settings(**env))  # type: ignore[arg-type]
    with TestClient(app) as client:
        _queue_in_the_app(client, app, to="bob@example.com", commit=False)
        _queue_in_the_app(client, app, to="ada@example.com", commit=True)
        wait_until(lambda: relay.to("ada@example.com"), timeout=20, what="the committed mail")
        asyncio.run(asyncio.sleep(1.5))

    assert relay.to("bob@example.com") == []
    with sync_engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(MailOutbox)) == 1
