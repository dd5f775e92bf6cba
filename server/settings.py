"""One frozen settings object, read from the environment (and CLI flags on top)."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEV_SECRET = "livecart-demo-secret-do-not-use-in-production"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None
    redis_cluster: bool | None = None  # None: ask the server (`INFO cluster`)
    data_dir: Path = Path(".livecart")
    ephemeral: bool = False
    fsync: str = "everysec"
    secret: str | None = None
    demo: bool = False
    allowed_origins: tuple[str, ...] = ()
    currency: str = "USD"
    key_prefix: str = "lc"
    node_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    max_frame_bytes: int = 64 * 1024
    rate_per_s: float = 20.0
    rate_burst: int = 40
    abuse_errors: int = 20
    abuse_window_s: float = 10.0
    send_buffer_bytes: int = 512 * 1024
    history_max_events: int = 1000
    history_max_age_s: int = 600
    counters_interval_s: float = 1.0
    gc_full_every_s: float = 30.0  # the full garbage collection, when the loop is calm
    gc_full_max_s: float = 120.0  # ... and regardless after this long
    social_interval_s: float = 0.5
    coalesce_ms: float = 10.0
    presence_ttl_s: float = 8.0  # + one counters tick: a dead node's viewers go within 10 s
    store_timeout_s: float = 2.0
    pubsub_probe_interval_s: float = 5.0  # a quiet subscriber connection is probed this often
    pubsub_probe_timeout_s: float = 2.0  # a probe not back by then rebuilds the connection
    drain_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0  # TCP accept → complete request head
    idle_timeout_s: float = 30.0  # open WebSocket without a join or a message
    ping_interval_s: float = 20.0  # keepalive; no answer by the next round → dropped
    max_connections_per_ip: int = 0  # handshaking + open WebSockets per address; 0 = off
    max_request_line_bytes: int = 8192  # longer → 414
    max_request_head_bytes: int = 16384  # larger → 431
    token_ttl_s: int = 24 * 3600
    saga_takeover_ms: int = 5000  # a purchase attempt pending this long is undone by a sweep
    saga_redo_ms: int = 2000  # a committed order's effects not done by then are redone
    buy_now_lane: int = 32  # buy_now attempts of one product in one room in flight per node
    waitlist_hold_ms: int = 10 * 60 * 1000  # a restock offer holds one unit this long
    attribution_window_s: int = 14 * 24 * 3600
    auction_extend_s: float = 10.0  # anti-sniping: a late bid moves the end this far out
    log_level: str = "info"
    log_format: str = "json"
    workers: int = 1  # `serve --workers N`: node processes on one port (server/runtime/workers.py)
    reuse_port: bool = False  # bind with SO_REUSEPORT (set for each worker)
    chat_rate_per_s: float = 1.0  # chat messages per user per second (per session, all nodes)
    chat_rate_burst: int = 3
    chat_history_max: int = 500  # chat-lane events kept per session (recovery window)
    chat_snapshot_messages: int = 50  # the last messages a joiner gets with its snapshot
    audit_max: int = 1000  # moderation actions kept per session
    stream_origins: tuple[str, ...] = ()  # origins a session's stream_url may name
    stream_timeout_s: float = 2.0  # fetching a session's playlist
    stream_max_bytes: int = 1024 * 1024  # a larger playlist is refused
    stream_cache_ms: int = 500  # a fetched playlist is reused this long
    demo_stream: bool | None = None  # ffmpeg demo stream; None: with `serve --demo` only
    # the node schedules full GC between bursts (server/observe/gc_timing.py): `serve` only
    manage_gc: bool = False

    @property
    def signing_secret(self) -> str:
        """The HS256 secret; only demo mode may fall back to the development secret."""
        if self.secret:
            return self.secret
        if self.demo:
            return DEV_SECRET
        raise SettingsError(
            "LIVECART_SECRET is not set. Set it to a long random string shared by all nodes "
            "(or run with --demo, which uses a fixed development secret)."
        )

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def flag(raw: str) -> bool:
    """A boolean environment value: 1/true/yes/on or 0/false/no/off."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One `LIVECART_*` variable: the Settings field it sets, its type and what it means.
    `default` overrides the field's own default in documentation (for computed ones)."""

    name: str
    field: str
    kind: Callable[[str], Any]
    help: str
    default: str | None = None

    def default_text(self) -> str:
        if self.default is not None:
            return self.default
        value = getattr(Settings(), self.field)
        return "none" if value in (None, ()) else str(value)


