"""GET /demo: a small browser client of cookie mode, plain HTML and JavaScript from the package.

POST /demo/qr draws the otpauth:// URI of a two-factor setup as an SVG QR code, here on the
server, so that the page needs no script from a CDN and no QR library of its own.
"""

import io
from importlib.resources import files
from typing import Annotated

import segno
from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, StringConstraints

from app.api.deps import CurrentUser, SettingsDep, ThrottledClient
from app.api.routing import ServiceRoute
from app.errors import NotFound

router = APIRouter(include_in_schema=False, route_class=ServiceRoute)

ASSETS = files("app") / "demo"
# The page's own policy: scripts and styles from these files only, no inline script, no
# framing. The access token lives in the page's memory, so script injection is the threat.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # blob: for the QR code, an SVG the script fetched; as an <img>, it runs no script.
        "img-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {"demo.js": "text/javascript; charset=utf-8", "demo.css": "text/css; charset=utf-8"}


@router.get("/demo")
async def demo_page(settings: SettingsDep) -> HTMLResponse:
    """The page; it tells the script whether cookie mode is on, and says so when it is not."""
    html = (ASSETS / "index.html").read_text(encoding="utf-8")
    mode = "on" if settings.TOKEN_COOKIE_MODE else "off"
    return HTMLResponse(html.replace("{{cookie_mode}}", mode), headers=SECURITY_HEADERS)


@router.get("/demo/{name}")
async def demo_asset(name: Annotated[str, Path()]) -> Response:
    if name not in MEDIA_TYPES:
        raise NotFound()
    content = (ASSETS / name).read_bytes()
    return Response(content, media_type=MEDIA_TYPES[name], headers=SECURITY_HEADERS)


# An otpauth URI of this service is about 150 characters; room for a long issuer and email.
OtpauthUri = Annotated[str, StringConstraints(max_length=1024, pattern=r"^otpauth://totp/")]


class QrRequest(BaseModel):
    uri: OtpauthUri


@router.post("/demo/qr")
async def demo_qr(body: QrRequest, user: CurrentUser, client: ThrottledClient) -> Response:
    """The URI the page has just received from POST /account/2fa/totp, as a QR code.

    Only for a signed-in caller (no open QR service), under IP_RATE_LIMIT like the two-factor
    routes. The URI holds the secret: the answer is never cached, and the URI is never logged.
    """
    buffer = io.BytesIO()
    # A white background and the standard quiet zone, so that phones read it in dark mode too.
    segno.make(body.uri, error="m").save(
        buffer, kind="svg", scale=5, dark="#000", light="#fff", xmldecl=False, title=None
    )
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store", "Pragma": "no-cache"}
    return Response(buffer.getvalue(), media_type="image/svg+xml", headers=headers)
