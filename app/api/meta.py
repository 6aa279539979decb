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
JWKS_MAX_AGE_SECONDS = 300


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process is alive; says nothing about the database."""
    return Health()


@router.get("/health/ready", response_model=Health, responses=problems(503))
async def ready(runtime: RuntimeDep) -> Health:
    """The database answers within a short timeout; 503 otherwise."""
    if runtime.draining:
        # Under `serve`, from SIGTERM on: the load balancer moves traffic away first.
        raise ServiceUnavailable("the service is shutting down")

    async def ping() -> None:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(ping(), READY_TIMEOUT_SECONDS)
    except Exception:
        raise ServiceUnavailable("the database does not answer") from None
    return Health()


@router.get("/.well-known/jwks.json", response_model=Jwks)
async def jwks(runtime: RuntimeDep, response: Response) -> Jwks:
    """Public verification keys (RFC 7517): the current key and those kept for a rotation.

    An HMAC secret is never published, so the set is empty while only HS256 keys exist.
    """
    # Verifiers may cache the set this long; one that meets an unknown kid fetches it again.
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return Jwks(keys=runtime.keys.public_jwks)
