"""The HTTP API: products, sessions, demo tokens, health. JSON in, JSON out.

Errors are `{"error": {"code", "message"}}` with the status of their wire code. A body
must be declared `Content-Type: application/json` (415 `unsupported_media_type`
otherwise), at most MAX_BODY bytes (413 `too_large`). A bug answers 500 `internal` with a
`request_id` that the log line of its traceback carries too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import validate as v
from server.auth import ROLES, Identity, issue_token, require_role, require_user, verify_token
from server.cart.products import parse_new as parse_new_product
from server.cart.products import parse_patch
from server.clock import now_ms
from server.errors import (
    ApiError,
    ErrorCode,
    bad_request,
    forbidden,
    internal,
    new_request_id,
    not_found,
    unauthorized,
)
from server.node import Node
from server.rooms.sessions import parse_new as parse_new_session
from server.rooms.sessions import parse_stream_patch
from server.valkey.ops import SessionAction
from server.video.streams import check_url as check_stream_url

log = logging.getLogger("livecart.http")

MAX_BODY = 64 * 1024
MAX_LINES = 100  # per refund
MAX_LINE_QTY = 10_000


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: ApiError) -> Response:
    return JSON({"error": exc.to_wire()}, status_code=exc.code.http_status)


def node_of(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def identity_of(request: Request) -> Identity:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("send `Authorization: Bearer <token>`")
    return verify_token(node_of(request).secret, token.strip())


JSON_MEDIA_TYPE = "application/json"


def check_json_content_type(request: Request) -> None:
    """415 unless the body is declared `application/json` (parameters such as charset ok)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                       f"send the body as `Content-Type: {JSON_MEDIA_TYPE}`",
                       content_type=media_type or None)


