"""GET /test: the article's endpoint that only an authenticated user may call."""

from fastapi import APIRouter

from app.deps import AccessClaims
from app.openapi import problems

router = APIRouter(tags=["test"])

GREETING = "Only authenticated user can consume this endpoint"


@router.get("/test", response_model=str, responses=problems(401))
async def test(claims: AccessClaims) -> str:
    """Answers a fixed sentence to any caller with a valid access token."""
    return GREETING
