"""The chat panel in a real browser: sending and receiving, the pins-only toggle, a muted
viewer's error, and a moderator deleting a message (it disappears for another viewer)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import LiveServer, Pages, wait_until

pytestmark = pytest.mark.browser


def live_session(server: LiveServer, title: str) -> tuple[str, str]:
    sid, token = server.new_session(title)
    server.http("POST", f"/api/sessions/{sid}/start", None, token)
    return sid, token


def say(page: Any, text: str) -> None:
    page.fill("#chat-input", text)
    page.click("#chat-send")


def messages(page: Any) -> list[str]:
    return [str(t).strip() for t in page.locator("#chat-list .chat-text").all_inner_texts()]


def as_user(pages: Pages, server: LiveServer, name: str, sid: str, token: str) -> Any:
    page = pages.open(name, f"/demo/watch?session={sid}&delay_ms=0&token={token}")
    page.wait_for_selector("body[data-conn=open] #showcase li")
    return page


def test_chat_panel_sends_receives_and_goes_pins_only(live_server: LiveServer,
                                                      pages: Pages) -> None:
    sid, _ = live_session(live_server, "Chat panel")
    ana = pages.viewer("ana", sid)
    bo = pages.viewer("bo", sid)
    say(ana, "  is the mug dishwasher safe?  ")
    bo.wait_for_selector("#chat-list .chat-msg")
    assert messages(bo) == ["is the mug dishwasher safe?"]
    wait_until(lambda: messages(ana) == ["is the mug dishwasher safe?"], what="own message")
    assert ana.locator("#chat-input").input_value() == ""

    bo.uncheck("#chat-toggle")  # pins-only: rejoin with chat: false
    bo.wait_for_selector("#chat-panel[data-chat=off]")
    say(ana, "second question")
    wait_until(lambda: messages(ana)[-1:] == ["second question"], what="ana's second message")
    bo.wait_for_timeout(500)
    assert bo.locator("#chat-list .chat-msg").count() == 0
    bo.check("#chat-toggle")  # back on: the snapshot's last messages
    wait_until(lambda: messages(bo) == ["is the mug dishwasher safe?", "second question"],
               what="history after turning chat back on")
    pages.shoot("chat", bo)


def test_a_moderator_deletes_a_message_for_everyone(live_server: LiveServer,
                                                    pages: Pages) -> None:
    sid, creator_token = live_session(live_server, "Moderated chat")
    live_server.http("PUT", f"/api/sessions/{sid}/moderators", ["mod_ann"], creator_token)
    moderator = as_user(pages, live_server, "moderator", sid,
                        live_server.token("mod_ann", "viewer", "Ann (mod)"))
    troll = as_user(pages, live_server, "troll", sid,
                    live_server.token("troll_1", "viewer", "Troll"))
    other = pages.viewer("other", sid)
    moderator.wait_for_selector("#chat-panel[data-moderator=yes]")
    assert other.locator("#chat-panel[data-moderator=yes]").count() == 0
    say(troll, "buy fake mugs elsewhere")
    other.wait_for_selector("#chat-list .chat-msg")
    moderator.wait_for_selector("#chat-list .chat-msg [data-action=delete]")
    assert other.locator("[data-action=delete]").count() == 0  # no controls for viewers
    moderator.click("#chat-list .chat-msg [data-action=delete]")
    other.wait_for_selector("#chat-list .chat-msg", state="detached")
    troll.wait_for_selector("#chat-list .chat-msg", state="detached")
    assert messages(other) == []

    say(troll, "still here")
    moderator.wait_for_selector("#chat-list .chat-msg [data-action=mute]")
    moderator.click("#chat-list .chat-msg [data-action=mute]")
    wait_until(lambda: _muted(troll), what="the troll's timeout")
    assert "timed out" in troll.locator("#chat-error").inner_text()
    pages.shoot("moderator", moderator)


def _muted(page: Any) -> bool:
    say(page, "let me talk")
    page.wait_for_timeout(300)
    return page.locator("#chat-error").is_visible()


def test_the_creator_console_sets_chat_rules_and_moderators(live_server: LiveServer,
                                                            pages: Pages) -> None:
    sid, token = live_session(live_server, "Console rules")
    creator = pages.creator(sid, token)
    viewer = pages.viewer("viewer", sid)
    creator.fill("#mod-words", "scam, fake deal")
    creator.click("#mod-apply")
    creator.wait_for_selector(".toast:has-text('Chat rules applied')")
    creator.fill("#mod-list", "mod_zed, mod_amy")
    creator.click("#mod-save")
    wait_until(lambda: live_server.http("GET", f"/api/sessions/{sid}")["moderators"]
               == ["mod_amy", "mod_zed"], what="moderators saved")
    say(viewer, "this is a SCAM")
    viewer.wait_for_selector("#chat-error:visible")
    assert "allow" in viewer.locator("#chat-error").inner_text()
    say(viewer, "love the mug")
    creator.wait_for_selector("#chat-list .chat-msg [data-action=delete]")
    assert messages(creator) == ["love the mug"]
    pages.shoot("console-chat", creator)


def test_landing_notify_me_on_an_upcoming_show(live_server: LiveServer, pages: Pages) -> None:
    creator = "creator_soon"
    token = live_server.token(creator, "creator", creator)
    session = live_server.http("POST", "/api/sessions", {
        "kind": "live", "title": "Upcoming drop", "showcase": ["demo_mug"],
        "scheduled_at": 4102444800000}, token)
    landing = pages.open("landing", "/")
    card = f".session-card[data-session={session['id']}]"
    landing.wait_for_selector(f"{card} [data-role=notify]")
    assert "Starts" in landing.locator(f"{card} .upcoming").inner_text()
    landing.click(f"{card} [data-role=notify]")
    landing.wait_for_selector(f"{card} [data-role=notify][aria-pressed=true]")
    landing.click(f"{card} [data-role=notify]")
    landing.wait_for_selector(f"{card} [data-role=notify][aria-pressed=false]")
