"""Peer (a): a bare `websockets` asyncio server fanning out with `websockets.broadcast()`.

Commands (JSON text): `{"id":n,"op":"join"}` → the connection enters the room and gets
`{"id":n,"ok":true,"result":{"seq":<current>}}`; `{"id":n,"op":"pin"}` → the next
`pinned` event is broadcast to the room, then the reply carries its seq. Compression off,
uvloop when installed (as uvicorn picks it for livecart).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve

from loadtest.peers.common import Room, parse_args


async def main() -> None:
    args = parse_args()
    room = Room(args.product)
    viewers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        try:
            async for msg in ws:
                cmd = orjson.loads(msg)
                op = cmd.get("op")
                if op == "join":
                    viewers.add(ws)  # before the reply: events after `seq` reach it
                    await ws.send(orjson.dumps(
                        {"id": cmd["id"], "ok": True, "result": {"seq": room.seq}}).decode())
                elif op == "pin":
                    event = orjson.dumps(room.pin()).decode()
                    broadcast(viewers, event)
                    await ws.send(orjson.dumps(
                        {"id": cmd["id"], "ok": True, "result": {"seq": room.seq}}).decode())
        finally:
            viewers.discard(ws)

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(handler, args.host, args.port, compression=None, max_size=65536,
                     backlog=4096) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"peer ready on http://{args.host}:{port}", flush=True)
        await stop


if __name__ == "__main__":
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from loadtest.gen import raise_nofile

    raise_nofile()
    asyncio.run(main())
