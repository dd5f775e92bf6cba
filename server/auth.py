"""HS256 tokens: `{sub, role, exp, iat?, nbf?, name?}` signed with the deployment's secret.

Claim rules (checked at issue and at every verify):
- `sub` is an id (server/validate.py: 1-64 of `A-Z a-z 0-9 _ - . : @ + |`), so every user a
  token names can be named in a URL path (`/api/creators/{id}/ledger`) and a key;
- `exp` (required), `iat` and `nbf` are JSON numbers (RFC 7519 NumericDate: an integer or
  a finite float, never a string or a boolean) within ±(2^53 - 1);
- `role` is one of ROLES; `name`, when present, a string of at most 64 characters.

Only HS256 is accepted: the header must say `"alg": "HS256"` (never `none`, never another
algorithm), the signature is checked in constant time before any claim is read, `exp` is
required and `nbf` honoured, with no leeway. Tokens are verified here rather than with
PyJWT because a join spike verifies one token per viewer and PyJWT's generic path cost
~100 µs a token on this kind of box (a tenth of a bare WebSocket join); the tests check
that tokens PyJWT writes verify here and that the forgeries it can write do not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from typing import Any

import orjson

from server.errors import ApiError, ErrorCode, forbidden, unauthorized
from server.validate import ID_MAX, MAX_INT, is_id

ROLES = ("viewer", "creator", "seller", "admin")
TIME_CLAIMS = ("exp", "iat", "nbf")
SUB_RULE = f"1-{ID_MAX} characters of A-Z a-z 0-9 _ - . : @ + |"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is speaking. Anonymous viewers have `sub=None` and may only watch and like."""

    sub: str | None
    role: str
    name: str | None = None
    exp: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.sub is None

    def expired(self, now: float | None = None) -> bool:
        return self.exp is not None and (now if now is not None else time.time()) >= self.exp

    def display_name(self) -> str:
        """A name safe to show other viewers: the `name` claim, or a masked id."""
        if self.name:
            return self.name
        if not self.sub:
            return "someone"
        return mask_id(self.sub)


ANONYMOUS = Identity(sub=None, role="viewer")


def mask_id(sub: str) -> str:
    head = sub[:1] if sub else "?"
    return f"{head}***{len(sub) % 10}"


def issue_token(secret: str, sub: str, role: str, ttl_s: int, name: str | None = None,
                now: float | None = None) -> str:
    if role not in ROLES:
        raise ApiError(ErrorCode.BAD_REQUEST, f"role must be one of {', '.join(ROLES)}")
    if not is_id(sub):
        raise ApiError(ErrorCode.BAD_REQUEST, f"`sub` must be an id: {SUB_RULE}", field="sub")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"sub": sub, "role": role, "iat": issued, "exp": issued + ttl_s}
    if name:
        claims["name"] = name
    return _sign(secret, claims)


def _b64encode(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _b64decode(part: str) -> bytes:
    if not part or len(part) % 4 == 1 or "=" in part:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


HEADER = _b64encode(orjson.dumps({"alg": "HS256", "typ": "JWT"}))


def _mac(secret: str, signing_input: bytes) -> bytes:
    return hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()


def _sign(secret: str, claims: dict[str, Any]) -> str:
    signing_input = HEADER + b"." + _b64encode(orjson.dumps(claims))
    return (signing_input + b"." + _b64encode(_mac(secret, signing_input))).decode()


def _claims(secret: str, token: str) -> dict[str, Any]:
    """The signed claims of an HS256 JWS in compact form; `unauthorized` for anything else."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise unauthorized("invalid token")
    try:
        header = orjson.loads(_b64decode(parts[0]))
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise unauthorized("invalid token") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256" or "crit" in header:
        raise unauthorized("invalid token")
    expected = _mac(secret, f"{parts[0]}.{parts[1]}".encode())
    if not hmac.compare_digest(signature, expected):
        raise unauthorized("invalid token")
    try:
        claims = orjson.loads(_b64decode(parts[1]))
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise unauthorized("invalid token") from exc
    if not isinstance(claims, dict):
        raise unauthorized("invalid token")
    return claims


def verify_token(secret: str, token: str) -> Identity:
    """Decode and check a token; raise `unauthorized` for anything forged, expired or malformed."""
    claims = _claims(secret, token)
    for claim in ("sub", "role", "exp"):
        if claim not in claims:
            raise unauthorized(f"token has no `{claim}`")
    for claim in TIME_CLAIMS:
        if claim in claims and not _numeric_date(claims[claim]):
            raise unauthorized(f"token `{claim}` must be a number (seconds since the epoch)")
    now = time.time()
    if claims["exp"] <= now:
        raise unauthorized("token expired")
    if "nbf" in claims and claims["nbf"] > now:
        raise unauthorized("token not valid yet")
    sub, role, name = claims.get("sub"), claims.get("role"), claims.get("name")
    if not is_id(sub):
        raise unauthorized(f"token `sub` must be an id: {SUB_RULE}")
    if role not in ROLES:
        raise unauthorized(f"token role must be one of {', '.join(ROLES)}")
    if name is not None and (not isinstance(name, str) or len(name) > 64):
        raise unauthorized("token `name` must be a short string")
    assert isinstance(sub, str)
    return Identity(sub=sub, role=role, name=name, exp=int(claims["exp"]))


def _numeric_date(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and abs(value) <= MAX_INT


def require_user(identity: Identity) -> str:
    """The caller's id; `unauthorized` when anonymous or expired."""
    if identity.sub is None:
        raise unauthorized("sign in: this needs a token")
    if identity.expired():
        raise unauthorized("token expired; send `auth` with a fresh token")
    return identity.sub


def require_role(identity: Identity, *roles: str) -> str:
    sub = require_user(identity)
    if identity.role not in roles and identity.role != "admin":
        raise forbidden(f"this needs the role {' or '.join(roles)}")
    return sub
