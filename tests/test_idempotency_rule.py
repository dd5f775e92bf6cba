"""Issue 26 item 5: one idempotency rule, one implementation (server/valkey/lua/lib/
idempotency.lua), the same answer from every script that applies it.

For each state of an idempotency key's order record — none, pending, failed (not yet
released), released, committed, void — and a request with the same or another
fingerprint, docs/protocol.md ("Orders and idempotency") documents one answer:

    new      place it (attempt n + 1)
    join     the attempt in flight is this request's: drive it, its outcome is the answer
    release  release the failed attempt's reservations, then place it (attempt n + 1)
    replay   the committed order
    conflict `conflict`: the key names another request

order_begin.lua (the saga's step 0, every store), order_place.lua (the one-script order,
one Valkey: `saga` stands for join and release — the saga drives them) and order_peek.lua
(the storm path's read) must all give it, through the real store; and a request through
`Saga.place` must end as the table says on both stores (order_place.lua on one Valkey,
order_begin.lua on the cluster)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from server.cart.saga import Saga, Timing
from server.errors import ApiError, ErrorCode
from server.signals import Signal
from server.valkey.embedded import EmbeddedValkey
from server.valkey.keys import Keys
from server.valkey.scripts import Scripts
from server.valkey.store import Store
from tests.helpers import ServerThread, unique_prefix

pytestmark = pytest.mark.anyio

STATES = ["none", "pending", "failed", "released", "committed", "void"]
SAME, OTHER = "fp-same", "fp-other"

# the documented table: (state, same fingerprint?) -> answer
RULE = {
    ("none", True): "new", ("none", False): "new",
    ("pending", True): "join", ("pending", False): "conflict",
    ("failed", True): "release", ("failed", False): "release",
    ("released", True): "new", ("released", False): "new",
    ("committed", True): "replay", ("committed", False): "conflict",
    ("void", True): "conflict", ("void", False): "conflict",
}
CELLS = [(state, same) for state in STATES for same in (True, False)]


def cell_id(cell: tuple[str, bool]) -> str:
    return f"{cell[0]}-{'same' if cell[1] else 'other'}"


def plan(buyer: str, qty: int = 1) -> dict[str, Any]:
    return {"op": "buy_now", "buyer": buyer, "currency": "USD", "room": "", "total": None,
            "lines": [{"product": "p1", "qty": qty, "seen": None, "session": None,
                       "attribution": "none", "creator": ""}],
            "touch": None, "sold_out_rooms": {}}


def far() -> int:
    return int(time.time() * 1000) + 3_600_000  # no sweep drives these attempts meanwhile


async def make_state(scripts: Scripts, saga_place: Any, oid: str, state: str) -> None:
    """Bring `oid`'s record to `state`, its request fingerprint SAME."""
    body = orjson.dumps(plan("b1"))
    if state == "none":
        return
    if state == "void":
        assert await scripts.void_order(oid, "void") == "void"
        return
    if state == "committed":
        placed = await saga_place(oid, SAME, plan("b1"))
        assert placed.new
        return
    begun = await scripts.begin_order(oid, SAME, body, far())
    assert begun.status == "new"
    if state in ("failed", "released"):
        assert await scripts.order_step(oid, "abort", begun.attempt) == "failed"
    if state == "released":
        assert await scripts.order_step(oid, "released", begun.attempt) == "released"


@pytest.fixture
async def standalone(valkey: EmbeddedValkey) -> AsyncIterator[tuple[Store, Keys, Scripts]]:
    store = Store(valkey.url, timeout_s=2.0, cluster=False)
    await store.open()
    await store.load_all()
    keys = Keys(unique_prefix())
    await store.call("HSET", keys.product("p1"), "id", "p1", "price", 1000, "stock", 1000,
                     "commission_bps", 1000, "seller", "seller1")
    yield store, keys, Scripts(store, keys, 1000, 600_000)
    await store.close()


def bare_saga(store: Store, keys: Keys, scripts: Scripts) -> Saga:
    """A saga with no node around it: nobody listens to what it announces."""
    return Saga(store, keys, scripts, Timing(5000, 2000), deal_closed=Signal("deal_closed"),
                cart_left=Signal("cart_left"), released=lambda product: None)


def _oid(i: int) -> str:
    return f"ord_{i:020x}"


async def _begin_answer(scripts: Scripts, oid: str, fp: str) -> str:
    try:
        begun = await scripts.begin_order(oid, fp, orjson.dumps(plan("b1", 2)), far())
    except ApiError as exc:
        assert exc.code is ErrorCode.CONFLICT, exc
        return "conflict"
    return {"new": "new", "pending": "join", "failed": "release",
            "committed": "replay"}[begun.status]