ENV: tuple[EnvVar, ...] = (
    EnvVar("LIVECART_REDIS_URL", "redis_url", str,
           "`redis://host:port/0` or `unix:///path.sock` of a shared Valkey/Redis",
           "embedded"),
    EnvVar("LIVECART_SECRET", "secret", str,
           "HS256 secret for tokens (≥ 32 characters, the same on every node)"),
    EnvVar("LIVECART_ALLOWED_ORIGINS", "allowed_origins", str,
           "comma-separated Origins allowed to open WebSockets (`*` allowed)", "any"),
    EnvVar("LIVECART_DATA_DIR", "data_dir", Path, "embedded Valkey: its data directory"),
    EnvVar("LIVECART_FSYNC", "fsync", str,
           "embedded Valkey: AOF fsync policy (`everysec`, `always` for zero loss, `no`)"),
    EnvVar("LIVECART_CURRENCY", "currency", str, "the deployment's currency (ISO code)"),
    EnvVar("LIVECART_KEY_PREFIX", "key_prefix", str, "prefix of every Valkey key"),
    EnvVar("LIVECART_NODE_ID", "node_id", str,
           "the node's id (in /healthz, logs, presence); stable across restarts so a "
           "restarted node replaces its own presence report",
           "<host>:<port> (<host>-<pid> on port 0)"),
    EnvVar("LIVECART_MAX_FRAME_BYTES", "max_frame_bytes", int,
           "larger WebSocket frames close with 1009"),
    EnvVar("LIVECART_RATE_PER_S", "rate_per_s", float, "per-connection command rate"),
    EnvVar("LIVECART_RATE_BURST", "rate_burst", int, "per-connection command burst"),
    EnvVar("LIVECART_ABUSE_ERRORS", "abuse_errors", int,
           "error replies within the abuse window before close 4029"),
    EnvVar("LIVECART_ABUSE_WINDOW_S", "abuse_window_s", float, "the abuse window"),
    EnvVar("LIVECART_SEND_BUFFER_BYTES", "send_buffer_bytes", int,
           "per-viewer socket buffer before close 4008"),
    EnvVar("LIVECART_HISTORY_MAX_EVENTS", "history_max_events", int,
           "recovery window: room events kept per session"),
    EnvVar("LIVECART_HISTORY_MAX_AGE_S", "history_max_age_s", int,
           "recovery window: oldest room event kept"),
    EnvVar("LIVECART_COUNTERS_INTERVAL_S", "counters_interval_s", float,
           "counters / presence / stats tick"),
    EnvVar("LIVECART_GC_FULL_EVERY_S", "gc_full_every_s", float,
           "the full garbage collection runs this often, between bursts"),
    EnvVar("LIVECART_GC_FULL_MAX_S", "gc_full_max_s", float,
           "... and at the latest this long after the last one"),
    EnvVar("LIVECART_SOCIAL_INTERVAL_S", "social_interval_s", float,
           "social-proof aggregation interval"),
    EnvVar("LIVECART_COALESCE_MS", "coalesce_ms", float,
           "events within this of a room's last fan-out go out together as one array frame"),
    EnvVar("LIVECART_PRESENCE_TTL_S", "presence_ttl_s", float,
           "a dead node's viewers expire after this (+ one tick: within 10 s)"),
    EnvVar("LIVECART_STORE_TIMEOUT_S", "store_timeout_s", float,
           "store calls fail with `unavailable` after this"),
    EnvVar("LIVECART_DRAIN_TIMEOUT_S", "drain_timeout_s", float,
           "SIGTERM: close viewers with 1001, exit within this"),
    EnvVar("LIVECART_TOKEN_TTL_S", "token_ttl_s", int, "lifetime of demo tokens"),
    EnvVar("LIVECART_ATTRIBUTION_WINDOW_S", "attribution_window_s", int,
           "last-touch attribution window (inclusive)"),
    EnvVar("LIVECART_LOG_FORMAT", "log_format", str, "`json` (one object per line) or `text`"),
    EnvVar("LIVECART_LOG_LEVEL", "log_level", str, "debug, info, warning or error"),
    EnvVar("LIVECART_REDIS_CLUSTER", "redis_cluster", flag,
           "`1`: the store is a Valkey/Redis Cluster (any node's URL); `0`: one server",
           "ask the server (INFO cluster)"),
    EnvVar("LIVECART_PUBSUB_PROBE_INTERVAL_S", "pubsub_probe_interval_s", float,
           "a subscriber connection quiet this long is probed (own channel, own shard)"),
    EnvVar("LIVECART_PUBSUB_PROBE_TIMEOUT_S", "pubsub_probe_timeout_s", float,
           "a probe not back within this rebuilds the subscriber connection"),
    EnvVar("LIVECART_SAGA_TAKEOVER_MS", "saga_takeover_ms", int,
           "a purchase attempt still pending after this is undone by any node's sweep"),
    EnvVar("LIVECART_SAGA_REDO_MS", "saga_redo_ms", int,
           "a committed order whose effects are not confirmed by then has them reapplied"),
    EnvVar("LIVECART_BUY_NOW_LANE", "buy_now_lane", int,
           "buy_now attempts of one product in one room a node runs at once (the rest wait)"),
    EnvVar("LIVECART_WAITLIST_HOLD_MS", "waitlist_hold_ms", int,
           "a restock offer to a waiting user holds one unit for them this long"),
    EnvVar("LIVECART_HANDSHAKE_TIMEOUT_S", "handshake_timeout_s", float,
           "a connection without a complete request head by then gets 408"),
    EnvVar("LIVECART_IDLE_TIMEOUT_S", "idle_timeout_s", float,
           "an open WebSocket that neither joins nor sends anything is closed with 4002"),
    EnvVar("LIVECART_PING_INTERVAL_S", "ping_interval_s", float,
           "keepalive ping interval; no answer by the next round drops the connection"),
    EnvVar("LIVECART_MAX_CONNECTIONS_PER_IP", "max_connections_per_ip", int,
           "handshaking + open WebSockets per client address (0 = no cap)"),
    EnvVar("LIVECART_MAX_REQUEST_LINE_BYTES", "max_request_line_bytes", int,
           "a longer HTTP request line gets 414"),
    EnvVar("LIVECART_MAX_REQUEST_HEAD_BYTES", "max_request_head_bytes", int,
           "a larger request head gets 431"),
    EnvVar("LIVECART_AUCTION_EXTEND_S", "auction_extend_s", float,
           "anti-sniping: a bid this close to an auction's end moves the end this far out"),
    EnvVar("LIVECART_CHAT_RATE_PER_S", "chat_rate_per_s", float,
           "chat messages per user per second in a session, across nodes"),
    EnvVar("LIVECART_CHAT_RATE_BURST", "chat_rate_burst", int, "chat burst per user"),
    EnvVar("LIVECART_CHAT_HISTORY_MAX", "chat_history_max", int,
           "chat-lane events kept per session for recovery with `chat_since`"),
    EnvVar("LIVECART_CHAT_SNAPSHOT_MESSAGES", "chat_snapshot_messages", int,
           "the last chat messages a joiner gets with its snapshot"),
    EnvVar("LIVECART_AUDIT_MAX", "audit_max", int, "moderation actions kept per session"),
    EnvVar("LIVECART_STREAM_ORIGINS", "stream_origins", str,
           "comma-separated origins (`https://cdn.example.com`) a session's `stream_url` may "
           "name (`--demo` adds loopback)"),
    EnvVar("LIVECART_STREAM_TIMEOUT_S", "stream_timeout_s", float,
           "fetching a session's HLS playlist fails with `stream_upstream_failed` after this"),
    EnvVar("LIVECART_STREAM_MAX_BYTES", "stream_max_bytes", int,
           "a larger upstream playlist fails with `stream_upstream_failed`"),
    EnvVar("LIVECART_STREAM_CACHE_MS", "stream_cache_ms", int,
           "an upstream playlist is reused this long (per node)"),
    EnvVar("LIVECART_DEMO_STREAM", "demo_stream", flag,
           "`serve --demo`: `0` skips the generated ffmpeg HLS stream (the drawn stand-in "
           "plays)", "1 with `serve --demo`"),
)


