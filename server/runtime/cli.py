"""livecart: the real-time backend for live shopping (rooms, pins, carts, flash deals,
attribution). Commands: serve, valkey, token, env, demo reset, orders tail."""

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.runtime.workers import worker_count
from server.settings import DEV_SECRET, Settings, SettingsError, env_table, from_env

log = logging.getLogger("livecart")
DEFAULTS = Settings()


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("livecart")
    except PackageNotFoundError:  # run from a checkout that was never installed
        from server import __version__

        return __version__


def store_url(settings: Settings) -> str:
    """The store to talk to: LIVECART_REDIS_URL, else the embedded Valkey that a running
    `livecart serve` (or `livecart valkey`) holds in LIVECART_DATA_DIR."""
    from server.valkey.embedded import running_url

    if settings.redis_url:
        return settings.redis_url
    url = running_url(settings.data_dir)
    if url is None:
        raise SettingsError(
            f"no livecart server is running on {settings.data_dir.resolve()} and "
            "LIVECART_REDIS_URL is not set: start `livecart serve` (same directory, or the "
            "same LIVECART_DATA_DIR) or point LIVECART_REDIS_URL at the store")
    return url


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> Any:
    """How a node runs under uvicorn: every socket starts in livecart's Front, `/ws` is
    served by the node's Gate (server/edge/gate.py), the drain deadline. `overrides` are
    uvicorn.Config arguments (tests: port 0)."""
    import uvicorn

    from server.edge.gate import Gate

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
    from server.observe.gc_timing import install as install_gc_scheduling
    from server.runtime.workers import reuse_port_socket
    from server.valkey.embedded import EmbeddedError, EmbeddedValkey

    try:
        settings.signing_secret  # noqa: B018 - fail fast without a secret
    except SettingsError as exc:
        print(f"livecart: {exc}", file=sys.stderr)
        return 2
    _raise_fd_limit()
    from server.observe.logs import announce, configure

    configure(settings.node_id, settings.log_level, settings.log_format)
    if settings.demo and not settings.secret:
        log.warning("LIVECART_SECRET is not set: demo mode signs tokens with a FIXED "
                    "DEVELOPMENT SECRET. Anyone can forge tokens; never expose this server.")

    embedded: EmbeddedValkey | None = None
    url = settings.redis_url
    if not url:
        embedded = EmbeddedValkey(None if settings.ephemeral else settings.data_dir,
                                  fsync=settings.fsync)
        try:
            embedded.start()
        except EmbeddedError as exc:
            log.error("livecart: %s", exc)
            return 1
        url = embedded.url
    store = url.split("@")[-1]  # never log a password

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started and self.servers:
                host, port = self.servers[0].sockets[0].getsockname()[:2]
                # always written, whatever the log level: scripts and tests wait for it
                announce(f"livecart ready on http://{host}:{port} node={settings.node_id} "
                         f"store={store}" + (" (demo: open / in a browser)" if settings.demo
                                             else ""),
                         url=f"http://{host}:{port}", store=store,
                         data_dir=str(embedded.data_dir) if embedded else None)

        async def shutdown(self, sockets: Any = None) -> None:
            app.state.node.draining = True
            await super().shutdown(sockets)
            # uvicorn re-raises a captured SIGTERM/SIGINT once serving ends, which kills the
            # process before `finally` runs: stop Valkey (AOF flushed, temp dir removed) now.
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)

    try:
        if settings.workers > 1:
            from server.runtime.workers import supervise

            return supervise(settings, url, "livecart ready on http://{host}:{port} node="
                             + settings.node_id + (" (demo: open / in a browser)"
                                                   if settings.demo else ""))
        app = create_app(settings.with_overrides(manage_gc=True), url)
        install_gc_scheduling()
        server = Server(uvicorn_config(app, settings))
        server.run(sockets=[reuse_port_socket(settings.host, settings.port, 4096)]
                   if settings.reuse_port else None)
        return 0 if server.started else 1
    finally:
        if embedded is not None:
            embedded.stop()


def valkey_cluster(data_dir: Path, masters: int, port: int) -> int:
    """`livecart valkey --cluster N`: N masters on loopback ports port..port+N-1."""
    from server.valkey.local_cluster import EmbeddedCluster

    cluster = EmbeddedCluster(masters, data_dir=data_dir, base_port=port)
    return _serve_until_signal(
        cluster.start, lambda: (
            f"valkey cluster ready ({masters} masters on ports {cluster.ports}; data in "
            f"{cluster.data_dir}): LIVECART_REDIS_URL={cluster.url} LIVECART_REDIS_CLUSTER=1;"
            " Ctrl-C stops it"),
        lambda: any(p is not None and p.poll() is None for p in cluster.processes),
        cluster.stop)


