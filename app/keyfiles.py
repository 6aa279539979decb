"""The keys the settings name, ready for use: the token keys (HMAC secrets or PEM key
files) and the data encryption keys. In development a missing secret is generated once
into a 0600 file beside the SQLite database, so tokens and sealed data survive a restart;
production refuses to start without it (Settings.refusal)."""

import os
import secrets
from pathlib import Path

from pydantic import SecretStr, ValidationError

from app.config import ConfigurationError, Settings, configuration_error
from app.security.keys import KeySet, KeySettingError, load_keys
from app.security.sealing import Sealer

SECRET_KEY_FILE = ".token_secret_key"  # noqa: S105 - a file name
DATA_KEY_FILE = ".data_encryption_key"


def _development_secret(
    settings: Settings, file_name: str = SECRET_KEY_FILE, variable: str = "TOKEN_SECRET_KEY"
) -> str:
    """A random key kept in a 0600 file beside the SQLite database, so tokens survive a restart."""
    path = settings.sqlite_path
    folder = Path(path).parent if path and path != ":memory:" else Path.cwd()
    key_file = folder / file_name
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"{variable} is not set and {key_file} cannot be created ({exc.strerror})"
        ) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return key_file.read_text().strip()


def load_token_keys(settings: Settings) -> KeySet:
    """The signing and previous keys the settings name, or stop start-up with one clear line."""
    secret = settings.TOKEN_SECRET_KEY if settings.uses_hmac else None
    try:
        return load_keys(
            algorithm=settings.TOKEN_ALGORITHM,
            secret_key=secret.get_secret_value().encode() if secret is not None else None,
            private_key_file=settings.TOKEN_PRIVATE_KEY_FILE,
            previous_public_key_files=settings.TOKEN_PREVIOUS_PUBLIC_KEY_FILES,
            previous_secret_keys=[
                key.get_secret_value().encode() for key in settings.TOKEN_PREVIOUS_SECRET_KEYS
            ],
        )
    except KeySettingError as exc:
        raise ConfigurationError(str(exc)) from None


def load_sealer(settings: Settings) -> Sealer:
    """The data encryption keys the settings name, or stop start-up with one clear line."""
    if settings.DATA_ENCRYPTION_KEY is None:
        raise ConfigurationError("DATA_ENCRYPTION_KEY is not set")
    return Sealer(
        settings.DATA_ENCRYPTION_KEY.get_secret_value().encode(),
        [key.get_secret_value().encode() for key in settings.DATA_PREVIOUS_ENCRYPTION_KEYS],
    )


def load_settings(**overrides: object) -> Settings:
    """Read the settings and the key files they name, or stop start-up with one clear line."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise configuration_error(exc) from None
    refusal = settings.refusal()
    if refusal is not None:
        raise ConfigurationError(refusal)
    try:
        # Only an HMAC algorithm needs a secret; the others sign with TOKEN_PRIVATE_KEY_FILE.
        if settings.TOKEN_SECRET_KEY is None and settings.uses_hmac:
            secret = _development_secret(settings)
            settings = settings.model_copy(update={"TOKEN_SECRET_KEY": SecretStr(secret)})
        # Production refuses a missing key (above); development keeps one beside the database.
        if settings.DATA_ENCRYPTION_KEY is None:
            secret = _development_secret(settings, DATA_KEY_FILE, "DATA_ENCRYPTION_KEY")
            settings = settings.model_copy(update={"DATA_ENCRYPTION_KEY": SecretStr(secret)})
    except ValidationError as exc:
        raise configuration_error(exc) from None
    # A missing, unreadable or wrong key file stops start-up here rather than at the first login.
    load_token_keys(settings)
    return settings
