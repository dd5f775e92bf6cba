"""Every operation name a script takes is one enum (server/valkey/ops.py), and each enum
is exactly what its script's header lists: no value the script does not know, none
missing."""

from __future__ import annotations

import re
from enum import StrEnum

import pytest

from server.valkey import ops
from server.valkey.store import LUA_DIR

SCRIPTS: dict[type[StrEnum], list[str]] = {
    ops.SessionAction: ["session_status.lua"],
    ops.PinAction: ["pin.lua"],
    ops.Moderation: ["moderate.lua"],
    ops.AuctionPhase: ["auction_close.lua"],
    ops.AuctionOutcome: ["auction_close.lua"],
    ops.GiveawayPhase: ["giveaway_close.lua"],
    ops.WaitlistOp: ["waitlist.lua"],
    ops.CartOp: ["cart_update.lua"],
    ops.ReserveMode: ["reserve.lua", "order_place.lua"],
    ops.Settle: ["reserve_settle.lua", "voucher_settle.lua"],
    ops.OrderStep: ["order_step.lua"],
    ops.EffectKind: ["session_effects.lua"],
    ops.VoidOp: ["order_void.lua"],
}


def header(script: str) -> str:
    lines = (LUA_DIR / script).read_text().splitlines()
    return "\n".join(line for line in lines if line.startswith("--"))


def test_every_enum_of_ops_is_checked() -> None:
    enums = {v for v in vars(ops).values()
             if isinstance(v, type) and issubclass(v, StrEnum) and v is not StrEnum}
    assert enums == set(SCRIPTS)


@pytest.mark.parametrize("enum", list(SCRIPTS), ids=lambda e: e.__name__)
def test_each_value_is_in_its_scripts_header(enum: type[StrEnum]) -> None:
    for script in SCRIPTS[enum]:
        text = header(script)
        for value in enum:
            assert re.search(rf"(?<![\w']){value.value}(?![\w'])|'{value.value}'", text), (
                f"{enum.__name__}.{value.name} ({value.value!r}) is not in {script}'s header")


@pytest.mark.parametrize("script", sorted({s for ss in SCRIPTS.values() for s in ss}))
def test_each_script_compares_only_to_known_names(script: str) -> None:
    """The values a script compares an argument with directly are in the enums."""
    known = {value.value for enum, scripts in SCRIPTS.items() if script in scripts
             for value in enum}
    body = (LUA_DIR / script).read_text()
    compared = set(re.findall(r"ARGV\[\d+\]\s*[=~]=\s*'(\w+)'", body))
    assert compared <= known, f"{script} compares with {sorted(compared - known)}"
