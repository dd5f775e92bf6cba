"""A node's sold-out facts (server/rooms/sold_out.py): learned from room events, cleared only
when buy_now could get units again."""

from __future__ import annotations

from server.rooms.sold_out import SoldOut


def test_sold_out_facts_clear_only_when_buy_now_could_get_units() -> None:
    facts = SoldOut()
    pin = {"product": {"id": "p1"}, "deal": {"price": 5, "stock_left": 3}}
    facts.on_event("s1", "pinned", pin)
    assert facts.deal_units("s1", "p1") == 3  # what the pin's deal has
    facts.on_event("s1", "deal", {"product": "p1", "status": "open", "stock_left": 2})
    assert facts.deal_units("s1", "p1") == 2 and facts.deal_units("s1", "p2") is None
    facts.on_event("s1", "sold_out", {"product": "p1"})
    assert facts.known("s1", "p1") and not facts.known("s2", "p1")
    # sales elsewhere lower list stock and the deal's own progress says 0 left: still sold out
    facts.on_event("s1", "product", {"id": "p1", "price": 9, "stock": 7})
    facts.on_event("s1", "deal", {"product": "p1", "status": "open", "stock_left": 0})
    facts.on_event("s1", "purchase", {"product": "p1", "qty": 1})
    assert facts.known("s1", "p1")
    # an undone attempt gave the deal a unit back
    facts.on_event("s1", "deal", {"product": "p1", "status": "open", "stock_left": 1})
    assert not facts.known("s1", "p1")
    facts.on_event("s1", "sold_out", {"product": "p1"})
    facts.on_event("s1", "deal", {"product": "p1", "status": "closed", "stock_left": 0})
    assert not facts.known("s1", "p1")  # list price again: the store decides
    # without a deal, list stock is what buy_now sells: a restock clears it, 0 does not
    facts.on_event("s1", "sold_out", {"product": "p1"})
    facts.on_event("s1", "product", {"id": "p1", "price": 9, "stock": 0})
    assert facts.known("s1", "p1")
    facts.on_event("s1", "product", {"id": "p1", "price": 9, "stock": 3})
    assert not facts.known("s1", "p1")
    facts.on_event("s1", "sold_out", {"product": "p1"})
    facts.forget("s1")
    assert not facts.known("s1", "p1")
