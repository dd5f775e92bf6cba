"""HS256 tokens: `{sub, role, exp, iat?, nbf?, name?}` signed with the deployment's secret.

Claim rules (checked at issue and at every verify):
- `sub` is an id (server/validate.py: 1-64 of `A-Z a-z 0-9 _ - . : @ + |`), so every user a
  token names can be named in a URL path (`/api/creators/{id}/ledger`) and a key;
- `exp` (required), `iat` and `nbf` are JSON numbers (RFC 7519 NumericDate: an integer or
  a finite float, never a string or a boolean) within ±(2^53 - 1);
- `role` is one of ROLES; `name`, when present, a string of at most 64 characters.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import jwt

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
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str) -> Identity:
    """Decode and check a token; raise `unauthorized` for anything forged, expired or malformed."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise unauthorized("token expired") from exc
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
        # PyJWT's own claim checks call int() on signed claims: odd values raise plain errors
        raise unauthorized("invalid token") from exc
    for claim in TIME_CLAIMS:
        if claim in claims and not _numeric_date(claims[claim]):
            raise unauthorized(f"token `{claim}` must be a number (seconds since the epoch)")
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
