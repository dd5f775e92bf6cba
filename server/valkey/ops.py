"""The operation names a script takes, one enum per script argument that names one.

Each value is exactly what the script's header lists for that ARGV (valkey/lua/*.lua);
tests/test_script_ops.py checks every enum against its script's header.
"""

from __future__ import annotations

from enum import StrEnum

# session_status.lua ARGV[4]
SessionAction = StrEnum("SessionAction", [("START", "start"), ("END", "end")])
# pin.lua ARGV[4]
PinAction = StrEnum("PinAction", [
    ("PIN", "pin"), ("UNPIN", "unpin"), ("MAY_PIN", "may_pin"), ("MAY_DEAL", "may_deal"),
    ("MAY_UNPIN", "may_unpin"),
])
# moderate.lua ARGV[3]
Moderation = StrEnum("Moderation", [
    ("DELETE", "delete"), ("MUTE", "mute"), ("UNMUTE", "unmute"), ("BAN", "ban"),
    ("UNBAN", "unban"), ("SLOW_MODE", "slow_mode"), ("BLOCKED_WORDS", "blocked_words"),
    ("LINKS", "links"),
])
# auction_close.lua ARGV[4]
AuctionPhase = StrEnum("AuctionPhase", [("DUE", "due"), ("SETTLE", "settle")])
# auction_close.lua ARGV[5]
AuctionOutcome = StrEnum("AuctionOutcome", [("SOLD", "sold"), ("UNSOLD", "unsold")])
# giveaway_close.lua ARGV[4]
GiveawayPhase = StrEnum("GiveawayPhase", [("FREEZE", "freeze"), ("SETTLE", "settle")])
# waitlist.lua ARGV[1]
WaitlistOp = StrEnum("WaitlistOp", [("JOIN", "join"), ("LEAVE", "leave"), ("EXPIRE", "expire")])
# cart_update.lua ARGV[1]
CartOp = StrEnum("CartOp", [("ADD", "add"), ("SET", "set"), ("REMOVE", "remove")])
# reserve.lua / order_place.lua: how a line is priced
ReserveMode = StrEnum("ReserveMode", [
    ("DEAL", "deal"), ("LIST", "list"), ("EXTERNAL", "external"), ("FIXED", "fixed"),
])
# reserve_settle.lua, voucher_settle.lua ARGV[2]
Settle = StrEnum("Settle", [("TAKE", "take"), ("RELEASE", "release")])
# order_step.lua ARGV[2]
OrderStep = StrEnum("OrderStep", [
    ("ABORT", "abort"), ("RELEASED", "released"), ("SETTLED", "settled"),
])
# session_effects.lua ARGV[5]
EffectKind = StrEnum("EffectKind", [("ORDER", "order"), ("REFUND", "refund")])
# order_void.lua ARGV[1]
VoidOp = StrEnum("VoidOp", [("VOID", "void"), ("PEEK", "peek")])
