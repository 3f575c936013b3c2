"""Small generated interaction worlds for tests and benchmarks (never real data).

A world has venues scattered over a few H3 cells, each with a category; users with a home, a
few favourite venues and habits (a favourite venue tends to be followed by the next venue of
its chain), producing day-long trajectories. Deterministic for a seed.
"""

from __future__ import annotations

import math

import numpy as np

from .data import Interaction
from .serving import Item

CENTER = (40.7128, -74.0060)
DAY_S = 86400.0


def make_items(n_items: int, seed: int = 0, spread_deg: float = 0.02) -> list[Item]:
    rng = np.random.default_rng(seed)
    lat = CENTER[0] + rng.normal(0, spread_deg, n_items)
    lng = CENTER[1] + rng.normal(0, spread_deg, n_items)
    return [
        Item(
            id=f"v{i}",
            lat=float(lat[i]),
            lng=float(lng[i]),
            category=f"c{i % 7}",
            price=float(rng.integers(1, 200)) if i % 3 == 0 else math.nan,
        )
        for i in range(n_items)
    ]


def make_events(
    items: list[Item],
    n_users: int = 40,
    days: int = 30,
    seed: int = 0,
    start: float = 1_700_000_000.0,
) -> list[Interaction]:
    """Trajectories of 2-5 check-ins per user-day; strong personal and sequential habits."""
    rng = np.random.default_rng(seed + 1)
    n = len(items)
    out: list[Interaction] = []
    for u in range(n_users):
        favourites = rng.choice(n, size=min(5, n), replace=False)
        for day in range(days):
            if rng.random() < 0.4:
                continue
            t = start + day * DAY_S + rng.uniform(7, 12) * 3600
            item = int(rng.choice(favourites))
            for _ in range(int(rng.integers(2, 6))):
                it = items[item]
                out.append(
                    Interaction(
                        f"u{u}", it.id, t, "checkin", it.lat, it.lng, None, it.category, -300
                    )
                )
                t += rng.uniform(0.5, 3) * 3600
                r = rng.random()
                if r < 0.5:
                    item = (item + 1) % n  # the chain habit
                elif r < 0.8:
                    item = int(rng.choice(favourites))
                else:
                    item = int(rng.integers(n))
    out.sort(key=lambda e: e.timestamp)
    return out
