"""GET /metrics: the Prometheus text exposition, for METRICS_ALLOWED_CLIENTS only."""

import ipaddress
from functools import cache

from fastapi import APIRouter, Request, Response

from app.api.deps import RuntimeDep
from app.errors import NotFound
from app.observability import metrics

router = APIRouter()

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@cache
def _networks(allowed: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in allowed)


def is_allowed(host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether this client address is one of the allowed addresses or networks."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(allowed))


# Not in the OpenAPI document: it is for the operator's scraper, not for API clients.
@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request, runtime: RuntimeDep) -> Response:
    """Every series of the contract; any other client gets the 404 of a missing route."""
    # request.client is the socket peer, or the X-Forwarded-For client when uvicorn
    # trusts the proxy (TRUSTED_PROXIES): a proxy in front cannot open it to everyone.
    host = request.client.host if request.client else None
    if not is_allowed(host, tuple(runtime.settings.METRICS_ALLOWED_CLIENTS)):
        raise NotFound()
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})
