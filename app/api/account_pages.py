"""GET /account/verify-email and /account/reset-password: the pages mailed links open.

Plain HTML and JavaScript from the package. The token is in the URL fragment, which the
browser never sends: the page's script reads it and POSTs it. The GET itself changes
nothing, so a mail scanner prefetching the link spends no token.
"""

from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, Response

from app.errors import NotFound

router = APIRouter(include_in_schema=False)

ASSETS = files("app") / "account_pages"
# Scripts and styles from these files only, no inline script, no framing, and the page's
# fetches to this origin only: the page holds a token worth an account.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MEDIA_TYPES = {
    "link.js": "text/javascript; charset=utf-8",
    "verify-email.js": "text/javascript; charset=utf-8",
    "reset-password.js": "text/javascript; charset=utf-8",
    "account.css": "text/css; charset=utf-8",
}


def _page(name: str) -> HTMLResponse:
    return HTMLResponse((ASSETS / name).read_text(encoding="utf-8"), headers=SECURITY_HEADERS)


@router.get("/account/verify-email")
async def verify_email_page() -> HTMLResponse:
    """The page of a verification link: its script POSTs the fragment's token."""
    return _page("verify-email.html")


@router.get("/account/reset-password")
async def reset_password_page() -> HTMLResponse:
    """The page of a reset link: the new password typed twice, then POSTed with the token."""
    return _page("reset-password.html")


@router.get("/account/pages/{name}")
async def account_page_asset(name: Annotated[str, Path()]) -> Response:
    if name not in MEDIA_TYPES:
        raise NotFound()
    content = (ASSETS / name).read_bytes()
    return Response(content, media_type=MEDIA_TYPES[name], headers=SECURITY_HEADERS)
