"""`livecart orders tail`: read the orders streams with a consumer group, one JSON line each.

The group is created with `XGROUP CREATE <stream> <group> $|0 MKSTREAM` on every stream
that `Keys.orders_streams()` names (a fresh store has no stream yet: MKSTREAM makes it).
A new group starts after the newest entry, or at the first one with `from_start`; an
existing group continues where it stopped. Entries this consumer read but never
acknowledged (a crash between print and XACK) are delivered again first; each entry is
acknowledged after its line is written, so delivery is at-least-once.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from server.valkey.keys import Keys
from server.valkey.store import Store

BATCH = 100
BLOCK_MS = 1000


def entry_doc(stream: str, entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """One stream entry as the line `orders tail` prints: the fields, `json` parsed."""
    doc: dict[str, Any] = {"stream": stream, "id": entry_id}
    for name, value in fields.items():
        doc[name] = orjson.loads(value) if name == "json" else value
    for name in ("total", "at"):
        if isinstance(doc.get(name), str) and doc[name].lstrip("-").isdigit():
            doc[name] = int(doc[name])
    return doc


async def ensure_group(redis: aioredis.Redis, stream: str, group: str,
                       from_start: bool) -> bool:
    """Create the group (and the stream) if absent; True when it was created."""
    try:
        await redis.xgroup_create(stream, group, id="0" if from_start else "$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


async def tail(url: str, keys: Keys, group: str, consumer: str, *, from_start: bool = False,
               limit: int = 0, write: Callable[[str], None] | None = None,
               note: Callable[[str], None] | None = None,
               cluster: bool | None = None) -> int:
    """Print entries until `limit` (0: forever); returns how many were printed.
    `cluster`: as LIVECART_REDIS_CLUSTER (None: ask the server)."""
    write = write or (lambda line: print(line, flush=True))
    note = note or (lambda line: print(line, file=sys.stderr, flush=True))
    store = Store(url, cluster=cluster, decode=True)
    await store.open()
    redis: Any = store.redis
    streams = keys.orders_streams()
    printed = 0
    try:
        for stream in streams:
            created = await ensure_group(redis, stream, group, from_start)
            note(f"livecart: {'created' if created else 'joined'} group {group!r} on {stream} "
                 f"as consumer {consumer!r}"
                 + ("" if created or not from_start else
                    " (the group exists: it continues where it stopped)"))
        # "0": first this consumer's unacknowledged entries, then ">" (new ones)
        cursor: dict[Any, Any] = dict.fromkeys(streams, "0")
        while not limit or printed < limit:
            count = BATCH if not limit else min(BATCH, limit - printed)
            block = None if "0" in cursor.values() else BLOCK_MS
            if store.cluster:  # one stream per read: the streams live on different shards
                replies: Any = []
                for name in streams:
                    got = await redis.xreadgroup(group, consumer, {name: cursor[name]},
                                                 count=count)
                    replies.extend(got or ([[name, []]] if cursor[name] == "0" else []))
                if block and not any(entries for _, entries in replies):
                    await asyncio.sleep(block / 1000)
            else:
                replies = await redis.xreadgroup(group, consumer, cursor, count=count,
                                                 block=block)
            for name, entries in replies or []:
                if not entries and cursor[name] == "0":
                    cursor[name] = ">"  # the backlog is done: new entries from now on
                for entry_id, fields in entries:
                    if fields is None:  # deleted (trimmed) while pending
                        await redis.xack(name, group, entry_id)
                        continue
                    write(orjson.dumps(entry_doc(name, entry_id, fields)).decode())
                    await redis.xack(name, group, entry_id)
                    printed += 1
                    if limit and printed >= limit:
                        return printed
        return printed
    finally:
        await store.close()
