"""Wire codecs chosen by subprotocol, and server-side WebSocket frame building.

`livecart.json` uses text frames (orjson), `livecart.msgpack` binary frames. Both carry
the same shapes. Server frames are unmasked, so a frame's bytes are the same for every
viewer: `frame()` builds them once and the hub hands the same `bytes` to every socket.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgpack
import orjson

JSON_PROTOCOL: Final = "livecart.json"
MSGPACK_PROTOCOL: Final = "livecart.msgpack"

OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2


class DecodeError(ValueError):
    """The frame is not a valid document in this codec, or not one JSON could carry.

    `document` is what could still be read of it (a msgpack document with a non-string
    map key), so the reply can carry the command's `id`; None when nothing could."""

    def __init__(self, message: str, document: Any = None) -> None:
        super().__init__(message)
        self.document = document


class _NonStringKey(ValueError):
    pass


def _string_keys(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """msgpack maps may have keys of any type; commands (like JSON) have string keys only."""
    for key, _ in pairs:
        if type(key) is not str:
            raise _NonStringKey(f"map keys must be strings, not {type(key).__name__}")
    return dict(pairs)


class Codec:
    name: str
    opcode: int

    def encode(self, obj: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: str | bytes) -> Any:
        raise NotImplementedError


class Encoded:
    """A document encoded at most once per codec and spliced as-is into every document
    that carries it (the join snapshot shared by the viewers who join at one room state).
    JSON splices it anywhere; msgpack as the `result` of a reply `{id, ok, result}`."""

    __slots__ = ("_json", "_msgpack", "doc")

    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self._json: bytes | None = None
        self._msgpack: bytes | None = None

    def json(self) -> bytes:
        if self._json is None:
            self._json = orjson.dumps(self.doc)
        return self._json

    def msgpack(self) -> bytes:
        if self._msgpack is None:
            self._msgpack = msgpack.packb(self.doc, use_bin_type=True)
        return self._msgpack


def _fragment(obj: Any) -> Any:
    if isinstance(obj, Encoded):
        return orjson.Fragment(obj.json())
    raise TypeError(f"cannot encode {type(obj).__name__}")


class JsonCodec(Codec):
    name = JSON_PROTOCOL
    opcode = OP_TEXT

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=_fragment)

    def decode(self, data: str | bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"invalid JSON: {exc}") from exc


class MsgpackCodec(Codec):
    name = MSGPACK_PROTOCOL
    opcode = OP_BINARY

    def encode(self, obj: Any) -> bytes:
        if type(obj) is dict and type(obj.get("result")) is Encoded and len(obj) == 3:
            return b"".join((b"\x83", *(self._pack(x) for x in (
                "id", obj["id"], "ok", obj["ok"], "result")), obj["result"].msgpack()))
        return self._pack(obj)

    @staticmethod
    def _pack(obj: Any) -> bytes:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]

    def decode(self, data: str | bytes) -> Any:
        raw = data.encode() if isinstance(data, str) else data
        try:
            return msgpack.unpackb(raw, raw=False, strict_map_key=False,
                                   object_pairs_hook=_string_keys)
        except _NonStringKey as exc:
            try:
                readable = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            except Exception:  # e.g. a map used as a key: unhashable
                readable = None
            raise DecodeError(f"invalid command: {exc}", readable) from exc
        except Exception as exc:  # msgpack raises many unrelated types for garbage
            raise DecodeError(f"invalid msgpack: {type(exc).__name__}") from exc


JSON: Final = JsonCodec()
MSGPACK: Final = MsgpackCodec()
CODECS: Final[dict[str, Codec]] = {JSON_PROTOCOL: JSON, MSGPACK_PROTOCOL: MSGPACK}


def choose(offered: list[str]) -> Codec:
    """The first livecart codec the client offered, in its order; JSON when it offered none."""
    for name in offered:
        codec = CODECS.get(name)
        if codec is not None:
            return codec
    return JSON


def frame(opcode: int, payload: bytes) -> bytes:
    """A complete, unmasked, final WebSocket frame (RFC 6455 section 5.2)."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def batch(codec: Codec, encoded_events: list[bytes]) -> bytes:
    """Join already-encoded events into one array document without re-encoding them."""
    if codec is MSGPACK:
        n = len(encoded_events)
        if n < 16:
            head = bytes((0x90 | n,))
        elif n < 65536:
            head = struct.pack("!BH", 0xDC, n)
        else:
            head = struct.pack("!BI", 0xDD, n)
        return head + b"".join(encoded_events)
    return b"[" + b",".join(encoded_events) + b"]"