async def body_of(request: Request) -> Any:
    """The JSON body: 413 over MAX_BODY, 400 when absent, 415 when not declared JSON, 400
    when not valid JSON."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(ErrorCode.TOO_LARGE, f"body over {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # never buffer more than the limit
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(ErrorCode.TOO_LARGE, f"body over {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise bad_request("a JSON body is required")
    check_json_content_type(request)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"invalid JSON: {exc}") from exc


def path_id(request: Request, name: str = "id") -> str:
    value = request.path_params[name]
    if not v.is_id(value):
        raise not_found(name if name != "id" else "resource", value)
    return str(value)


# tokens ---------------------------------------------------------------------

async def create_token(request: Request) -> Response:
    node = node_of(request)
    if not node.settings.demo:
        raise ApiError(ErrorCode.NOT_FOUND, "token minting is only available with --demo")
    args = v.obj(await body_of(request))
    v.only(args, {"sub", "role", "name"})
    sub = v.req_ident(args, "sub")
    role = v.req_str(args, "role")
    if role not in ROLES:
        raise bad_request(f"`role` must be one of {', '.join(ROLES)}", field="role")
    name = v.string(args, "name", max_len=64, required=False)
    token = issue_token(node.secret, sub, role, node.settings.token_ttl_s, name)
    return JSON({"token": token, "sub": sub, "role": role, "name": name})


# products -------------------------------------------------------------------

async def create_product(request: Request) -> Response:
    node = node_of(request)
    seller = require_role(identity_of(request), "seller")
    product = await node.products.create(seller, parse_new_product(await body_of(request)))
    return JSON(product.to_wire(), status_code=201)


async def get_product(request: Request) -> Response:
    node = node_of(request)
    return JSON((await node.products.get(path_id(request))).to_wire())


async def patch_product(request: Request) -> Response:
    node = node_of(request)
    identity = identity_of(request)
    caller = require_role(identity, "seller")
    pid = path_id(request)
    patch = parse_patch(await body_of(request))
    product, patched = await node.waitlists.patch(caller, identity.role, pid, patch)
    if patched.changed:
        await node.sessions.announce_product(product.id, product.price, product.stock,
                                             sold_out=product.stock == 0 and patch.stock == 0)
    return JSON(product.to_wire())


# vouchers -------------------------------------------------------------------

async def create_voucher(request: Request) -> Response:

    from server.cart.vouchers import parse_new as parse_new_voucher

    node = node_of(request)
    identity = identity_of(request)
    seller = require_role(identity, "seller")
    new = parse_new_voucher(await body_of(request), now_ms())
    if new.session:
        await node.sessions.get(new.session)  # 404 when there is none
    found = await node.products.get_many(list(new.products))
    for pid in new.products:
        if pid not in found:
            raise ApiError(ErrorCode.NOT_FOUND, f"product {pid!r} does not exist", product=pid)
        if identity.role != "admin" and found[pid].seller != seller:
            raise forbidden(f"product {pid!r} belongs to another seller")
    return JSON(await node.vouchers.create(seller, new), status_code=201)


async def get_voucher(request: Request) -> Response:
    """The voucher's terms and counters (anyone); its seller or an admin also gets the
    latest uses."""
    node = node_of(request)
    code = path_id(request)
    voucher = await node.vouchers.get(code)
    if request.headers.get("authorization"):
        identity = identity_of(request)
        if identity.role == "admin" or identity.sub == voucher["seller"]:
            voucher["uses"] = await node.vouchers.uses(code)
    return JSON(voucher)


# sessions -------------------------------------------------------------------

async def create_session(request: Request) -> Response:
    node = node_of(request)
    creator = require_role(identity_of(request), "creator")
    new = parse_new_session(await body_of(request))
    if new.stream_url is not None:
        check_stream_url(new.stream_url, node.settings)
    found = await node.products.get_many(new.showcase)
    missing = [p for p in new.showcase if p not in found]
    if missing:
        raise ApiError(ErrorCode.NOT_FOUND, f"product {missing[0]!r} does not exist",
                       product=missing[0])
    session, _ = await node.sessions.create(creator, new)
    return JSON(session.to_wire(), status_code=201)


async def list_sessions(request: Request) -> Response:
    node = node_of(request)
    out = []
    for sid in await node.sessions.recent_ids():
        session = await node.sessions.find(sid)
        if session is not None:
            out.append(session.to_wire())
    return JSON({"sessions": out})


async def get_session(request: Request) -> Response:
    node = node_of(request)
    session = await node.sessions.get(path_id(request))
    body = session.to_wire()
    deal = await node.sessions.deal(session.id) if session.pin_deal else None
    body["pinned"] = session.pinned(deal)
    if session.kind == "video" or session.status == "ended":
        body["timeline"] = [e.to_wire() for e in await node.rooms.timed_entries(session)]
    body["moderators"] = await node.chat.moderator_list(session.id)
    return JSON(body)


async def put_moderators(request: Request) -> Response:
    node = node_of(request)
    caller = require_user(identity_of(request))
    sid = path_id(request)
    body = await body_of(request)
    # moderators_set.lua answers not_found / forbidden (only the creator) itself
    users = await node.chat.set_moderators(sid, caller, body)
    return JSON({"session": sid, "moderators": sorted(users)})


async def put_reminder(request: Request) -> Response:
    return await _reminder(request, True)


async def delete_reminder(request: Request) -> Response:
    return await _reminder(request, False)


async def _reminder(request: Request, on: bool) -> Response:
    node = node_of(request)
    caller = require_user(identity_of(request))
    sid = path_id(request)
    return JSON({"session": sid, "reminded": await node.reminders.set(sid, caller, on)})


async def patch_session(request: Request) -> Response:
    node = node_of(request)
    caller = require_user(identity_of(request))
    sid = path_id(request)
    patch = parse_stream_patch(await body_of(request))
    if patch.url is not None:
        check_stream_url(patch.url, node.settings)
    # session_stream.lua answers not_found / forbidden itself
    return JSON((await node.sessions.set_stream(sid, caller, patch)).to_wire())


async def stream_playlist(request: Request) -> Response:
    from server.rooms.stream import session_playlist

    node = node_of(request)
    session = await node.sessions.get(path_id(request))
    body = await session_playlist(node.sessions, request.app.state.streams, session)
    return Response(body, media_type="application/vnd.apple.mpegurl",
                    headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"})


async def put_timeline(request: Request) -> Response:
    from server.rooms.timeline import parse_timeline

    node = node_of(request)
    caller = require_user(identity_of(request))
    session = await node.sessions.get(path_id(request))
    if session.creator != caller:
        raise forbidden("only the session creator can set its timeline")
    if session.kind != "video":
        raise ApiError(ErrorCode.CONFLICT, "only video sessions have a timeline; a live one "
                       "gets its replay timeline from its pins when it ends")
    entries = [e.to_wire() for e in parse_timeline(await body_of(request), session.showcase)]
    await node.sessions.set_timeline(session.id, entries)
    return JSON({"session": session.id, "timeline": entries})


async def start_session(request: Request) -> Response:
    return await _set_status(request, SessionAction.START)


async def end_session(request: Request) -> Response:
    return await _set_status(request, SessionAction.END)


async def _set_status(request: Request, action: SessionAction) -> Response:
    node = node_of(request)
    caller = require_user(identity_of(request))
    # session_status.lua answers not_found / forbidden / conflict / not_live itself
    return JSON((await node.sessions.set_status(path_id(request), caller, action)).to_wire())


async def set_rates(request: Request) -> Response:
    node = node_of(request)
    identity = identity_of(request)
    caller = require_role(identity, "seller")
    session = await node.sessions.get(path_id(request))
    body = v.obj(await body_of(request))
    asked = {pid: v.req_int(body, pid, lo=1, hi=10_000) for pid in body}
    products = await node.products.get_many(session.showcase)
    rates = await node.ledger.set_rates(
        session.id, caller, identity.role == "admin", asked,
        {pid: (p.seller, p.commission_bps) for pid, p in products.items()})
    return JSON({"session": session.id, "rates": rates})


async def session_report(request: Request) -> Response:
    from server.counters.reports import session_report as build

    node = node_of(request)
    identity = identity_of(request)
    caller = require_user(identity)
    session = await node.sessions.get(path_id(request))
    if identity.role != "admin" and caller != session.creator:
        raise forbidden("only the session's creator or an admin can read its report")
    report = await build(node.store, node.keys, session)
    report["moderation"] = await node.chat.audit(session.id)
    return JSON(report)


async def get_auction(request: Request) -> Response:
    node = node_of(request)
    return JSON(await node.auctions.get(path_id(request), path_id(request, "aid")))


async def get_giveaway(request: Request) -> Response:
    node = node_of(request)
    return JSON(await node.giveaways.get(path_id(request), path_id(request, "gid")))


# orders, refunds, ledgers -----------------------------------------------------

async def create_external_order(request: Request) -> Response:
    from server.cart.orders import check_external_lines

    node = node_of(request)
    identity = identity_of(request)
    seller = require_role(identity, "seller")
    body = v.obj(await body_of(request))
    v.only(body, {"external_id", "buyer", "lines"})
    external_id = v.req_ident(body, "external_id")
    buyer = v.req_ident(body, "buyer")
    lines = check_external_lines(body.get("lines"))
    products = await node.products.get_many([str(line["product"]) for line in lines])
    for line in lines:
        product = products.get(str(line["product"]))
        if product is None:
            raise not_found("product", str(line["product"]))
        if identity.role != "admin" and product.seller != seller:
            raise forbidden(f"product {product.id!r} belongs to another seller")
    placed = await node.orders.external(seller, external_id, buyer, lines)
    return JSON(placed.order, status_code=201 if placed.new else 200)


async def get_order(request: Request) -> Response:
    node = node_of(request)
    identity = identity_of(request)
    caller = require_user(identity)
    order = await node.orders.get_for(path_id(request), caller, identity.role)
    return JSON(order)


async def refund_order(request: Request) -> Response:
    node = node_of(request)
    identity = identity_of(request)
    caller = require_role(identity, "seller")
    oid = path_id(request)
    body = v.obj(await body_of(request))
    v.only(body, {"refund_id", "lines"})
    refund_id = v.req_ident(body, "refund_id")
    lines = None
    if body.get("lines") is not None:
        raw_lines = body["lines"]
        if not isinstance(raw_lines, list) or not raw_lines or len(raw_lines) > MAX_LINES:
            raise bad_request(f"`lines` must be a list of 1-{MAX_LINES} {{product, qty}}",
                              field="lines")
        units: dict[str, int] = {}  # a product named twice: its units add up
        for raw in raw_lines:
            line = v.obj(raw, "a line")
            v.only(line, {"product", "qty"}, "a line")
            product = v.req_ident(line, "product")
            units[product] = units.get(product, 0) + v.req_int(line, "qty", lo=1, hi=MAX_LINE_QTY)
        lines = [{"product": p, "qty": q} for p, q in units.items()]
    result, new = await node.refunds.refund(oid, refund_id, lines, caller,
                                           identity.role == "admin")
    if new:
        for line in result["lines"]:
            node.stock.changed(str(line["product"]))
    return JSON(result)


async def creator_ledger(request: Request) -> Response:
    node = node_of(request)
    identity = identity_of(request)
    caller = require_user(identity)
    creator = path_id(request)
    if identity.role != "admin" and caller != creator:
        raise forbidden("only that creator or an admin can read this ledger")
    ledger = await node.ledger.read(creator)
    if "text/csv" in request.headers.get("accept", ""):
        return Response(node.ledger.to_csv(ledger), media_type="text/csv")
    return JSON(ledger)


# health ---------------------------------------------------------------------

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


Endpoint = Callable[[Request], Awaitable[Response]]


def route(path: str, **by_method: Endpoint) -> Route:
    """One route per path, so a 405 lists every method of that path in `Allow`; every
    failure answered here as its error (a bug: 500 `internal`, logged once)."""

    async def dispatch(request: Request) -> Response:
        endpoint = by_method[request.method if request.method != "HEAD" else "GET"]
        try:
            return await endpoint(request)
        except Exception as exc:
            return as_json_response(request, exc)

    return Route(path, dispatch, methods=list(by_method))


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


def as_json_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return error_response(exc)
    request_id = new_request_id()
    log.error("%s %s failed (request_id %s)", request.method, request.url.path, request_id,
              exc_info=exc, extra={"request_id": request_id})
    return error_response(internal(request_id))

