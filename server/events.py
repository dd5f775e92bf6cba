"""Every event type name on the wire: the `t` of an event frame (docs/protocol.md, Events).

One enum, like the error and close codes: a module that tests or builds an event names it
here. A `StrEnum` member is its string (`EventType.PINNED == "pinned"`, same hash), so it
compares with a decoded event's `t` and serialises as the plain name.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    # the room lane: sequenced by `seq`, in the session's history
    SESSION = "session"
    PINNED = "pinned"
    UNPINNED = "unpinned"
    DEAL = "deal"
    SOLD_OUT = "sold_out"
    PRODUCT = "product"
    AUCTION = "auction"
    GIVEAWAY = "giveaway"
    VOUCHER = "voucher"
    PURCHASE = "purchase"
    # the chat lane: sequenced by `cseq`, in the session's chat stream
    CHAT = "chat"
    CHAT_DELETED = "chat_deleted"
    BANNED = "banned"
    # a node's own notice on the chat lane: chat-lane events were lost, go on after `cseq`
    CHAT_GAP = "chat_gap"
    # unsequenced, to a room
    COUNTERS = "counters"
    # private: to every connection of one user (or, `stats`, the session's creator)
    CART = "cart"
    ORDER = "order"
    OUTBID = "outbid"
    WON = "won"
    RESTOCKED = "restocked"
    LIVE = "live"
    STATS = "stats"
