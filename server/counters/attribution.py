"""Who gets credit for a sale: pure rules, no I/O.

A *touch* (click, cart add/set, buy-now inside a session) is kept per buyer x product with
its session and time. Each purchased line goes to the session of the buyer's last touch on
that product within the window (inclusive). Judged at purchase time:

- `direct`   bought on a connection joined to that session while it is live (or a video)
- `replay`   joined to it after the live session ended (also if the viewer stayed through end)
- `indirect` any other time: after leaving, from another session, an external order
- `none`     no touch in the window, or a self-purchase (buyer is the session's creator)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from server.facts import SessionFacts

Kind = Literal["direct", "replay", "indirect", "none"]


@dataclass(frozen=True, slots=True)
class Touch:
    session: str
    at_ms: int

    @classmethod
    def parse(cls, raw: str) -> Touch | None:
        """A stored touch `"<session>|<ms>"`; None if malformed."""
        session, sep, at = raw.rpartition("|")
        if not sep or not session or not at.isdigit():
            return None
        return cls(session, int(at))


@dataclass(frozen=True, slots=True)
class Attribution:
    kind: Kind
    session: str | None = None
    creator: str | None = None

    def to_wire(self) -> dict[str, str | None]:
        return {"kind": self.kind, "session": self.session, "creator": self.creator}


NONE = Attribution("none")


def in_window(touch: Touch, now_ms: int, window_ms: int) -> bool:
    """A touch exactly `window_ms` old still counts; one from the future (clock skew) too."""
    return now_ms - touch.at_ms <= window_ms


def attribute(buyer: str, touch: Touch | None, session: SessionFacts | None, *,
              now_ms: int, window_ms: int, joined: str | None) -> Attribution:
    """The attribution of one purchased line.

    `joined` is the session the buying connection is joined to (None for HTTP/external).
    `session` describes `touch.session` as it is at purchase time.
    """
    if touch is None or session is None or not in_window(touch, now_ms, window_ms):
        return NONE
    if buyer == session.creator:
        return NONE
    if joined == touch.session:
        if session.kind == "video" or session.status == "live":
            return Attribution("direct", session.id, session.creator)
        if session.status == "ended":
            return Attribution("replay", session.id, session.creator)
    return Attribution("indirect", session.id, session.creator)
