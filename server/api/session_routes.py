"""HTTP routes of sessions: create, read, stream, timeline, status, rates, report, moderators,
reminders, auctions and giveaways."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server import validate as v
from server.api.http import JSON, body_of, identity_of, node_of, path_id
from server.auth import require_role, require_user
from server.errors import ApiError, ErrorCode, forbidden
from server.rooms.sessions import parse_new as parse_new_session
from server.rooms.sessions import parse_stream_patch
from server.valkey.ops import SessionAction
from server.video.streams import check_url as check_stream_url


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
    body = v.obj(await body_of(request))  # each rate is checked by Ledger.set_rates
    products = await node.products.get_many(session.showcase)
    rates = await node.ledger.set_rates(
        session.id, caller, identity.role == "admin", dict(body),
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
