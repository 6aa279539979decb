"""The article's walk-through: log in, call /test with the token, and without it."""

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories import bearer, login, make_user


def test_login_then_test_endpoint_answers_the_article_sentence(
    client: TestClient, db: Session
) -> None:
    make_user(db)
    pair = login(client)

    response = client.get("/test", headers=bearer(pair["access_token"]))

    assert response.status_code == 200
    assert response.json() == "Only authenticated user can consume this endpoint"


def test_test_endpoint_without_token_is_401_with_a_bare_bearer_challenge(
    client: TestClient,
) -> None:
    response = client.get("/test")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="http://testserver"'
    assert response.headers["content-type"] == "application/problem+json"
