"""Pure rules: attribution, commission and clawback arithmetic, deal arguments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.cart.deals import parse_deal
from server.counters.attribution import Touch, attribute
from server.errors import ApiError
from server.facts import SessionFacts
from tests.oracle import clawback_step, clawed_back, commission, effective_rate

DAY = 24 * 3600 * 1000
WINDOW = 14 * DAY
NOW = 1_800_000_000_000
LIVE = SessionFacts("s1", "creator", "live", "live")
ENDED = SessionFacts("s1", "creator", "live", "ended")
VIDEO = SessionFacts("s1", "creator", "video", "live")


RECENT = Touch("s1", NOW - 1000)


def attr(buyer: str = "b", touch: Touch | None = RECENT,
         session: SessionFacts | None = LIVE, joined: str | None = "s1") -> str:
    return attribute(buyer, touch, session, now_ms=NOW, window_ms=WINDOW, joined=joined).kind


def test_direct_replay_indirect_none() -> None:
    assert attr() == "direct"
    assert attr(session=VIDEO) == "direct"
    assert attr(session=ENDED) == "replay"
    assert attr(joined=None) == "indirect"
    assert attr(joined="other") == "indirect"
    assert attr(touch=None) == "none"
    assert attr(session=None) == "none"


def test_window_edge_is_inclusive() -> None:
    assert attr(touch=Touch("s1", NOW - WINDOW), joined=None) == "indirect"
    assert attr(touch=Touch("s1", NOW - WINDOW - 1), joined=None) == "none"
    assert attr(touch=Touch("s1", NOW - WINDOW)) == "direct"


def test_self_purchase_is_none_whatever_the_role() -> None:
    assert attr(buyer="creator") == "none"
    assert attr(buyer="creator", joined=None) == "none"
    a = attribute("b", Touch("s1", NOW), LIVE, now_ms=NOW, window_ms=WINDOW, joined="s1")
    assert (a.session, a.creator) == ("s1", "creator")


def test_touch_parse() -> None:
    assert Touch.parse("sess_1|123") == Touch("sess_1", 123)
    assert Touch.parse("bad") is None
    assert Touch.parse("s|x") is None


def test_override_rate_only_when_higher() -> None:
    assert effective_rate(1000, None) == 1000
    assert effective_rate(1000, 1500) == 1500
    assert effective_rate(1000, 500) == 1000


def test_commission_rounds_down() -> None:
    assert commission(5997, 1000) == 599
    assert commission(2331, 1200) == 279
    assert commission(1, 9999) == 0
    with pytest.raises(ValueError):
        commission(-1, 10)


def test_partial_refunds_of_odd_quantities() -> None:
    c, q = 599, 3
    steps = [clawback_step(c, 0, 1, q), clawback_step(c, 1, 2, q), clawback_step(c, 2, 3, q)]
    assert steps == [199, 200, 200] and sum(steps) == c
    assert clawed_back(c, 0, q) == 0
    with pytest.raises(ValueError):
        clawed_back(c, 4, q)


@given(st.integers(0, 10**8), st.integers(0, 10_000), st.integers(1, 99),
       st.lists(st.integers(1, 99), min_size=1, max_size=10))
def test_clawback_in_any_steps_sums_to_the_commission(amount: int, rate: int, qty: int,
                                                      steps: list[int]) -> None:
    c = commission(amount, rate)
    done, total = 0, 0
    for s in steps:
        step = min(s, qty - done)
        if step == 0:
            break
        total += clawback_step(c, done, done + step, qty)
        done += step
    assert 0 <= total <= c
    assert total == clawed_back(c, done, qty)
    if done == qty:
        assert total == c


def test_deal_arguments() -> None:
    ok = parse_deal({"price": 100, "stock": 5, "per_buyer_limit": 1, "ends_at": NOW + 1000},
                    now_ms=NOW)
    assert ok["stock"] == 5
    for bad in ({"price": 100, "stock": 5, "per_buyer_limit": 1, "ends_at": NOW},
                {"price": 0, "stock": 5, "per_buyer_limit": 1, "ends_at": NOW + 1},
                {"price": 1, "stock": 0, "per_buyer_limit": 1, "ends_at": NOW + 1},
                {"price": 1, "stock": 1, "per_buyer_limit": 1, "ends_at": NOW + 2 * DAY},
                {"price": 1, "stock": 1, "per_buyer_limit": 1, "ends_at": NOW + 1, "x": 1},
                "nope"):
        with pytest.raises(ApiError):
            parse_deal(bad, now_ms=NOW)
