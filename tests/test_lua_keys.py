"""lua/lib/keys.lua and server/keys.py must name every key the same way."""

from __future__ import annotations

import asyncio

from server.keys import Keys
from server.store import Store, load_source, text

PAIRS = {  # Lua function -> (Python method, argument)
    "k_session": ("session", "S1"), "k_history": ("history", "S1"),
    "k_channel": ("channel", "S1"), "k_counters": ("counters", "S1"),
    "k_presence": ("presence", "S1"), "k_pin_log": ("pin_log", "S1"),
    "k_deal": ("deal", "S1"), "k_rates": ("rates", "S1"), "k_product": ("product", "P1"),
    "k_cart": ("cart", "U1"), "k_touches": ("touches", "U1"),
    "k_user_orders": ("user_orders", "U1"), "k_ledger": ("ledger", "U1"),
    "k_balance": ("balance", "U1"), "k_user_channel": ("user_channel", "U1"),
    "k_order": ("order", "O1"), "k_refunds": ("refunds", "O1"),
}


def test_lua_and_python_key_names_agree(valkey_url: str) -> None:
    keys = Keys("pfx")
    names = list(PAIRS)
    calls = ", ".join(f"{fn}('{PAIRS[fn][1]}')" for fn in names)
    script = "local PREFIX = ARGV[1]\n" + load_source("lib/keys.lua") + \
        f"\nreturn {{{calls}, k_idem('U1', 'k'), k_orders_stream(), k_open_deals()}}"

    async def run() -> list[str]:
        store = Store(valkey_url)
        try:
            return [text(x) for x in await store.redis.eval(script, 0, "pfx")]
        finally:
            await store.close()

    got = asyncio.run(run())
    expected = [getattr(keys, PAIRS[fn][0])(PAIRS[fn][1]) for fn in names]
    expected += [keys.idempotency("U1", "k"), keys.orders_stream(), keys.open_deals()]
    assert got == expected
