"""The key layout (server/valkey/keys.py): the keys of one session, product, voucher, user or
order share one hash tag, so the scripts that take them together run in one slot. What the
scripts are actually called with is checked over the whole suite (tests/lua_calls.py)."""

from __future__ import annotations


def test_keys_of_one_call_share_one_hash_tag() -> None:
    from server.valkey.keys import Keys, order_bucket

    k = Keys("lc")

    def tag(key: str) -> str:
        return key[key.index("{"):key.index("}") + 1]

    oid = "ord_" + "a" * 20
    groups = [
        [*k.room("s1"), k.pin_log("s1"), k.counters("s1"), k.presence("s1"),
         k.session_applied("s1"), k.auction("s1", "a1"), k.auction_bids("s1", "a1"),
         k.giveaway("s1", "g1"), k.giveaway_entrants("s1", "g1"), k.joined("s1")],
        [k.product("p1"), k.deals("p1"), k.rates("p1"), k.reservations("p1"),
         k.product_applied("p1"), k.product_sessions("p1"), k.waitlist("p1"), k.holds("p1")],
        [k.voucher("V1"), k.voucher_uses("V1"), k.voucher_log("V1")],
        [k.user_applied("u1"), k.user_orders("u1"), k.cart("u1"), k.touches("u1"),
         k.user_channel("u1"), k.ledger("u1"), k.balance("u1")],
        [k.order(oid), k.refunds(oid), k.saga(order_bucket(oid)),
         k.orders_stream(order_bucket(oid))],
    ]
    for group in groups:
        assert len({tag(key) for key in group}) == 1, group