def env_table(markdown: bool = False) -> str:
    """Every variable with its default and meaning (`livecart env`, the README's table)."""
    if markdown:
        rows = ["| variable | default | meaning |", "|---|---|---|"]
        rows += [f"| `{v.name}` | {v.default_text()} | {v.help} |" for v in ENV]
        return "\n".join(rows)
    width = max(len(v.name) for v in ENV)
    return "\n".join(f"{v.name:<{width}}  {v.help} (default: {v.default_text()})"
                     for v in ENV)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from `LIVECART_*` variables; raise SettingsError naming a bad one."""
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for var in ENV:
        raw = source.get(var.name)
        if raw is None or raw.strip() == "":
            continue
        if var.field in ("allowed_origins", "stream_origins"):
            values[var.field] = tuple(o.strip() for o in raw.split(",") if o.strip())
            continue
        try:
            values[var.field] = var.kind(raw)
        except ValueError as exc:
            raise SettingsError(
                f"{var.name}={raw!r} is not a valid {getattr(var.kind, '__name__', 'value')}"
            ) from exc
    if source.get("LIVECART_REUSE_PORT", "").lower() in ("1", "true", "yes"):
        values["reuse_port"] = True  # set by the workers supervisor for each worker
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    if settings.fsync not in ("everysec", "always", "no"):
        raise SettingsError("LIVECART_FSYNC must be one of everysec, always, no")
    if settings.coalesce_ms < 0:
        raise SettingsError("LIVECART_COALESCE_MS must be ≥ 0")
    if settings.log_format not in ("json", "text"):
        raise SettingsError("LIVECART_LOG_FORMAT must be json or text")
    if settings.secret is not None and len(settings.secret) < 32:
        raise SettingsError("LIVECART_SECRET must be at least 32 characters (HS256 key)")
    if len(settings.currency) != 3 or not settings.currency.isalpha():
        raise SettingsError("LIVECART_CURRENCY must be a 3-letter ISO code such as USD")
    if not settings.key_prefix or any(c in settings.key_prefix for c in "{} "):
        raise SettingsError("LIVECART_KEY_PREFIX must be non-empty without braces or spaces")
    if settings.stream_cache_ms < 0:
        raise SettingsError("LIVECART_STREAM_CACHE_MS must be ≥ 0")
    for origin in settings.stream_origins:
        if not re.match(r"^https?://[^/?#@\s]+$", origin):
            raise SettingsError(f"LIVECART_STREAM_ORIGINS: {origin!r} is not an origin "
                                "(scheme://host[:port], no path)")
    if settings.max_connections_per_ip < 0:
        raise SettingsError("LIVECART_MAX_CONNECTIONS_PER_IP must be ≥ 0 (0 = no cap)")
    for name in ("max_frame_bytes", "rate_burst", "abuse_errors", "send_buffer_bytes",
                 "history_max_events", "history_max_age_s", "saga_takeover_ms", "saga_redo_ms",
                 "waitlist_hold_ms",
                 "max_request_line_bytes", "max_request_head_bytes", "chat_rate_burst",
                 "chat_history_max", "chat_snapshot_messages", "audit_max", "stream_max_bytes"):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"{name} must be positive")
    for name in ("rate_per_s", "abuse_window_s", "counters_interval_s", "social_interval_s",
                 "presence_ttl_s", "store_timeout_s", "drain_timeout_s", "handshake_timeout_s",
                 "idle_timeout_s", "ping_interval_s", "pubsub_probe_interval_s",
                 "pubsub_probe_timeout_s", "auction_extend_s", "chat_rate_per_s",
                 "stream_timeout_s", "gc_full_every_s", "gc_full_max_s"):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"{name} must be positive")
