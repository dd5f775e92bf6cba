"""Locust scenarios for livecart (WebSocket users on `websocket-client`, gevent-friendly).

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000            # web UI
    LC_SHAPE=spike LC_USERS=2000 LC_RAMP_S=10 LC_HOLD_S=30 \\
      locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless \\
      --processes 2 --csv out/spike --html out/spike.html --exit-code-on-error 1

Users: `ViewerUser` (anonymous: join, watch, like), `CreatorUser` (one: pins showcase
products), `DealCreatorUser` (one: pins flash deals), `StormBuyerUser` (buys the moment a
deal is pinned), `ShopperUser` (clicks, carts, checkouts, buy_now), `ChatterUser` (signed
in: a chat message every LC_CHAT_EVERY_S; "chat fan-out" = its own message's way back),
`PinsOnlyViewerUser` (`join {chat: false}`: any chat event it receives is a failure).
Shapes (LC_SHAPE): `spike`, `storm`, `shopping`, `chatstorm` (loadtest/shapes.py);
without LC_SHAPE, -u/-r/-t apply.

Fan-out latency is a custom metric: request_type "WS", name "<event> fan-out" (e.g.
"pinned fan-out"), response time = local receive time - the event's server `ts`. `seq`
gaps are failures ("seq order"). Business outcomes of a flash sale (`sold_out`,
`out_of_stock`, `limit_exceeded`, `deal_ended`) count as successes for buyers.

A run fails (exit code 1) when it did not do what its scenarios are named for: each user
class names the request that proves it (`proves`: "join" for viewers, "pin", "pin deal",
"buy_now deal", "cart_add"), and at the end every class in the run must have at least
one success of it. A creator that cannot make its session live (e.g. the show has ended:
`livecart demo reset`) is a failure that stops the run, not a warning.

Environment: LC_SESSION (default the demo session `sess_demo_live`, needs `serve
--demo`), LC_CREATOR (its creator, default `creator_demo`), LC_PIN_EVERY_S (2),
LC_DEAL_EVERY_S (10), LC_DEAL_STOCK (100). Tokens come from `POST /api/tokens` (demo),
or are signed locally when LIVECART_SECRET is set.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import gevent
import orjson
from gevent import GreenletExit
from locust import User, between, constant, events, task
from locust.env import Environment
from locust.runners import LocalRunner, WorkerRunner

from loadtest import shapes
from loadtest.lcws import EXPECTED_CODES, LiveConnection

SESSION = os.environ.get("LC_SESSION", "sess_demo_live")
CREATOR = os.environ.get("LC_CREATOR", "creator_demo")
PIN_EVERY_S = float(os.environ.get("LC_PIN_EVERY_S", 2))
DEAL_EVERY_S = float(os.environ.get("LC_DEAL_EVERY_S", 10))
DEAL_STOCK = int(os.environ.get("LC_DEAL_STOCK", 100))
CHAT_EVERY_S = float(os.environ.get("LC_CHAT_EVERY_S", 1.0))
_ids = itertools.count(1)
logger = logging.getLogger("livecart.locust")
_RUN = uuid.uuid4().hex[:8]


def _http(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    req = urllib.request.Request(url, data=None if body is None else orjson.dumps(body),
                                 method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=15) as resp:
        return orjson.loads(resp.read() or b"null")


def mint_token(host: str, sub: str, role: str) -> str:
    secret = os.environ.get("LIVECART_SECRET")
    if secret:
        from server.auth import issue_token

        return issue_token(secret, sub, role, 6 * 3600)
    return str(_http("POST", host + "/api/tokens", {"sub": sub, "role": role,
                                                    "name": sub[:12]})["token"])


class LivecartUser(User):
    """Base: one WebSocket connection joined to the session."""

    abstract = True
    role: str | None = None  # None: anonymous viewer
    join_name = "join"
    proves = ""  # the request name that must succeed at least once in a run (see above)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.conn: LiveConnection | None = None
        self.snapshot: dict[str, Any] = {}
        self.sub = f"lc{_RUN}{os.getpid() % 10000}x{next(_ids)}"

    def ws_url(self, token: str | None) -> str:
        host = (self.host or "http://127.0.0.1:8000").rstrip("/")
        url = host.replace("https://", "wss://").replace("http://", "ws://") + "/ws"
        return url + (f"?token={token}" if token else "")

    def fire(self, **kw: Any) -> None:
        kw.setdefault("context", {})
        self.environment.events.request.fire(**kw)

    def fail(self, name: str, message: str) -> None:
        """Report a failure that stops this user (and a local run: nothing it was
        supposed to exercise can happen after it)."""
        logger.error("%s: %s", name, message)
        self.fire(request_type="LC", name=name, response_time=0, response_length=0,
                  exception=RuntimeError(message))
        runner = self.environment.runner
        if isinstance(runner, LocalRunner):
            # stop at once: there is nothing left to wait for (and Locust's graceful stop
            # during a spawn stops some users twice)
            self.environment.stop_timeout = 0
            runner.quit()
        raise GreenletExit()  # ends this user quietly (StopUser from on_start logs a traceback)

    def on_event(self, ev: dict[str, Any]) -> None:
        pass

    def connect(self, token: str | None) -> None:
        self.conn = LiveConnection(self.ws_url(token), self.fire, self.on_event)
        self.conn.connect()
        self.snapshot = self.conn.join(SESSION, name=self.join_name)

    def on_start(self) -> None:
        self.connect(mint_token(self.host or "", self.sub, self.role) if self.role else None)

    def on_stop(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def command(self, op: str, expected: frozenset[str] = EXPECTED_CODES, **args: Any) -> Any:
        assert self.conn is not None
        try:
            return self.conn.command(op, expected=expected, **args)
        except Exception:
            return None  # already reported to Locust as a failure

    def showcase(self) -> list[dict[str, Any]]:
        return list(self.snapshot.get("showcase") or [])


class ViewerUser(LivecartUser):
    """Watches: receives every room event (fan-out latency), likes now and then."""

    weight = 10
    wait_time = between(2, 5)
    proves = "join"

    @task(1)
    def like(self) -> None:
        self.command("like", count=random.randint(1, 3))

    @task(4)
    def watch(self) -> None:
        pass  # events arrive on the reader greenlet


class _Creator(LivecartUser):
    """The session's creator (one per run): makes the session live, then joins it."""

    abstract = True
    fixed_count = 1
    role = "creator"
    join_name = "join creator"

    def on_start(self) -> None:
        self.sub = CREATOR
        host = self.host or ""
        token = mint_token(host, CREATOR, "creator")
        self.go_live(host, token)
        self.connect(token)

    def go_live(self, host: str, token: str) -> None:
        url = f"{host}/api/sessions/{SESSION}"
        try:
            status = _http("GET", url)["status"]
            if status == "scheduled":
                try:
                    _http("POST", f"{url}/start", {}, token)
                except urllib.error.HTTPError:
                    status = _http("GET", url)["status"]  # another creator started it?
                    if status != "live":
                        raise
                status = "live"
        except (OSError, ValueError, KeyError) as exc:
            self.fail("start session", f"cannot make {SESSION} live: {_why(exc)}")
        if status != "live":
            self.fail("start session",
                      f"{SESSION} is {status}: nothing can be pinned in it. Reset the demo "
                      "(`livecart demo reset` with the server stopped) or point LC_SESSION "
                      "at a live or scheduled session")


