"""What the service writes to its logs never holds a token."""

from collections.abc import Callable

import httpx
from sqlalchemy.orm import Session

from tests.conftest import LiveServer
from tests.factories import login, make_user


def test_the_access_log_drops_query_strings_where_a_token_may_hide(
    live_server: Callable[..., LiveServer], db: Session
) -> None:
    make_user(db)
    server = live_server()
    with httpx.Client(base_url=server.url) as client:
        pair = login(client)
        token = pair["access_token"]
        assert client.get(f"/test?access_token={token}").status_code == 401
        assert client.post("/account/refresh", json={"refresh_token": "x"}).status_code == 401
    log = server.stop_and_read_log()

    assert "GET /test HTTP/1.1" in log
    assert token not in log
    assert pair["refresh_token"] not in log
