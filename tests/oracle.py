"""The test oracle for commission arithmetic in integer minor units (pure, no I/O).

The server's one owner of these rules is Lua (reserve.lua computes a line's commission,
refund.lua the cumulative clawback); tests run those scripts and check they agree with
this oracle.
"""

from __future__ import annotations


def effective_rate(product_bps: int, session_override_bps: int | None) -> int:
    """The product's rate, or the seller's higher live-exclusive rate for the session."""
    if session_override_bps is not None and session_override_bps > product_bps:
        return session_override_bps
    return product_bps


def commission(amount: int, rate_bps: int) -> int:
    """floor(amount * rate / 10000) for a line's paid amount."""
    if amount < 0 or rate_bps < 0:
        raise ValueError("amount and rate must be non-negative")
    return amount * rate_bps // 10_000


def clawed_back(line_commission: int, refunded_units: int, qty: int) -> int:
    """Total clawed back once `refunded_units` of the line's `qty` are refunded (cumulative)."""
    if not 0 <= refunded_units <= qty or qty <= 0:
        raise ValueError("refunded units must be within the line's quantity")
    return line_commission * refunded_units // qty


def clawback_step(line_commission: int, before: int, after: int, qty: int) -> int:
    """What one refund step claws back: the cumulative total after minus before."""
    return clawed_back(line_commission, after, qty) - clawed_back(line_commission, before, qty)
