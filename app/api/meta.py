"""Health checks and the public key set."""

import asyncio

from fastapi import APIRouter, Response

from app.db import schema_state
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
    """The database answers within a short timeout and is migrated; 503 otherwise."""
    try:
        state = await asyncio.wait_for(schema_state(runtime.engine), READY_TIMEOUT_SECONDS)
    except Exception:
        raise ServiceUnavailable("the database does not answer") from None
    if state != "ok":
        raise ServiceUnavailable("the database is not migrated; run `jwt-auth-api migrate`")
    return Health()


@router.get("/.well-known/jwks.json", response_model=Jwks)
async def jwks(runtime: RuntimeDep, response: Response) -> Jwks:
    """Public verification keys (RFC 7517): the current key and those kept for a rotation.

    An HMAC secret is never published, so the set is empty while only HS256 keys exist.
    """
    # Verifiers may cache the set this long; one that meets an unknown kid fetches it again.
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return Jwks(keys=runtime.keys.public_jwks)
