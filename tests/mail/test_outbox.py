"""The outbox under a real server process and a real SMTP relay (aiosmtpd)."""

import os
import secrets
import signal
import time
from collections.abc import Callable

import httpx2
import pytest
from sqlalchemy import Engine, func, select

from app.models import MailOutbox
from app.security.sealing import Sealer, SealError
from app.services.outbox import BODY_PURPOSE
from tests.conftest import LiveServer, free_port
from tests.mail.relay import (
    REFUSED_PREFIX,
    HangingRelay,
    Relay,
    outbox_row,
    queue_mail,
    smtp_env,
    wait_until,
)

PASSWORD = "correct horse battery staple 42"


def reset_link() -> str:
    return f"http://testserver/account/reset-password#token={secrets.token_urlsafe(32)}"


def test_a_queued_mail_arrives_and_its_body_is_wiped(
    live_server: Callable[..., LiveServer],
    settings_env: dict[str, str],
    relay: Relay,
    sync_engine: Engine,
) -> None:
    env = {**settings_env, **smtp_env(relay.port)}
    live_server(**env)
    link = reset_link()

    mail_id = queue_mail(env, to="ada@example.com", body=f"Reset it here: {link}\n")

    wait_until(lambda: relay.to("ada@example.com"), what="the mail")
    [message] = relay.to("ada@example.com")
    assert message["Subject"] == "Reset your password"
    assert message["From"] == "JWT auth API <no-reply@localhost>"
    assert link in message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    wait_until(lambda: outbox_row(sync_engine, mail_id)["status"] == "sent", what="sent")
    row = outbox_row(sync_engine, mail_id)
    assert row["body"] is None
    assert row["attempts"] == 1


def test_a_mail_queued_while_no_process_runs_goes_when_one_starts(
    live_server: Callable[..., LiveServer], settings_env: dict[str, str], relay: Relay
) -> None:
    # The process that committed the mail is gone (it ended right after the commit).
    env = {**settings_env, **smtp_env(relay.port, MAIL_POLL_SECONDS=600)}
    queue_mail(env, to="ada@example.com", body="hello")

    live_server(**env)

    wait_until(lambda: relay.to("ada@example.com"), what="the mail sent at start-up")


def test_mail_waits_while_the_relay_is_down_and_goes_when_it_is_back(
    live_server: Callable[..., LiveServer],
    settings_env: dict[str, str],
    sync_engine: Engine,
) -> None:
    relay = Relay(free_port())  # not started: nothing listens on its port
    env = {**settings_env, **smtp_env(relay.port)}
    live_server(**env)
    mail_id = queue_mail(env, to="ada@example.com", body="hello")

    wait_until(lambda: outbox_row(sync_engine, mail_id)["attempts"] >= 2, what="two attempts")
    row = outbox_row(sync_engine, mail_id)
    assert row["status"] == "pending"
    assert row["body"] is not None
    relay.start()
    try:
        wait_until(lambda: relay.to("ada@example.com"), timeout=45, what="the retried mail")
        time.sleep(1)
        assert len(relay.to("ada@example.com")) == 1
    finally:
        relay.stop()


def test_a_process_killed_during_the_send_leaves_the_mail_to_the_next_process(
    live_server: Callable[..., LiveServer],
    settings_env: dict[str, str],
    hanging_relay: HangingRelay,
    relay: Relay,
    sync_engine: Engine,
) -> None:
    first = live_server(**settings_env, **smtp_env(hanging_relay.port, SMTP_TIMEOUT_SECONDS=2))
    mail_id = queue_mail(settings_env, to="ada@example.com", body="hello")
    # Claimed and committed: the first process is now waiting on the relay.
    wait_until(lambda: outbox_row(sync_engine, mail_id)["attempts"] == 1, what="the claim")
    assert first.process is not None
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()

    live_server(**settings_env, **smtp_env(relay.port))

    # The lease (twice the SMTP timeout and a margin) runs out, then the mail goes.
    wait_until(lambda: relay.to("ada@example.com"), timeout=60, what="the mail")
    wait_until(lambda: outbox_row(sync_engine, mail_id)["status"] == "sent", what="sent")
    assert len(relay.to("ada@example.com")) == 1


def test_a_hanging_relay_slows_no_request_and_the_sender_times_out(
    live_server: Callable[..., LiveServer],
    settings_env: dict[str, str],
    hanging_relay: HangingRelay,
    sync_engine: Engine,
) -> None:
    timeout = 6
    server = live_server(
        **settings_env, **smtp_env(hanging_relay.port, SMTP_TIMEOUT_SECONDS=timeout)
    )
    mail_id = queue_mail(settings_env, to="ada@example.com", body="hello")
    wait_until(lambda: outbox_row(sync_engine, mail_id)["attempts"] == 1, what="the claim")

    # While the sender waits on the relay, requests that write to the database answer
    # at once (on SQLite the pool has one connection: the sender must not hold it).
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        started = time.monotonic()
        registered = client.post(
            "/account/register", json={"email": "bob@example.com", "password": PASSWORD}
        )
        logged_in = client.post(
            "/account/login", json={"email": "bob@example.com", "password": PASSWORD}
        )
        elapsed = time.monotonic() - started
    assert registered.status_code == 201
    assert logged_in.status_code == 200
    assert elapsed < timeout / 2

    wait_until(
        lambda: outbox_row(sync_engine, mail_id)["last_error"] is not None,
        timeout=timeout + 20,
        what="the sender to give up on this attempt",
    )
    row = outbox_row(sync_engine, mail_id)
    assert row["status"] == "pending"
    assert f"did not answer within {timeout} s" in row["last_error"]
    assert f"did not answer within {timeout} s" in server.read_log()


