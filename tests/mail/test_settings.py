"""Mail and data-encryption settings: what production refuses, what development generates."""

import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.config import ConfigurationError
from app.keyfiles import DATA_KEY_FILE, load_sealer, load_settings
from app.mail.backends import build_message
from app.mail.sender import MAX_RETRY_DELAY_SECONDS, retry_delay

STRONG = secrets.token_urlsafe(48)


@pytest.fixture
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in (
        "ENVIRONMENT",
        "DATABASE_URL",
        "DATA_ENCRYPTION_KEY",
        "DATA_PREVIOUS_ENCRYPTION_KEYS",
        "MAIL_BACKEND",
        "SMTP_HOST",
        "SMTP_SECURITY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOKEN_SECRET_KEY", STRONG)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'app.db'}")
    return tmp_path


def refusal(capsys: pytest.CaptureFixture[str], **settings: object) -> str:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(**settings)
    # Raised, not printed: the command line and the uvicorn entry print it once.
    assert capsys.readouterr().err == ""
    return raised.value.message


def test_production_refuses_to_start_without_a_data_encryption_key(
    clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = refusal(capsys, ENVIRONMENT="production", MAIL_BACKEND="disabled")

    assert message.startswith("DATA_ENCRYPTION_KEY is required")
    assert not (clean_environment / DATA_KEY_FILE).exists()


def test_production_refuses_the_console_backend(
    clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = refusal(
        capsys, ENVIRONMENT="production", DATA_ENCRYPTION_KEY=STRONG, MAIL_BACKEND="console"
    )

    assert "MAIL_BACKEND=console" in message


def test_production_refuses_clear_text_smtp_to_another_host(
    clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = refusal(
        capsys,
        ENVIRONMENT="production",
        DATA_ENCRYPTION_KEY=STRONG,
        MAIL_BACKEND="smtp",
        SMTP_HOST="smtp.example.com",
        SMTP_SECURITY="none",
    )

    assert "SMTP_SECURITY=none" in message


def test_the_smtp_backend_needs_a_host(
    clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert refusal(capsys, MAIL_BACKEND="smtp").startswith("SMTP_HOST is required")


@pytest.mark.parametrize(
    "key",
    ["short", "change-me-to-a-random-secret-of-at-least-32-bytes"],
    ids=["short", "placeholder"],
)
def test_a_weak_data_encryption_key_is_refused_without_quoting_it(
    clean_environment: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    message = refusal(capsys, DATA_ENCRYPTION_KEY=key)

    assert message.startswith("DATA_ENCRYPTION_KEY")
    assert key not in message


def test_development_keeps_a_generated_key_beside_the_sqlite_file(clean_environment: Path) -> None:
    first = load_settings()
    second = load_settings()

    key_file = clean_environment / DATA_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first.DATA_ENCRYPTION_KEY is not None
    assert first.DATA_ENCRYPTION_KEY == second.DATA_ENCRYPTION_KEY
    sealed = load_sealer(first).seal(b"kept across restarts", purpose="mail")
    assert load_sealer(second).open(sealed, purpose="mail") == b"kept across restarts"


def test_previous_keys_are_read_from_a_comma_separated_list(clean_environment: Path) -> None:
    old, older = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    settings = load_settings(
        DATA_ENCRYPTION_KEY=STRONG, DATA_PREVIOUS_ENCRYPTION_KEYS=f"{old}, {older}"
    )

    assert len(load_sealer(settings).keys) == 3


def test_retries_double_with_jitter_up_to_one_hour() -> None:
    for attempts, nominal in [(1, 5), (2, 10), (3, 20), (6, 160)]:
        assert 0.75 * nominal <= retry_delay(attempts, 5) <= 1.25 * nominal
    assert retry_delay(40, 5) == MAX_RETRY_DELAY_SECONDS
    assert len({retry_delay(3, 5) for _ in range(20)}) > 1


@pytest.mark.parametrize(
    ("address", "sent_to"),
    [
        pytest.param("josé@exämple.de", "josé@xn--exmple-cua.de", id="unicode-domain"),
        pytest.param("ada@example.com", "ada@example.com", id="ascii"),
        pytest.param("ada@bücher.example", "ada@xn--bcher-kva.example", id="subdomain"),
    ],
)
def test_a_recipients_unicode_domain_is_sent_in_its_idna_form(address: str, sent_to: str) -> None:
    message = build_message(
        sender="JWT auth API <no-reply@localhost>",
        to=address,
        subject="Reset your password",
        body="a link",
        now=datetime.now(UTC),
    )

    assert message["To"] == sent_to
