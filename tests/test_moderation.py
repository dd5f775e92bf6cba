"""Moderation through the real protocol and HTTP API: who may act (creator, moderators,
not viewers), deleting, timeouts expiring, bans closing connections on every node, slow
mode, blocked words, links, the moderator's limits (pins yes, deals/ending no), the audit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.chat_support import TwoNodes, chats, joined, show, tok, two_nodes
from tests.helpers import ServerThread, WsClient, close_code

pytestmark = pytest.mark.anyio
__all__ = ["two_nodes"]
FAST = {"chat_rate_per_s": 1000.0, "chat_rate_burst": 1000, "rate_per_s": 1000.0,
        "rate_burst": 1000}


def moderators(server: ServerThread, sid: str, users: list[str],
               who: str = "creator1") -> int:
    r = server.http("PUT", f"/api/sessions/{sid}/moderators", token=tok(who, "creator"),
                    json=users)
    return r.status_code


async def test_moderators_are_named_by_the_creator_only(server: ServerThread) -> None:
    sid = show(server)
    assert moderators(server, sid, ["mod1", "mod1", "mod2"]) == 200
    assert server.http("GET", f"/api/sessions/{sid}").json()["moderators"] == ["mod1", "mod2"]
    assert moderators(server, sid, ["x"], who="mod1") == 403
    assert moderators(server, sid, ["not an id"]) == 400
    assert moderators(server, "nope", ["x"]) == 404
    assert moderators(server, sid, []) == 200
    assert server.http("GET", f"/api/sessions/{sid}").json()["moderators"] == []


async def test_a_viewer_cannot_moderate(server: ServerThread) -> None:
    sid = show(server)
    ana, _ = await joined(server.ws_url, sid, "ana")
    await ana.ok("chat", text="hello")
    for op, args in [("chat_delete", {"message": 1}), ("mute", {"user": "bo", "seconds": 5}),
                     ("ban", {"user": "bo"}), ("unban", {"user": "bo"}),
                     ("chat_settings", {"slow_mode_s": 5})]:
        assert (await ana.err(op, **args))["code"] == "forbidden", op
    anon, _ = await joined(server.ws_url, sid)
    assert (await anon.err("ban", user="ana"))["code"] == "unauthorized"
    await ana.close()
    await anon.close()


async def test_a_moderator_deletes_a_message(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(**FAST)
    sid = show(server)
    assert moderators(server, sid, ["mod1"]) == 200
    mod, _ = await joined(server.ws_url, sid, "mod1")
    ana, _ = await joined(server.ws_url, sid, "ana")
    pins_only, _ = await joined(server.ws_url, sid, chat=False)
    first = (await ana.ok("chat", text="keep me"))["id"]
    bad = (await ana.ok("chat", text="delete me"))["id"]
    result = await mod.ok("chat_delete", message=bad)
    assert result["id"] == bad and result["cseq"] == 3
    deleted = await ana.wait_event("chat_deleted")
    assert deleted["d"] == {"id": bad} and deleted["cseq"] == 3
    assert (await mod.err("chat_delete", message=bad))["code"] == "not_found"
    assert (await mod.err("chat_delete", message=3))["code"] == "not_found"  # not a message
    late, snap = await joined(server.ws_url, sid, "late")
    assert [m["d"]["id"] for m in snap["chat"]] == [first]
    await pins_only.drain(0.2)
    assert chats(pins_only, "chat_deleted") == []
    for c in (mod, ana, pins_only, late):
        await c.close()


async def test_a_timeout_mutes_then_expires(server: ServerThread) -> None:
    sid = show(server)
    creator, _ = await joined(server.ws_url, sid, "creator1", "creator")
    ana, _ = await joined(server.ws_url, sid, "ana")
    await creator.ok("mute", user="ana", seconds=1)
    err = await ana.err("chat", text="hi")
    assert err["code"] == "muted" and err["remaining_s"] == 1
    assert (await creator.err("mute", user="ana", seconds=0))["field"] == "seconds"
    await asyncio.sleep(1.05)
    await ana.ok("chat", text="back")
    await creator.ok("mute", user="ana", seconds=60)
    assert (await ana.err("chat", text="x"))["remaining_s"] == 60
    await creator.ok("unmute", user="ana")
    await ana.ok("chat", text="free again")
    await creator.close()
    await ana.close()


async def test_moderators_cannot_moderate_the_creator_or_each_other(
        server: ServerThread) -> None:
    sid = show(server)
    assert moderators(server, sid, ["mod1", "mod2"]) == 200
    mod, _ = await joined(server.ws_url, sid, "mod1")
    assert (await mod.err("ban", user="creator1"))["code"] == "forbidden"
    assert (await mod.err("mute", user="mod2", seconds=5))["code"] == "forbidden"
    creator, _ = await joined(server.ws_url, sid, "creator1", "creator")
    await creator.ok("mute", user="mod2", seconds=1)
    await mod.close()
    await creator.close()


async def test_a_ban_closes_the_users_connections_on_every_node(two_nodes: TwoNodes) -> None:
    sid = two_nodes.show()
    a, b = (n.ws_url for n in two_nodes.nodes)
    creator, _ = await joined(a, sid, "creator1", "creator")
    on_a, _ = await joined(a, sid, "troll")
    on_b, _ = await joined(b, sid, "troll", chat=False)
    bystander, _ = await joined(b, sid, "ana")
    await on_a.ok("chat", text="spam")
    await creator.ok("ban", user="troll")
    assert await close_code(on_a) == 4003
    assert await close_code(on_b) == 4003
    assert (await bystander.wait_event("banned"))["d"] == {"user": "troll"}
    again = await WsClient.connect(b, token=tok("troll"))
    assert (await again.err("join", session=sid))["code"] == "banned"
    await creator.ok("unban", user="troll")
    await again.ok("join", session=sid)
    await again.ok("chat", text="sorry")
    for c in (creator, bystander, again):
        await c.close()


async def test_slow_mode(server: ServerThread) -> None:
    sid = show(server)
    creator, _ = await joined(server.ws_url, sid, "creator1", "creator")
    ana, _ = await joined(server.ws_url, sid, "ana")
    settings = await creator.ok("chat_settings", slow_mode_s=1)
    assert settings["slow_mode_s"] == 1
    await ana.ok("chat", text="one")
    err = await ana.err("chat", text="two")
    assert err["code"] == "rate_limited" and err["slow_mode_s"] == 1
    assert 0 < err["retry_after_ms"] <= 1000
    await creator.ok("chat", text="creators are not slowed")
    await creator.ok("chat", text="at all")
    await asyncio.sleep(err["retry_after_ms"] / 1000 + 0.05)
    await ana.ok("chat", text="two")
    await creator.ok("chat_settings", slow_mode_s=0)
    await ana.ok("chat", text="three")
    await creator.close()
    await ana.close()


async def test_blocked_words_are_refused_and_never_shown(
        make_server: Callable[..., ServerThread]) -> None:
    server = make_server(**FAST)
    sid = show(server)
    creator, _ = await joined(server.ws_url, sid, "creator1", "creator")
    ana, _ = await joined(server.ws_url, sid, "ana")
    watcher, _ = await joined(server.ws_url, sid)
    got = await creator.ok("chat_settings", blocked_words=["Scam", "fake deal", "scam"])
    assert got["blocked_words"] == ["scam", "fake deal"]
    for text in ("this is a SCAM!", "such a Fake   deal", "scam"):
        assert (await ana.err("chat", text=text))["code"] == "blocked", text
    await ana.ok("chat", text="scampi is fine, and a fake is fine")
    await watcher.wait_event("chat")
    await watcher.drain(0.2)
    assert [e["d"]["text"] for e in chats(watcher)] == ["scampi is fine, and a fake is fine"]
    assert (await creator.err("chat_settings", blocked_words="scam"))["field"] == "blocked_words"
    assert (await creator.err("chat_settings"))["code"] == "bad_request"
    for c in (creator, ana, watcher):
        await c.close()


async def test_links_are_refused_unless_allowed(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(**FAST)
    sid = show(server)
    assert moderators(server, sid, ["mod1"]) == 200
    mod, _ = await joined(server.ws_url, sid, "mod1")
    ana, _ = await joined(server.ws_url, sid, "ana")
    for text in ("see https://evil.example", "www.deals.biz", "go to cheap.shop now"):
        assert (await ana.err("chat", text=text))["code"] == "blocked", text
    await mod.ok("chat", text="official: https://shop.example/mug")
    await mod.ok("chat_settings", links_allowed=True)
    await ana.ok("chat", text="see https://example.com")
    await mod.close()
    await ana.close()


async def test_a_moderator_pins_but_runs_no_deal_and_does_not_end(server: ServerThread) -> None:
    sid = show(server)
    assert moderators(server, sid, ["mod1"]) == 200
    mod, _ = await joined(server.ws_url, sid, "mod1")
    viewer, _ = await joined(server.ws_url, sid, "ana")
    pinned = await mod.ok("pin", product="mug")
    assert pinned["pinned"]["product"]["id"] == "mug"
    await viewer.wait_event("pinned")
    await mod.ok("unpin")
    deal = {"price": 500, "stock": 5, "per_buyer_limit": 1,
            "ends_at": int(time.time() * 1000) + 60_000}
    assert (await mod.err("pin", product="mug", deal=deal))["code"] == "forbidden"
    assert (await mod.err("end"))["code"] == "forbidden"
    assert (await viewer.err("pin", product="mug"))["code"] == "forbidden"
    r = server.http("PUT", f"/api/sessions/{sid}/rates", token=tok("mod1", "creator"),
                    json={"mug": 2000})
    assert r.status_code == 403
    assert server.http("POST", f"/api/sessions/{sid}/end",
                       token=tok("mod1", "creator")).status_code == 403
    await mod.close()
    await viewer.close()


async def test_every_action_is_in_the_report_audit(server: ServerThread) -> None:
    sid = show(server)
    assert moderators(server, sid, ["mod1"]) == 200
    mod, _ = await joined(server.ws_url, sid, "mod1")
    ana, _ = await joined(server.ws_url, sid, "ana")
    msg = (await ana.ok("chat", text="hi"))["id"]
    await mod.ok("chat_delete", message=msg)
    await mod.ok("mute", user="ana", seconds=30)
    await mod.ok("ban", user="bo")
    await mod.ok("unban", user="bo")
    await mod.ok("chat_settings", slow_mode_s=3, links_allowed=False)
    report = server.http("GET", f"/api/sessions/{sid}/report", token=tok("creator1", "creator"))
    audit = report.json()["moderation"]
    assert [(a["by"], a["action"]) for a in audit] == [
        ("creator1", "moderators"), ("mod1", "delete"), ("mod1", "mute"), ("mod1", "ban"),
        ("mod1", "unban"), ("mod1", "slow_mode"), ("mod1", "links")]
    assert audit[2]["target"] == "ana" and audit[2]["value"] == "30"
    assert all(isinstance(a["at"], int) for a in audit)
    await mod.close()
    await ana.close()