class CreatorUser(_Creator):
    """Pins showcase products, one every LC_PIN_EVERY_S."""

    wait_time = constant(PIN_EVERY_S)
    proves = "pin"

    @task
    def pin(self) -> None:
        products = self.showcase()
        if not products:
            self.fail("pin", f"{SESSION} has no showcase products to pin")
        self.command("pin", expected=frozenset(), product=random.choice(products)["id"])


class DealCreatorUser(_Creator):
    """Pins a flash deal every LC_DEAL_EVERY_S: DEAL_STOCK units at 10% off, 1 per buyer.
    Only deals: it does not inherit the plain pin."""

    wait_time = constant(DEAL_EVERY_S)
    proves = "pin deal"

    @task
    def pin_deal(self) -> None:
        products = [p for p in self.showcase() if int(p.get("stock", 0)) >= DEAL_STOCK]
        if not products:
            self.fail("pin deal", f"no showcase product of {SESSION} has the {DEAL_STOCK} "
                                  "units in stock a deal needs (LC_DEAL_STOCK)")
        p = random.choice(products)
        deal = {"price": max(1, int(p["price"]) * 9 // 10), "stock": DEAL_STOCK,
                "per_buyer_limit": 1, "ends_at": int(time.time() * 1000 + DEAL_EVERY_S * 800)}
        reply = self.command("pin", expected=frozenset(), name="pin deal", product=p["id"],
                             deal=deal)
        if reply is not None:  # keep the showcase's stock current for the next choice
            for item in self.snapshot.get("showcase") or []:
                if item["id"] == p["id"]:
                    item["stock"] = int(item["stock"]) - DEAL_STOCK


class StormBuyerUser(LivecartUser):
    """Hits `buy_now` the moment a deal is pinned (once per deal), or at once when it joins
    while a deal is open."""

    weight = 10
    role = "viewer"
    join_name = "join buyer"
    wait_time = between(5, 10)
    proves = "buy_now deal"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.bought: set[Any] = set()

    def on_start(self) -> None:
        super().on_start()
        pinned = self.snapshot.get("pinned")
        if pinned:
            self.buy(pinned)

    def on_event(self, ev: dict[str, Any]) -> None:
        if ev.get("t") == "pinned":
            self.buy(ev.get("d") or {})

    def buy(self, pin: dict[str, Any]) -> None:
        deal = pin.get("deal")
        if not deal or deal.get("status", "open") != "open":
            return
        key = (pin.get("product") or {}).get("id"), pin.get("pinned_at")
        if key in self.bought:
            return
        self.bought.add(key)
        gevent.spawn(self.command, "buy_now", name="buy_now deal", product=key[0], qty=1,
                     idempotency_key=f"{self.sub}-{key[1]}", price=deal.get("price"))

    @task
    def watch(self) -> None:
        pass


class ShopperUser(LivecartUser):
    """Steady shopping: clicks, cart changes, checkouts and the odd buy_now."""

    weight = 2
    role = "viewer"
    join_name = "join shopper"
    wait_time = between(1, 3)
    proves = "cart_add"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.in_cart: set[str] = set()

    def product(self) -> str | None:
        products = self.showcase()
        return random.choice(products)["id"] if products else None

    @task(5)
    def click(self) -> None:
        p = self.product()
        if p:
            self.command("click", product=p)

    @task(3)
    def cart_add(self) -> None:
        p = self.product()
        if p and self.command("cart_add", product=p, qty=1) is not None:
            self.in_cart.add(p)

    @task(1)
    def cart_get(self) -> None:
        self.command("cart_get")

    @task(1)
    def cart_remove(self) -> None:
        if self.in_cart:
            p = self.in_cart.pop()
            self.command("cart_remove", product=p)

    @task(1)
    def checkout(self) -> None:
        if self.in_cart:
            self.command("checkout", idempotency_key=f"{self.sub}-{uuid.uuid4().hex[:10]}")
            self.in_cart.clear()

    @task(1)
    def buy_now(self) -> None:
        p = self.product()
        if p:
            self.command("buy_now", product=p, qty=1,
                         idempotency_key=f"{self.sub}-{uuid.uuid4().hex[:10]}")


class ChatterUser(LivecartUser):
    """The chat storm: signed in, one chat message every LC_CHAT_EVERY_S (a server with
    the default per-user chat rate answers `rate_limited` below 1 s: counted as expected).
    Reports "chat fan-out": the time its own message took to come back as an event."""

    weight = 3
    role = "viewer"
    join_name = "join chatter"
    wait_time = constant(CHAT_EVERY_S)
    proves = "chat"
    live = False

    def connect(self, token: str | None) -> None:
        super().connect(token)
        # chat is open while the session is live: a chatter that joined a scheduled show
        # waits for the creator's `start` (the `session` event) instead of failing
        self.live = self.snapshot.get("status") == "live"

    def on_event(self, ev: dict[str, Any]) -> None:
        if ev.get("t") == "session":
            self.live = (ev.get("d") or {}).get("status") == "live"
        if ev.get("t") == "chat" and (ev.get("d") or {}).get("user") == self.sub and "ts" in ev:
            self.fire(request_type="WS", name="chat fan-out",
                      response_time=max(0.0, time.time() * 1000 - float(ev["ts"])),
                      response_length=0)

    @task
    def chat(self) -> None:
        if not self.live:  # the `session` event may have passed before the join: ask
            try:
                url = f"{self.host or ''}/api/sessions/{SESSION}"
                self.live = _http("GET", url)["status"] == "live"
            except (OSError, ValueError, KeyError):
                pass
            return
        self.command("chat", expected=frozenset({"rate_limited"}),
                     text=f"{self.sub[-6:]} says hi #{random.randint(0, 9999)}")


class PinsOnlyViewerUser(LivecartUser):
    """Joins with `chat: false`: pins, deals and counters only; a chat event is a failure."""

    weight = 5
    join_name = "join pins-only"
    wait_time = between(2, 5)
    proves = "join pins-only"

    def connect(self, token: str | None) -> None:
        self.conn = LiveConnection(self.ws_url(token), self.fire, self.on_event)
        self.conn.connect()
        reply = self.conn.command("join", name=self.join_name, session=SESSION, chat=False)
        self.snapshot = reply["result"]

    def on_event(self, ev: dict[str, Any]) -> None:
        if ev.get("t") in ("chat", "chat_deleted", "banned"):
            self.fire(request_type="WS", name="chat to pins-only", response_time=0,
                      response_length=0,
                      exception=RuntimeError("a pins-only viewer received a chat event"))

    @task
    def watch(self) -> None:
        pass


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        try:
            return f"HTTP {exc.code}: {orjson.loads(exc.read())['error']['message']}"
        except (ValueError, KeyError, TypeError):
            return f"HTTP {exc.code}"
    return str(exc)


def unproven(environment: Environment, stats: Any = None) -> list[str]:
    """The scenarios of this run that never did what they are named for."""
    shape = environment.shape_class
    classes = [shapes.USERS[n] for n in shape.classes] if shape is not None \
        else list(environment.user_classes)
    stats = stats if stats is not None else environment.stats
    missing = []
    for cls in classes:
        entry = stats.entries.get((cls.proves, "WS"))
        done = 0 if entry is None else entry.num_requests - entry.num_failures
        if done <= 0:
            missing.append(f"{cls.__name__} never succeeded at {cls.proves!r}")
    return missing


shapes.USERS.update({c.__name__: c for c in (ViewerUser, CreatorUser, DealCreatorUser,
                                             StormBuyerUser, ShopperUser, ChatterUser,
                                             PinsOnlyViewerUser)})
_shape = os.environ.get("LC_SHAPE")
if _shape:
    if _shape not in shapes.SHAPES:
        raise SystemExit(f"LC_SHAPE must be one of {sorted(shapes.SHAPES)}")
    globals()[shapes.SHAPES[_shape].__name__] = shapes.SHAPES[_shape]


@events.init_command_line_parser.add_listener
def _doc(parser: Any) -> None:
    parser.epilog = __doc__


@events.quitting.add_listener
def _check_the_run_did_its_job(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # the master (or the local runner) judges the whole run's stats
    missing = unproven(environment)
    for line in missing:
        logger.error("this run did not do its job: %s", line)
    if missing:
        environment.process_exit_code = 1
