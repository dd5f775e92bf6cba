"""Demo mode: a seeded catalogue and session, and the web demo's pages.

Seeding is idempotent and safe for several nodes at once: every object has a fixed id
and is created only if absent (one Lua script each).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from server.cart.products import NewProduct
from server.errors import ApiError
from server.node import Node
from server.rooms.sessions import NewSession

log = logging.getLogger("livecart.demo")

WEB_DEMO = Path(__file__).resolve().parent.parent / "web_demo"
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
            await node.sessions.set_status(video.id, DEMO_CREATOR, "start")


def _page(name: str) -> Route:
    async def page(request: Request) -> Response:
        return FileResponse(WEB_DEMO / name, media_type="text/html")

    return Route("/" if name == "index.html" else f"/demo/{name.removesuffix('.html')}",
                 page, methods=["GET"], name=f"demo-{name}")


def demo_routes() -> list[Route | Mount]:
    return [
        _page("index.html"),
        _page("creator.html"),
        _page("watch.html"),
        Mount("/static", app=StaticFiles(directory=WEB_DEMO / "static", check_dir=False),
              name="static"),
    ]
