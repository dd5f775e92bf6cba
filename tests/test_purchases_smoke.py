"""The purchases benchmark runs end to end and every order is attributed and counted once
(correctness only: it asserts no speed)."""

from __future__ import annotations

import asyncio

import pytest

from loadtest.purchases import run


@pytest.mark.e2e
def test_purchases_bench_smoke() -> None:
    result = asyncio.run(run(buyers=20, orders=5, timeout_s=60))
    assert result["orders"] == 100
    assert result["orders_per_s"] > 0
