"""Health checks and the public key set."""

import asyncio

from fastapi import APIRouter, Response
from sqlalchemy import text

from app.deps import RuntimeDep
from app.errors import ServiceUnavailable
from app.openapi import problems
from app.schemas import Health, Jwks

router = APIRouter(tags=["meta"])

READY_TIMEOUT_SECONDS = 2.0


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process is alive; says nothing about the database."""
    return Health()


@router.get("/health/ready", response_model=Health, responses=problems(503))
async def ready(runtime: RuntimeDep) -> Health:
    """The database answers within a short timeout; 503 otherwise."""

    async def ping() -> None:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(ping(), READY_TIMEOUT_SECONDS)
    except Exception:
        raise ServiceUnavailable("the database does not answer") from None
    return Health()


@router.get("/.well-known/jwks.json", response_model=Jwks)
async def jwks(response: Response) -> Jwks:
    """Public verification keys (RFC 7517); empty while tokens are signed with an HMAC secret."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return Jwks(keys=[])
