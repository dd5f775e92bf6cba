"""The purchases benchmark runs end to end and every order is attributed and counted once
(correctness only: it asserts no speed)."""

from __future__ import annotations

import asyncio

import pytest

from loadtest.purchases import run


@pytest.mark.e2e
@pytest.mark.parametrize("shards", [0, 3])
def test_purchases_bench_smoke(shards: int) -> None:
    result = asyncio.run(run(buyers=20, orders=5, timeout_s=60, shards=shards, products=6,
                             pins=20))
    assert result["orders"] == 100
    assert result["orders_per_s"] > 0
    assert len(result["valkey_us_per_order_by_shard"]) == max(1, shards)
