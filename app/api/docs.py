"""Swagger UI 5 at /docs, from the fastapi-offline package's assets (no CDN), each page
with the Content-Security-Policy that allows exactly its inline script."""

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.api.middleware import page_policy

SWAGGER_STATIC = "/docs/static"
# Swagger UI 5 (the first to read OpenAPI 3.1, which FastAPI writes), shipped in a wheel.
SWAGGER_ASSETS = files("fastapi_offline") / "static"
DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# Swagger UI loads its script and style from /docs/static, fetches /openapi.json and calls
# the API; its one inline script is allowed by hash. Its icons are data: URIs.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self' {script_hashes}; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# The OAuth2 redirect page is one inline script that hands its query to the opener.
OAUTH2_REDIRECT_POLICY = (
    "default-src 'none'; script-src {script_hashes}; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def serve_docs(app: FastAPI) -> dict[str, str]:
    """Swagger UI 5 from the fastapi-offline package's assets: /docs works offline.

    Both pages are built once (they never change), and their Content-Security-Policy
    allows exactly their inline scripts.
    """
    app.mount(SWAGGER_STATIC, StaticFiles(directory=str(SWAGGER_ASSETS)), name="swagger-ui")
    params: dict[str, Any] = {"persistAuthorization": False}
    docs_page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{app.title} - Swagger UI",
        oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        swagger_js_url=f"{SWAGGER_STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_STATIC}/favicon.png",
        swagger_ui_parameters=params,
    ).body
    redirect_page = get_swagger_ui_oauth2_redirect_html().body

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page)

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return HTMLResponse(redirect_page)

    return {
        DOCS_URL: page_policy(bytes(docs_page), DOCS_POLICY),
        OAUTH2_REDIRECT_URL: page_policy(bytes(redirect_page), OAUTH2_REDIRECT_POLICY),
    }