async def _place_answer(scripts: Scripts, oid: str, fp: str) -> str:
    [got] = await scripts.place_orders([(oid, fp, plan("b1", 2), "deal")])
    if isinstance(got, ApiError):
        assert got.code is ErrorCode.CONFLICT, got
        return "conflict"
    return {"new": "new", "saga": "saga", "committed": "replay"}[got[0]]


async def _peek_answer(scripts: Scripts, oid: str, fp: str) -> str:
    [peeked] = await scripts.peek_orders([oid], [fp])
    return peeked.answer


async def test_every_script_gives_the_documented_answer(
        standalone: tuple[Store, Keys, Scripts]) -> None:
    """order_begin.lua, order_place.lua and order_peek.lua on the same states (one
    Valkey: order_place.lua runs only there)."""
    store, keys, scripts = standalone

    async def saga_place(oid: str, fp: str, p: dict[str, Any]) -> Any:
        return await bare_saga(store, keys, scripts).place(oid, fp, p)

    wrong = []
    i = 0
    for state, same in CELLS:
        fp = SAME if same else OTHER
        want = RULE[(state, same)]
        for ask in (_begin_answer, _place_answer, _peek_answer):
            i += 1
            oid = _oid(i)
            await make_state(scripts, saga_place, oid, state)
            got = await ask(scripts, oid, fp)
            expect = "saga" if ask is _place_answer and want in ("join", "release") else want
            if got != expect:
                wrong.append((state, "same" if same else "other", ask.__name__, got, expect))
    assert not wrong, wrong


async def test_the_peek_gives_the_rule_on_both_stores(valkey_url: str) -> None:
    """order_peek.lua (the answer a storm's late buyer gets without a script of its own)
    gives the rule on a cluster too: conflict with the rule's error, replay with the order."""
    store = Store(valkey_url, timeout_s=2.0, cluster=None)
    await store.open()
    await store.load_all()
    keys = Keys(unique_prefix())
    scripts = Scripts(store, keys, 1000, 600_000)
    await store.call("HSET", keys.product("p1"), "id", "p1", "price", 1000, "stock", 1000,
                     "commission_bps", 1000, "seller", "seller1")
    saga = bare_saga(store, keys, scripts)
    try:
        for i, (state, same) in enumerate(CELLS):
            oid = _oid(1000 + i)
            await make_state(scripts, saga.place, oid, state)
            [peeked] = await scripts.peek_orders([oid], [SAME if same else OTHER])
            assert peeked.answer == RULE[(state, same)], (state, same, peeked)
            if peeked.answer == "replay":
                assert orjson.loads(peeked.order)["id"] == oid
            if peeked.answer == "conflict":
                assert peeked.error is not None and peeked.error.code is ErrorCode.CONFLICT
                assert peeked.error.message == "idempotency key reused with a different request"
            else:
                assert peeked.error is None
    finally:
        await store.close()


@pytest.mark.parametrize("cell", CELLS, ids=[cell_id(c) for c in CELLS])
async def test_a_request_ends_as_the_table_says(server: ServerThread,
                                                cell: tuple[str, bool]) -> None:
    """Through the node's own saga (order_place.lua first on one Valkey, order_begin.lua
    on the cluster): every cell ends the same on both stores."""
    state, same = cell
    server.product("p1", stock=100)
    node = server.node
    oid = _oid(7)
    await server.on_loop(make_state(node.scripts, node.saga.place, oid, state))
    fp = SAME if same else OTHER
    want = RULE[cell]
    try:
        placed = await server.on_loop(node.saga.place(oid, fp, plan("b1", 2)))
    except ApiError as exc:
        assert want == "conflict" and exc.code is ErrorCode.CONFLICT, (cell, exc)
        return
    assert want != "conflict", (cell, placed)
    order = placed.order
    if want == "replay":
        assert not placed.new and order["lines"][0]["qty"] == 1
    elif want == "join":  # the attempt in flight was the stored request's (qty 1)
        assert placed.new and order["lines"][0]["qty"] == 1
    else:  # new, or release then new: this request's order (qty 2)
        assert placed.new and order["lines"][0]["qty"] == 2
    # the answer is final: asking again replays it
    again = await server.on_loop(node.saga.place(oid, fp if want != "join" else SAME,
                                                 plan("b1", 2)))
    assert not again.new and again.order["id"] == order["id"]
    sold = await server.store("HGET", node.keys.product("p1"), "sold")
    assert int(sold) == order["lines"][0]["qty"]
