"""Settings: the token secret and key files are checked at start-up; a secret is generated
once in development when an HMAC algorithm needs one."""

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigurationError, Settings
from app.keyfiles import load_settings
from tests.conftest import ROOT, free_port
from tests.keyfiles import ASYMMETRIC, private_key_file, public_key_file, write

SECRET_KEY_FILE = ".token_secret_key"


@pytest.fixture
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No secret, no database URL and no `.env` file: only what the test passes counts."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    for name in (
        "TOKEN_SECRET_KEY",
        "DATABASE_URL",
        "ENVIRONMENT",
        "TOKEN_ALGORITHM",
        "TOKEN_PRIVATE_KEY_FILE",
        "TOKEN_PREVIOUS_PUBLIC_KEY_FILES",
        "TOKEN_PREVIOUS_SECRET_KEYS",
        "DATA_ENCRYPTION_KEY",
        "DATA_PREVIOUS_ENCRYPTION_KEYS",
        "MAIL_BACKEND",
        "SMTP_HOST",
        "SMTP_SECURITY",
    ):
        monkeypatch.delenv(name, raising=False)
    return workdir


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("short", id="five-bytes"),
        pytest.param("k" * 31, id="31-bytes"),
        pytest.param("\u00e9" * 15, id="15-characters-30-bytes"),
        pytest.param("change-me", id="placeholder"),
        pytest.param("change-me-" + secrets.token_urlsafe(48), id="long-key-with-placeholder"),
        pytest.param(secrets.token_urlsafe(24) + "change-me", id="placeholder-at-the-end"),
    ],
)
def test_a_short_or_placeholder_secret_stops_start_up_naming_the_variable(
    clean_environment: Path, tmp_path: Path, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(TOKEN_SECRET_KEY=key, DATABASE_URL=sqlite_url(tmp_path / "app.db"))

    assert isinstance(raised.value, ConfigurationError)
    assert "TOKEN_SECRET_KEY" in raised.value.message
    assert key not in raised.value.message
    # Raised, not printed: the command line and the uvicorn entry print it once.
    assert capsys.readouterr().err == ""


def test_a_short_secret_from_the_environment_stops_start_up(
    clean_environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN_SECRET_KEY", "short")

    with pytest.raises(ConfigurationError) as raised:
        load_settings(DATABASE_URL=sqlite_url(tmp_path / "app.db"))

    assert "TOKEN_SECRET_KEY" in raised.value.message


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k" * 32, id="32-ascii-bytes"),
        pytest.param("\u00e9" * 16, id="16-characters-32-bytes"),
    ],
)
def test_a_secret_of_32_bytes_is_accepted(
    clean_environment: Path, tmp_path: Path, key: str
) -> None:
    secret = load_settings(
        TOKEN_SECRET_KEY=key, DATABASE_URL=sqlite_url(tmp_path / "app.db")
    ).TOKEN_SECRET_KEY

    assert secret is not None
    assert secret.get_secret_value() == key


