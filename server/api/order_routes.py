"""HTTP routes of orders: external orders, an order, refunds, a creator's ledger."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server import validate as v
from server.api.http import JSON, body_of, identity_of, node_of, path_id
from server.auth import require_role, require_user
from server.errors import bad_request, forbidden, not_found

MAX_LINES = 100  # per refund
MAX_LINE_QTY = 10_000


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
