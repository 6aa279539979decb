"""GET /test: the article's endpoint that only an authenticated user may call."""

from fastapi import APIRouter
from fastapi.responses import Response

from app.api.deps import AccessClaims
from app.api.openapi import BEARER_ERRORS, problems
from app.api.routing import ServiceRoute

router = APIRouter(tags=["test"], route_class=ServiceRoute)

GREETING = "Only authenticated user can consume this endpoint"
# Encoded once: the answer never changes, so no serializer runs per request.
_GREETING_JSON = f'"{GREETING}"'.encode()


@router.get(
    "/test",
    response_class=Response,
    responses={
        200: {
            "description": "The caller is authenticated",
            "content": {"application/json": {"schema": {"type": "string", "example": GREETING}}},
        },
        **problems(*BEARER_ERRORS),
    },
)
async def test(claims: AccessClaims) -> Response:
    """Answers a fixed sentence to any caller with a valid access token."""
    return Response(_GREETING_JSON, media_type="application/json")
