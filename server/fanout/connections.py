"""Every WebSocket connection on this node: made when the Gate accepts one, joined to its
user's private channel, signed in again by `auth`, taken out of its room and its user's
channel when it closes, and closed with 1001 on a drain."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from server import validate as v
from server.auth import Identity, verify_token
from server.clock import now_ms
from server.edge.client import Client, Sink
from server.edge.codecs import Codec
from server.edge.commands import Handler
from server.errors import ApiError, CloseCode, ErrorCode
from server.fanout.hub import Hub
from server.fanout.users import UserChannels
from server.settings import Settings


class Connections:
    def __init__(self, settings: Settings, hub: Hub, users: UserChannels,
                 on_left: Callable[[Client, list[Client]], None]) -> None:
        """`on_left(client, the user's connections here)`: a connection closed."""
        self.settings, self.hub, self.users, self.on_left = settings, hub, users, on_left
        self.secret = settings.signing_secret
        self.clients: dict[int, Client] = {}

    def handlers(self) -> dict[str, Handler]:
        return {"ping": self.ping, "auth": self.auth}

    def connect(self, sink: Sink, codec: Codec, identity: Identity) -> Client:
        s = self.settings
        client = Client(sink, codec, identity, rate=s.rate_per_s, burst=s.rate_burst,
                        abuse_errors=s.abuse_errors, abuse_window_s=s.abuse_window_s,
                        max_buffer=s.send_buffer_bytes, on_evict=self.hub.evicted)
        self.clients[client.id] = client
        self.users.attach(client)
        return client

    def disconnect(self, client: Client) -> None:
        self.on_left(client, self.users.of(client.user))
        self.hub.remove(client)
        self.clients.pop(client.id, None)
        self.users.detach(client)

    def drain(self) -> None:
        """Close every connection with 1001 behind what is already queued for it."""
        for client in list(self.clients.values()):
            client.evict(CloseCode.GOING_AWAY, "server draining")

    async def ping(self, client: Client, args: Mapping[str, Any]) -> Any:
        return {"pong": now_ms()}

    async def auth(self, client: Client, args: Mapping[str, Any]) -> Any:
        identity = verify_token(self.secret, v.req_str(args, "token", max_len=4096))
        if client.identity.sub is not None and identity.sub != client.identity.sub:
            raise ApiError(ErrorCode.FORBIDDEN, "a refreshed token must be for the same user")
        signing_in = client.identity.sub is None
        client.identity = identity
        if signing_in:
            self.users.attach(client)
        return {"sub": identity.sub, "role": identity.role, "exp": identity.exp}
