"""Every Valkey key and channel name, in one place.

Each key carries exactly one hash tag, and every script call passes only keys of one tag,
so each script runs in one hash slot (on a Redis/Valkey Cluster: on one shard):

- `{s:<session>}`  a session: state, history, room channel, counters, presence, effects
- `{p:<product>}`  a product: stock, its deals (per session), its per-session rates,
                   reservations held by orders in flight
- `{u:<user>}`     a buyer or creator: cart, touches, orders, ledger, private channel
- `{v:<code>}`     a voucher: its terms, use counters, uses held by orders in flight
- `{o:<bucket>}`   an order bucket (the first hex digit of the order id): orders, refunds,
                   the bucket's saga index (orders whose cross-slot steps are not done) and
                   the bucket's orders stream for downstream consumers
Three index keys live in slots of their own and are only ever written outside scripts:
the session index, the open-deals index and the waitlist holds index (docs/architecture.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Orders are spread over this many buckets (each its own hash tag, so its own slot): one
# saga index and one orders stream per bucket. Fixed for a deployment: an order's bucket
# is part of where it is stored.
ORDER_BUCKETS = 16


ORDER_ID_RE = re.compile(r"^ord_[0-9a-f]{20}\Z")


def order_bucket(oid: str) -> int:
    """The bucket of an order id `ord_<20 hex digits>`: its first hex digit."""
    return int(oid[4], 16) % ORDER_BUCKETS


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    # sessions
    def session(self, sid: str) -> str:
        return f"{self.prefix}:{{s:{sid}}}:session"

    def history(self, sid: str) -> str:
        return f"{self.prefix}:{{s:{sid}}}:history"

    def channel(self, sid: str) -> str:
        return f"{self.prefix}:{{s:{sid}}}:events"

    def counters(self, sid: str) -> str:
        return f"{self.prefix}:{{s:{sid}}}:counters"

    def presence(self, sid: str) -> str:
        return f"{self.prefix}:{{s:{sid}}}:presence"

    def uniques(self, sid: str) -> str:
        return f"{self.prefix}:{{s:{sid}}}:uniques"

    def pin_log(self, sid: str) -> str:
        return f"{self.prefix}:{{s:{sid}}}:pins"

    def session_applied(self, sid: str) -> str:
        """Set of order/refund effects already applied to this session's counters."""
        return f"{self.prefix}:{{s:{sid}}}:applied"

    def room(self, sid: str) -> list[str]:
        """The KEYS head of every script that emits room events (lib/room.lua)."""
        return [self.session(sid), self.history(sid), self.channel(sid)]

    # chat and moderation (the session's slot; docs/protocol.md "Chat")
    def chat(self, sid: str) -> str:
        """Stream: the chat lane's events (`chat`, `chat_deleted`, `banned`), id `<cseq>-0`."""
        return f"{self.prefix}:{{s:{sid}}}:chat"

    def moderation(self, sid: str) -> str:
        """Hash: `ban:<user>`, `mute:<user>` (until ms), `last:<user>` (slow mode), `slow_s`,
        `words` (JSON list of blocked phrases), `links` ('1' when links are allowed)."""
        return f"{self.prefix}:{{s:{sid}}}:moderation"

    def moderators(self, sid: str) -> str:
        """Set: the session's moderators (user ids)."""
        return f"{self.prefix}:{{s:{sid}}}:moderators"

    def chat_rate(self, sid: str) -> str:
        """Hash: user -> `tokens:stamp_ms`, the per-user chat token bucket in this session."""
        return f"{self.prefix}:{{s:{sid}}}:chat_rate"

    def audit(self, sid: str) -> str:
        """List: moderation actions as JSON `{by, action, target, value, at}`, oldest first."""
        return f"{self.prefix}:{{s:{sid}}}:audit"

    def reminders(self, sid: str) -> str:
        """Set: users who asked to be told when the session goes live."""
        return f"{self.prefix}:{{s:{sid}}}:reminders"

    def chat_lane(self, sid: str) -> list[str]:
        """The KEYS head of every script that emits chat-lane events (lib/chat.lua)."""
        return [self.session(sid), self.chat(sid), self.channel(sid)]

    def notifications(self) -> str:
        """Stream: `live` notifications for a push service (one entry per reminded user);
        its own slot, written outside scripts (docs/protocol.md)."""
        return f"{self.prefix}:notifications"

    def probe_channel(self, node_id: str, k: int = 0) -> str:
        """A node's own pub/sub liveness probe channel (k picks one per shard)."""
        return f"{self.prefix}:{{n:{node_id}:{k}}}:probe"

    def session_index(self) -> str:
        return f"{self.prefix}:sessions"

    def parse_channel(self, channel: str) -> tuple[str, str] | None:
        """("s", session id) or ("u", user id) for one of our channels, else None."""
        for kind, tail in (("s", "}:events"), ("u", "}:private")):
            head = f"{self.prefix}:{{{kind}:"
            if channel.startswith(head) and channel.endswith(tail):
                return kind, channel[len(head) : -len(tail)]
        return None

    # products
    def product(self, pid: str) -> str:
        return f"{self.prefix}:{{p:{pid}}}:product"

    def product_sessions(self, pid: str) -> str:
        return f"{self.prefix}:{{p:{pid}}}:sessions"

    def deals(self, pid: str) -> str:
        """Hash: `s:<session>` -> that session's deal on this product (JSON, open or last);
        `b:<deal id>:<buyer>` -> units that buyer holds in that deal."""
        return f"{self.prefix}:{{p:{pid}}}:deals"

    def rates(self, pid: str) -> str:
        """Hash: session id -> live-exclusive commission rate (bps) of this product."""
        return f"{self.prefix}:{{p:{pid}}}:rates"

    def reservations(self, pid: str) -> str:
        """Hash: `<order id>#<attempt>` -> the units an order holds, took or released."""
        return f"{self.prefix}:{{p:{pid}}}:res"

    def product_applied(self, pid: str) -> str:
        """Set of refunds whose stock already returned to this product."""
        return f"{self.prefix}:{{p:{pid}}}:applied"

    def waitlist(self, pid: str) -> str:
        """Sorted set: user -> place in line (lower first) of users waiting for a restock."""
        return f"{self.prefix}:{{p:{pid}}}:waitlist"

    def holds(self, pid: str) -> str:
        """Hash: user -> JSON {until, batch, res} of the unit a restock holds for them."""
        return f"{self.prefix}:{{p:{pid}}}:holds"

    def hold_index(self) -> str:
        """Sorted set: `<product>/<batch>` -> when a node should next expire that batch's
        holds (ms). Written outside scripts, intent first; any node sweeps due entries."""
        return f"{self.prefix}:holds:due"

    # vouchers
    def voucher(self, code: str) -> str:
        """Hash: the voucher's terms and its counters (used, held, discount_given)."""
        return f"{self.prefix}:{{v:{code}}}:voucher"

    def voucher_uses(self, code: str) -> str:
        """Hash: `<order id>#<attempt>` -> a use (held, taken or released);
        `b:<buyer>` -> that buyer's uses (held + taken)."""
        return f"{self.prefix}:{{v:{code}}}:uses"

    def voucher_log(self, code: str) -> str:
        """List: the voucher's committed uses, newest first (order, buyer, discount, at)."""
        return f"{self.prefix}:{{v:{code}}}:log"

    # users (buyers, creators, sellers)
    def cart(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:cart"

    def cart_version(self, uid: str) -> str:
        """Counter: the cart's version, raised by every change (`v` in `cart` events)."""
        return f"{self.prefix}:{{u:{uid}}}:cart_v"

    def cart_claims(self, uid: str) -> str:
        """Hash: `live` -> the checkout attempt (`<order id>#<n>`) holding the cart, if any;
        `<order id>#<n>` -> that attempt's claim: held | taken | released (cart_claim.lua)."""
        return f"{self.prefix}:{{u:{uid}}}:cart_claims"

    def touches(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:touches"

    def user_orders(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:orders"

    def ledger(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:ledger"

    def balance(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:balance"

    def user_applied(self, uid: str) -> str:
        """Set of order/refund effects already applied to this user (buyer or creator)."""
        return f"{self.prefix}:{{u:{uid}}}:applied"

    def user_channel(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:private"

    # orders
    def order(self, oid: str) -> str:
        return f"{self.prefix}:{{o:{order_bucket(oid)}}}:order:{oid}"

    def refunds(self, oid: str) -> str:
        return f"{self.prefix}:{{o:{order_bucket(oid)}}}:refunds:{oid}"

    def saga(self, bucket: int) -> str:
        """Sorted set: `o:<order id>` / `r:<order id>:<refund id>` -> when a node should
        next drive that order's (or refund's) remaining cross-slot steps (epoch ms)."""
        return f"{self.prefix}:{{o:{bucket}}}:saga"

    def orders_stream(self, bucket: int) -> str:
        return f"{self.prefix}:{{o:{bucket}}}:orders"

    def orders_streams(self) -> list[str]:
        """Every bucket's orders stream: a consumer reads them all (docs/architecture.md)."""
        return [self.orders_stream(b) for b in range(ORDER_BUCKETS)]

    def open_deals(self) -> str:
        """Sorted set: `<session>/<product>/<deal id>` -> ends_at (ms): written before a
        deal opens, removed once it is closed and announced; any node sweeps due ones."""
        return f"{self.prefix}:deals:open"

    # auctions and giveaways (slot {s:<session>}; docs/architecture.md "Auctions and
    # giveaways")
    def auction(self, sid: str, aid: str) -> str:
        """Hash: one auction's terms, status, top bid and bidder, bid count, outcome."""
        return f"{self.prefix}:{{s:{sid}}}:auction:{aid}"

    def auction_bids(self, sid: str, aid: str) -> str:
        """Hash: `<bidder> <idempotency key>` -> the answer an accepted bid got."""
        return f"{self.prefix}:{{s:{sid}}}:auction:{aid}:bids"

    def giveaway(self, sid: str, gid: str) -> str:
        """Hash: one giveaway's terms, status, seed, frozen entrant list and winners."""
        return f"{self.prefix}:{{s:{sid}}}:giveaway:{gid}"

    def giveaway_entrants(self, sid: str, gid: str) -> str:
        """Hash: entrant user id -> display name (one entry per user)."""
        return f"{self.prefix}:{{s:{sid}}}:giveaway:{gid}:entrants"

    def joined(self, sid: str) -> str:
        """Sorted set: signed-in user -> until when a node last saw them joined (ms)."""
        return f"{self.prefix}:{{s:{sid}}}:joined"

    def open_auctions(self) -> str:
        """Sorted set: `<session>/<auction id>` -> ends_at (ms, as last known): written
        before an auction opens, removed once it is settled; any node sweeps due ones."""
        return f"{self.prefix}:auctions:open"

    def open_giveaways(self) -> str:
        """Sorted set: `<session>/<giveaway id>` -> ends_at (ms), like open_auctions."""
        return f"{self.prefix}:giveaways:open"