def test_production_without_a_secret_is_refused(
    clean_environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", sqlite_url(tmp_path / "app.db"))

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert "TOKEN_SECRET_KEY" in raised.value.message
    assert not (tmp_path / SECRET_KEY_FILE).exists()
    assert not (clean_environment / SECRET_KEY_FILE).exists()


def test_development_without_a_secret_keeps_a_generated_key_beside_the_sqlite_file(
    clean_environment: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    url = sqlite_url(data / "app.db")

    first = secret_of(load_settings(DATABASE_URL=url))
    second = secret_of(load_settings(DATABASE_URL=url))

    key_file = data / SECRET_KEY_FILE
    assert key_file.is_file()
    assert not (clean_environment / SECRET_KEY_FILE).exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.encode()) >= 32
    assert first == key_file.read_text().strip()
    assert second == first


def test_the_generated_key_differs_between_databases(
    clean_environment: Path, tmp_path: Path
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()

    one = load_settings(DATABASE_URL=sqlite_url(tmp_path / "one" / "app.db"))
    two = load_settings(DATABASE_URL=sqlite_url(tmp_path / "two" / "app.db"))

    assert one.TOKEN_SECRET_KEY != two.TOKEN_SECRET_KEY


def test_the_default_database_keeps_its_generated_key_in_the_working_directory(
    clean_environment: Path,
) -> None:
    secret = secret_of(load_settings())

    key_file = clean_environment / SECRET_KEY_FILE
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert secret == key_file.read_text().strip()


def test_a_given_secret_writes_no_key_file(clean_environment: Path, tmp_path: Path) -> None:
    key = secrets.token_urlsafe(48)

    secret = load_settings(
        TOKEN_SECRET_KEY=key, DATABASE_URL=sqlite_url(tmp_path / "app.db")
    ).TOKEN_SECRET_KEY

    assert secret is not None
    assert secret.get_secret_value() == key
    assert not (tmp_path / SECRET_KEY_FILE).exists()


def run_uvicorn(settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`uvicorn app.main:app` with these settings, expected to stop at start-up."""
    env = {**os.environ, **settings}
    env.pop("ENVIRONMENT", None)
    return subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_uvicorn_with_a_short_secret_exits_with_one_line_naming_the_variable() -> None:
    result = run_uvicorn({"TOKEN_SECRET_KEY": "short"})

    assert result.returncode != 0
    lines = result.stderr.splitlines()
    named = [line for line in lines if line.startswith("configuration error: TOKEN_SECRET_KEY")]
    assert len(named) == 1, result.stderr
    assert sum(line.startswith("configuration error:") for line in lines) == 1
    assert "Traceback" not in result.stderr
    assert "short" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("RATE_LIMIT_STORAGE_URL", "memcached://localhost:11211", id="memcached"),
        pytest.param("RATE_LIMIT_STORAGE_URL", "mongodb://localhost", id="mongodb"),
        pytest.param("IP_RATE_LIMIT", "lots", id="ip-limit-not-limits-notation"),
        pytest.param("TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal", id="proxy-not-an-address"),
        pytest.param("LOGIN_MAX_FAILURES", "0", id="no-failures-allowed"),
    ],
)
def test_an_unsupported_throttle_setting_stops_start_up_naming_the_variable(
    clean_environment: Path, tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(
            **{variable: value},
            TOKEN_SECRET_KEY=secrets.token_urlsafe(48),
            DATABASE_URL=sqlite_url(tmp_path / "app.db"),
        )

    assert isinstance(raised.value, ConfigurationError)
    assert raised.value.message.startswith(variable)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("RATE_LIMIT_STORAGE_URL", "redis://127.0.0.1:6379/0", id="redis"),
        pytest.param("RATE_LIMIT_STORAGE_URL", "rediss://cache.internal:6380", id="rediss"),
        pytest.param("IP_RATE_LIMIT", "10/second;1000/hour", id="ip-limit-several"),
        pytest.param("IP_RATE_LIMIT", "", id="ip-limit-disabled"),
        pytest.param("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8, ::1", id="proxies"),
    ],
)
def test_supported_throttle_settings_are_accepted(
    clean_environment: Path, tmp_path: Path, variable: str, value: str
) -> None:
    settings = load_settings(
        **{variable: value},
        TOKEN_SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=sqlite_url(tmp_path / "app.db"),
    )
    assert settings.DATABASE_URL.endswith("app.db")


def test_cors_origins_are_comma_separated_and_empty_by_default(
    clean_environment: Path, tmp_path: Path
) -> None:
    common = {
        "TOKEN_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": sqlite_url(tmp_path / "app.db"),
    }

    assert load_settings(**common).CORS_ORIGINS == []
    assert load_settings(**common, CORS_ORIGINS="").CORS_ORIGINS == []
    assert load_settings(
        **common, CORS_ORIGINS="https://app.example.com, http://localhost:5173"
    ).CORS_ORIGINS == ["https://app.example.com", "http://localhost:5173"]


@pytest.mark.parametrize(
    "origins",
    [
        # ASVS 5.0 3.4.2: credentials are allowed, so every origin is named.
        pytest.param("*", id="wildcard"),
        pytest.param("https://app.example.com,*", id="wildcard-among-origins"),
        pytest.param("https://*.example.com", id="wildcard-subdomain"),
        pytest.param("https://app.example.com/", id="trailing-slash"),
        pytest.param("https://app.example.com/app", id="path"),
        pytest.param("app.example.com", id="no-scheme"),
        pytest.param("ftp://app.example.com", id="other-scheme"),
        pytest.param("https://user@app.example.com", id="userinfo"),
    ],
)
def test_a_cors_origin_that_is_not_an_explicit_origin_stops_start_up(
    clean_environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], origins: str
) -> None:
    message = configuration_error(
        capsys,
        CORS_ORIGINS=origins,
        TOKEN_SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=sqlite_url(tmp_path / "app.db"),
    )

    assert message.startswith("CORS_ORIGINS ")


# Asymmetric algorithms and key files


def configuration_error(capsys: pytest.CaptureFixture[str], **settings: object) -> str:
    """The one line load_settings prints before stopping; fails the test if it starts."""
    with pytest.raises(ConfigurationError) as raised:
        load_settings(**settings)
    assert isinstance(raised.value, ConfigurationError)
    # Raised, not printed: the command line and the uvicorn entry print it once.
    assert capsys.readouterr().err == ""
    return raised.value.message


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_an_asymmetric_algorithm_needs_no_secret_in_production_and_writes_none_in_development(
    clean_environment: Path, tmp_path: Path, algorithm: str
) -> None:
    key_file = private_key_file(tmp_path, algorithm)
    url = sqlite_url(tmp_path / "app.db")

    production = load_settings(
        ENVIRONMENT="production",
        DATABASE_URL=url,
        TOKEN_ALGORITHM=algorithm,
        TOKEN_PRIVATE_KEY_FILE=str(key_file),
        DATA_ENCRYPTION_KEY=secrets.token_urlsafe(48),
        MAIL_BACKEND="disabled",
    )
    development = load_settings(
        DATABASE_URL=url, TOKEN_ALGORITHM=algorithm, TOKEN_PRIVATE_KEY_FILE=str(key_file)
    )

    assert production.TOKEN_SECRET_KEY is None
    assert development.TOKEN_SECRET_KEY is None
    assert not (tmp_path / SECRET_KEY_FILE).exists()
    assert not (clean_environment / SECRET_KEY_FILE).exists()


def test_production_with_hs256_still_requires_the_secret(
    clean_environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = configuration_error(
        capsys,
        ENVIRONMENT="production",
        DATABASE_URL=sqlite_url(tmp_path / "app.db"),
        TOKEN_ALGORITHM="HS256",
    )

    assert message.startswith("TOKEN_SECRET_KEY is required")


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_an_asymmetric_algorithm_without_a_key_file_stops_start_up(
    clean_environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], algorithm: str
) -> None:
    message = configuration_error(
        capsys, DATABASE_URL=sqlite_url(tmp_path / "app.db"), TOKEN_ALGORITHM=algorithm
    )

    assert message.startswith(
        f"TOKEN_PRIVATE_KEY_FILE is required when TOKEN_ALGORITHM is {algorithm}"
    )


def _bad_key_file(folder: Path, case: str) -> Path:
    match case:
        case "missing":
            return folder / "missing.pem"
        case "unreadable":
            return folder  # a folder: unreadable as a file even for root
        case "ec-key-for-RS256":
            return private_key_file(folder, "ES256")
        case "public-key":
            return public_key_file(folder, "RS256")
        case "garbage":
            return write(folder / "garbage.pem", b"-----BEGIN PRIVATE KEY-----\nnonsense\n")
    raise ValueError(case)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "cannot read {path}: No such file or directory"),
        ("unreadable", "cannot read {path}: Is a directory"),
        (
            "ec-key-for-RS256",
            "{path} holds an EC P-256 key, which signs ES256, but TOKEN_ALGORITHM is RS256",
        ),
        ("public-key", "{path} holds a public key; a private key is expected"),
        ("garbage", "{path} is not a PEM private key (PKCS#8 or traditional)"),
    ],
    ids=["missing", "unreadable", "ec-key-for-RS256", "public-key", "garbage"],
)
def test_a_bad_private_key_file_stops_start_up_with_one_line_naming_the_variable(
    clean_environment: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    reason: str,
) -> None:
    key_file = _bad_key_file(tmp_path, case)

    message = configuration_error(
        capsys,
        DATABASE_URL=sqlite_url(tmp_path / "app.db"),
        TOKEN_ALGORITHM="RS256",
        TOKEN_PRIVATE_KEY_FILE=str(key_file),
    )

    assert message == f"TOKEN_PRIVATE_KEY_FILE {reason.format(path=key_file)}"


def test_a_key_file_from_the_environment_is_read(
    clean_environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN_ALGORITHM", "ES256")
    monkeypatch.setenv("TOKEN_PRIVATE_KEY_FILE", str(private_key_file(tmp_path, "ES256")))

    settings = load_settings(DATABASE_URL=sqlite_url(tmp_path / "app.db"))

    assert settings.TOKEN_ALGORITHM == "ES256"


def test_an_empty_key_file_setting_counts_as_unset(clean_environment: Path, tmp_path: Path) -> None:
    settings = load_settings(
        DATABASE_URL=sqlite_url(tmp_path / "app.db"),
        TOKEN_SECRET_KEY=secrets.token_urlsafe(48),
        TOKEN_PRIVATE_KEY_FILE="",
    )

    assert settings.TOKEN_PRIVATE_KEY_FILE is None


def test_a_key_file_with_hs256_stops_start_up_rather_than_being_ignored(
    clean_environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = configuration_error(
        capsys,
        DATABASE_URL=sqlite_url(tmp_path / "app.db"),
        TOKEN_SECRET_KEY=secrets.token_urlsafe(48),
        TOKEN_PRIVATE_KEY_FILE=str(private_key_file(tmp_path, "RS256")),
    )

    assert message.startswith("TOKEN_PRIVATE_KEY_FILE is set, but TOKEN_ALGORITHM is HS256")


@pytest.mark.parametrize(
    "algorithm",
    ["none", "HS512", "rs256", "Ed25519", "PS256"],
    ids=["none", "HS512", "lower-case", "Ed25519", "PS256"],
)
def test_an_unsupported_algorithm_stops_start_up(
    clean_environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], algorithm: str
) -> None:
    message = configuration_error(
        capsys, DATABASE_URL=sqlite_url(tmp_path / "app.db"), TOKEN_ALGORITHM=algorithm
    )

    assert message.startswith("TOKEN_ALGORITHM ")


def test_previous_public_key_files_and_secrets_are_comma_separated(
    clean_environment: Path, tmp_path: Path
) -> None:
    one, two = public_key_file(tmp_path, "RS256"), public_key_file(tmp_path, "EdDSA")
    old_secrets = [secrets.token_urlsafe(48), secrets.token_urlsafe(48)]

    settings = load_settings(
        DATABASE_URL=sqlite_url(tmp_path / "app.db"),
        TOKEN_ALGORITHM="ES256",
        TOKEN_PRIVATE_KEY_FILE=str(private_key_file(tmp_path, "ES256")),
        TOKEN_PREVIOUS_PUBLIC_KEY_FILES=f" {one}, {two} ,",
        TOKEN_PREVIOUS_SECRET_KEYS=",".join(old_secrets),
    )

    previous_files, previous_secrets = (
        settings.TOKEN_PREVIOUS_PUBLIC_KEY_FILES,
        settings.TOKEN_PREVIOUS_SECRET_KEYS,
    )
    assert previous_files == [one, two]
    assert [secret.get_secret_value() for secret in previous_secrets] == old_secrets


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("k" * 31, id="31-bytes"),
        pytest.param("change-me-" + secrets.token_urlsafe(48), id="placeholder"),
    ],
)
def test_a_short_or_placeholder_previous_secret_stops_start_up_without_echoing_it(
    clean_environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    good = secrets.token_urlsafe(48)

    message = configuration_error(
        capsys,
        DATABASE_URL=sqlite_url(tmp_path / "app.db"),
        TOKEN_SECRET_KEY=secrets.token_urlsafe(48),
        TOKEN_PREVIOUS_SECRET_KEYS=f"{good},{bad}",
    )

    assert message.startswith("TOKEN_PREVIOUS_SECRET_KEYS secret 2 ")
    assert bad not in message
    assert good not in message


def test_a_private_key_listed_as_a_previous_public_key_stops_start_up(
    clean_environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = configuration_error(
        capsys,
        DATABASE_URL=sqlite_url(tmp_path / "app.db"),
        TOKEN_SECRET_KEY=secrets.token_urlsafe(48),
        TOKEN_PREVIOUS_PUBLIC_KEY_FILES=str(private_key_file(tmp_path, "RS256")),
    )

    assert message.startswith("TOKEN_PREVIOUS_PUBLIC_KEY_FILES ")
    assert "holds a private key" in message


def test_uvicorn_with_a_wrong_type_key_file_exits_with_one_line_naming_the_variable(
    tmp_path: Path,
) -> None:
    key_file = private_key_file(tmp_path, "EdDSA")
    result = run_uvicorn({"TOKEN_ALGORITHM": "RS256", "TOKEN_PRIVATE_KEY_FILE": str(key_file)})

    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("configuration error:")] == [
        f"configuration error: TOKEN_PRIVATE_KEY_FILE {key_file} holds an Ed25519 key, "
        "which signs EdDSA, but TOKEN_ALGORITHM is RS256"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert "PRIVATE KEY" not in result.stderr


# Ranges and the database URL


@pytest.mark.parametrize(
    "name",
    [
        "TOKEN_ACCESS_TTL_SECONDS",
        "TOKEN_REFRESH_TTL_SECONDS",
        "TOKEN_SESSION_MAX_SECONDS",
        "TOKEN_LEEWAY_SECONDS",
        "LOGIN_WINDOW_SECONDS",
    ],
)
def test_a_lifetime_past_ten_years_stops_start_up_naming_the_variable(
    clean_environment: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # 99999999999 s from now is past year 9999: every derived timestamp would overflow.
    message = configuration_error(
        capsys, TOKEN_SECRET_KEY=secrets.token_urlsafe(48), **{name: 99999999999}
    )
    assert message.startswith(name)
    assert "315360000" in message


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        pytest.param("not-a-url", "is not a database URL", id="not-a-url"),
        pytest.param("postgres://u:pw@db/app", "postgresql+psycopg://", id="postgres-scheme"),
        pytest.param("postgresql+pyscopg://u:pw@db/app", "not supported", id="driver-typo"),
        pytest.param("mysql://u:pw@db/app", "not supported", id="other-database"),
    ],
)
def test_a_database_url_of_the_wrong_shape_stops_start_up_with_one_line(
    clean_environment: Path, capsys: pytest.CaptureFixture[str], url: str, hint: str
) -> None:
    message = configuration_error(
        capsys, DATABASE_URL=url, TOKEN_SECRET_KEY=secrets.token_urlsafe(48)
    )

    assert message.startswith("DATABASE_URL ")
    assert hint in message
    # The URL may carry a password: the message never quotes it.
    assert "pw" not in message


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///./x.db",
        "sqlite+aiosqlite:///./x.db",
        "postgresql://u@db/app",
        "postgresql+psycopg://u@db/app",
    ],
)
def test_supported_database_urls_are_accepted(clean_environment: Path, url: str) -> None:
    settings = load_settings(DATABASE_URL=url, TOKEN_SECRET_KEY=secrets.token_urlsafe(48))
    assert url == settings.DATABASE_URL


def test_the_settings_never_show_a_secret_in_their_repr(
    clean_environment: Path, tmp_path: Path
) -> None:
    token_key, data_key, previous = (secrets.token_urlsafe(48) for _ in range(3))

    settings = load_settings(
        TOKEN_SECRET_KEY=token_key,
        TOKEN_PREVIOUS_SECRET_KEYS=previous,
        DATA_ENCRYPTION_KEY=data_key,
        DATABASE_URL=sqlite_url(tmp_path / "app.db"),
    )

    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert not {token_key, data_key, previous} & set(shown.replace('"', " ").split())
        assert token_key not in shown
        assert data_key not in shown
        assert previous not in shown


def secret_of(settings: Settings) -> str:
    assert settings.TOKEN_SECRET_KEY is not None
    return settings.TOKEN_SECRET_KEY.get_secret_value()