def valkey(data_dir: Path, port: int, host: str) -> int:
    from server.valkey.embedded import EmbeddedValkey

    server = EmbeddedValkey(data_dir, tcp_port=port, tcp_host=host)
    return _serve_until_signal(
        server.start, lambda: (
            f"valkey ready: LIVECART_REDIS_URL=redis://{host}:{port}  (unix socket: "
            f"{server.url}; data in {server.data_dir}); Ctrl-C stops it"),
        lambda: server.process is not None and server.process.poll() is None, server.stop)


def _serve_until_signal(start: Callable[[], object], ready: Callable[[], str],
                        alive: Callable[[], bool], stop_server: Callable[[], object]) -> int:
    """Start, say it is ready, and stop on SIGTERM/SIGINT or when it died by itself."""
    from server.valkey.embedded import EmbeddedError

    try:
        start()
    except EmbeddedError as exc:
        print(f"livecart: {exc}", file=sys.stderr)
        return 1
    print(ready(), flush=True)
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


def token(settings: Settings, sub: str, role: str, name: str | None, ttl: int,
          demo: bool) -> int:
    from server.auth import issue_token

    if not settings.secret and not demo:
        print("livecart: LIVECART_SECRET is not set, so this token would not verify on a real "
              "node (it would close with 4001). Set LIVECART_SECRET to the nodes' secret, or "
              "pass --demo for a token signed with the development secret of `serve --demo`.",
              file=sys.stderr)
        return 2
    if not settings.secret:
        print("livecart: signing with the fixed development secret (--demo)", file=sys.stderr)
    print(issue_token(settings.secret or DEV_SECRET, sub, role, ttl, name))
    return 0


def demo_reset(settings: Settings, force: bool) -> int:
    from server.api.demo import reset
    from server.valkey.embedded import EmbeddedError, EmbeddedValkey, running_url

    if not settings.redis_url and running_url(settings.data_dir):
        print(f"livecart: a livecart server is running on {settings.data_dir.resolve()}; "
              "stop it first (its rooms would keep the old event numbers)", file=sys.stderr)
        return 1
    embedded = None
    url = settings.redis_url
    if not url:
        embedded = EmbeddedValkey(settings.data_dir, fsync="always")
        try:
            embedded.start()
        except EmbeddedError as exc:
            print(f"livecart: {exc}", file=sys.stderr)
            return 1
        url = embedded.url
    try:
        deleted = asyncio.run(reset(settings.with_overrides(demo=True), url, force=force))
    except ValueError as exc:
        print(f"livecart: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.stop()
    print(f"demo reset: deleted every {settings.key_prefix}:* key "
          f"({len(deleted)} session(s)) and seeded the demo again; the live show "
          "`sess_demo_live` is scheduled: Go live from the creator console")
    return 0


def orders_tail(settings: Settings, group: str, consumer: str, from_start: bool,
                limit: int) -> int:
    from server.runtime.orders_tail import tail
    from server.valkey.keys import Keys

    try:
        url = store_url(settings)
    except SettingsError as exc:
        print(f"livecart: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(tail(url, Keys(settings.key_prefix), group, consumer,
                         from_start=from_start, limit=limit, cluster=settings.redis_cluster))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"livecart: cannot reach the store at {url.split('@')[-1]}: {exc}",
              file=sys.stderr)
        return 1
    return 0


