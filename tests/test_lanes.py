"""The sequenced lane (server/fanout/lane.py) on its own and in the hub: repair of a gap,
epochs (an unrepairable gap, a store that went back), and the two gap policies — the
room lane closes the viewers left behind (4008), the chat lane tells them (`chat_gap`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from server.edge.client import Client
from server.edge.codecs import JSON, MSGPACK
from server.errors import CloseCode
from server.events import EventType
from server.fanout import lane as lane_module
from server.fanout.hub import Hub
from server.fanout.lane import REJOIN, SKIP, GapPolicy, HistoryFetch, Lane, LaneKind
from tests.helpers import FakeSink
from tests.test_chat import _payloads

pytestmark = pytest.mark.anyio

Stored = dict[int, bytes]


def ev(n: int, field: str = "seq", ts: int | None = None, t: str = "pinned") -> bytes:
    """An event numbered `n`; its `ts` grows with `n` unless given."""
    return orjson.dumps({"t": t, field: n, "ts": 1000 + n if ts is None else ts, "d": {}})


def history(stored: Stored, asked: list[int] | None = None) -> HistoryFetch:
    """A fetch over `stored` that answers None when it does not start right after `since`
    (as the store's own parsers do)."""

    async def fetch(sid: str, since: int) -> list[tuple[int, bytes]] | None:
        if asked is not None:
            asked.append(since)
        rows = sorted((n, data) for n, data in stored.items() if n > since)
        if rows and rows[0][0] != since + 1:
            return None
        return rows

    return fetch


class Rig:
    """One lane with its pending events collected as a flush would send them."""

    def __init__(self, policy: GapPolicy, fetch: HistoryFetch, field: str = "seq") -> None:
        self.field = field
        self.sent: list[int] = []
        self.lane = Lane(LaneKind(field, fetch, policy), "s1", lambda: None, self.flush)

    def flush(self) -> None:
        self.sent.extend(n for n, _data, _obj in self.lane.take())

    def joined(self, number: int, codec: Any = JSON) -> Client:
        client = Client(FakeSink(), codec)
        self.lane.add(client)
        assert self.lane.activate(client, number, []) == []
        return client

    def event(self, n: int, ts: int | None = None) -> None:
        data = ev(n, self.field, ts)
        self.lane.receive(data, orjson.loads(data))

    async def settle(self) -> None:
        for _ in range(50):
            await asyncio.sleep(0.005)
            if not self.lane.repairing:
                break
        self.flush()


def told(client: Client) -> list[dict[str, Any]]:
    """The events written to a client directly (notices), in order."""
    return _payloads(client.sink.written)  # type: ignore[attr-defined]


def closed(client: Client) -> list[tuple[int, str]]:
    return list(client.sink.closed)  # type: ignore[attr-defined]


async def test_a_gap_is_repaired_from_the_history_and_nobody_is_told() -> None:
    asked: list[int] = []
    rig = Rig(REJOIN, history({3: ev(3), 4: ev(4)}, asked))
    viewer = rig.joined(1)
    rig.event(2)
    rig.event(5)  # 3 and 4 are missing: read after 2
    rig.event(4)  # arrives during the repair: held, then dropped as a repeat
    await rig.settle()
    assert asked == [2]
    assert rig.sent == [2, 3, 4, 5]
    assert closed(viewer) == [] and rig.lane.epoch == 0


@pytest.mark.parametrize("policy", [REJOIN, SKIP], ids=["room", "chat"])
async def test_an_unrepairable_gap_leaves_behind_only_the_viewers_it_took_events_from(
        policy: GapPolicy) -> None:
    field = "seq" if policy is REJOIN else "cseq"
    rig = Rig(policy, history({}), field)
    old = rig.joined(0)
    rig.event(1)
    rig.event(2)
    # a viewer joins on the store's newer state (events 3..5 never reached this node)
    fresh = rig.joined(5, MSGPACK)
    rig.event(6)
    await rig.settle()
    assert rig.sent == [1, 2, 6]
    assert rig.lane.epoch == 1 and rig.lane.since == 5
    assert closed(fresh) == [] and fresh.sink.written == []  # type: ignore[attr-defined]
    if policy is REJOIN:
        assert closed(old) == [(CloseCode.SLOW_CONSUMER, "missed events: rejoin")]
        assert old.id not in rig.lane.members
    else:  # chat: never closed; told where the lane goes on, and kept
        assert closed(old) == []
        assert told(old) == [{"t": EventType.CHAT_GAP, "cseq": 5,
                              "ts": told(old)[0]["ts"], "d": {"after": 2}}]
        assert rig.lane.members[old.id] == (old, 5)


@pytest.mark.parametrize("policy", [REJOIN, SKIP], ids=["room", "chat"])
async def test_a_store_that_went_back_starts_a_new_epoch_at_the_join_that_shows_it(
        policy: GapPolicy) -> None:
    rig = Rig(policy, history({}))
    old = rig.joined(0)
    for n in (1, 2, 3):
        rig.event(n)
    rig.flush()
    # the store restarts without its last writes (it is at 1 again); a device joins on it
    device = Client(FakeSink(), JSON)
    rig.lane.add(device)
    assert rig.lane.activate(device, 1, [(1, ev(1))]) == [(1, ev(1), None)]
    assert rig.lane.epoch == 1 and rig.lane.last == 1
    rig.event(2, ts=5000)  # the new 2: not a repeat of the old one
    rig.event(2, ts=5000)  # a real repeat
    rig.flush()
    assert rig.sent == [1, 2, 3, 2]
    assert closed(device) == [] and device.id in rig.lane.members
    if policy is REJOIN:
        assert closed(old) == [(CloseCode.SLOW_CONSUMER, "missed events: rejoin")]
    else:
        assert closed(old) == [] and [e["d"]["after"] for e in told(old)] == [3]
        assert told(old)[0]["seq"] == 1


async def test_a_store_that_went_back_is_seen_on_an_event_newer_than_the_lane() -> None:
    rig = Rig(SKIP, history({}), "cseq")
    viewer = rig.joined(0)
    for n in (1, 2, 3, 4):
        rig.event(n)
    rig.event(2)  # an overlap (its ts is old): dropped, nobody told
    assert told(viewer) == []
    rig.event(3, ts=9000)  # numbered again, newer than anything passed on
    rig.flush()
    assert rig.sent == [1, 2, 3, 4, 3]
    assert [(e["cseq"], e["d"]["after"]) for e in told(viewer)] == [(2, 4)]
    assert rig.lane.epoch == 1 and closed(viewer) == []


@pytest.mark.parametrize("policy", [REJOIN, SKIP], ids=["room", "chat"])
async def test_joiners_caught_in_a_new_epoch_are_judged_by_their_snapshot(
        policy: GapPolicy) -> None:
    rig = Rig(policy, history({}))
    rig.joined(0)
    behind, ahead = Client(FakeSink(), JSON), Client(FakeSink(), JSON)
    rig.lane.add(behind)
    rig.lane.add(ahead)
    rig.event(1)
    rig.event(6)  # 2..5 are gone: the lane goes on after 5
    await rig.settle()
    rig.event(7)
    rig.flush()
    got_ahead = rig.lane.activate(ahead, 5, [])
    assert got_ahead is not None and [n for n, _d, _o in got_ahead] == [6, 7]
    got_behind = rig.lane.activate(behind, 1, [])
    if policy is REJOIN:
        assert got_behind is None
        assert closed(behind) == [(CloseCode.SLOW_CONSUMER, "missed events: rejoin")]
    else:
        assert got_behind is not None
        notice = orjson.loads(got_behind[0][1])
        assert (notice["t"], notice["seq"], notice["d"]) == ("chat_gap", 5, {"after": 1})
        assert [n for n, _d, _o in got_behind[1:]] == [6, 7]


async def test_a_failing_store_is_asked_again_before_events_count_as_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lane_module, "REPAIR_RETRY_S", 0.001)
    calls = {"n": 0}

    async def flaky(sid: str, since: int) -> list[tuple[int, bytes]] | None:
        calls["n"] += 1
        if calls["n"] < lane_module.REPAIR_TRIES:
            raise ConnectionError("store restarting")
        return [(2, ev(2))]

    rig = Rig(REJOIN, flaky)
    viewer = rig.joined(1)
    rig.event(3)
    await rig.settle()
    assert rig.sent == [2, 3] and closed(viewer) == []
    assert calls["n"] == lane_module.REPAIR_TRIES


