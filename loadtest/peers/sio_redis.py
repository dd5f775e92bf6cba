"""Peer (b): python-socketio `AsyncServer` with `AsyncRedisManager` on the same Valkey,
served by uvicorn (websocket transport only, compression off, compact JSON).

Events: `join` (ack `{"seq"}`; the viewer enters room "r"), `pin` (emits the next
`pinned` event to room "r" through the Redis manager, ack `{"seq"}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import types
from typing import Any

import orjson
import socketio
import uvicorn

from loadtest.peers.common import Room, parse_args


def _compact_json() -> Any:
    mod = types.SimpleNamespace()
    mod.dumps = lambda obj, **_: orjson.dumps(obj).decode()
    mod.loads = lambda s, **_: orjson.loads(s)
    return mod


def main() -> None:
    args = parse_args()
    room = Room(args.product)
    mgr = socketio.AsyncRedisManager(args.redis_url)
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=mgr, json=_compact_json(),
                               transports=["websocket"], http_compression=False,
                               cors_allowed_origins="*")

    @sio.on("join")
    async def join(sid: str, *_: Any) -> dict[str, int]:
        await sio.enter_room(sid, "r")
        return {"seq": room.seq}

    @sio.on("pin")
    async def pin(sid: str, *_: Any) -> dict[str, int]:
        await sio.emit("pinned", room.pin(), room="r")
        return {"seq": room.seq}

    app = socketio.ASGIApp(sio)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, ws="websockets-sansio", ws_per_message_deflate=False,
                            lifespan="off", log_level="warning", access_log=False,
                            backlog=4096)
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        print(f"peer ready on http://{args.host}:{port}", flush=True)
        await task

    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve())


if __name__ == "__main__":
    from loadtest.gen import raise_nofile

    raise_nofile()
    main()
