"""Chat and its moderation: the `chat` op, moderators and moderation ops, their audit.

Every rule for one message (session live, ban, timeout, blocked words, links, slow mode,
the per-user rate across nodes) is decided in one script, `chat.lua`, that also sequences
the message on the chat lane (`cseq`), stores it in the chat stream and publishes it: one
store call per message. Python only shapes the text (trim, length, control characters)
and extracts what Lua cannot do well on unicode: the casefolded words and whether the
text holds a link. Rights are decided in the scripts (the session's creator, or one of
its moderators), like the creator checks of pins.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from server import validate as v
from server.auth import require_user
from server.edge.client import Client
from server.edge.commands import Handler
from server.errors import bad_request
from server.observe.metrics import Reading
from server.rooms.ops import caller_and_session
from server.rooms.sessions import parse_chat
from server.valkey.keys import Keys
from server.valkey.ops import Moderation
from server.valkey.scripts import Scripts
from server.valkey.store import Store, text

MAX_TEXT = 300
MAX_WORDS = 200  # blocked phrases per session
MAX_WORD = 40
MAX_MODERATORS = 50
MAX_MUTE_S = 7 * 24 * 3600
MAX_SLOW_S = 3600
_WORD = re.compile(r"\w+")
_LINK = re.compile(
    r"(?i)(\b[a-z][a-z0-9+.-]*://|\bwww\.|\b[a-z0-9-]+\.(?:com|net|org|io|co|shop|store|ly|me|"
    r"app|gg|xyz|info|biz|link|site|online|tv|us|uk|de)\b)")


def chat_text(args: Mapping[str, Any]) -> str:
    """The message text: a string, trimmed, 1 to MAX_TEXT characters, no control characters
    (Unicode category Cc: newlines, tabs, NUL, C1) and no lone surrogates."""
    raw = args.get("text")
    if not isinstance(raw, str):
        raise bad_request("`text` must be a string", field="text")
    if len(raw) > 4 * MAX_TEXT:
        raise bad_request(f"`text` must be at most {MAX_TEXT} characters", field="text")
    trimmed = raw.strip()
    for ch in trimmed:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs"):
            raise bad_request("`text` must not contain control characters", field="text",
                              codepoint=ord(ch))
    if not trimmed:
        raise bad_request("`text` must not be empty", field="text")
    if len(trimmed) > MAX_TEXT:
        raise bad_request(f"`text` must be at most {MAX_TEXT} characters", field="text")
    return trimmed


def words_of(value: str) -> str:
    """The casefolded words of a text, joined and surrounded by single spaces (the form
    chat.lua matches blocked phrases in)."""
    return " " + " ".join(_WORD.findall(value.casefold())) + " "


def has_link(value: str) -> bool:
    return _LINK.search(value) is not None


def blocked_words(value: Any) -> list[str]:
    """A blocked-words list: at most MAX_WORDS phrases of word characters, each kept in
    its matching form (casefolded words joined by single spaces)."""
    if not isinstance(value, list) or len(value) > MAX_WORDS:
        raise bad_request(f"`blocked_words` must be a list of at most {MAX_WORDS} strings",
                          field="blocked_words")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or len(item) > MAX_WORD:
            raise bad_request(f"each blocked word is a string of at most {MAX_WORD} characters",
                              field="blocked_words")
        phrase = words_of(item).strip()
        if not phrase:
            raise bad_request("a blocked word must have a letter or digit", field="blocked_words")
        if phrase not in out:
            out.append(phrase)
    return out


def moderator_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_MODERATORS:
        raise bad_request(f"the body must be a list of at most {MAX_MODERATORS} user ids")
    ids: list[str] = []
    for item in value:
        if not v.is_id(item):
            raise bad_request("the body must hold user ids")
        if item not in ids:
            ids.append(str(item))
    return ids


def _flag(args: Mapping[str, Any], name: str) -> bool:
    value = args.get(name)
    if not isinstance(value, bool):
        raise bad_request(f"`{name}` must be true or false", field=name)
    return value


class Chat:
    """The chat ops of the WebSocket protocol, and the HTTP side (moderators, audit)."""

    def __init__(self, store: Store, keys: Keys, scripts: Scripts, *, rate_per_s: float,
                 burst: int, audit_max: int,
                 on_message: Callable[[Client, str, str], None]) -> None:
        self.store, self.keys, self.scripts = store, keys, scripts
        self.rate_per_s, self.burst, self.audit_max = rate_per_s, burst, audit_max
        self.messages = 0  # chat messages this node's commands published (for /metrics)
        # told (client, session, text) of each message this node accepted (giveaway keywords)
        self.on_message = on_message


    def readings(self) -> list[Reading]:
        return [Reading("counter", "livecart_chat_messages",
                        "chat messages published by this node's commands",
                        lambda: self.messages)]

    def handlers(self) -> dict[str, Handler]:
        return {
            "chat": self.chat, "chat_delete": self.delete, "mute": self.mute,
            "unmute": self.unmute, "ban": self.ban, "unban": self.unban,
            "chat_settings": self.settings,
        }

    async def chat(self, client: Client, args: Mapping[str, Any]) -> Any:
        caller = require_user(client.identity)
        if client.session is None or client.joining:
            raise bad_request("join a session first")
        body = chat_text(args)
        head = orjson.dumps({"user": caller, "name": client.identity.display_name(),
                             "text": body})[:-1]
        cseq, _ = await self.scripts.chat(client.session, caller, head, words_of(body),
                                          has_link(body), self.rate_per_s, self.burst)
        self.messages += 1
        self.on_message(client, client.session, body)
        return {"id": cseq, "cseq": cseq}

    async def _moderate(self, client: Client, args: Mapping[str, Any], action: Moderation,
                        target: str = "", value: str = "") -> Any:
        caller, sid = caller_and_session(client, args)
        cseq = await self.scripts.moderate(sid, caller, action, target, value, self.audit_max)
        return {"session": sid, "action": action, "cseq": cseq or None}

    async def delete(self, client: Client, args: Mapping[str, Any]) -> Any:
        message = v.req_int(args, "message", lo=1)  # the message's id (`id` names the command)
        done = await self._moderate(client, args, Moderation.DELETE, str(message))
        return {**done, "id": message}

    async def mute(self, client: Client, args: Mapping[str, Any]) -> Any:
        user = v.req_ident(args, "user")
        seconds = v.req_int(args, "seconds", lo=1, hi=MAX_MUTE_S)
        return {**await self._moderate(client, args, Moderation.MUTE, user, str(seconds)),
                "user": user, "seconds": seconds}

    async def unmute(self, client: Client, args: Mapping[str, Any]) -> Any:
        user = v.req_ident(args, "user")
        return {**await self._moderate(client, args, Moderation.UNMUTE, user), "user": user}

    async def ban(self, client: Client, args: Mapping[str, Any]) -> Any:
        user = v.req_ident(args, "user")
        return {**await self._moderate(client, args, Moderation.BAN, user), "user": user}

    async def unban(self, client: Client, args: Mapping[str, Any]) -> Any:
        user = v.req_ident(args, "user")
        return {**await self._moderate(client, args, Moderation.UNBAN, user), "user": user}

    async def settings(self, client: Client, args: Mapping[str, Any]) -> Any:
        """`slow_mode_s` (0 = off), `blocked_words`, `links_allowed`: each one given is set
        (one audited action each); the reply is the session's chat settings."""
        v.only(args, {"id", "op", "session", "slow_mode_s", "blocked_words", "links_allowed"},
               "chat_settings")
        changes: list[tuple[Moderation, str]] = []
        if args.get("slow_mode_s") is not None:
            changes.append((Moderation.SLOW_MODE, str(v.req_int(args, "slow_mode_s", lo=0,
                                                       hi=MAX_SLOW_S))))
        if args.get("blocked_words") is not None:
            changes.append((Moderation.BLOCKED_WORDS,
                            orjson.dumps(blocked_words(args["blocked_words"])).decode()))
        if args.get("links_allowed") is not None:
            changes.append((Moderation.LINKS, "1" if _flag(args, "links_allowed") else "0"))
        if not changes:
            raise bad_request("name at least one of slow_mode_s, blocked_words, links_allowed")
        caller, sid = caller_and_session(client, args)
        for action, value in changes:
            await self.scripts.moderate(sid, caller, action, "", value, self.audit_max)
        return await self.read_settings(sid)

    async def read_settings(self, sid: str) -> dict[str, Any]:
        row = await self.store.call("HMGET", self.keys.moderation(sid), "slow_s", "words",
                                    "links")
        return {"session": sid, "slow_mode_s": int(row[0] or 0),
                "blocked_words": orjson.loads(row[1]) if row[1] else [],
                "links_allowed": bool(row[2]) and text(row[2]) == "1"}

    async def set_moderators(self, sid: str, caller: str, body: Any) -> list[str]:
        users = moderator_ids(body)
        await self.scripts.set_moderators(sid, caller, users, self.audit_max)
        return users

    async def moderator_list(self, sid: str) -> list[str]:
        return sorted(text(u) for u in
                      await self.store.call("SMEMBERS", self.keys.moderators(sid)))

    async def audit(self, sid: str) -> list[Any]:
        return [orjson.loads(x) for x in
                await self.store.call("LRANGE", self.keys.audit(sid), 0, -1)]

    async def chat_since(self, sid: str, since: int) -> list[tuple[int, bytes]] | None:
        """The chat lane's events after `since` (oldest first), or None when the stream no
        longer reaches back (trimmed past it). Holes left by deleted messages are fine:
        their `chat_deleted` event is in the stream."""
        floor, rows = await self.store.batch([
            ("HGET", self.keys.session(sid), "chat_floor"),
            ("XRANGE", self.keys.chat(sid), f"{since + 1}-0", "+")])
        return parse_chat(rows, since, int(floor or 0))
