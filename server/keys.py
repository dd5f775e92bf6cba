"""Every Valkey key and channel name, in one place.

Each key carries one hash tag: `{s:<session>}` for everything about a session,
`{p:<product>}` for a product, `{u:<user>}` for a buyer or creator. Redis Cluster
would place all of a session's keys in one slot, so each room script stays
single-slot (see docs/architecture.md for the cross-slot purchase sketch).
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def deal(self, sid: str) -> str:
        return f"{self.prefix}:{{s:{sid}}}:deal"

    def rates(self, sid: str) -> str:
        return f"{self.prefix}:{{s:{sid}}}:rates"

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

    # users (buyers, creators, sellers)
    def cart(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:cart"

    def touches(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:touches"

    def idempotency(self, uid: str, key: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:idem:{key}"

    def user_orders(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:orders"

    def ledger(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:ledger"

    def balance(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:balance"

    def user_channel(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:private"

    # orders
    def order(self, oid: str) -> str:
        return f"{self.prefix}:{{o:{oid}}}:order"

    def refunds(self, oid: str) -> str:
        return f"{self.prefix}:{{o:{oid}}}:refunds"

    def orders_stream(self) -> str:
        return f"{self.prefix}:orders"

    def orders_streams(self) -> list[str]:
        """Every stream that carries orders and refunds; a consumer reads all of them."""
        return [self.orders_stream()]

    def open_deals(self) -> str:
        """Sorted set: session id -> its open deal's ends_at (any node closes due deals)."""
        return f"{self.prefix}:deals:open"
