"""Browser tests: a real `livecart serve --demo` subprocess driven by Debian's Chromium.

One server per test module (module-scoped fixture) and one browser per module; every
test opens its own browser contexts (separate storage = separate viewers) and creates
its own session through the HTTP API, so tests do not depend on each other's order.

Without /usr/bin/chromium the tests skip (locally) or fail (CI=true).
Screenshots of every page a test opened go to artifacts/screenshots/ (gitignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.procs import stop_process

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]
SECRET = "browser-test-secret-0123456789abcdef0123"  # 40 characters
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
READY = re.compile(r"livecart ready on (http://[\d.]+:(\d+))")
SHOWCASE = ["demo_sneakers", "demo_headphones", "demo_lipstick", "demo_mug"]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def _require_browser() -> None:
    problem = None
    if not Path(CHROMIUM).exists():
        problem = (f"{CHROMIUM} not found: apt-get install chromium "
                   "(the browser tests drive Debian's Chromium)")
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the `playwright` Python package is missing (uv sync --group dev)"
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)


# --- the server ------------------------------------------------------------------------

@dataclass
class LiveServer:
    base: str
    proc: subprocess.Popen[str]
    output: deque[str] = field(default_factory=lambda: deque(maxlen=200))

    def http(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if body is not None:
            req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return json.loads(res.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path} → {exc.code}: {exc.read()[:300]!r}") from exc

    def token(self, sub: str, role: str, name: str | None = None) -> str:
        body = {"sub": sub, "role": role, **({"name": name} if name else {})}
        return str(self.http("POST", "/api/tokens", body)["token"])

    def new_session(self, title: str = "Browser test show") -> tuple[str, str]:
        """A fresh live session of the demo products; returns (session id, creator token)."""
        creator = f"creator_{secrets.token_hex(3)}"
        token = self.token(creator, "creator", creator)
        session = self.http("POST", "/api/sessions",
                            {"kind": "live", "title": title, "showcase": SHOWCASE}, token)
        return str(session["id"]), token

    def log_tail(self) -> str:
        return "\n".join(self.output)


def _livecart_command() -> list[str]:
    exe = Path(sys.executable).with_name("livecart")
    if not exe.exists():
        exe = ROOT / ".venv" / "bin" / "livecart"
    return [str(exe), "serve", "--demo", "--ephemeral", "--port", "0"]


@pytest.fixture(scope="module")
def live_server() -> Iterator[LiveServer]:
    _require_browser()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECART_")}
    env.update(LIVECART_SECRET=SECRET, LIVECART_COUNTERS_INTERVAL_S="0.3",
               LIVECART_DRAIN_TIMEOUT_S="2", LIVECART_LOG_LEVEL="WARNING",
               PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_livecart_command(), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    output: deque[str] = deque(maxlen=200)
    ready = threading.Event()
    found: list[str] = []

    def pump() -> None:  # keep draining the pipe so the server never blocks on its logs
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line.rstrip())
            m = READY.search(line)
            if m and not found:
                found.append(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(30) or not found:
        proc.kill()
        raise RuntimeError("livecart did not start:\n" + "\n".join(output))
    server = LiveServer(found[0], proc, output)
    yield server
    stop_process(proc)


# --- the browser -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(live_server: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Pages:
    """Opens pages in fresh contexts, records page errors, screenshots everything at the end."""

    def __init__(self, browser: Any, server: LiveServer, test_name: str) -> None:
        self.browser, self.server, self.test_name = browser, server, test_name
        self.pages: list[tuple[str, Any]] = []
        self.shot: set[int] = set()  # pages the test already took a screenshot of
        self.contexts: list[Any] = []
        self.errors: list[str] = []
        self.failed = False

    def open(self, name: str, path: str, *, viewport: dict[str, int] | None = None,
             phone: bool = False) -> Any:
        # Reduced motion: the pages skip CSS animations and redraw the stand-in video at
        # 5 fps, so half a dozen pages do not fight over the CPU.
        opts: dict[str, Any] = {"viewport": viewport or (PHONE if phone else DESKTOP),
                                "reduced_motion": "reduce"}
        if phone:
            opts.update(device_scale_factor=2, is_mobile=True, has_touch=True)
        context = self.browser.new_context(**opts)
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc, n=name: self.errors.append(f"{n}: {exc}"))
        page.goto(self.server.base + path)
        self.pages.append((name, page))
        return page

    def creator(self, sid: str, token: str, **kw: Any) -> Any:
        page = self.open("creator", f"/demo/creator?session={sid}&token={token}", **kw)
        page.wait_for_selector("body[data-conn=open] .product-row")
        return page

    def viewer(self, name: str, sid: str, delay_ms: int = 0, **kw: Any) -> Any:
        page = self.open(name, f"/demo/watch?session={sid}&delay_ms={delay_ms}", **kw)
        page.wait_for_selector("body[data-conn=open] #showcase li")
        return page

    def shoot(self, name: str, page: Any, path: Path | None = None,
              full_page: bool = False) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        out = path or SCREENSHOTS / f"{self.test_name}-{name}.png"
        page.screenshot(path=str(out), full_page=full_page)
        self.shot.add(id(page))
        return out

    def close(self) -> None:
        for name, page in self.pages:
            if id(page) in self.shot and not self.failed:
                continue
            # A crashed page must not hide the test's own failure.
            with contextlib.suppress(Exception):
                self.shoot(name, page)
        for context in self.contexts:
            context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[FAILED] = report.failed


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def pages(browser: Any, live_server: LiveServer,
          request: pytest.FixtureRequest) -> Iterator[Pages]:
    p = Pages(browser, live_server, request.node.name)
    yield p
    p.failed = request.node.stash.get(FAILED, True)
    p.close()
    assert not p.errors, f"uncaught errors in the pages: {p.errors}"


def wait_until(predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