class _Help(argparse.RawDescriptionHelpFormatter):
    """Each option's default in its help (not for flags), epilogs printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
                and "%(default)" not in text):
            text += " (default: %(default)s)"
        return text


def parser() -> argparse.ArgumentParser:
    env_help = "environment variables (all optional; `livecart env` prints this list):\n" \
        + "\n".join(f"  {line}" for line in env_table().splitlines())
    top = argparse.ArgumentParser(prog="livecart", description=__doc__, formatter_class=_Help,
                                  epilog=env_help)
    top.add_argument("--version", action="version", version=f"livecart {_version()}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    short_env = "environment variables: `livecart env` lists them with defaults"

    def command(name: str, summary: str, description: str,
                epilog: str = short_env) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description,
                              formatter_class=_Help, epilog=epilog)

    p = command("serve", "run a server node",
                "Run one livecart node: HTTP API, WebSocket /ws, metrics. Without "
                "LIVECART_REDIS_URL it starts an embedded Valkey persisted to "
                "LIVECART_DATA_DIR. Logs go to stderr (JSON by default); the line "
                "`livecart ready on http://HOST:PORT ...` says it is serving.", env_help)
    p.add_argument("--host", default=DEFAULTS.host, help="interface to listen on")
    p.add_argument("--port", type=int, default=DEFAULTS.port,
                   help="TCP port (0: any free port; the ready line names it)")
    p.add_argument("--demo", action="store_true",
                   help="mount the web demo at / and POST /api/tokens, seed the demo show; "
                        "without LIVECART_SECRET tokens use a fixed development secret")
    p.add_argument("--ephemeral", action="store_true",
                   help="embedded Valkey in a throw-away directory (deleted on exit)")
    p.add_argument("--workers", type=worker_count, default=1,
                   help="node processes on one port (SO_REUSEPORT), each a node of its own; "
                        "`auto` = one per core")

    p = command("valkey", "run a standalone embedded Valkey for several nodes",
                "Run the embedded Valkey on its own, on TCP and a unix socket, for several "
                "nodes to share (LIVECART_REDIS_URL=redis://HOST:PORT/0).")
    p.add_argument("--port", type=int, default=6379, help="TCP port")
    p.add_argument("--host", default="127.0.0.1", help="TCP interface")
    p.add_argument("--data-dir", type=Path, default=Path(".livecart-valkey"),
                   help="AOF data directory")
    p.add_argument("--cluster", type=int, default=0, metavar="N",
                   help="start a local Valkey Cluster of N masters on ports --port .. "
                        "--port+N-1 (default port 7000) instead of one server")

    p = command("token", "print a signed token",
                "Print a JWT (HS256, signed with LIVECART_SECRET) for a WebSocket or HTTP "
                "client. Without LIVECART_SECRET it refuses unless --demo is given.")
    p.add_argument("--sub", required=True, help="the user id (the token's `sub`)")
    p.add_argument("--role", required=True, choices=["viewer", "creator", "seller", "admin"],
                   metavar="ROLE", help="viewer, creator, seller or admin")
    p.add_argument("--name", default=None, help="display name for social proof")
    p.add_argument("--ttl", type=int, default=DEFAULTS.token_ttl_s, help="lifetime in seconds")
    p.add_argument("--demo", action="store_true",
                   help="sign with the development secret of `serve --demo` when "
                        "LIVECART_SECRET is not set")

    p = command("env", "list the environment variables",
                "Every LIVECART_* variable with its default and meaning.")
    p.add_argument("--markdown", action="store_true", help="as a Markdown table")

    p = command("demo", "manage the demo data", "Demo data commands.")
    demo_sub = p.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    r = demo_sub.add_parser(
        "reset", help="delete the demo's data and seed it again", formatter_class=_Help,
        description="Delete every key under LIVECART_KEY_PREFIX (products, sessions, carts, "
                    "orders, ledger) in the store (LIVECART_REDIS_URL, else the embedded "
                    "Valkey in LIVECART_DATA_DIR) and seed the demo again, so an ended demo "
                    "show is a fresh scheduled one. Stop the servers first.", epilog=short_env)
    r.add_argument("--force", action="store_true",
                   help="also when the store holds sessions that are not the demo's")

    p = command("orders", "read the orders stream", "Orders stream commands.")
    orders_sub = p.add_subparsers(dest="orders_command", required=True, metavar="ACTION")
    t = orders_sub.add_parser(
        "tail", help="print orders and refunds as JSON lines (consumer group)",
        formatter_class=_Help, epilog=short_env,
        description="Read the orders streams with a consumer group (created with MKSTREAM "
                    "if absent) and print one JSON object per entry on stdout, "
                    "acknowledging each after it is printed. Talks to LIVECART_REDIS_URL, "
                    "else to the embedded Valkey of the `livecart serve` running on "
                    "LIVECART_DATA_DIR.")
    t.add_argument("--group", default="livecart-tail", help="consumer group name")
    t.add_argument("--consumer", default=f"tail-{socket.gethostname()}",
                   help="consumer name within the group")
    t.add_argument("--from-start", action="store_true",
                   help="a new group starts at the first entry (default: new entries only)")
    t.add_argument("--limit", type=int, default=0,
                   help="exit after this many entries (0: run until Ctrl-C)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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
        if settings.demo and settings.demo_stream is None:
            settings = settings.with_overrides(demo_stream=True)  # server/video/demo_stream.py
        if not os.environ.get("LIVECART_NODE_ID") and settings.port:
            # stable across restarts: a restarted node replaces its own presence report
            settings = settings.with_overrides(node_id=f"{socket.gethostname()}:{settings.port}")
        return serve(settings)
    if args.command == "valkey":
        if args.cluster:
            port = 7000 if args.port == 6379 else args.port
            return valkey_cluster(args.data_dir, args.cluster, port)
        return valkey(args.data_dir, args.port, args.host)
    if args.command == "env":
        print(env_table(markdown=args.markdown))
        return 0
    if args.command == "demo":
        return demo_reset(settings, args.force)
    if args.command == "orders":
        return orders_tail(settings, args.group, args.consumer, args.from_start, args.limit)
    return token(settings, args.sub, args.role, args.name, args.ttl, args.demo)


if __name__ == "__main__":
    sys.exit(main())
