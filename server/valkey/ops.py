"""The operation names a script takes, one enum per script argument that names one.

Each value is exactly what the script's header lists for that ARGV (valkey/lua/*.lua);
tests/test_script_ops.py checks every enum against its script's header.
"""

from __future__ import annotations

from enum import StrEnum


class SessionAction(StrEnum):  # session_status.lua ARGV[4]
    START = "start"
    END = "end"


class PinAction(StrEnum):  # pin.lua ARGV[4]
    PIN = "pin"
    UNPIN = "unpin"
    MAY_PIN = "may_pin"  # the checks only
    MAY_DEAL = "may_deal"
    MAY_UNPIN = "may_unpin"


class Moderation(StrEnum):  # moderate.lua ARGV[3]
    DELETE = "delete"
    MUTE = "mute"
    UNMUTE = "unmute"
    BAN = "ban"
    UNBAN = "unban"
    SLOW_MODE = "slow_mode"
    BLOCKED_WORDS = "blocked_words"
    LINKS = "links"


class AuctionPhase(StrEnum):  # auction_close.lua ARGV[4]
    DUE = "due"
    SETTLE = "settle"


class AuctionOutcome(StrEnum):  # auction_close.lua ARGV[5]
    SOLD = "sold"
    UNSOLD = "unsold"


class GiveawayPhase(StrEnum):  # giveaway_close.lua ARGV[4]
    FREEZE = "freeze"
    SETTLE = "settle"


class WaitlistOp(StrEnum):  # waitlist.lua ARGV[1]
    JOIN = "join"
    LEAVE = "leave"
    EXPIRE = "expire"


class CartOp(StrEnum):  # cart_update.lua ARGV[1]
    ADD = "add"
    SET = "set"
    REMOVE = "remove"


class ReserveMode(StrEnum):  # reserve.lua / order_place.lua: how a line is priced
    DEAL = "deal"
    LIST = "list"
    EXTERNAL = "external"
    FIXED = "fixed"


class Settle(StrEnum):  # reserve_settle.lua, voucher_settle.lua ARGV[2]
    TAKE = "take"
    RELEASE = "release"


class OrderStep(StrEnum):  # order_step.lua ARGV[2]
    ABORT = "abort"
    RELEASED = "released"
    SETTLED = "settled"


class EffectKind(StrEnum):  # session_effects.lua ARGV[5]
    ORDER = "order"
    REFUND = "refund"


class VoidOp(StrEnum):  # order_void.lua ARGV[1]
    VOID = "void"
    PEEK = "peek"
