"""Listings as recommendable items: prices in major units and the ``recommend.rank`` payload.

The ranker's price band is log2 of a price in major units (euros, yen), so a listing's price in
minor units is converted by its currency's ISO 4217 exponent everywhere a listing becomes an
item: the candidates sent for scoring, the catalog the trainer and the shard snapshot load, and
the ``interactions`` rows written on views and purchases. One function, so the three agree.

Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

# ISO 4217 currencies whose minor unit is not 1/100 of the major unit.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
         "VND", "VUV", "XAF", "XOF", "XPF"),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}  # fmt: skip


def major_units(minor: int | float, currency: str | None) -> float:
    """A price in minor units (what listings store) in major units (what the ranker sees)."""
    exponent = _EXPONENTS.get((currency or "").upper(), 2)
    return float(minor) / 10**exponent


def _created_ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value).timestamp() * 1000)
        except ValueError:
            return None
    return None


def rank_item(listing: dict[str, Any]) -> dict[str, Any]:
    """The ``recommend.rank`` item of a listing (as ``listing_public`` shapes it)."""
    item = {
        "id": listing["id"],
        "lat": listing["lat"],
        "lng": listing["lng"],
        "cell": listing["cell"],
        "category": listing.get("category"),
        "price": major_units(listing["price"], listing.get("currency")),
    }
    created = _created_ms(listing.get("created_at"))
    if created is not None:
        item["created_ms"] = created
    return item


def relevance_page(order: list[int], offset: int, limit: int) -> tuple[list[int], int | None]:
    """Positions of one page of a ranked order and the offset of the next page (None: last)."""
    page = order[offset : offset + limit]
    after = offset + limit
    return page, after if after < len(order) else None
