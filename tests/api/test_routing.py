"""ServiceRoute decides, once per route, which checks it may run before FastAPI."""

from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.responses import Response

from app.api.deps import AccessClaims, RuntimeDep
from app.api.routing import ServiceRoute
from app.schemas import ProfileUpdate


async def claims_only(claims: AccessClaims) -> Response:
    return Response()


async def claims_to_json(claims: AccessClaims) -> dict[str, Any]:
    return {}


async def claims_and_runtime(claims: AccessClaims, runtime: RuntimeDep) -> Response:
    return Response()


async def runtime_first(runtime: RuntimeDep, claims: AccessClaims) -> Response:
    return Response()


def sync_claims_only(claims: AccessClaims) -> Response:
    return Response()


async def with_body(body: ProfileUpdate, claims: AccessClaims) -> Response:
    return Response()


async def no_bearer(runtime: RuntimeDep) -> Response:
    return Response()


def route_for(endpoint: Any) -> ServiceRoute:
    router = APIRouter(route_class=ServiceRoute)
    router.add_api_route("/x", endpoint, methods=["POST"])
    route = router.routes[0]
    assert isinstance(route, ServiceRoute)
    return route


@pytest.mark.parametrize(
    ("endpoint", "bearer_first", "claims_parameter"),
    [
        pytest.param(claims_only, True, "claims", id="claims-only"),
        pytest.param(claims_to_json, True, None, id="serialized-by-fastapi"),
        pytest.param(claims_and_runtime, True, None, id="another-parameter"),
        # The runtime never refuses: the bearer check is still the first that can.
        pytest.param(runtime_first, True, None, id="runtime-first"),
        pytest.param(sync_claims_only, True, None, id="plain-def"),
        pytest.param(with_body, False, None, id="json-body"),
        pytest.param(no_bearer, False, None, id="no-bearer"),
    ],
)
def test_a_route_checks_the_bearer_early_only_where_no_answer_changes(
    endpoint: Any, bearer_first: bool, claims_parameter: str | None
) -> None:
    route = route_for(endpoint)
    assert route.checks_bearer_first is bearer_first
    assert route.claims_parameter == claims_parameter


def test_a_json_body_route_is_marked_for_the_415_and_a_bodyless_one_is_not() -> None:
    assert route_for(with_body).takes_json
    assert not route_for(claims_only).takes_json
