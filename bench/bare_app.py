"""The ceiling: a bare FastAPI endpoint answering the same JSON string as GET /test."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/test")
async def test() -> str:
    return "Only authenticated user can consume this endpoint"
