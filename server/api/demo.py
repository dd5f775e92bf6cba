"""Demo mode: a seeded catalogue and session, and the web demo's pages.

Seeding is idempotent and safe for several nodes at once: every object has a fixed id
and is created only if absent (one Lua script each). `reset` (`livecart demo reset`)
deletes every key under the deployment's prefix and seeds again: the demo show is
scheduled again, with no orders, carts or ledger entries.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from server.cart.products import NewProduct
from server.errors import ApiError, ErrorCode
from server.node import Node
from server.rooms.sessions import NewSession
from server.settings import Settings
from server.valkey.ops import SessionAction
from server.valkey.scripts import StreamPatch
from server.video.demo_stream import LIVE_URL, VOD_URL

log = logging.getLogger("livecart.demo")

WEB_DEMO = Path(__file__).resolve().parents[2] / "web_demo"
DEMO_SELLER = "seller_demo"
DEMO_CREATOR = "creator_demo"
DEMO_LIVE_SESSION = "sess_demo_live"
DEMO_VIDEO_SESSION = "sess_demo_video"
# a 60 s shoppable clip: each product has its moment
DEMO_TIMELINE = [
    {"at_ms": 2_000, "product": "demo_sneakers", "until_ms": 14_000},
    {"at_ms": 16_000, "product": "demo_headphones", "until_ms": 30_000},
    {"at_ms": 32_000, "product": "demo_lipstick", "until_ms": 44_000},
    {"at_ms": 46_000, "product": "demo_mug"},
]

CATALOGUE = [
    NewProduct("demo_sneakers", "Cloud Runner sneakers", 8900, 500, 1000,
               "/static/img/sneakers.svg"),
    NewProduct("demo_headphones", "Aurora wireless headphones", 12900, 300, 800,
               "/static/img/headphones.svg"),
    NewProduct("demo_lipstick", "Velvet matte lipstick", 1900, 2000, 1500,
               "/static/img/lipstick.svg"),
    NewProduct("demo_mug", "Glow-in-the-dark mug", 1500, 1000, 1200, "/static/img/mug.svg"),
]


async def seed(node: Node) -> None:
    for item in CATALOGUE:
        await node.products.ensure(DEMO_SELLER, item)
    _, created = await node.sessions.create(
        DEMO_CREATOR,
        NewSession("live", "Friday night drops", [p.id for p in CATALOGUE]),
        sid=DEMO_LIVE_SESSION,
    )
    if created:
        log.info("seeded demo session %s", DEMO_LIVE_SESSION)
    video, created = await node.sessions.create(
        DEMO_CREATOR,
        NewSession("video", "Spring haul (shoppable video)", [p.id for p in CATALOGUE]),
        sid=DEMO_VIDEO_SESSION,
    )
    if created:
        await node.sessions.set_timeline(video.id, DEMO_TIMELINE)
        with contextlib.suppress(ApiError):  # another node started it first
            await node.sessions.set_status(video.id, DEMO_CREATOR, SessionAction.START)


def _missing(path: Path) -> Response:
    from server.api.routes import error_response

    return error_response(ApiError(
        ErrorCode.NOT_FOUND, f"the web demo is not installed here: {path} is missing"))


def _page(name: str) -> Route:
    async def page(request: Request) -> Response:
        path = WEB_DEMO / name
        if not path.is_file():
            return _missing(path)
        return FileResponse(path, media_type="text/html")

    return Route("/" if name == "index.html" else f"/demo/{name.removesuffix('.html')}",
                 page, methods=["GET"], name=f"demo-{name}")


def demo_routes() -> list[Route | Mount]:
    return [
        _page("index.html"),
        _page("creator.html"),
        _page("watch.html"),
        Mount("/static", app=_Static(WEB_DEMO / "static"), name="static"),
    ]


class _Static:
    """The web demo's static files; a missing directory answers 404 naming it (Starlette's
    StaticFiles raises at request time, which would surface as a 500)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = StaticFiles(directory=directory, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.directory.is_dir():
            await _missing(self.directory)(scope, receive, send)
            return
        await self.files(scope, receive, send)


async def reset(settings: Settings, store_url: str, *, force: bool = False) -> list[str]:
    """Delete every key under the prefix and seed the demo again; returns the sessions that
    were deleted. Refuses (ValueError) when the store holds sessions that are not the
    demo's, unless `force`. Stop the nodes first: a node's rooms keep the old `seq`."""
    node = Node(settings, store_url)
    try:
        await node.store.open()
        ids = await node.sessions.recent_ids(limit=1000)
        foreign = sorted(set(ids) - {DEMO_LIVE_SESSION, DEMO_VIDEO_SESSION})
        if foreign and not force:
            raise ValueError(
                f"the store under prefix {settings.key_prefix!r} holds sessions that are not "
                f"the demo's ({', '.join(foreign[:5])}{' …' if len(foreign) > 5 else ''}); "
                "`livecart demo reset --force` deletes them too")
        redis: Any = node.store.redis
        found = [key async for key in redis.scan_iter(match=f"{settings.key_prefix}:*",
                                                      count=1000)]  # every shard's keys
        for start in range(0, len(found), 500):  # one key per UNLINK: keys of many slots
            await node.store.batch([("UNLINK", key) for key in found[start:start + 500]])
        await node.store.load_all()
        await seed(node)
        return ids
    finally:
        await node.store.close()


async def name_the_demo_stream(node: Node, running: bool) -> None:
    """The demo sessions name the demo stream while it runs, and no stream otherwise (a
    stream_url that is not the demo's is left alone)."""
    for sid, url in ((DEMO_LIVE_SESSION, LIVE_URL), (DEMO_VIDEO_SESSION, VOD_URL)):
        session = await node.sessions.find(sid)
        if session is None or not (session.stream_url or "/demo-stream/").startswith(
                "/demo-stream/"):
            continue
        want = url if running else None
        if session.stream_url != want:
            await node.sessions.set_stream(sid, DEMO_CREATOR, StreamPatch(True, want, None))
