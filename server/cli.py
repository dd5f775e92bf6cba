"""`livecart serve | valkey | token`: the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from server.settings import DEV_SECRET, Settings, SettingsError, from_env
from server.workers import worker_count

log = logging.getLogger("livecart")


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _banner(message: str) -> None:
    print(message, flush=True)


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> Any:
    """How a node runs under uvicorn: every socket starts in livecart's Front, `/ws` is
    served by the node's Gate (server/transport.py), the drain deadline. `overrides` are
    uvicorn.Config arguments (tests: port 0)."""
    import uvicorn

    from server.transport import Gate

    gate = app.state.gate = Gate(app.state.node)
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, **gate.protocols(),
        "lifespan": "on", "log_level": settings.log_level, "access_log": False,
        "log_config": None, "timeout_graceful_shutdown": int(max(1, settings.drain_timeout_s)),
        "backlog": 4096,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def serve(settings: Settings) -> int:
    import uvicorn

    from server.app import create_app
    from server.embedded import EmbeddedError, EmbeddedValkey
    from server.workers import reuse_port_socket

    try:
        settings.signing_secret  # noqa: B018 - fail fast without a secret
    except SettingsError as exc:
        print(f"livecart: {exc}", file=sys.stderr)
        return 2
    if settings.demo and not settings.secret:
        print("!" * 78 + "\nlivecart: LIVECART_SECRET is not set; demo mode signs tokens with a "
              "FIXED DEVELOPMENT SECRET.\nAnyone can forge tokens. Never expose this server.\n"
              + "!" * 78, file=sys.stderr, flush=True)
    _raise_fd_limit()
    from server.logs import configure

    configure(settings.node_id, settings.log_level, settings.log_format)

    embedded: EmbeddedValkey | None = None
    url = settings.redis_url
    if not url:
        embedded = EmbeddedValkey(None if settings.ephemeral else settings.data_dir,
                                  fsync=settings.fsync)
        try:
            embedded.start()
        except EmbeddedError as exc:
            print(f"livecart: {exc}", file=sys.stderr)
            return 1
        url = embedded.url
        log.info("embedded valkey at %s (data in %s)", url, embedded.data_dir)
    else:
        log.info("using the store at %s", url.split("@")[-1])

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started and self.servers:
                host, port = self.servers[0].sockets[0].getsockname()[:2]
                _banner(f"livecart ready on http://{host}:{port} node={settings.node_id}"
                        + (" (demo: open / in a browser)" if settings.demo else ""))

        async def shutdown(self, sockets: Any = None) -> None:
            app.state.node.draining = True
            await super().shutdown(sockets)
            # uvicorn re-raises a captured SIGTERM/SIGINT once serving ends, which kills the
            # process before `finally` runs: stop Valkey (AOF flushed, temp dir removed) now.
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)

    try:
        if settings.workers > 1:
            from server.workers import supervise

            return supervise(settings, url, "livecart ready on http://{host}:{port} node="
                             + settings.node_id + (" (demo: open / in a browser)"
                                                   if settings.demo else ""))
        app = create_app(settings, url)
        server = Server(uvicorn_config(app, settings))
        server.run(sockets=[reuse_port_socket(settings.host, settings.port, 4096)]
                   if settings.reuse_port else None)
        return 0 if server.started else 1
    finally:
        if embedded is not None:
            embedded.stop()


def valkey_cluster(data_dir: Path, masters: int, port: int) -> int:
    """`livecart valkey --cluster N`: N masters on loopback ports port..port+N-1."""
    from server.cluster import EmbeddedCluster
    from server.embedded import EmbeddedError

    cluster = EmbeddedCluster(masters, data_dir=data_dir, base_port=port)
    try:
        cluster.start()
    except EmbeddedError as exc:
        print(f"livecart: {exc}", file=sys.stderr)
        return 1
    _banner(f"valkey cluster ready ({masters} masters on ports {cluster.ports}; data in "
            f"{cluster.data_dir}): LIVECART_REDIS_URL={cluster.url} LIVECART_REDIS_CLUSTER=1;"
            " Ctrl-C stops it")
    return _wait_for_signal(lambda: any(p is not None and p.poll() is None
                                        for p in cluster.processes), cluster.stop)


def _wait_for_signal(alive: Any, stop_server: Any) -> int:
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop and alive():
            time.sleep(0.2)
    finally:
        stop_server()
    return 0


def valkey(data_dir: Path, port: int, host: str) -> int:
    from server.embedded import EmbeddedError, EmbeddedValkey

    server = EmbeddedValkey(data_dir, tcp_port=port, tcp_host=host)
    try:
        server.start()
    except EmbeddedError as exc:
        print(f"livecart: {exc}", file=sys.stderr)
        return 1
    _banner(f"valkey ready: LIVECART_REDIS_URL=redis://{host}:{port}  (unix socket: "
            f"{server.url}; data in {server.data_dir}); Ctrl-C stops it")
    return _wait_for_signal(lambda: server.process is not None and server.process.poll() is None,
                            server.stop)


def token(settings: Settings, sub: str, role: str, name: str | None, ttl: int) -> int:
    from server.auth import issue_token

    secret = settings.secret or DEV_SECRET
    print(issue_token(secret, sub, role, ttl, name))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="livecart", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run a server node")
    p_serve.add_argument("--host", default=None)
    p_serve.add_argument("--port", type=int, default=None)
    p_serve.add_argument("--demo", action="store_true", help="web demo, token endpoint, seed data")
    p_serve.add_argument("--ephemeral", action="store_true", help="embedded Valkey in a temp dir")
    p_serve.add_argument("--workers", type=worker_count, default=1,
                         help="node processes on one port (SO_REUSEPORT); `auto` = one per core")
    p_valkey = sub.add_parser("valkey", help="run a standalone embedded Valkey for several nodes")
    p_valkey.add_argument("--port", type=int, default=6379)
    p_valkey.add_argument("--host", default="127.0.0.1")
    p_valkey.add_argument("--data-dir", type=Path, default=Path(".livecart-valkey"))
    p_valkey.add_argument("--cluster", type=int, default=0, metavar="N",
                          help="start a local cluster of N masters (ports --port .. --port+N-1;"
                               " default port 7000) instead of one server")
    p_token = sub.add_parser("token", help="print a signed token (uses LIVECART_SECRET)")
    p_token.add_argument("--sub", required=True)
    p_token.add_argument("--role", required=True, choices=["viewer", "creator", "seller", "admin"])
    p_token.add_argument("--name", default=None)
    p_token.add_argument("--ttl", type=int, default=24 * 3600)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = from_env()
    except SettingsError as exc:
        print(f"livecart: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        settings = settings.with_overrides(host=args.host, port=args.port,
                                           demo=args.demo or None,
                                           ephemeral=args.ephemeral or None,
                                           workers=args.workers)
        if not os.environ.get("LIVECART_NODE_ID") and settings.port:
            # stable across restarts: a restarted node replaces its own presence report
            settings = settings.with_overrides(node_id=f"{socket.gethostname()}:{settings.port}")
        return serve(settings)
    if args.command == "valkey":
        if args.cluster:
            port = 7000 if args.port == 6379 else args.port
            return valkey_cluster(args.data_dir, args.cluster, port)
        return valkey(args.data_dir, args.port, args.host)
    return token(settings, args.sub, args.role, args.name, args.ttl)


if __name__ == "__main__":
    sys.exit(main())
