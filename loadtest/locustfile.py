"""Locust scenarios for livecart (WebSocket users on `websocket-client`, gevent-friendly).

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000            # web UI
    LC_SHAPE=spike LC_USERS=2000 LC_RAMP_S=10 LC_HOLD_S=30 \\
      locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless \\
      --processes 2 --csv out/spike --html out/spike.html --exit-code-on-error 1

Users: `ViewerUser` (anonymous: join, watch, like), `CreatorUser` (one: pins showcase
products), `DealCreatorUser` (one: pins flash deals), `StormBuyerUser` (buys the moment a
deal is pinned), `ShopperUser` (clicks, carts, checkouts, buy_now). Shapes (LC_SHAPE):
`spike`, `storm`, `shopping` (loadtest/shapes.py); without LC_SHAPE, -u/-r/-t apply.

Fan-out latency is a custom metric: request_type "WS", name "<event> fan-out" (e.g.
"pinned fan-out"), response time = local receive time - the event's server `ts`. `seq`
gaps are failures ("seq order"). Business outcomes of a flash sale (`sold_out`,
`out_of_stock`, `limit_exceeded`, `deal_ended`) count as successes.

Environment: LC_SESSION (default the demo session `sess_demo_live`, needs `serve
--demo`), LC_CREATOR (its creator, default `creator_demo`), LC_PIN_EVERY_S (2),
LC_DEAL_EVERY_S (10), LC_DEAL_STOCK (100). Tokens come from `POST /api/tokens` (demo),
or are signed locally when LIVECART_SECRET is set.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import time
import urllib.request
import uuid
from typing import Any

import gevent
import orjson
from locust import User, between, constant, events, task
from locust.env import Environment

from loadtest import shapes
from loadtest.lcws import EXPECTED_CODES, LiveConnection

SESSION = os.environ.get("LC_SESSION", "sess_demo_live")
CREATOR = os.environ.get("LC_CREATOR", "creator_demo")
PIN_EVERY_S = float(os.environ.get("LC_PIN_EVERY_S", 2))
DEAL_EVERY_S = float(os.environ.get("LC_DEAL_EVERY_S", 10))
DEAL_STOCK = int(os.environ.get("LC_DEAL_STOCK", 100))
_ids = itertools.count(1)
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

    def on_event(self, ev: dict[str, Any]) -> None:
        pass

    def on_start(self) -> None:
        token = mint_token(self.host or "", self.sub, self.role) if self.role else None
        self.conn = LiveConnection(self.ws_url(token), self.fire, self.on_event)
        self.conn.connect()
        self.snapshot = self.conn.join(SESSION)

    def on_stop(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def command(self, op: str, **args: Any) -> Any:
        assert self.conn is not None
        try:
            return self.conn.command(op, expected=EXPECTED_CODES, **args)
        except Exception:
            return None  # already reported to Locust as a failure

    def showcase(self) -> list[dict[str, Any]]:
        return list(self.snapshot.get("showcase") or [])


class ViewerUser(LivecartUser):
    """Watches: receives every room event (fan-out latency), likes now and then."""

    weight = 10
    wait_time = between(2, 5)

    @task(1)
    def like(self) -> None:
        self.command("like", count=random.randint(1, 3))

    @task(4)
    def watch(self) -> None:
        pass  # events arrive on the reader greenlet


class CreatorUser(LivecartUser):
    """The session's creator: pins showcase products, one every LC_PIN_EVERY_S."""

    fixed_count = 1
    role = "creator"
    wait_time = constant(PIN_EVERY_S)

    def on_start(self) -> None:
        self.sub = CREATOR
        host = self.host or ""
        token = mint_token(host, CREATOR, "creator")
        with contextlib.suppress(Exception):  # already live
            _http("POST", f"{host}/api/sessions/{SESSION}/start", {}, token)
        self.conn = LiveConnection(self.ws_url(token), self.fire, self.on_event)
        self.conn.connect()
        self.snapshot = self.conn.join(SESSION)

    @task
    def pin(self) -> None:
        products = self.showcase()
        if products:
            self.command("pin", product=random.choice(products)["id"])


class DealCreatorUser(CreatorUser):
    """Pins a flash deal every LC_DEAL_EVERY_S: DEAL_STOCK units at 10% off, 1 per buyer."""

    wait_time = constant(DEAL_EVERY_S)

    @task
    def pin(self) -> None:
        products = [p for p in self.showcase() if int(p.get("stock", 0)) >= DEAL_STOCK]
        if not products:
            return
        p = random.choice(products)
        deal = {"price": max(1, int(p["price"]) * 9 // 10), "stock": DEAL_STOCK,
                "per_buyer_limit": 1, "ends_at": int(time.time() * 1000 + DEAL_EVERY_S * 800)}
        self.command("pin", product=p["id"], deal=deal, name="pin deal")


class StormBuyerUser(LivecartUser):
    """Hits `buy_now` the moment a deal is pinned (once per deal)."""

    weight = 10
    role = "viewer"
    wait_time = between(5, 10)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.bought: set[Any] = set()

    def on_event(self, ev: dict[str, Any]) -> None:
        if ev.get("t") != "pinned":
            return
        d = ev.get("d") or {}
        deal = d.get("deal")
        if not deal or deal.get("status", "open") != "open":
            return
        key = (d.get("product") or {}).get("id"), d.get("pinned_at")
        if key in self.bought:
            return
        self.bought.add(key)
        gevent.spawn(self.command, "buy_now", product=key[0], qty=1,
                     idempotency_key=f"{self.sub}-{key[1]}", price=deal.get("price"))

    @task
    def watch(self) -> None:
        pass


class ShopperUser(LivecartUser):
    """Steady shopping: clicks, cart changes, checkouts and the odd buy_now."""

    weight = 2
    role = "viewer"
    wait_time = between(1, 3)

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


shapes.USERS.update({c.__name__: c for c in (ViewerUser, CreatorUser, DealCreatorUser,
                                             StormBuyerUser, ShopperUser)})
_shape = os.environ.get("LC_SHAPE")
if _shape:
    if _shape not in shapes.SHAPES:
        raise SystemExit(f"LC_SHAPE must be one of {sorted(shapes.SHAPES)}")
    globals()[shapes.SHAPES[_shape].__name__] = shapes.SHAPES[_shape]


@events.init_command_line_parser.add_listener
def _doc(parser: Any) -> None:
    parser.epilog = __doc__
