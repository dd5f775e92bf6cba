"""The session report: the live funnel per product, GMV, commission, live vs replay,
voucher uses and the discount they gave (attributed orders), and waitlist conversions."""

from __future__ import annotations

from typing import Any

from server.clock import now_ms
from server.counters.room_counters import live_viewers
from server.facts import Session
from server.valkey.keys import Keys
from server.valkey.store import Store, as_dict

PRODUCT_FIELDS = ("impressions", "clicks", "adds", "orders", "units", "gmv", "commission",
                  "gmv_refunded", "commission_clawed_back", "voucher_discount")
WAITLIST_FIELDS = ("wl_offers", "wl_converted")  # in each product's hash


def ratio(num: int, den: int) -> float:
    return round(num / den, 4) if den else 0.0


def build_report(session: Session, counters: dict[str, str], uniques: int, now_ms: int,
                 waitlists: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    """`waitlists`: per showcase product (restock offers, offers bought) — a waitlist
    belongs to its product, so these count every session's."""
    def n(name: str) -> int:
        return int(counters.get(name, 0))

    waits = waitlists or {}
    products: list[dict[str, Any]] = []
    for pid in session.showcase:
        nums = {f: n(f"{f}:{pid}") for f in PRODUCT_FIELDS}
        conversion = {"click_through": ratio(nums["clicks"], nums["impressions"]),
                      "add_to_cart": ratio(nums["adds"], nums["clicks"]),
                      "order": ratio(nums["orders"], nums["clicks"])}
        offers, converted = waits.get(pid, (0, 0))
        products.append({"product": pid, **nums, "conversion": conversion,
                         "waitlist": {"offers": offers, "conversions": converted}})
    return {
        "session": session.id, "status": session.status, "kind": session.kind,
        "viewers": {"now": live_viewers(counters, now_ms), "peak": n("peak_viewers"),
                    "unique": uniques},
        "likes": n("likes"), "pins": n("pins"), "clicks": n("clicks"), "adds": n("adds"),
        "orders": n("orders"), "units": n("units"), "gmv": n("gmv"),
        "gmv_refunded": n("gmv_refunded"), "commission": n("commission"),
        "commission_clawed_back": n("commission_clawed_back"),
        "replay": {"orders": n("replay_orders"), "units": n("replay_units"),
                   "gmv": n("replay_gmv"), "commission": n("replay_commission")},
        "vouchers": {"orders": n("voucher_orders"), "discount": n("voucher_discount")},
        "waitlist": {"offers": sum(o for o, _ in waits.values()),
                     "conversions": sum(c for _, c in waits.values())},
        "products": products,
        "auctions": {"run": n("auctions"), "sold": n("auctions_sold"),
                     "revenue": n("auction_revenue")},
        "giveaways": {"run": n("giveaways"), "entrants": n("giveaway_entrants"),
                      "winners": n("giveaway_winners")},
    }


async def session_report(store: Store, keys: Keys, session: Session) -> dict[str, Any]:
    counters, uniques, *waits = await store.batch([
        ("HGETALL", keys.counters(session.id)),
        ("PFCOUNT", keys.uniques(session.id)),
        *(("HMGET", keys.product(pid), *WAITLIST_FIELDS) for pid in session.showcase),
    ])
    waitlists = {pid: (int(row[0] or 0), int(row[1] or 0))
                 for pid, row in zip(session.showcase, waits, strict=True)}
    return build_report(session, as_dict(counters), int(uniques),
                        now_ms(), waitlists)


def live_stats(counters: dict[str, str], viewers: int) -> dict[str, int]:
    """The creator's `stats` event: the live funnel and money numbers."""
    def n(name: str) -> int:
        return int(counters.get(name, 0))

    return {"viewers": viewers, "peak_viewers": n("peak_viewers"), "likes": n("likes"),
            "clicks": n("clicks"), "adds": n("adds"), "orders": n("orders"),
            "units": n("units"), "gmv": n("gmv"), "commission": n("commission"),
            "gmv_refunded": n("gmv_refunded"),
            "commission_clawed_back": n("commission_clawed_back")}
