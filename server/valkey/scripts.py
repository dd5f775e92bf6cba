"""One typed function per Lua script: the only place that knows a script's KEYS and ARGV.

Every call passes keys of one hash tag only (see keys.py), so each runs in one slot and,
on a cluster, on one shard. Domain modules call these; none of them builds a KEYS list.
What a purchase or a refund does across slots (several of these calls, each idempotent)
is `saga.py`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from server.valkey.money_scripts import (
    ORDER_PLACE_ARGS,
    ORDER_PLACE_KEYS,
    Begun,
    MoneyScripts,
    Patched,
    Peeked,
    Reserved,
    as_json,
    new_epoch,
    or_empty,
)
from server.valkey.ops import (
    AuctionOutcome,
    AuctionPhase,
    EffectKind,
    GiveawayPhase,
    Moderation,
    PinAction,
    SessionAction,
    VoidOp,
)
from server.valkey.store import text

__all__ = ["ORDER_PLACE_ARGS", "ORDER_PLACE_KEYS", "Begun", "Patched", "Peeked", "Reserved",
           "Scripts", "StreamPatch", "new_epoch"]


@dataclass(frozen=True, slots=True)
class StreamPatch:
    """A change of a session's stream: its URL when `changes_url` (None removes it), its
    clock offset unless `offset_ms` is None."""

    changes_url: bool
    url: str | None
    offset_ms: int | None


class Scripts(MoneyScripts):
    """Every script: the session's slot here (sessions, pins, chat, auctions, giveaways),
    the money path's in MoneyScripts."""

    # sessions (slot {s:<session>}) ------------------------------------------------

    async def create_session(self, sid: str, creator: str, kind: str, title: str,
                             showcase: list[str], created_at: int,
                             scheduled_at: int | None = None, stream_url: str | None = None,
                             stream_clock_offset_ms: int = 0) -> bool:
        return bool(await self.store.run(
            "session_create.lua", [self.keys.session(sid)],
            [sid, creator, kind, title, as_json(showcase), created_at, new_epoch(),
             or_empty(scheduled_at), stream_url or "", stream_clock_offset_ms]))

    async def set_stream(self, sid: str, caller: str, patch: StreamPatch) -> None:
        keep = "-"  # session_stream.lua: leave this field as it is
        await self.store.run("session_stream.lua", [self.keys.session(sid)], [
            caller, (patch.url or "") if patch.changes_url else keep,
            keep if patch.offset_ms is None else patch.offset_ms])

    async def set_status(self, sid: str, action: SessionAction, caller: str,
                         closed_deal: bytes) -> tuple[str, int]:
        status, seq = await self.store.run(
            "session_status.lua", [*self.keys.room(sid), self.keys.pin_log(sid)],
            [*self._context(), action, caller, closed_deal])
        return text(status), int(seq)

    async def may_pin(self, sid: str, caller: str, action: PinAction, product: str) -> None:
        """pin.lua's checks alone (MAY_PIN, MAY_DEAL, MAY_UNPIN): raises what the pin
        would; writes nothing."""
        k = self.keys
        await self.store.run_pipelined(
            "pin.lua", [*k.room(sid), k.pin_log(sid), k.counters(sid), k.moderators(sid)],
            [*self._context(), action, caller, "", "", product, "", ""])

    async def pin(self, sid: str, caller: str, stream_ts_ms: int | None, product_json: bytes,
                  product: str, opened_deal: bytes, closed_deal: bytes) -> tuple[Any, int]:
        k = self.keys
        pin, seq = await self.store.run_pipelined(
            "pin.lua", [*k.room(sid), k.pin_log(sid), k.counters(sid), k.moderators(sid)],
            [*self._context(), PinAction.PIN, caller, or_empty(stream_ts_ms), product_json, product,
             opened_deal, closed_deal])
        return orjson.loads(pin), int(seq)

    async def pin_reading_product(self, sid: str, caller: str, stream_ts_ms: int | None,
                                  product: str) -> tuple[Any, int] | None:
        """A pin (no deal) whose script reads the product itself — one Valkey only (the
        product's hash tag is not the session's). None when a deal is pinned in the
        session: nothing was written; close it and pin with `pin`."""
        k = self.keys
        pin, seq = await self.store.run_pipelined(
            "pin.lua", [*k.room(sid), k.pin_log(sid), k.counters(sid), k.moderators(sid),
                        k.product(product)],
            [*self._context(), PinAction.PIN, caller, or_empty(stream_ts_ms), "", product, "", ""])
        if int(seq) < 0:
            return None
        return orjson.loads(pin), int(seq)

    async def unpin(self, sid: str, caller: str, stream_ts_ms: int | None,
                    closed_deal: bytes) -> int:
        k = self.keys
        _, seq = await self.store.run_pipelined(
            "pin.lua", [*k.room(sid), k.pin_log(sid), k.counters(sid), k.moderators(sid)],
            [*self._context(), PinAction.UNPIN, caller, or_empty(stream_ts_ms), "", "", "",
             closed_deal])
        return int(seq)

    async def emit(self, sid: str, event_type: str, data: Any) -> int:
        return int(await self.store.run_pipelined(
            "room_event.lua", self.keys.room(sid),
            [*self._context(), event_type, as_json(data)]))

    async def announce_closed_deal(self, sid: str, deal: bytes) -> int:
        return int(await self.store.run_pipelined(
            "deal_announce.lua", self.keys.room(sid), [*self._context(), deal]))

    async def room_tick(self, calls: list[tuple[str, str, int, int, int]]) -> list[Any]:
        """(session, node id, local viewers, presence ttl ms, likes) per room, pipelined."""
        return await self.store.run_many("room_tick.lua", [
            ([self.keys.presence(sid), self.keys.counters(sid)], [node, count, ttl, likes])
            for sid, node, count, ttl, likes in calls])

    async def session_effects(self, sid: str, effect: str, kind: EffectKind,
                              lines: list[dict[str, Any]], sold_out: list[str]) -> bool:
        k = self.keys
        return bool(await self.store.run_pipelined(
            "session_effects.lua",
            [*k.room(sid), k.counters(sid), k.session_applied(sid)],
            [*self._context(), effect, kind, as_json(lines), as_json(sold_out)]))

    # chat and moderation (slot {s:<session>}) ----------------------------------------

    async def chat(self, sid: str, user: str, data_head: bytes, words: str, has_link: bool,
                   rate_per_s: float, burst: int) -> tuple[int, bytes]:
        """Check every chat rule and publish the message; (cseq, the event JSON)."""
        k = self.keys
        cseq, event = await self.store.run_pipelined(
            "chat.lua", [*k.chat_lane(sid), k.moderation(sid), k.moderators(sid),
                         k.chat_rate(sid)],
            [self.chat_max, user, data_head, words, "1" if has_link else "0", rate_per_s,
             burst])
        return int(cseq), bytes(event)

    async def moderate(self, sid: str, caller: str, action: Moderation, target: str, value: str,
                       audit_max: int) -> int:
        """One moderation action (moderate.lua); the cseq of the event it published or 0."""
        k = self.keys
        return int(await self.store.run(
            "moderate.lua", [*k.chat_lane(sid), k.moderation(sid), k.moderators(sid),
                             k.audit(sid)],
            [self.chat_max, caller, action, target, value, audit_max]))

    async def set_moderators(self, sid: str, caller: str, users: list[str],
                             audit_max: int) -> int:
        k = self.keys
        return int(await self.store.run(
            "moderators_set.lua", [k.session(sid), k.moderators(sid), k.audit(sid)],
            [caller, audit_max, *users]))

    async def remind(self, sid: str, user: str, on: bool) -> bool:
        k = self.keys
        return bool(await self.store.run(
            "remind.lua", [k.session(sid), k.reminders(sid)], [user, "1" if on else "0"]))

    # auctions and giveaways (slot {s:<session>}; order_void in the order's bucket) -----

    async def open_auction(self, sid: str, aid: str, caller: str, product: str,
                           terms: dict[str, int], extend_ms: int) -> tuple[bytes, int]:
        k = self.keys
        data, seq = await self.store.run(
            "auction_open.lua", [*k.room(sid), k.auction(sid, aid), k.counters(sid)],
            [*self._context(), aid, caller, product, terms["start_price"], terms["increment"],
             terms["duration_ms"], terms["reserve_price"], terms["sudden_death"], extend_ms])
        return bytes(data), int(seq)

    async def bid(self, sid: str, aid: str, bidder: str, name: str, amount: int,
                  key: str) -> tuple[dict[str, Any], str, bool]:
        """(the answer, the previous top bidder or '', whether the bid is new)."""
        k = self.keys
        answer, previous, new = await self.store.run_pipelined(
            "auction_bid.lua", [*k.room(sid), k.auction(sid, aid), k.auction_bids(sid, aid)],
            [*self._context(), bidder, name, amount, key])
        return orjson.loads(answer), text(previous), bool(new)

    async def close_auction(self, sid: str, aid: str, phase: AuctionPhase,
                            outcome: AuctionOutcome | None = None,
                            order: str = "") -> tuple[str, dict[str, Any]]:
        k = self.keys
        state, auction = await self.store.run(
            "auction_close.lua", [*k.room(sid), k.auction(sid, aid), k.counters(sid)],
            [*self._context(), phase, outcome or "", order])
        return text(state), dict(orjson.loads(auction))

    async def void_order(self, oid: str, op: VoidOp = VoidOp.VOID) -> str:
        return text(await self.store.run("order_void.lua", [self.keys.order(oid)], [op]))

    async def open_giveaway(self, sid: str, gid: str, caller: str, product: str,
                            winners: int, ends_at: int, keyword: str) -> tuple[bytes, int]:
        k = self.keys
        data, seq = await self.store.run(
            "giveaway_open.lua", [*k.room(sid), k.giveaway(sid, gid), k.counters(sid)],
            [*self._context(), gid, caller, product, winners, ends_at, keyword])
        return bytes(data), int(seq)

    async def enter_giveaway(self, sid: str, gid: str, user: str, name: str,
                             joined_until: int) -> tuple[bool, int]:
        k = self.keys
        new, entries = await self.store.run_pipelined(
            "giveaway_enter.lua",
            [k.giveaway(sid, gid), k.giveaway_entrants(sid, gid), k.joined(sid)],
            [user, name, joined_until])
        return bool(new), int(entries)

    async def close_giveaway(self, sid: str, gid: str, phase: GiveawayPhase, arg: bytes | str,
                             names: bytes | str) -> tuple[str, dict[str, Any]]:
        k = self.keys
        state, giveaway = await self.store.run(
            "giveaway_close.lua",
            [*k.room(sid), k.giveaway(sid, gid), k.giveaway_entrants(sid, gid), k.joined(sid),
             k.counters(sid), k.moderators(sid)],
            [*self._context(), phase, arg, names])
        return text(state), dict(orjson.loads(giveaway))
