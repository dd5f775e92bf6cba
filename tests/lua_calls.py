"""The KEYS every Lua script is actually called with during the test session, and their check.

conftest.py's session fixture `lua_calls_recorded` wraps `Store.run` and
`Store.run_pipelined` (server/valkey/store.py; every script call goes through one of them,
`run_many` through `run_pipelined`) in the test process, so every call that a test, or a
server running in a test's thread, makes is counted here by script, by store (one Valkey
or a cluster) and by how many hash slots its KEYS span. Servers in subprocesses are not
seen.

At the end of the session (conftest.py's `pytest_sessionfinish`) `check` fails the run:
- for any call on a cluster whose KEYS are not all of one slot — whatever the script;
- for any call on one Valkey whose KEYS are not all of one slot, unless its script's
  header documents a form that only runs on one Valkey (ONE_VALKEY_FORMS);
- after a whole, passing run: for any script in server/valkey/lua/ that was never called
  and is not in NOT_EXERCISED with its reason (or one that is, but was called).

Under pytest-xdist each worker records its own calls and hands them to the controller in
`config.workeroutput` (xdist's channel for that); the controller adds them up and checks
once. Without xdist the one process checks its own.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import pytest
from redis.crc import key_slot

from server.valkey.store import LUA_DIR, Store

# Scripts with a form of call whose KEYS span hash tags, allowed on one Valkey only, and the
# words of the script's header that say so (tests/test_lua_keys.py checks they are there).
ONE_VALKEY_FORMS = {
    "order_place.lua": "one Valkey (no cluster)",  # whole orders: room, product, buyer, ...
    "order_peek.lua": "on a cluster: all of one bucket",  # one Valkey: every bucket at once
    "pin.lua": "one Valkey only",  # a pin that reads the product (KEYS[8]) itself
}

# Scripts no test of this suite calls in the test process, and why.
NOT_EXERCISED: dict[str, str] = {}

ONE, SEVERAL, NONE = "one slot", "several slots", "no keys"
EXAMPLES = 3  # calls kept (keys, slots, test) per script, store and shape that is not ONE


def slots_of(keys: Sequence[str | bytes]) -> set[int]:
    """The cluster hash slot of each key (of its hash tag, when it has one)."""
    return {key_slot(k.encode() if isinstance(k, str) else bytes(k)) for k in keys}


def shape_of(slots: set[int]) -> str:
    return ONE if len(slots) == 1 else NONE if not slots else SEVERAL


class Recorder:
    """Counts of calls by (script, store, shape), with a few examples of calls not of one
    slot; `dump`/`load` make it plain data (xdist's workeroutput carries it)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.examples: dict[tuple[str, str, str], list[dict[str, Any]]] = {}

    def record(self, script: str, keys: Sequence[str | bytes], cluster: bool) -> None:
        slots = slots_of(keys)
        at = (script, "cluster" if cluster else "standalone", shape_of(slots))
        self.counts[at] += 1
        if at[2] != ONE and len(kept := self.examples.setdefault(at, [])) < EXAMPLES:
            kept.append({"keys": [k if isinstance(k, str) else bytes(k).decode("latin-1")
                                  for k in keys],
                         "slots": sorted(slots),
                         "test": os.environ.get("PYTEST_CURRENT_TEST", "(between tests)")})

    def add(self, other: Recorder) -> None:
        self.counts.update(other.counts)
        for at, kept in other.examples.items():
            mine = self.examples.setdefault(at, [])
            mine.extend(kept[:EXAMPLES - len(mine)])

    def called(self) -> set[str]:
        return {script for script, _, _ in self.counts}

    def dump(self) -> list[dict[str, Any]]:
        return [{"script": s, "store": st, "shape": sh, "calls": n,
                 "examples": self.examples.get((s, st, sh), [])}
                for (s, st, sh), n in sorted(self.counts.items())]

    @classmethod
    def load(cls, rows: list[dict[str, Any]]) -> Recorder:
        rec = cls()
        for row in rows:
            at = (row["script"], row["store"], row["shape"])
            rec.counts[at] += row["calls"]
            if row["examples"]:
                rec.examples[at] = list(row["examples"])
        return rec


def check(rec: Recorder, *, whole_run: bool) -> list[str]:
    """What is wrong with the recorded calls (nothing: an empty list). `whole_run`: every
    test of the suite ran and passed, so every script should have been called."""
    problems = []
    for (script, store, shape), n in sorted(rec.counts.items()):
        one_valkey_form = (store, shape) == ("standalone", SEVERAL) and script in ONE_VALKEY_FORMS
        if shape == ONE or one_valkey_form:
            continue
        example = rec.examples.get((script, store, shape), [{}])[0]
        keys = "no KEYS" if shape == NONE else f"KEYS in {shape}"
        problems.append(f"{script}: {n} call(s) on the {store} store with {keys}, "
                        f"e.g. {example.get('keys')} (slots {example.get('slots')}) "
                        f"from {example.get('test')}")
    if whole_run:
        scripts = {p.name for p in LUA_DIR.glob("*.lua")}
        called = rec.called()
        problems += [f"{s}: never called during the suite (call it from a test, or list it "
                     "in tests/lua_calls.py NOT_EXERCISED with the reason)"
                     for s in sorted(scripts - called - NOT_EXERCISED.keys())]
        problems += [f"{s}: listed in NOT_EXERCISED ({NOT_EXERCISED[s]!r}) but called"
                     for s in sorted(NOT_EXERCISED.keys() & called)]
        problems += [f"{s}: listed in NOT_EXERCISED but no such script in {LUA_DIR}"
                     for s in sorted(NOT_EXERCISED.keys() - scripts)]
    return problems


# -- the recorder in the test process ---------------------------------------------------------

SESSION = Recorder()  # this process's calls
_PRIVATE: WeakKeyDictionary[Store, Recorder] = WeakKeyDictionary()  # see `recording`


def _recorded(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """`method` (Store.run or Store.run_pipelined) that first records the call's KEYS. It
    hands back the original's own coroutine: nothing about when the call runs changes."""

    def record_then_run(store: Store, name: str, keys: Sequence[str],
                        args: Sequence[Any]) -> Awaitable[Any]:
        _PRIVATE.get(store, SESSION).record(name, keys, store.cluster)
        return method(store, name, keys, args)

    return record_then_run


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("run", "run_pipelined"):
        monkeypatch.setattr(Store, name, _recorded(getattr(Store, name)))


@contextmanager
def recording(store: Store) -> Iterator[Recorder]:
    """The calls of `store` alone go to a recorder of their own (not the session's) while
    this lasts: for the tests of the recorder and the check themselves."""
    _PRIVATE[store] = rec = Recorder()
    try:
        yield rec
    finally:
        del _PRIVATE[store]


def whole_suite(items: Sequence[pytest.Item], deselected: int) -> bool:
    """Every test file under tests/ has collected items and none were deselected."""
    tests = Path(__file__).parent
    collected = {Path(item.path) for item in items}
    return deselected == 0 and set(tests.rglob("test_*.py")) <= collected
