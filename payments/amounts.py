"""Minor units to the decimal strings PayPal's and NPCI's formats carry ("12.50", "1200").

Amounts are integers in minor units everywhere else (PROTOCOL.md); only these wire formats
want a decimal, and the number of decimals is the currency's (ISO 4217 exponent).
"""

from __future__ import annotations

ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "HUF", "ISK", "JPY", "KMF", "KRW", "PYG",
                          "RWF", "TWD", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"})  # fmt: skip
"""Currencies without minor units as PayPal writes them (HUF and TWD included: PayPal
takes no decimals for them)."""


def decimal_amount(amount: int, currency: str) -> str:
    """``1250, "EUR"`` -> ``"12.50"``; ``1200, "JPY"`` -> ``"1200"``. ``amount`` >= 0."""
    if amount < 0:
        raise ValueError("amount must not be negative")
    if currency.upper() in ZERO_DECIMAL:
        return str(amount)
    return f"{amount // 100}.{amount % 100:02d}"


def minor_units(value: str, currency: str) -> int:
    """The inverse of ``decimal_amount``: ``"12.5", "EUR"`` -> ``1250``."""
    whole, _, frac = value.strip().partition(".")
    if currency.upper() in ZERO_DECIMAL:
        if frac.strip("0"):
            raise ValueError(f"{currency} has no minor units: {value!r}")
        return int(whole)
    if len(frac) > 2 or not (whole.isdigit() and (frac.isdigit() or not frac)):
        raise ValueError(f"not an amount: {value!r}")
    return int(whole) * 100 + int((frac or "0").ljust(2, "0"))
