"""Fixtures: one embedded Valkey and one local 3-master Valkey Cluster per test session;
tests isolate by key prefix. Every test that takes `valkey_url` (directly or through
`make_server` / `server`) runs twice: on the standalone server and on the cluster — unless
it (or its module, with `pytestmark`) is marked `@pytest.mark.stores("standalone")`: input,
wire and schema checks, whose point is not the store, run on the standalone server only."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from server.settings import Settings
from server.valkey.embedded import EmbeddedValkey
from server.valkey.local_cluster import EmbeddedCluster
from tests import lua_calls
from tests.helpers import SECRET, ServerThread, unique_prefix

hypothesis_settings.register_profile("ci", max_examples=30, deadline=None)
hypothesis_settings.register_profile("dev", max_examples=60, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def valkey() -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(None, persist=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[EmbeddedCluster]:
    cluster = EmbeddedCluster(3)
    cluster.start()
    yield cluster
    cluster.stop()


STORES = ("standalone", "cluster")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stores(*kinds): the Valkey deployments a test that takes `valkey_url` "
        f"runs on, of {STORES} (unmarked: both)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One run per store the test's `stores` marker names (the closest one: a test's own
    marker overrides its module's). A test on the standalone server alone keeps its plain
    id. A module that defines its own `valkey_url` fixture is left to it."""
    if "valkey_url" not in metafunc.fixturenames or "valkey_url" in vars(metafunc.module):
        return
    marker = metafunc.definition.get_closest_marker("stores")
    kinds = tuple(marker.args) if marker else STORES
    assert kinds and set(kinds) <= set(STORES), f"stores{kinds}: each one of {STORES}"
    if kinds != ("standalone",):
        metafunc.parametrize("valkey_url", kinds, indirect=True, scope="session")


@pytest.fixture(scope="session")
def valkey_url(request: pytest.FixtureRequest) -> str:
    if getattr(request, "param", "standalone") == "cluster":
        return str(request.getfixturevalue("valkey_cluster").url)
    return str(request.getfixturevalue("valkey").url)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_settings(**overrides: Any) -> Settings:
    base = dict(secret=SECRET, demo=True, key_prefix=unique_prefix(), counters_interval_s=0.2,
                store_timeout_s=1.0)
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def make_server(valkey_url: str) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def factory(**overrides: Any) -> ServerThread:
        store_url = overrides.pop("store_url", valkey_url)
        server = ServerThread(make_settings(**overrides), store_url).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server()


# Every Lua script call's KEYS, recorded and checked (tests/lua_calls.py) -------------------

WHOLE_SUITE = pytest.StashKey[bool]()  # every test file collected, nothing deselected
COLLECTED = pytest.StashKey[int]()
DESELECTED = pytest.StashKey[int]()
FROM_WORKERS = pytest.StashKey[list[dict[str, Any] | None]]()
LUA_REPORT = pytest.StashKey[tuple[list[str], str]]()
tests_ran = 0  # here, or on every worker when this process is xdist's controller


@pytest.fixture(scope="session", autouse=True)
def lua_calls_recorded() -> Iterator[lua_calls.Recorder]:
    """Wraps the store's script-running methods for the whole session: every call's KEYS
    are counted in lua_calls.SESSION, checked at the session's end."""
    with pytest.MonkeyPatch.context() as patch:
        lua_calls.install(patch)
        yield lua_calls.SESSION


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        config = items[0].config
        config.stash[DESELECTED] = config.stash.get(DESELECTED, 0) + len(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[COLLECTED] = len(session.items)
    session.config.stash[WHOLE_SUITE] = lua_calls.whole_suite(
        session.items, session.config.stash.get(DESELECTED, 0))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A test ran: its call, or its skip (xdist's controller gets the workers' reports)."""
    global tests_ran
    if report.when == "call" or (report.when == "setup" and report.skipped):
        tests_ran += 1


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object | None) -> None:
    """An xdist worker is done (on the controller): keep what it recorded (None if it died)."""
    output = getattr(node, "workeroutput", {})
    node.config.stash.setdefault(FROM_WORKERS, []).append(
        None if error or "lua_calls" not in output else output)


@pytest.hookimpl(trylast=True)  # after the session's fixtures are torn down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput"):  # an xdist worker: the controller checks
        output: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
        output["lua_calls"] = lua_calls.SESSION.dump()
        output["lua_calls_whole"] = config.stash.get(WHOLE_SUITE, False)
        output["lua_calls_collected"] = config.stash.get(COLLECTED, 0)
        return
    recorded = lua_calls.Recorder()
    recorded.add(lua_calls.SESSION)
    workers = config.stash.get(FROM_WORKERS, [])
    for output in workers:
        if output is not None:
            recorded.add(lua_calls.Recorder.load(output["lua_calls"]))
    if workers:
        whole = all(o is not None and o["lua_calls_whole"] for o in workers)
        collected = max(o["lua_calls_collected"] if o else 0 for o in workers)
    else:
        whole, collected = config.stash.get(WHOLE_SUITE, False), config.stash.get(COLLECTED, 0)
    # a whole run: every test file, nothing deselected, every test ran, and all passed
    whole = whole and exitstatus == pytest.ExitCode.OK and 0 < collected == tests_ran
    problems = lua_calls.check(recorded, whole_run=whole)
    summary = (f"Lua KEYS: {sum(recorded.counts.values())} script calls of "
               f"{len(recorded.called())} scripts recorded, each of one slot where it must be"
               + ("; every script called" if whole else ""))
    config.stash[LUA_REPORT] = (problems, summary)
    if problems and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if LUA_REPORT not in config.stash:
        return
    problems, summary = config.stash[LUA_REPORT]
    if problems:
        terminalreporter.section("Lua scripts' KEYS (tests/lua_calls.py)", red=True)
        for line in problems:
            terminalreporter.line(line, red=True)
    else:
        terminalreporter.line(summary)
