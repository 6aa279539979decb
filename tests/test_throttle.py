"""Failed attempts per account: reserved before the verdict, counted only on a verdict."""

import asyncio
from collections.abc import Iterator

import pytest

from app.errors import Throttled
from app.stores.throttle import Throttle

MAX_FAILURES = 3


@pytest.fixture
def throttle(storage_url: str) -> Iterator[Throttle]:
    throttle = Throttle(
        storage_url=storage_url, max_failures=MAX_FAILURES, window_seconds=900, ip_limit=""
    )
    yield throttle
    asyncio.run(throttle.close())


async def _outcome(throttle: Throttle, verdict: str, pause: float = 0.0) -> str:
    try:
        async with throttle.attempt("ada@example.com") as attempt:
            await asyncio.sleep(pause)
            if verdict == "failed":
                await attempt.failed()
            elif verdict == "succeeded":
                await attempt.succeeded()
            elif verdict == "error":
                raise RuntimeError("the database is down")
    except Throttled:
        return "throttled"
    except RuntimeError:
        return "error"
    return verdict


def run(throttle: Throttle, *verdicts: str) -> list[str]:
    async def scenario() -> list[str]:
        outcomes = [await _outcome(throttle, verdict) for verdict in verdicts]
        await throttle.close()
        return outcomes

    return asyncio.run(scenario())


def test_attempts_that_end_in_an_error_count_nothing(throttle: Throttle) -> None:
    outcomes = run(throttle, *["error"] * (MAX_FAILURES * 2), *["failed"] * MAX_FAILURES, "failed")

    assert outcomes == ["error"] * (MAX_FAILURES * 2) + ["failed"] * MAX_FAILURES + ["throttled"]


def test_an_attempt_without_a_verdict_counts_nothing(throttle: Throttle) -> None:
    outcomes = run(throttle, *["undecided"] * (MAX_FAILURES + 2), "failed")

    assert outcomes == ["undecided"] * (MAX_FAILURES + 2) + ["failed"]


def test_a_success_clears_the_count(throttle: Throttle) -> None:
    outcomes = run(throttle, *["failed"] * (MAX_FAILURES - 1), "succeeded", *["failed"] * 2)

    assert "throttled" not in outcomes


def test_concurrent_attempts_cannot_slip_past_the_limit(throttle: Throttle) -> None:
    async def scenario() -> list[str]:
        # Every attempt is in flight before any has a verdict.
        outcomes = await asyncio.gather(
            *(_outcome(throttle, "failed", pause=0.2) for _ in range(MAX_FAILURES + 5))
        )
        await throttle.close()
        return list(outcomes)

    outcomes = asyncio.run(scenario())

    assert sorted(outcomes) == ["failed"] * MAX_FAILURES + ["throttled"] * 5


def test_attempts_released_by_errors_free_their_places_for_concurrent_ones(
    throttle: Throttle,
) -> None:
    async def scenario() -> list[str]:
        errors = [_outcome(throttle, "error", pause=0.1) for _ in range(MAX_FAILURES)]
        first = await asyncio.gather(*errors)
        later = [await _outcome(throttle, "failed") for _ in range(MAX_FAILURES)]
        await throttle.close()
        return [*first, *later]

    assert asyncio.run(scenario()) == ["error"] * MAX_FAILURES + ["failed"] * MAX_FAILURES
