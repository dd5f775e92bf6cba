"""Every script is slot-local: it names every key it touches in KEYS and builds none itself;
and every call of a script during the suite passes KEYS of one hash slot (on a cluster
always; on one Valkey unless the script's header documents a one-Valkey form of call),
with every script called — recorded and checked by tests/lua_calls.py. The tests here are
of that recorder and check: they see a real store's calls and fail a call of two slots."""

from __future__ import annotations

import re

import pytest
from redis.exceptions import RedisClusterException

from server.errors import ApiError
from server.valkey.keys import Keys
from server.valkey.store import LUA_DIR, Store, load_source
from tests import lua_calls
from tests.helpers import unique_prefix


def test_every_script_declares_its_keys_and_builds_none() -> None:
    scripts = sorted(LUA_DIR.glob("*.lua"))
    assert len(scripts) >= 15
    for path in scripts:
        header = path.read_text()
        assert re.search(r"^-- KEYS\[1", header, re.MULTILINE), f"{path.name}: no KEYS header"
        source = load_source(path.name)
        # a key built inside Lua would spell one of our hash tags or the prefix
        assert not re.search(r"\{[spuo]:", source), f"{path.name} builds a key"
        assert "PREFIX" not in source, f"{path.name} builds a key from a prefix"
        # events are published on shard channels (declared in KEYS), never globally
        assert "'PUBLISH'" not in source, f"{path.name} uses non-sharded PUBLISH"


def header(path: str) -> str:
    """A script's leading comment, its lines joined by single spaces."""
    lines = []
    for line in (LUA_DIR / path).read_text().splitlines():
        if not line.startswith("--") or line.startswith("--!"):
            break
        lines.append(line.removeprefix("--").strip())
    return " ".join(" ".join(lines).split())


@pytest.mark.parametrize("script", sorted(lua_calls.ONE_VALKEY_FORMS))
def test_a_one_valkey_form_is_documented_in_its_scripts_header(script: str) -> None:
    assert lua_calls.ONE_VALKEY_FORMS[script] in header(script)


@pytest.mark.anyio
async def test_a_real_call_with_keys_of_two_slots_fails_the_check(valkey_url: str) -> None:
    k = Keys(unique_prefix())
    one, two = [k.session("s1"), k.reminders("s1")], [k.session("s1"), k.reminders("s2")]
    assert len(lua_calls.slots_of(one)) == 1 and len(lua_calls.slots_of(two)) == 2
    store = Store(valkey_url, cluster=None)
    await store.open()
    kind = "cluster" if store.cluster else "standalone"
    try:
        with lua_calls.recording(store) as rec:
            with pytest.raises(ApiError):  # no such session: remind.lua writes nothing
                await store.run("remind.lua", one, ["ann", "1"])
            assert lua_calls.check(rec, whole_run=False) == []
            # one Valkey runs it (and fails it: no session); a cluster client refuses it
            with pytest.raises((ApiError, RedisClusterException)):
                await store.run_pipelined("remind.lua", two, ["ann", "1"])
    finally:
        await store.close()
    assert dict(rec.counts) == {("remind.lua", kind, lua_calls.ONE): 1,
                                ("remind.lua", kind, lua_calls.SEVERAL): 1}
    [problem] = lua_calls.check(rec, whole_run=False)
    assert problem.startswith(f"remind.lua: 1 call(s) on the {kind} store with KEYS in "
                              "several slots"), problem
    assert k.reminders("s2") in problem and "test_a_real_call_with_keys" in problem


def test_a_one_valkey_form_passes_on_one_valkey_only() -> None:
    k = Keys("lc")
    orders = [k.order("ord_a"), k.order("ord_b"), k.order("ord_c")]
    assert len(lua_calls.slots_of(orders)) > 1
    rec = lua_calls.Recorder()
    rec.record("order_peek.lua", orders, cluster=False)
    assert lua_calls.check(rec, whole_run=False) == []
    rec.record("order_peek.lua", orders, cluster=True)
    rec.record("room_event.lua", [*k.room("s1"), k.product("p1")], cluster=False)
    rec.record("room_event.lua", [], cluster=False)
    problems = lua_calls.check(rec, whole_run=False)
    assert [p.split(",")[0] for p in problems] == [
        "order_peek.lua: 1 call(s) on the cluster store with KEYS in several slots",
        "room_event.lua: 1 call(s) on the standalone store with no KEYS",
        "room_event.lua: 1 call(s) on the standalone store with KEYS in several slots"]


def test_a_whole_run_must_call_every_script_or_say_why_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    k = Keys("lc")
    every = sorted(p.name for p in LUA_DIR.glob("*.lua"))
    rec = lua_calls.Recorder()
    for script in every[1:]:
        rec.record(script, [k.product("p1")], cluster=True)
    assert lua_calls.check(rec, whole_run=False) == []
    monkeypatch.setattr(lua_calls, "NOT_EXERCISED", {})
    [missing] = lua_calls.check(rec, whole_run=True)
    assert missing.startswith(f"{every[0]}: never called during the suite")
    monkeypatch.setattr(lua_calls, "NOT_EXERCISED", {every[0]: "a reason"})
    assert lua_calls.check(rec, whole_run=True) == []
    monkeypatch.setattr(lua_calls, "NOT_EXERCISED", {every[0]: "r", every[1]: "r", "x.lua": "r"})
    assert lua_calls.check(rec, whole_run=True) == [
        f"{every[1]}: listed in NOT_EXERCISED ('r') but called",
        f"x.lua: listed in NOT_EXERCISED but no such script in {LUA_DIR}"]


def test_recorded_calls_travel_as_plain_data() -> None:
    """What an xdist worker hands the controller (config.workeroutput) loads back whole."""
    k = Keys("lc")
    rec = lua_calls.Recorder()
    for i in range(5):
        rec.record("pin.lua", [*k.room("s1"), k.product(f"p{i}")], cluster=False)
    rec.record("pin.lua", k.room("s1"), cluster=True)
    back = lua_calls.Recorder.load(rec.dump())
    assert back.counts == rec.counts and back.examples == rec.examples
    assert len(back.examples[("pin.lua", "standalone", lua_calls.SEVERAL)]) == lua_calls.EXAMPLES
    total = lua_calls.Recorder()
    total.add(back)
    total.add(lua_calls.Recorder.load(rec.dump()))
    assert total.counts[("pin.lua", "standalone", lua_calls.SEVERAL)] == 10
