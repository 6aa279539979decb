"""The jwt-auth-api command: serve, create-user, delete-user, reset-two-factor, prune, keys,
send-test-mail."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import (
    SERVE_MARKER,
    Settings,
    read_settings,
)
from app.keyfiles import load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from app.models import User
    from app.observability.audit import Audit
    from app.stores.revocations import RevokedSessions

DEMO_EMAIL = "demo@example.com"
# prometheus-client's multiprocess mode reads this variable when it is imported.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
PRUNE_BATCH_SIZE = 1000
# `serve` waiting for the database: the first retry after half a second, doubling up to 5 s.
STARTUP_FIRST_DELAY_SECONDS = 0.5
STARTUP_MAX_DELAY_SECONDS = 5.0
# After the drain: in-flight requests get this long, then closing connections up to 3 s
# (app.main), so that the process exits within SHUTDOWN_DRAIN_SECONDS + 10 s.
GRACEFUL_SHUTDOWN_SECONDS = 5

log = logging.getLogger("app.startup")
MIGRATE_HINT = "run `jwt-auth-api migrate`"

T = TypeVar("T")


class CommandError(SystemExit):
    """A command stops with one line on standard error and exit status 1."""

    def __init__(self, message: str) -> None:
        print(message, file=sys.stderr)
        super().__init__(1)


def _database_problem(exc: DBAPIError) -> CommandError:
    """One line for a database that cannot be reached: the driver's reason, never the URL
    (it may hold a password)."""
    reason = " ".join(str(exc.orig).split()) or type(exc.orig).__name__
    return CommandError(f"configuration error: DATABASE_URL: cannot use the database: {reason}")


def migrate(settings: Settings, *, own_logging: bool = False) -> None:
    """alembic upgrade head on DATABASE_URL, with the migrations of the installed package;
    `own_logging`: keep the service's log format instead of alembic's.

    On PostgreSQL the migration holds an advisory lock (alembic/env.py), so instances
    starting together migrate once.
    """
    from alembic.util import CommandError as AlembicError

    from alembic import command
    from app.db import alembic_config

    config = alembic_config(settings.DATABASE_URL)
    if own_logging:
        config.attributes["configure_logging"] = False
        logging.getLogger("alembic").setLevel(logging.INFO)
    try:
        command.upgrade(config, "head")
    except DBAPIError as exc:
        raise _database_problem(exc) from None
    except (AlembicError, RuntimeError) as exc:
        # A data migration refusing to run names the rows at fault in its message.
        raise CommandError(f"error: migration failed: {' '.join(str(exc).split())}") from None


def migrate_command(args: argparse.Namespace) -> int:
    from app.db import expected_heads

    migrate(read_settings())
    print(f"database migrated (revision {', '.join(sorted(expected_heads()))})")
    return 0


def _sync_engine(settings: Settings) -> Engine:
    """A synchronous engine without a pool for the commands' one-off checks: no driver
    thread outlives the command (aiosqlite's may, once its event loop is closed)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from app.db import postgres_connect_args, sync_url

    url = sync_url(settings.DATABASE_URL)
    connect_args = (
        postgres_connect_args(settings.DATABASE_TIMEOUT_SECONDS, statements=True)
        if url.get_backend_name() == "postgresql"
        else {}
    )
    return create_engine(url, connect_args=connect_args, poolclass=NullPool)


def _require_schema(settings: Settings) -> None:
    """Commands that read or write rows stop with one line on an unmigrated database."""
    from alembic.runtime.migration import MigrationContext

    from app.db import schema_state_of

    engine = _sync_engine(settings)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except DBAPIError as exc:
        raise _database_problem(exc) from None
    finally:
        engine.dispose()
    if schema_state_of(current) != "ok":
        raise CommandError(f"error: the database is not migrated; {MIGRATE_HINT}")


def _metrics_directory() -> str:
    """PROMETHEUS_MULTIPROC_DIR for the workers of one `serve`, empty at start: the files
    of an earlier run would add their counts to this one's."""
    folder = os.environ.get(MULTIPROCESS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
        return folder
    return tempfile.mkdtemp(prefix="jwt-auth-api-metrics-")


async def _with_db(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from app.db import create_engine_for, create_sessionmaker
    from app.services.sessions import confirm_ended

    engine = create_engine_for(settings)
    try:
        async with create_sessionmaker(engine)() as db:
            async with db.begin():
                done = await work(db)
            await confirm_ended(db)
            return done
    finally:
        await engine.dispose()


async def _set_user(
    settings: Settings,
    *,
    email: str,
    password: str,
    first_name: str | None = None,
    last_name: str | None = None,
    phone_number: str | None = None,
    roles: Sequence[str] = (),
) -> None:
    from app.runtime import utc_now
    from app.security.passwords import PasswordHasher
    from app.services import accounts, sessions
    from app.stores.revocations import revoked_sessions

    hasher = PasswordHasher(
        memory_kib=settings.PASSWORD_HASH_MEMORY_KIB,
        time_cost=settings.PASSWORD_HASH_TIME_COST,
        parallelism=settings.PASSWORD_HASH_PARALLELISM,
    )

    revoked = revoked_sessions(settings.RATE_LIMIT_STORAGE_URL, settings.retention_seconds)

    async def work(db: AsyncSession) -> object:
        now = utc_now()
        user = await accounts.set_user(
            db,
            hasher=hasher,
            email=email,
            password=password,
            now=now,
            first_name=first_name,
            last_name=last_name,
            phone_number=phone_number,
            roles=roles,
        )
        # On an existing user this is a password reset: every session ends. A running
        # service learns it from the ended-session records (or the shared Redis set).
        return await sessions.end_all(db, user_id=user.id, revoked=revoked, now=now)

    try:
        await _with_db(settings, work)
    finally:
        hasher.shutdown()
        await revoked.close()


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.observability.logging import configure_logging, uvicorn_log_config

    settings = load_settings()
    if args.workers > 1 and not settings.shared_storage:
        print(
            "error: --workers above 1 needs RATE_LIMIT_STORAGE_URL=redis://...; with "
            "memory:// the revoked-session set and the throttle live in one process",
            file=sys.stderr,
        )
        return 2
    if args.demo and settings.ENVIRONMENT == "production":
        print("error: --demo is refused under ENVIRONMENT=production", file=sys.stderr)
        return 2
    configure_logging(settings.LOG_FORMAT)
    problem = wait_for_database(settings)
    if problem is not None:
        print(
            f"error: the database is unreachable after "
            f"{settings.DATABASE_STARTUP_TIMEOUT_SECONDS:g} s: {problem}",
            file=sys.stderr,
        )
        return 1
    try:
        migrate(settings, own_logging=True)
        if args.demo:
            password = secrets.token_urlsafe(18)
            asyncio.run(_set_user(settings, email=DEMO_EMAIL, password=password, first_name="Demo"))
            print(f"demo account: {DEMO_EMAIL}  password: {password}", flush=True)
    except SQLAlchemyError as exc:
        # The database went away after answering: one line, as when it never answered.
        print(f"error: the database failed during start-up: {_one_line(exc)}", file=sys.stderr)
        return 1
    proxies = ",".join(settings.TRUSTED_PROXIES)
    created = None
    if settings.METRICS_ENABLED and (args.workers > 1 or MULTIPROCESS_ENV in os.environ):
        # Set before any worker imports prometheus-client: each worker then writes its
        # figures to files there, and /metrics in any of them sums every worker's.
        folder = _metrics_directory()
        created = None if os.environ.get(MULTIPROCESS_ENV) else folder
        os.environ[MULTIPROCESS_ENV] = folder
    # Each worker process drains on SIGTERM (app.main); plain uvicorn keeps its own shutdown.
    os.environ[SERVE_MARKER] = "1"
    try:
        uvicorn.run(
            "app.main:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            # uvicorn believes X-Forwarded-For from 127.0.0.1 by default; we believe
            # only TRUSTED_PROXIES, and nobody when it is empty.
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            log_config=uvicorn_log_config(settings.LOG_FORMAT),
        )
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
    return 0


def _roles(names: Sequence[str]) -> list[str] | None:
    """--role values as a set of valid role names; None (after one line) otherwise."""
    from pydantic import TypeAdapter, ValidationError

    from app.schemas import MAX_ROLES, Role

    try:
        roles = TypeAdapter(list[Role]).validate_python(list(names))
    except ValidationError:
        print("error: --role must match [a-z][a-z0-9_-]{0,31}", file=sys.stderr)
        return None
    unique = sorted(set(roles))
    if len(unique) > MAX_ROLES:
        print(f"error: at most {MAX_ROLES} roles (--role)", file=sys.stderr)
        return None
    return unique


def _one_line(exc: BaseException) -> str:
    """The driver's first line, without the statement SQLAlchemy appends."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def wait_for_database(settings: Settings) -> str | None:
    """Wait for the database with backoff, up to DATABASE_STARTUP_TIMEOUT_SECONDS: None once
    it answers, else the last problem. One log line per failed attempt."""
    from sqlalchemy import text

    engine = _sync_engine(settings)
    deadline = time.monotonic() + settings.DATABASE_STARTUP_TIMEOUT_SECONDS
    delay = STARTUP_FIRST_DELAY_SECONDS
    attempt = 0
    try:
        while True:
            attempt += 1
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
                return None
            except SQLAlchemyError as exc:
                problem = _one_line(exc)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return problem
            pause = min(delay, remaining)
            log.warning(
                "database unreachable (attempt %d): %s; retrying in %.1f s",
                attempt,
                problem,
                pause,
            )
            time.sleep(pause)
            delay = min(delay * 2, STARTUP_MAX_DELAY_SECONDS)
    finally:
        engine.dispose()


def create_user(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from app.schemas import RegisterRequest
    from app.security.passwords import password_problem

    roles = _roles(args.role)
    if roles is None:
        return 2
    settings = load_settings()
    password = _read_password()
    try:
        request = RegisterRequest(
            email=args.email,
            password=password,
            first_name=args.first_name,
            last_name=args.last_name,
            phone_number=args.phone_number,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        print(f"error: {field} {error['msg']}", file=sys.stderr)
        return 2
    problem = password_problem(
        password, min_length=settings.PASSWORD_MIN_LENGTH, email=request.email
    )
    if problem is not None:
        print(f"error: password {problem}", file=sys.stderr)
        return 2
    _require_schema(settings)
    asyncio.run(
        _set_user(
            settings,
            email=request.email,
            password=password,
            first_name=request.first_name,
            last_name=request.last_name,
            phone_number=request.phone_number,
            roles=roles,
        )
    )
    print(f"user {request.email} is ready" + (f" (roles: {', '.join(roles)})" if roles else ""))
    return 0


R = TypeVar("R")


def _on_user(
    command: str,
    email_argument: str,
    change: Callable[[AsyncSession, User, RevokedSessions, Audit], Awaitable[R]],
) -> R | None:
    """Run `change(db, user, revoked, audit)` on the user with this email, its row locked,
    in one transaction; None when there is no such user. Sessions it ends reach a running
    service at once with redis://, within 2 s with memory:// (ended-session records)."""
    from sqlalchemy import select

    from app.models import User
    from app.observability.audit import Audit
    from app.observability.logging import configure_logging
    from app.schemas import canonical_email
    from app.stores.revocations import revoked_sessions

    settings = load_settings()
    _require_schema(settings)
    email = canonical_email(email_argument)
    revoked = revoked_sessions(settings.RATE_LIMIT_STORAGE_URL, settings.retention_seconds)
    configure_logging(settings.LOG_FORMAT)
    audit = Audit(request_id=None, ip=None, user_agent=None, path=f"cli:{command}")

    async def work(db: AsyncSession) -> R | None:
        user = (
            await db.scalars(select(User).where(User.email == email).with_for_update())
        ).one_or_none()
        if user is None:
            return None
        return await change(db, user, revoked, audit)

    async def run() -> R | None:
        try:
            return await _with_db(settings, work)
        finally:
            await revoked.close()

    result = asyncio.run(run())
    if result is None:
        print(f"error: no user {email}", file=sys.stderr)
    return result


def delete_user(args: argparse.Namespace) -> int:
    from app.runtime import utc_now
    from app.services import accounts

    async def delete(db: AsyncSession, user: User, revoked: RevokedSessions, audit: Audit) -> bool:
        await accounts.delete_user(db, user=user, revoked=revoked, now=utc_now(), audit=audit)
        return True

    if _on_user("delete-user", args.email, delete) is None:
        return 1
    print(f"user {canonical_email_of(args.email)} deleted")
    return 0


def reset_two_factor(args: argparse.Namespace) -> int:
    from app.runtime import utc_now
    from app.services import accounts, two_factor

    async def switch_off(
        db: AsyncSession, user: User, revoked: RevokedSessions, audit: Audit
    ) -> int:
        await two_factor.switch_off(db, user=user, audit=audit)
        # The lost device may hold sessions too: they end with the factor.
        ended = await accounts.end_every_session(db, user=user, revoked=revoked, now=utc_now())
        return len(ended)

    ended = _on_user("reset-two-factor", args.email, switch_off)
    if ended is None:
        return 1
    print(f"two-factor is off for {canonical_email_of(args.email)}; {ended} session(s) ended")
    return 0


def canonical_email_of(address: str) -> str:
    from app.schemas import canonical_email

    return canonical_email(address)


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        sys.exit("error: the passwords differ")
    return password


def prune(args: argparse.Namespace) -> int:
    from app.runtime import utc_now
    from app.services import sessions

    settings = load_settings()
    _require_schema(settings)
    # Ended sessions are remembered one access-token lifetime plus the leeway: that long an
    # access token of theirs may still be presented, and the revoked-session set is
    # rebuilt from their records.
    ended_before = utc_now() - timedelta(seconds=settings.retention_seconds)
    records = asyncio.run(
        _with_db(settings, lambda db: sessions.prune_ended_records(db, ended_before=ended_before))
    )
    total = 0
    while True:
        # One short transaction per batch, so pruning never blocks the service for long.
        deleted = asyncio.run(
            _with_db(
                settings,
                lambda db: sessions.prune(
                    db, ended_before=ended_before, batch_size=args.batch_size
                ),
            )
        )
        total += deleted
        if deleted == 0:
            break
    print(f"pruned {total} refresh-token rows and {records} ended-session records")
    return 0


TEST_MAIL_SUBJECT = "Test mail from JWT auth API"
TEST_MAIL_BODY = (
    "This mail was sent by `jwt-auth-api send-test-mail` to check the mail settings.\n"
    "It reached you, so verification and password-reset mail can too.\n"
)


def send_test_mail(args: argparse.Namespace) -> int:
    """One mail through the configured backend now, bypassing the outbox: one line says
    whether the relay accepted it, and the exit status too."""
    from email_validator import EmailNotValidError, validate_email

    from app.mail.backends import MailNotSent, backend_for, build_message
    from app.runtime import utc_now

    settings = load_settings()
    try:
        address = validate_email(args.to, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        print(f"error: --to {exc}", file=sys.stderr)
        return 2
    message = build_message(
        sender=settings.MAIL_FROM,
        to=address,
        subject=TEST_MAIL_SUBJECT,
        body=TEST_MAIL_BODY,
        now=utc_now(),
    )
    try:
        accepted = asyncio.run(backend_for(settings).send(message))
    except MailNotSent as exc:
        print(f"not sent to {address}: {exc.reason}", file=sys.stderr)
        return 1
    print(f"sent to {address}: {accepted}")
    return 0


def _write_new_file(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 whatever the umask; an existing file is never overwritten."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def generate_keys(args: argparse.Namespace) -> int:
    from app.security.keys import (
        ASYMMETRIC_ALGORITHMS,
        generate_private_key,
        jwk_thumbprint,
        private_pem,
        public_pem,
    )

    algorithm: str = args.algorithm or read_settings().TOKEN_ALGORITHM
    if algorithm not in ASYMMETRIC_ALGORITHMS:
        print(
            f"error: TOKEN_ALGORITHM is {algorithm}, which signs with TOKEN_SECRET_KEY; "
            f"pass --algorithm ({', '.join(ASYMMETRIC_ALGORITHMS)})",
            file=sys.stderr,
        )
        return 2
    private_key = generate_private_key(algorithm)
    kid = jwk_thumbprint(private_key.public_key())
    # The kid in the names keeps the files of successive keys apart during a rotation.
    stem = f"token-{algorithm.lower()}-{kid[:8]}"
    private_path: Path = args.private or args.out / f"{stem}.private.pem"
    public_path: Path = args.public or args.out / f"{stem}.public.pem"
    if private_path.resolve() == public_path.resolve():
        print("error: --private and --public name the same file", file=sys.stderr)
        return 2
    for path in (private_path, public_path):
        if path.exists():
            print(f"error: {path} exists; a key file is never overwritten", file=sys.stderr)
            return 2
    written: list[Path] = []
    try:
        for path, data in (
            (private_path, private_pem(private_key)),
            (public_path, public_pem(private_key)),
        ):
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_new_file(path, data)
            written.append(path)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        print(f"error: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{algorithm} key pair written (mode 0600), kid {kid}")
    print(f"  private key: {private_path.resolve()}")
    print(f"  public key:  {public_path.resolve()}")
    print("Sign with it:")
    print(f"TOKEN_ALGORITHM={algorithm}")
    print(f"TOKEN_PRIVATE_KEY_FILE={private_path.resolve()}")
    print(
        "When it is replaced, list its public key in TOKEN_PREVIOUS_PUBLIC_KEY_FILES "
        "until the tokens it signed have expired."
    )
    return 0


def _ranged(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from low to high, or a usage error naming the range."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"[0-9]+", text.strip()):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        number = int(text)
        if number < low or (high is not None and number > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{number} is out of range ({bounds})")
        return number

    return parse


def _version() -> str:
    try:
        return version("jwt-auth-api")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout without installing
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwt-auth-api", description="JWT access and refresh token service."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("serve", help="migrate the database, then serve the API")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument(
        "--port", type=_ranged(1, 65535), default=8000, help="port to bind (default 8000)"
    )
    run.add_argument("--workers", type=_ranged(1), default=1, help="worker processes (default 1)")
    run.add_argument(
        "--demo",
        action="store_true",
        help=f"create or reset {DEMO_EMAIL} with a fresh random password, printed",
    )
    run.set_defaults(handler=serve)

    upgrade = commands.add_parser(
        "migrate",
        help="create or migrate the schema named by DATABASE_URL (alembic upgrade head)",
        description=(
            "Run the migrations shipped in the installed package up to the newest. On "
            "PostgreSQL an advisory lock makes instances starting together migrate once."
        ),
    )
    upgrade.set_defaults(handler=migrate_command)

    user = commands.add_parser(
        "create-user",
        help="create a user, or reset the password of an existing one",
        description="The password is read from standard input, or prompted for on a terminal.",
    )
    user.add_argument("--email", required=True)
    user.add_argument("--first-name")
    user.add_argument("--last-name")
    user.add_argument("--phone-number", help="E.164, such as +447700900123")
    user.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="NAME",
        help="a role of the user (repeatable); the roles given replace the user's roles, "
        "none given leaves it none; --role admin makes an administrator",
    )
    user.set_defaults(handler=create_user)

    remove = commands.add_parser(
        "delete-user",
        help="delete a user, ending its sessions and access tokens",
        description="As DELETE /admin/users/{id}: every session ends, then the user is deleted.",
    )
    remove.add_argument("--email", required=True)
    remove.set_defaults(handler=delete_user)

    reset = commands.add_parser(
        "reset-two-factor",
        help="switch a user's two-factor off (a lost device), ending its sessions",
        description="As PATCH /admin/users/{id} with two_factor_enabled false; the user's "
        "sessions end too, and it logs in with its password alone until it enrols again.",
    )
    reset.add_argument("--email", required=True)
    reset.set_defaults(handler=reset_two_factor)

    clean = commands.add_parser(
        "prune",
        help="delete the rows and records of sessions that ended over one access-token "
        "lifetime plus TOKEN_LEEWAY_SECONDS ago",
    )
    clean.add_argument("--batch-size", type=_ranged(1), default=PRUNE_BATCH_SIZE)
    clean.set_defaults(handler=prune)

    keys = commands.add_parser("keys", help="manage the access-token signing keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    generate = key_commands.add_parser(
        "generate",
        help="write a new key pair for TOKEN_PRIVATE_KEY_FILE",
        description=(
            "Write a new private key (PEM, PKCS#8) and its public key, both mode 0600, for "
            "RS256 (RSA 3072), ES256 (EC P-256) or EdDSA (Ed25519). Existing files are never "
            "overwritten."
        ),
    )
    generate.add_argument(
        "--algorithm",
        choices=["RS256", "ES256", "EdDSA"],
        help="key type to generate (default: TOKEN_ALGORITHM)",
    )
    generate.add_argument(
        "--out",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="folder for both files, named after the key's kid (default: the current folder)",
    )
    generate.add_argument(
        "--private", type=Path, metavar="FILE", help="path of the private key file"
    )
    generate.add_argument("--public", type=Path, metavar="FILE", help="path of the public key file")
    generate.set_defaults(handler=generate_keys)

    mail = commands.add_parser(
        "send-test-mail",
        help="send one mail through the configured backend now and say whether it went",
        description=(
            "Sends one mail now through MAIL_BACKEND (not through the outbox) and prints "
            "one line: whether the relay accepted it. Exits 1 when it did not."
        ),
    )
    mail.add_argument("--to", required=True, metavar="ADDRESS", help="the recipient")
    mail.set_defaults(handler=send_test_mail)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from app.config import ConfigurationError

    args = _parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except ConfigurationError as exc:
        # The one place a setting at fault is printed: one line, no traceback.
        print(f"configuration error: {exc.message}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        # Whatever command meets an unreachable or missing database says so in one line.
        raise _database_problem(exc) from None
    return result


if __name__ == "__main__":
    sys.exit(main())
