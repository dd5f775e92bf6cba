"""Auctions: a creator auctions one unit of a showcase product; signed-in viewers bid.

Every step is one Lua script in the session's slot `{s:<sid>}` (docs/architecture.md,
"Auctions and giveaways"): `auction_open.lua` (one open auction per session),
`auction_bid.lua` (the minimum, the creator's exclusion, anti-sniping, the idempotency of
(bidder, key), the `auction` room event) and `auction_close.lua` (once: `due` stops the
bidding and fixes the winner, `settle` announces the outcome).

Closing spans slots — the winner's order is a purchase saga (`Orders.prize`, order id
derived from the auction id) — so it is driven from the open-auctions index like a deal:
the entry is written before the auction opens and removed once it is settled, every node
sweeps due entries each tick, and every step is idempotent, so any node may close an
auction any number of times and it closes once with at most one order.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from server import validate as v
from server.auth import require_user
from server.cart.orders import Orders
from server.cart.products import Products
from server.clock import now_ms
from server.edge.client import Client
from server.edge.commands import Handler
from server.errors import ApiError, ErrorCode, bad_request, not_found
from server.rooms.sessions import Sessions
from server.valkey.due import DueIndex
from server.valkey.keys import Keys
from server.valkey.ops import AuctionOutcome, AuctionPhase
from server.valkey.scripts import Scripts
from server.valkey.store import Store, as_dict

log = logging.getLogger("livecart.auctions")

MAX_PRICE = 100_000_000  # minor units, as a product's price
MAX_DURATION_S = 24 * 3600

PublishPrivate = Callable[[str, Any, str], Awaitable[None]]



def member(sid: str, aid: str) -> str:
    """An auction's entry in the open-auctions index ("/" is in no id)."""
    return f"{sid}/{aid}"


def joined_session(client: Client) -> str:
    if client.session is None or client.joining:
        raise bad_request("join a session first")
    return client.session


def creator_session(client: Client, args: Mapping[str, Any]) -> str:
    sid = v.ident(args, "session", required=False) or client.session
    if sid is None:
        raise bad_request("join the session (or name it in `session`) first")
    return sid


def public(a: dict[str, Any]) -> dict[str, Any]:
    """An auction as the HTTP API shows it (the `auction` event's fields; never the
    reserve price, nor the bidder's id)."""
    top = int(a.get("top_bid") or 0)
    closed = a.get("status") == "closed"
    return {
        "id": a["id"], "product": a["product"], "status": "closed" if closed else "open",
        "top_bid": top or None, "bidder": a.get("bidder_name") if top else None,
        "ends_at": int(a["ends_at"]), "bids": int(a.get("bids") or 0),
        "start_price": int(a["start_price"]), "increment": int(a["increment"]),
        "reserve_met": top > 0 and top >= int(a.get("reserve") or 0),
        "sudden_death": a.get("sudden_death") == "1",
        "outcome": a.get("outcome") if closed else None,
        "order": (a.get("order") or None) if closed else None,
    }


