"""The jwt-auth-api command: serve, create-user, prune, keys generate."""

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, load_settings

DEMO_EMAIL = "demo@example.com"
PRUNE_BATCH_SIZE = 1000

T = TypeVar("T")


def _alembic_ini() -> Path:
    for folder in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (folder / "alembic.ini").is_file():
            return folder / "alembic.ini"
    sys.exit("error: alembic.ini not found; run from the repository root")


def migrate(settings: Settings) -> None:
    """alembic upgrade head on DATABASE_URL."""
    from alembic.config import Config

    from alembic import command

    config = Config(str(_alembic_ini()))
    config.attributes["database_url"] = settings.DATABASE_URL
    command.upgrade(config, "head")


async def _with_db(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from app.db import create_engine_for, create_sessionmaker

    engine = create_engine_for(settings)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            return await work(db)
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
) -> None:
    from app.runtime import utc_now
    from app.security.passwords import PasswordHasher
    from app.services import accounts

    hasher = PasswordHasher(
        memory_kib=settings.PASSWORD_HASH_MEMORY_KIB,
        time_cost=settings.PASSWORD_HASH_TIME_COST,
        parallelism=settings.PASSWORD_HASH_PARALLELISM,
    )

    async def work(db: AsyncSession) -> object:
        return await accounts.set_user(
            db,
            hasher=hasher,
            email=email,
            password=password,
            now=utc_now(),
            first_name=first_name,
            last_name=last_name,
            phone_number=phone_number,
        )

    try:
        await _with_db(settings, work)
    finally:
        hasher.shutdown()


def serve(args: argparse.Namespace) -> int:
    import uvicorn

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
    migrate(settings)
    if args.demo:
        password = secrets.token_urlsafe(18)
        asyncio.run(_set_user(settings, email=DEMO_EMAIL, password=password, first_name="Demo"))
        print(f"demo account: {DEMO_EMAIL}  password: {password}", flush=True)
    proxies = ",".join(settings.TRUSTED_PROXIES)
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default; we believe
        # only TRUSTED_PROXIES, and nobody when it is empty.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )
    return 0


def create_user(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from app.schemas import RegisterRequest
    from app.security.passwords import password_problem

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
    asyncio.run(
        _set_user(
            settings,
            email=request.email,
            password=password,
            first_name=request.first_name,
            last_name=request.last_name,
            phone_number=request.phone_number,
        )
    )
    print(f"user {request.email} is ready")
    return 0


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
    # Ended families stay one access-token lifetime: the revoked-session set is
    # refilled from them after a restart.
    ended_before = utc_now() - timedelta(seconds=settings.TOKEN_ACCESS_TTL_SECONDS)
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
    print(f"pruned {total} refresh-token rows")
    return 0


def _write_new_file(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 whatever the umask; an existing file is never overwritten."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def generate_keys(args: argparse.Namespace) -> int:
    from app.config import load_algorithm
    from app.security.keys import (
        ASYMMETRIC_ALGORITHMS,
        generate_private_key,
        jwk_thumbprint,
        private_pem,
        public_pem,
    )

    algorithm: str = args.algorithm or load_algorithm()
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwt-auth-api", description="JWT access and refresh token service."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("serve", help="migrate the database, then serve the API")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    run.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    run.add_argument(
        "--demo",
        action="store_true",
        help=f"create or reset {DEMO_EMAIL} with a fresh random password, printed",
    )
    run.set_defaults(handler=serve)

    user = commands.add_parser(
        "create-user",
        help="create a user, or reset the password of an existing one",
        description="The password is read from standard input, or prompted for on a terminal.",
    )
    user.add_argument("--email", required=True)
    user.add_argument("--first-name")
    user.add_argument("--last-name")
    user.add_argument("--phone-number", help="E.164, such as +447700900123")
    user.set_defaults(handler=create_user)

    clean = commands.add_parser(
        "prune", help="delete the rows of sessions that ended over one access-token lifetime ago"
    )
    clean.add_argument("--batch-size", type=int, default=PRUNE_BATCH_SIZE)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
