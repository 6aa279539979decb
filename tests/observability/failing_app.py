"""A test-only app factory: the service plus one route that raises, served by a real
uvicorn (`uvicorn tests.observability.failing_app:create --factory`), so a test can see
what an unhandled error writes to the log. The service itself has no such route."""

from fastapi import FastAPI

from app.main import create_app

BOOM_PATH = "/boom"


class Boom(Exception):
    pass


def create() -> FastAPI:
    app = create_app()

    @app.get(BOOM_PATH)
    async def boom() -> None:
        raise Boom("an error nobody handles")

    return app
