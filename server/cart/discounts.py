"""Voucher arithmetic, pure: which lines a voucher covers, its discount, and each line's share.

The rule (integer minor units throughout; docs/protocol.md "Vouchers"):

- the **eligible subtotal** S is the sum of the amounts of the lines the voucher covers
  (the voucher's seller's products, and only its `products` when it names some);
- S below `min_spend` (or no eligible line) → `voucher_not_applicable`;
- the **order discount** D is `floor(S * percent_off / 100)` for a percent voucher, or
  `min(amount_off, S)` for an amount voucher — so 0 ≤ D ≤ S, rounded once per order in
  the buyer's disfavour by less than one minor unit;
- D is spread over the eligible lines by **largest remainder**: line i gets
  `floor(D * a_i / S)`, and the R = D - Σ floors units left go, one each, to the lines
  with the largest remainders `(D * a_i) mod S` (ties: the earlier line). Each share is at
  most its line's amount and the shares sum to D exactly.
- A line's commission is then `floor((amount - discount) * bps / 10000)`: on what was paid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.errors import ApiError, ErrorCode


@dataclass(frozen=True, slots=True)
class Terms:
    """What a voucher gives (immutable once created): exactly one of percent/amount > 0."""

    code: str
    seller: str
    percent_off: int
    amount_off: int
    min_spend: int
    products: tuple[str, ...]  # empty: every product of the seller

    def to_plan(self) -> dict[str, Any]:
        return {"code": self.code, "seller": self.seller, "percent_off": self.percent_off,
                "amount_off": self.amount_off, "min_spend": self.min_spend,
                "products": list(self.products)}

    @classmethod
    def from_plan(cls, d: dict[str, Any]) -> Terms:
        return cls(str(d["code"]), str(d["seller"]), int(d["percent_off"]),
                   int(d["amount_off"]), int(d["min_spend"]), tuple(d["products"]))

    def covers(self, product: str, seller: str) -> bool:
        return seller == self.seller and (not self.products or product in self.products)


def order_discount(terms: Terms, subtotal: int) -> int:
    """D for an eligible subtotal S: floor(S * percent / 100), or min(amount_off, S)."""
    if terms.percent_off:
        return subtotal * terms.percent_off // 100
    return min(terms.amount_off, subtotal)


def distribute(discount: int, amounts: Sequence[int]) -> list[int]:
    """Spread `discount` (≤ sum(amounts)) over `amounts` by largest remainder."""
    total = sum(amounts)
    if total == 0 or discount == 0:
        return [0] * len(amounts)
    shares = [discount * a // total for a in amounts]
    left = discount - sum(shares)
    by_remainder = sorted(range(len(amounts)), key=lambda i: (-(discount * amounts[i] % total), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return shares


def line_discounts(terms: Terms, lines: Sequence[dict[str, Any]]) -> list[int]:
    """Each line's discount ({product, seller, amount} per line); raises
    `voucher_not_applicable` (with `reason`) when the voucher covers nothing here or the
    eligible subtotal is under its minimum spend."""
    eligible = [i for i, line in enumerate(lines)
                if terms.covers(str(line["product"]), str(line["seller"]))]
    if not eligible:
        raise ApiError(ErrorCode.VOUCHER_NOT_APPLICABLE,
                       "the voucher covers none of these products", voucher=terms.code,
                       reason="products")
    subtotal = sum(int(lines[i]["amount"]) for i in eligible)
    if subtotal < terms.min_spend:
        raise ApiError(ErrorCode.VOUCHER_NOT_APPLICABLE,
                       f"the voucher needs a spend of at least {terms.min_spend}",
                       voucher=terms.code, reason="min_spend", min_spend=terms.min_spend,
                       subtotal=subtotal)
    shares = distribute(order_discount(terms, subtotal),
                        [int(lines[i]["amount"]) for i in eligible])
    out = [0] * len(lines)
    for i, share in zip(eligible, shares, strict=True):
        out[i] = share
    return out


def paid_commission(paid: int, bps: int) -> int:
    """floor(paid * bps / 10000): commission on what the buyer actually paid."""
    return paid * bps // 10_000
