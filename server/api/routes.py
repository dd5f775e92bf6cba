"""The HTTP API's route table (server/api/*_routes.py hold the endpoints), and health."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.api.catalog_routes import (
    create_product,
    create_token,
    create_voucher,
    get_product,
    get_voucher,
    patch_product,
)
from server.api.http import JSON, node_of, route
from server.api.order_routes import create_external_order, creator_ledger, get_order, refund_order
from server.api.session_routes import (
    create_session,
    delete_reminder,
    end_session,
    get_auction,
    get_giveaway,
    get_session,
    list_sessions,
    patch_session,
    put_moderators,
    put_reminder,
    put_timeline,
    session_report,
    set_rates,
    start_session,
    stream_playlist,
)


async def healthz(request: Request) -> Response:
    node = node_of(request)
    return JSON({"ok": True, "node": node.settings.node_id})


async def readyz(request: Request) -> Response:
    node = node_of(request)
    ready = not node.draining and await node.store.ping()
    return JSON({"ready": ready, "node": node.settings.node_id}, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    from server.observe.metrics import CONTENT_TYPE

    return Response(node_of(request).metrics.render(), media_type=CONTENT_TYPE)


ROUTES = [
    route("/metrics", GET=metrics),
    route("/api/tokens", POST=create_token),
    route("/api/products", POST=create_product),
    route("/api/products/{id}", GET=get_product, PATCH=patch_product),
    route("/api/vouchers", POST=create_voucher),
    route("/api/vouchers/{id}", GET=get_voucher),
    route("/api/sessions", GET=list_sessions, POST=create_session),
    route("/api/sessions/{id}", GET=get_session, PATCH=patch_session),
    route("/api/sessions/{id}/stream.m3u8", GET=stream_playlist),
    route("/api/sessions/{id}/start", POST=start_session),
    route("/api/sessions/{id}/end", POST=end_session),
    route("/api/sessions/{id}/rates", PUT=set_rates),
    route("/api/sessions/{id}/timeline", PUT=put_timeline),
    route("/api/sessions/{id}/report", GET=session_report),
    route("/api/sessions/{id}/auctions/{aid}", GET=get_auction),
    route("/api/sessions/{id}/giveaways/{gid}", GET=get_giveaway),
    route("/api/sessions/{id}/moderators", PUT=put_moderators),
    route("/api/sessions/{id}/reminder", PUT=put_reminder, DELETE=delete_reminder),
    route("/api/orders", POST=create_external_order),
    route("/api/orders/{id}", GET=get_order),
    route("/api/orders/{id}/refund", POST=refund_order),
    route("/api/creators/{id}/ledger", GET=creator_ledger),
    route("/healthz", GET=healthz),
    route("/readyz", GET=readyz),
]
