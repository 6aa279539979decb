"""In-process costs in µs per call: requests called on the ASGI app (no server, no socket)
and a refresh taken apart, so that what our code costs can be told from what the
framework and the database driver cost.

    .venv/bin/python bench/inprocess.py [--postgres] [--calls 2000]

SQLite by default (a file in a temporary folder), `memory://` storage, metrics on, JSON
logs (to /dev/null). Each figure is the best of five rounds: the least disturbed one.
"""

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import EMAIL, PASSWORD, POSTGRES_SERVER, database, prepare  # noqa: E402

ROUNDS = 5
Call = Callable[[], Awaitable[Any]]


async def asgi(app: Any, method: str, path: str, body: bytes = b"", token: str = "") -> bytes:
    """One request on `app`; the response body (asserting a 2xx status)."""
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return bytes(answer["body"])


async def best(call: Call, calls: int) -> float:
    """µs per call, the best of ROUNDS rounds of `calls` calls."""
    for _ in range(calls // 10):
        await call()
    fastest = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(calls):
            await call()
        fastest = min(fastest, (time.perf_counter() - started) / calls)
    return fastest * 1e6


def forged(token: str) -> str:
    """The token with its signature's first character changed (still canonical base64url)."""
    head, _, signature = token.rpartition(".")
    return f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


async def measure(calls: int) -> list[tuple[str, float]]:
    from sqlalchemy import text

    from app.db import database_work
    from app.main import create_app
    from app.observability.audit import Audit, Event
    from app.security.refresh_tokens import digest, new_refresh_token
    from app.services.sessions import Client
    from bench.bare_app import app as bare

    app = create_app()
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        credentials = json.dumps({"email": EMAIL, "password": PASSWORD}).encode()
        pair = json.loads(await asgi(app, "POST", "/account/login", credentials))
        access, refresh_token = pair["access_token"], pair["refresh_token"]
        client = Client.of("127.0.0.1", "bench")
        audit = Audit(request_id=None, ip="127.0.0.1", user_agent="bench")
        session_id, now = uuid.uuid4(), runtime.clock()

        async def refresh_request() -> None:
            nonlocal refresh_token
            body = json.dumps({"refresh_token": refresh_token}).encode()
            refresh_token = json.loads(await asgi(app, "POST", "/account/refresh", body))[
                "refresh_token"
            ]

        async def refresh_service() -> None:
            nonlocal refresh_token
            async with database_work(runtime.sessionmaker, 5) as db:
                grant = await runtime.logins.refresh(
                    db, refresh_token=refresh_token, client=client, audit=audit
                )
                await db.commit()
            refresh_token = grant.refresh_token

        async def login() -> None:
            await asgi(app, "POST", "/account/login", credentials)

        stored = await runtime.hasher.hash(PASSWORD)

        async def verify() -> None:
            await runtime.hasher.verify(PASSWORD, stored)

        async def select_one() -> None:
            async with database_work(runtime.sessionmaker, 5) as db:
                await db.execute(text("SELECT 1"))
                await db.commit()

        async def our_python() -> None:
            # What a refresh computes besides its statements: the new refresh token and
            # its digest, the presented token's digest, the access token, the audit line.
            digest(new_refresh_token())
            digest(refresh_token)
            runtime.issuer.codec.mint(
                user_id=1,
                email=EMAIL,
                phone=None,
                session_id=session_id,
                issued_at=now,
                expires_at=now + timedelta(minutes=20),
            )
            audit.record(Event.TOKEN_REFRESHED, user_id=1, session_id=session_id)

        figures = {
            "bare FastAPI endpoint": await best(lambda: asgi(bare, "GET", "/test"), calls),
            "GET /test, valid token": await best(
                lambda: asgi(app, "GET", "/test", token=access), calls
            ),
            "GET /test, forged signature": await best(
                lambda: asgi(app, "GET", "/test", token=forged(access)), calls
            ),
            "POST /account/refresh": await best(refresh_request, calls // 4),
            "the refresh service in a transaction, no HTTP": await best(
                refresh_service, calls // 4
            ),
            "a transaction with SELECT 1 alone": await best(select_one, calls // 4),
            "our Python in a refresh (tokens, digests, audit line)": await best(our_python, calls),
            # Argon2 at 1 MiB, t=1 here: the login's cost besides argon2 is the difference.
            "POST /account/login": await best(login, calls // 10),
            "one argon2 verify on the hasher's thread, same cost": await best(verify, calls // 10),
        }
    return list(figures.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true", help=f"on {POSTGRES_SERVER}")
    parser.add_argument("--calls", type=int, default=2000, help="calls per round")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        kind = "postgres" if options.postgres else "sqlite"
        with database(kind, Path(folder), POSTGRES_SERVER) as url:
            env = {
                "DATABASE_URL": url,
                "RATE_LIMIT_STORAGE_URL": "memory://",
                "TOKEN_SECRET_KEY": secrets.token_urlsafe(48),
                "DATA_ENCRYPTION_KEY": secrets.token_urlsafe(48),
                "TOKEN_ISSUER": "http://testserver",
                "IP_RATE_LIMIT": "",
                "LOG_FORMAT": "json",
                "PASSWORD_HASH_MEMORY_KIB": "1024",
                "PASSWORD_HASH_TIME_COST": "1",
                "PASSWORD_HASH_PARALLELISM": "1",
                "LOGIN_MAX_FAILURES": "1000000",
            }
            prepare(env)
            os.environ.update(env)
            # The log lines are written, to nowhere.
            devnull = os.open(os.devnull, os.O_WRONLY)
            saved = os.dup(2)
            os.dup2(devnull, 2)
            try:
                figures = asyncio.run(measure(options.calls))
            finally:
                os.dup2(saved, 2)
    print(f"| {kind}, µs per call | µs |\n|---|---|")
    for name, micros in figures:
        print(f"| {name} | {micros:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
