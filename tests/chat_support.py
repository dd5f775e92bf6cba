"""Shared by the chat, moderation and reminder tests: a show, signed-in clients, and two
real node processes on one Valkey."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest

from server.auth import issue_token
from server.valkey.embedded import EmbeddedValkey
from tests.helpers import SECRET, ServerThread, WsClient, unique_prefix
from tests.procs import NodeProcess


def tok(sub: str, role: str = "viewer", name: str | None = None) -> str:
    return issue_token(SECRET, sub, role, 3600, name)


def show(server: ServerThread, pid: str = "mug", **kwargs: Any) -> str:
    server.product(pid)
    return server.session([pid], **kwargs)


async def joined(url: str, sid: str, user: str | None = None, role: str = "viewer",
                 **join: Any) -> tuple[WsClient, dict[str, Any]]:
    """A connection (signed in as `user`, or anonymous) joined to `sid`; its snapshot."""
    client = await WsClient.connect(url, token=tok(user, role, user.title()) if user else None)
    snap = await client.ok("join", session=sid, **join)
    return client, snap


def chats(client: WsClient, kind: str = "chat") -> list[dict[str, Any]]:
    return [e for e in client.events if e["t"] == kind]


class TwoNodes:
    """Two `livecart serve` processes on one embedded Valkey (one key prefix)."""

    def __init__(self, valkey: EmbeddedValkey, **env: Any) -> None:
        self.valkey = valkey
        prefix = unique_prefix()
        self.nodes = [NodeProcess(valkey.url, prefix, f"chat{i}-{prefix}", **env).start()
                      for i in range(2)]

    def http(self, i: int, method: str, path: str, token: str | None = None,
             json: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.nodes[i].base + path, json=json, headers=headers,
                             timeout=10)

    def show(self, start: bool = True, **extra: Any) -> str:
        r = self.http(0, "POST", "/api/products", tok("seller1", "seller"), {
            "id": "mug", "title": "Mug", "price": 1000, "stock": 50, "commission_bps": 1000})
        assert r.status_code in (201, 409), r.text
        creator = tok("creator1", "creator")
        r = self.http(0, "POST", "/api/sessions", creator,
                      {"kind": "live", "title": "Chat show", "showcase": ["mug"], **extra})
        assert r.status_code == 201, r.text
        sid = str(r.json()["id"])
        if start:
            assert self.http(0, "POST", f"/api/sessions/{sid}/start", creator).status_code == 200
        return sid

    def close(self) -> None:
        for n in self.nodes:
            n.stop()


@pytest.fixture
def two_nodes(valkey: EmbeddedValkey) -> Iterator[TwoNodes]:
    nodes = TwoNodes(valkey, LIVECART_CHAT_RATE_PER_S="1000", LIVECART_CHAT_RATE_BURST="1000",
                     LIVECART_RATE_PER_S="1000", LIVECART_RATE_BURST="1000")
    yield nodes
    nodes.close()
