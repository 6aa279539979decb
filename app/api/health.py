"""Health checks and the public key set."""

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter, Response

from app.api.deps import RuntimeDep
from app.db import schema_state
from app.errors import NotReady
from app.runtime import Runtime
from app.schemas import Health, Jwks, NotReadyProblem, Readiness, ReadinessChecks

router = APIRouter(tags=["meta"])

# Each readiness check is bounded by this (the contract: within 1 s).
READY_TIMEOUT_SECONDS = 1.0
JWKS_MAX_AGE_SECONDS = 300


async def _bounded(check: Awaitable[str]) -> str:
    try:
        return await asyncio.wait_for(check, READY_TIMEOUT_SECONDS)
    except Exception:
        return "unavailable"


async def _database(runtime: Runtime) -> str:
    # "not migrated" when the schema is missing or behind this code's migrations.
    return await schema_state(runtime.engine)


async def _revocation_store(runtime: Runtime) -> str:
    await runtime.revoked.ping()
    return "ok"


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process is alive; says nothing about the database."""
    return Health()


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={
        503: {
            "model": NotReadyProblem,
            "description": "A dependency is unavailable (or the database not migrated), "
            'or a shutdown has begun (`"draining": true`)',
        }
    },
)
async def ready(runtime: RuntimeDep) -> Readiness:
    """The database is migrated and answers, and the revocation store answers, each within
    1 s; 503 naming the failed check otherwise, and from the moment a shutdown begins."""
    database, store = await asyncio.gather(
        _bounded(_database(runtime)), _bounded(_revocation_store(runtime))
    )
    checks = {"database": database, "revocation_store": store}
    if runtime.draining or database != "ok" or store != "ok":
        raise NotReady(checks, draining=runtime.draining)
    return Readiness(checks=ReadinessChecks(database="ok", revocation_store="ok"))


@router.get("/.well-known/jwks.json", response_model=Jwks)
async def jwks(runtime: RuntimeDep, response: Response) -> Jwks:
    """Public verification keys (RFC 7517): the current key and those kept for a rotation.

    An HMAC secret is never published, so the set is empty while only HS256 keys exist.
    """
    # Verifiers may cache the set this long; one that meets an unknown kid fetches it again.
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return Jwks(keys=runtime.keys.public_jwks)
