"""`jwt-auth-api send-test-mail --to ADDRESS`, run as an operator runs it."""

import pytest

from tests.cli_run import run_command
from tests.conftest import free_port
from tests.mail.relay import HangingRelay, Relay, smtp_env


def test_the_relay_accepts_the_test_mail(settings_env: dict[str, str], relay: Relay) -> None:
    result = run_command(
        ["send-test-mail", "--to", "ops@example.com"], {**settings_env, **smtp_env(relay.port)}
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"sent to ops@example.com: the relay at 127.0.0.1:{relay.port} accepted it"
    ]
    [message] = relay.to("ops@example.com")
    assert message["Subject"] == "Test mail from JWT auth API"


@pytest.mark.parametrize("relay_state", ["down", "hanging"])
def test_a_relay_that_does_not_accept_it_is_one_line_and_a_failure(
    settings_env: dict[str, str], relay_state: str
) -> None:
    port = free_port()
    hanging = HangingRelay(port) if relay_state == "hanging" else None
    try:
        result = run_command(
            ["send-test-mail", "--to", "ops@example.com"],
            {**settings_env, **smtp_env(port, SMTP_TIMEOUT_SECONDS=2)},
        )
    finally:
        if hanging is not None:
            hanging.close()

    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("not sent to ops@example.com: ")


def test_a_refused_recipient_is_a_failure(settings_env: dict[str, str], relay: Relay) -> None:
    result = run_command(
        ["send-test-mail", "--to", "nobody@example.com"], {**settings_env, **smtp_env(relay.port)}
    )

    assert result.returncode == 1
    assert "SMTP 550" in result.stderr


def test_disabled_mail_sends_nothing(settings_env: dict[str, str]) -> None:
    result = run_command(
        ["send-test-mail", "--to", "ops@example.com"], {**settings_env, "MAIL_BACKEND": "disabled"}
    )

    assert result.returncode == 1
    assert "MAIL_BACKEND=disabled" in result.stderr


def test_the_console_backend_prints_the_mail(settings_env: dict[str, str]) -> None:
    result = run_command(
        ["send-test-mail", "--to", "ops@example.com"], {**settings_env, "MAIL_BACKEND": "console"}
    )

    assert result.returncode == 0
    assert "To: ops@example.com" in result.stdout
    assert "send-test-mail" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("sent to ops@example.com: printed")


def test_a_malformed_address_is_refused(settings_env: dict[str, str], relay: Relay) -> None:
    result = run_command(
        ["send-test-mail", "--to", "not an address"], {**settings_env, **smtp_env(relay.port)}
    )

    assert result.returncode == 2
    assert relay.messages == []
