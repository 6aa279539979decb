"""GET /demo: a small browser client of cookie mode, plain HTML and JavaScript from the package."""

from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, Response

from app.api.deps import SettingsDep
from app.errors import NotFound

router = APIRouter(include_in_schema=False)

ASSETS = files("app") / "demo"
# The page's own policy: scripts and styles from these files only, no inline script, no
# framing. The access token lives in the page's memory, so script injection is the threat.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
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
