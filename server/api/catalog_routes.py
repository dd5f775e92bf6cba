"""HTTP routes of the catalogue: demo tokens, products, vouchers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server import validate as v
from server.api.http import JSON, body_of, identity_of, node_of, path_id
from server.auth import ROLES, issue_token, require_role
from server.cart.products import parse_new as parse_new_product
from server.cart.products import parse_patch
from server.clock import now_ms
from server.errors import ApiError, ErrorCode, bad_request, forbidden


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