class Auctions:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts, sessions: Sessions,
                 products: Products, orders: Orders, publish_private: PublishPrivate,
                 extend_s: float, on_order: Callable[[dict[str, Any]], None]) -> None:
        self.store, self.keys, self.scripts = store, keys, scripts
        self.sessions, self.products, self.orders = sessions, products, orders
        self.publish_private = publish_private
        self.extend_ms = int(extend_s * 1000)
        self.on_order = on_order  # told each new prize order (metrics, stock notices)
        self.closings = DueIndex(store, [keys.open_auctions()], "closing auction",
                                 self.close_due)

    def handlers(self) -> dict[str, Handler]:
        return {"auction": self.open, "bid": self.bid}

    # commands ---------------------------------------------------------------------

    async def open(self, client: Client, args: Mapping[str, Any]) -> Any:
        """`auction {product, start_price, increment, duration_s, reserve_price?,
        sudden_death?, session?}` — the session's creator, live."""
        caller = require_user(client.identity)
        sid = creator_session(client, args)
        product_id = v.req_ident(args, "product")
        sudden = args.get("sudden_death", False)
        if not isinstance(sudden, bool):
            raise bad_request("`sudden_death` must be true or false", field="sudden_death")
        terms = {
            "start_price": v.req_int(args, "start_price", lo=1, hi=MAX_PRICE),
            "increment": v.req_int(args, "increment", lo=1, hi=MAX_PRICE),
            "duration_ms": v.req_int(args, "duration_s", lo=1, hi=MAX_DURATION_S) * 1000,
            "reserve_price": v.integer(args, "reserve_price", lo=0, hi=MAX_PRICE,
                                       required=False) or 0,
            "sudden_death": 1 if sudden else 0,
        }
        product = await self.products.find(product_id)
        if product is None:
            raise not_found("product", product_id)
        if product.stock < 1:
            raise ApiError(ErrorCode.SOLD_OUT, "the product has no stock to auction",
                           product=product_id)
        aid = f"auc_{secrets.token_hex(6)}"
        entry = member(sid, aid)
        await self.store.call("ZADD", self.keys.open_auctions(),
                              now_ms() + terms["duration_ms"], entry)  # the intent first
        try:
            data, seq = await self.scripts.open_auction(
                sid, aid, caller, product_id, terms, self.extend_ms)
        except ApiError:
            await self.store.call("ZREM", self.keys.open_auctions(), entry)
            raise
        self.sessions.published += 1
        log.info("auction %s opened on %s", aid, product_id,
                 extra={"session": sid, "product": product_id, "user": caller})
        auction: dict[str, Any] = orjson.loads(data)
        self.closings.arm(member(sid, aid), auction["ends_at"])
        return {"auction": auction, "seq": seq}

    async def bid(self, client: Client, args: Mapping[str, Any]) -> Any:
        """`bid {auction, amount, idempotency_key}` — signed in, joined to its session."""
        buyer = require_user(client.identity)
        sid = joined_session(client)
        aid = v.req_ident(args, "auction")
        amount = v.req_int(args, "amount", lo=1, hi=MAX_PRICE)
        key = v.req_ident(args, "idempotency_key")
        answer, previous, new = await self.scripts.bid(
            sid, aid, buyer, client.identity.display_name(), amount, key)
        if new:
            self.sessions.published += 1
            if previous and previous != buyer:
                with contextlib.suppress(ApiError):  # a notice; the room event has it all
                    await self.publish_private(previous, {
                        "auction": aid, "product": answer["product"],
                        "top_bid": answer["top_bid"], "ends_at": answer["ends_at"]}, "outbid")
            if answer["extended"]:
                self.closings.arm(member(sid, aid), answer["ends_at"])
        return answer

    # reading ----------------------------------------------------------------------

    async def get(self, sid: str, aid: str) -> dict[str, Any]:
        row = as_dict(await self.store.call("HGETALL", self.keys.auction(sid, aid)))
        if not row:
            raise not_found("auction", aid)
        return public(row)

    # closing ----------------------------------------------------------------------

    async def sweep(self) -> int:
        """Close every auction past its (last known) end, whichever node opened it."""
        return await self.closings.sweep()

    async def close_due(self, entry: str) -> str:
        """Drive one open-auctions entry: close it if due (idempotent). Its state after."""
        sid, aid = entry.split("/", 1)
        index = self.keys.open_auctions()
        state, a = await self.scripts.close_auction(sid, aid, AuctionPhase.DUE)
        if state == "absent":  # its opener failed before the auction existed
            await self.store.call("ZREM", index, entry)
            return state
        if state == "open":  # extended by late bids: come back at the new end
            await self.store.call("ZADD", index, "XX", int(a["ends_at"]), entry)
            return state
        if state == "closing":
            state, a = await self._settle(sid, aid, a)
        if state == "closed_now":
            self.sessions.published += 1
            log.info("auction %s closed: %s", aid, a.get("outcome"),
                     extra={"session": sid, "product": a["product"], "order": a.get("order")})
            if a.get("outcome") == "sold":
                with contextlib.suppress(ApiError):
                    await self.publish_private(a["bidder"], {
                        "auction": aid, "product": a["product"], "price": int(a["top_bid"]),
                        "order": a["order"]}, "won")
        if state in ("closed", "closed_now"):
            await self.store.call("ZREM", index, entry)
        return state

    async def _settle(self, sid: str, aid: str,
                      a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The winner's order (or none, when the stock is gone), then the outcome."""
        room = (await self.sessions.get(sid)).facts()
        placed = await self.orders.prize("auction", aid, a["bidder"], room, a["product"],
                                         int(a["top_bid"]))
        if placed is not None and placed.new:
            self.on_order(placed.order)
        if placed is None:
            return await self.scripts.close_auction(sid, aid, AuctionPhase.SETTLE,
                                                    AuctionOutcome.UNSOLD)
        return await self.scripts.close_auction(sid, aid, AuctionPhase.SETTLE,
                                                AuctionOutcome.SOLD, placed.order["id"])
