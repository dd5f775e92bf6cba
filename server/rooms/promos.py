"""Show formats beside deals over the WebSocket: `voucher` (the creator shows a voucher card
in the room), `waitlist` / `waitlist_leave` (a signed-in viewer waits for a restock)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server import validate as v
from server.auth import require_user
from server.cart.products import Products
from server.cart.vouchers import Vouchers
from server.cart.waitlists import Waitlists
from server.clock import now_ms
from server.edge.client import Client
from server.edge.commands import Handler
from server.errors import ApiError, ErrorCode, bad_request, forbidden
from server.rooms.sessions import Sessions

CARD_FIELDS = ("code", "seller", "percent_off", "amount_off", "min_spend", "per_buyer",
               "starts_at", "ends_at", "products", "remaining")


class PromoOps:
    def __init__(self, sessions: Sessions, products: Products, vouchers: Vouchers,
                 waitlists: Waitlists) -> None:
        self.sessions, self.products = sessions, products
        self.vouchers, self.waitlists = vouchers, waitlists

    def handlers(self) -> dict[str, Handler]:
        return {"voucher": self.voucher, "waitlist": self.waitlist,
                "waitlist_leave": self.waitlist_leave}

    async def voucher(self, client: Client, args: Mapping[str, Any]) -> Any:
        """The creator shows a voucher card: a `voucher` room event (like a pin)."""
        caller = require_user(client.identity)
        sid = v.ident(args, "session", required=False) or client.session
        if sid is None:
            raise bad_request("join the session (or name it in `session`) first")
        code = v.req_ident(args, "code")
        session = await self.sessions.get(sid)
        if session.creator != caller:
            raise forbidden("only the session creator can show a voucher")
        if session.status != "live":
            raise ApiError(ErrorCode.NOT_LIVE, "session is not live")
        card = await self.vouchers.get(code)
        if card["session"] and card["session"] != sid:
            raise ApiError(ErrorCode.CONFLICT, "the voucher is for another session",
                           voucher=code)
        if card["ends_at"] <= now_ms():
            raise ApiError(ErrorCode.CONFLICT, "the voucher has ended", voucher=code)
        if card["remaining"] == 0:
            raise ApiError(ErrorCode.VOUCHER_USED_UP, "the voucher has no uses left",
                           voucher=code)
        terms = await self.vouchers.terms(code)
        showcase = await self.products.get_many(session.showcase)
        if not any(terms.covers(p.id, p.seller) for p in showcase.values()):
            raise ApiError(ErrorCode.CONFLICT, "the voucher covers no product of this show",
                           voucher=code)
        shown = {k: card[k] for k in CARD_FIELDS}
        seq = await self.sessions.emit(sid, "voucher", shown)
        return {"voucher": shown, "seq": seq}

    async def waitlist(self, client: Client, args: Mapping[str, Any]) -> Any:
        user = require_user(client.identity)
        return await self.waitlists.join(user, v.req_ident(args, "product"))

    async def waitlist_leave(self, client: Client, args: Mapping[str, Any]) -> Any:
        user = require_user(client.identity)
        return await self.waitlists.leave(user, v.req_ident(args, "product"))