def test_the_body_in_the_table_does_not_open_without_the_key(
    settings_env: dict[str, str], sync_engine: Engine
) -> None:
    link = reset_link()
    mail_id = queue_mail(settings_env, to="ada@example.com", body=f"Reset it here: {link}")

    sealed = outbox_row(sync_engine, mail_id)["body"]

    assert link.encode() not in sealed
    assert link.split("=")[-1].encode() not in sealed
    with pytest.raises(SealError):
        Sealer(secrets.token_bytes(32)).open(sealed, purpose=BODY_PURPOSE)
    right = Sealer(settings_env["DATA_ENCRYPTION_KEY"].encode())
    assert link in right.open(sealed, purpose=BODY_PURPOSE).decode()


def test_a_mail_queued_before_a_key_rotation_goes_under_the_previous_key(
    live_server: Callable[..., LiveServer],
    settings_env: dict[str, str],
    relay: Relay,
) -> None:
    queue_mail(settings_env, to="ada@example.com", body="sealed under the old key")
    old_key = settings_env["DATA_ENCRYPTION_KEY"]

    live_server(
        **{
            **settings_env,
            **smtp_env(relay.port),
            "DATA_ENCRYPTION_KEY": secrets.token_urlsafe(48),
            "DATA_PREVIOUS_ENCRYPTION_KEYS": old_key,
        }
    )

    wait_until(lambda: relay.to("ada@example.com"), what="the mail")


def test_a_mail_whose_key_is_gone_fails_once_without_retrying(
    live_server: Callable[..., LiveServer],
    settings_env: dict[str, str],
    relay: Relay,
    sync_engine: Engine,
) -> None:
    mail_id = queue_mail(settings_env, to="ada@example.com", body="sealed under a lost key")

    server = live_server(
        **{**settings_env, **smtp_env(relay.port), "DATA_ENCRYPTION_KEY": secrets.token_urlsafe(48)}
    )

    wait_until(lambda: outbox_row(sync_engine, mail_id)["status"] == "failed", what="failed")
    row = outbox_row(sync_engine, mail_id)
    assert row["attempts"] == 1
    assert row["body"] is None
    assert relay.messages == []
    log = server.read_log()
    assert log.count(f"mail {mail_id} (reset_password) failed after 1 attempt(s)") == 1


def test_no_log_line_holds_anything_of_a_body(
    live_server: Callable[..., LiveServer],
    settings_env: dict[str, str],
    relay: Relay,
    sync_engine: Engine,
) -> None:
    env = {**settings_env, **smtp_env(relay.port, MAIL_MAX_ATTEMPTS=2)}
    server = live_server(**env)
    links = [reset_link() for _ in range(3)]

    def done(mail_id: int, status: str) -> Callable[[], bool]:
        return lambda: outbox_row(sync_engine, mail_id)["status"] == status

    delivered = queue_mail(env, to="ada@example.com", body=f"Reset: {links[0]}")
    refused = queue_mail(env, to=f"{REFUSED_PREFIX}example.com", body=f"Reset: {links[1]}")
    wait_until(done(delivered, "sent"), what="the first mail")
    wait_until(done(refused, "failed"), what="the refused mail")
    relay.stop()  # down: the next mail is retried, then fails after MAIL_MAX_ATTEMPTS
    retried = queue_mail(env, to="cy@example.com", body=f"Reset: {links[2]}")
    wait_until(done(retried, "failed"), timeout=45, what="the retried mail to fail")
    log = server.stop_and_read_log()

    # The failures are there, one line each, and nothing of any body is.
    assert f"mail {refused} (reset_password) failed after 1 attempt(s)" in log
    assert "SMTP 550" in log
    assert f"mail {retried} (reset_password) failed after 2 attempt(s)" in log
    assert "mail not delivered, will retry" in log
    for link in links:
        assert link not in log
        assert link.split("=")[-1] not in log
    assert "Reset:" not in log


@pytest.mark.multi_instance
def test_two_processes_send_each_mail_once(
    live_server: Callable[..., LiveServer],
    settings_env: dict[str, str],
    relay: Relay,
    sync_engine: Engine,
) -> None:
    env = {**settings_env, **smtp_env(relay.port)}
    live_server(**env)
    live_server(**env)
    count = 30

    for number in range(count):
        queue_mail(env, to=f"user{number}@example.com", body=f"mail {number}")

    wait_until(lambda: len(relay.messages) >= count, timeout=60, what="every mail")
    time.sleep(2)
    recipients = sorted(message["To"] for message in relay.messages)
    assert recipients == sorted(f"user{number}@example.com" for number in range(count))
    with sync_engine.connect() as connection:
        statuses = connection.execute(
            select(MailOutbox.status, func.count()).group_by(MailOutbox.status)
        ).all()
    assert statuses == [("sent", count)]


def test_the_console_backend_prints_the_whole_mail_framed(
    live_server: Callable[..., LiveServer], settings_env: dict[str, str]
) -> None:
    env = {**settings_env, "MAIL_BACKEND": "console", "MAIL_POLL_SECONDS": "1"}
    server = live_server(**env)
    link = reset_link()
    queue_mail(env, to="ada@example.com", body=f"Reset it here: {link}")

    wait_until(lambda: link in server.read_log(), what="the printed mail")
    printed = server.read_log()
    frame_start = printed.index("mail (MAIL_BACKEND=console")
    frame = printed[frame_start : printed.index(link)]
    assert "To: ada@example.com" in frame
    assert "Subject: Reset your password" in frame
    assert printed.index("=" * 72, printed.index(link)) > printed.index(link)
