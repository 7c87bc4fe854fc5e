"""`eventually`: the polling helper tests wait with."""

from __future__ import annotations

import pytest

from runmesh.core.testing import eventually


async def test_returns_the_first_truthy_value_of_a_sync_condition() -> None:
    calls: list[int] = []

    def cond() -> list[int] | None:
        calls.append(1)
        return calls if len(calls) >= 3 else None

    assert await eventually(cond, interval=0.001) == [1, 1, 1]


async def test_awaits_an_async_condition() -> None:
    async def cond() -> str:
        return "ready"

    assert await eventually(cond) == "ready"


async def test_an_assertion_in_the_condition_means_not_yet() -> None:
    attempts = 0

    def cond() -> bool:
        nonlocal attempts
        attempts += 1
        assert attempts > 2, "too early"
        return True

    assert await eventually(cond, interval=0.001) is True


async def test_fails_with_the_message_at_the_deadline() -> None:
    def never() -> bool:
        raise AssertionError("still 0 rows")

    with pytest.raises(AssertionError, match=r"no rows \(after 0.05s\): still 0 rows"):
        await eventually(never, timeout=0.05, interval=0.01, message="no rows")
