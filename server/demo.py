"""Demo mode: a seeded catalogue and session, and the web demo's pages.

Seeding is idempotent and safe for several nodes at once: every object has a fixed id
and is created only if absent (one Lua script each).
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from server.cart.products import NewProduct
from server.node import Node
from server.rooms.sessions import NewSession

log = logging.getLogger("livecart.demo")

WEB_DEMO = Path(__file__).resolve().parent.parent / "web_demo"
DEMO_SELLER = "seller_demo"
DEMO_CREATOR = "creator_demo"
DEMO_LIVE_SESSION = "sess_demo_live"

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
