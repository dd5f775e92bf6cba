"""Scheduled shows and "notify me": `remind {session, on}` and what happens at go-live.

A signed-in viewer asks to be told (remind.lua adds them to the session's reminders set,
only while it is scheduled). When the session goes live, the node that started it sends
every reminded user a private `live {session, title}` event on their own channel
(`{u:<uid>}:private`: every node delivers it to that user's open connections) and appends
one entry per user to the notifications stream for a push service. Both are written by
that node right after `session_status.lua` made the session live (the reminders live in
the session's slot, each user's channel in the user's, and the stream in its own: no one
script can span them); a node that dies in between loses those notifications (at most
once; docs/protocol.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from server import validate as v
from server.auth import require_user
from server.clock import now_ms
from server.edge.client import Client
from server.edge.codecs import JSON
from server.edge.commands import Handler
from server.errors import bad_request
from server.facts import Session
from server.observe.metrics import Reading
from server.valkey.keys import Keys
from server.valkey.scripts import Scripts
from server.valkey.store import Store, text

log = logging.getLogger("livecart.reminders")

CHUNK = 500  # users per pipelined round trip at go-live
NOTIFICATIONS_MAXLEN = 1_000_000  # approximate cap of the notifications stream


class Reminders:
    def __init__(self, store: Store, keys: Keys, scripts: Scripts) -> None:
        self.store, self.keys, self.scripts = store, keys, scripts
        self.sent = 0  # `live` notifications this node sent (for /metrics and tests)


    def readings(self) -> list[Reading]:
        return [Reading("counter", "livecart_live_notifications",
                        "`live` notices sent to reminded users", lambda: self.sent)]

    def handlers(self) -> dict[str, Handler]:
        return {"remind": self.remind}

    async def remind(self, client: Client, args: Mapping[str, Any]) -> Any:
        user = require_user(client.identity)
        sid = v.ident(args, "session", required=False) or client.session
        if sid is None:
            raise bad_request("name the session in `session`", field="session")
        on = args.get("on", True)
        if not isinstance(on, bool):
            raise bad_request("`on` must be true or false", field="on")
        return {"session": sid, "reminded": await self.set(sid, user, on)}

    async def set(self, sid: str, user: str, on: bool) -> bool:
        return await self.scripts.remind(sid, user, on)

    async def went_live(self, session: Session) -> None:
        """Tell every reminded user (private `live` event + a notifications entry)."""
        users = sorted(text(u) for u in
                       await self.store.call("SMEMBERS", self.keys.reminders(session.id)))
        now = now_ms()
        data = {"session": session.id, "title": session.title}
        event = JSON.encode({"t": "live", "ts": now, "d": data})
        for start in range(0, len(users), CHUNK):
            chunk = users[start:start + CHUNK]
            commands: list[tuple[Any, ...]] = []
            for uid in chunk:
                commands.append(("SPUBLISH", self.keys.user_channel(uid), event))
                commands.append(("XADD", self.keys.notifications(), "MAXLEN", "~",
                                 NOTIFICATIONS_MAXLEN, "*", "type", "live", "user", uid,
                                 "session", session.id, "title", session.title, "at", now))
            await self.store.batch(commands)
            self.sent += len(chunk)
        if users:
            log.info("told %d reminded user(s) the show is live", len(users),
                     extra={"session": session.id})