async def test_a_resync_that_finds_events_gone_closes_room_viewers_behind_at_once() -> None:
    asked: list[int] = []
    stored = {4: ev(4), 5: ev(5)}  # 3 is gone
    rig = Rig(REJOIN, history(stored, asked))
    old = rig.joined(2)
    fresh = rig.joined(5)  # joined on the store's state after the loss
    rig.lane.resync()
    await rig.settle()
    assert asked == [2]
    assert closed(old) == [(CloseCode.SLOW_CONSUMER, "missed events: rejoin")]
    assert rig.lane.reached(5)  # a joiner does not wait for what is gone
    rig.event(6)  # shows where the lane goes on: no second read
    rig.flush()
    assert asked == [2] and rig.sent == [6] and closed(fresh) == []


def hub_with(chat_stored: Stored, room_stored: Stored | None = None) -> Hub:
    return Hub(fetch_history=history(room_stored or {}), fetch_chat=history(chat_stored))


async def wait_for(check: Callable[[], bool]) -> None:
    for _ in range(100):
        if check():
            return
        await asyncio.sleep(0.01)


async def test_the_hub_never_closes_anyone_for_a_chat_gap() -> None:
    hub = hub_with({})
    viewers = [Client(FakeSink(), codec) for codec in (JSON, MSGPACK)]
    quiet = Client(FakeSink(), JSON)
    for client in viewers:
        hub.add_joining(client, "s1")
        hub.activate(client, 0, [], 0)
    hub.add_joining(quiet, "s1", chat=False)
    hub.activate(quiet, 0, [], 0)
    hub.on_event("s1", ev(1, "cseq", t="chat"))
    hub.on_event("s1", ev(9, "cseq", t="chat"))  # 2..8 trimmed from the chat stream
    await wait_for(lambda: hub.rooms["s1"].chat.last == 9)
    await asyncio.sleep(0.02)
    for client in (*viewers, quiet):
        assert closed(client) == []
    json_got = _payloads(viewers[0].sink.written)  # type: ignore[attr-defined]
    assert [(e["t"], e["cseq"]) for e in json_got] == [
        ("chat", 1), ("chat_gap", 8), ("chat", 9)]
    packed = viewers[1].sink.written  # type: ignore[attr-defined]
    assert len(packed) == 3 and all(frame[0] == 0x82 for frame in packed)  # binary frames
    assert _payloads(quiet.sink.written) == []  # type: ignore[attr-defined]


async def test_the_hub_keeps_a_device_that_joined_after_the_store_went_back() -> None:
    hub = hub_with({})
    old, device = Client(FakeSink(), JSON), Client(FakeSink(), JSON)
    hub.add_joining(old, "s1")
    hub.activate(old, 0, [], 0)
    for n in (1, 2, 3):
        hub.on_event("s1", ev(n))
    await asyncio.sleep(0.02)
    hub.add_joining(device, "s1")
    hub.activate(device, 1, [], 0)  # the store lost 2 and 3
    hub.on_event("s1", ev(2, ts=5000))
    await asyncio.sleep(0.02)
    assert closed(old) == [(CloseCode.SLOW_CONSUMER, "missed events: rejoin")]
    assert closed(device) == []
    assert [e["seq"] for e in _payloads(device.sink.written)] == [2]  # type: ignore[attr-defined]
