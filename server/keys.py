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

    def session_index(self) -> str:
        return f"{self.prefix}:sessions"

    def channel_session(self, channel: str) -> str | None:
        """The session id a channel name belongs to, or None if it is not ours."""
        head = f"{self.prefix}:{{s:"
        if channel.startswith(head) and channel.endswith("}:events"):
            return channel[len(head) : -len("}:events")]
        return None

    # products
    def product(self, pid: str) -> str:
        return f"{self.prefix}:{{p:{pid}}}:product"

    def product_sessions(self, pid: str) -> str:
        return f"{self.prefix}:{{p:{pid}}}:sessions"
