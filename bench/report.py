"""Plain-text tables of load generator results (shared by every benchmark of bench/)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "0"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(rows: Sequence[tuple[str, Sequence[Any]]], header: Sequence[str]) -> str:
    """A plain text table: one label column, then one column per ``header`` entry."""
    cells = [["", *header]] + [[label, *(fmt(v) for v in values)] for label, values in rows]
    width = max(len(row) for row in cells)
    cells = [row + [""] * (width - len(row)) for row in cells]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


ROWS = [
    ("offered posts/s", "offered_per_s"),
    ("sent / acked", None),
    ("mean fanout", "fanout"),
    ("delivered events/s", "delivered_per_s"),
    ("delivery p50 ms", "delivery_p50_ms"),
    ("delivery p95 ms", "delivery_p95_ms"),
    ("delivery p99 ms", "delivery_p99_ms"),
    ("ack p99 ms", "ack_p99_ms"),
    ("expected / delivered", None),
    ("loss", "loss"),
    ("duplicates / unexpected", None),
    ("errors", "errors"),
    ("no reply", "no_reply"),
    ("loadgen send lag p99 ms", "send_lag_p99_ms"),
    ("loadgen stall max ms", "loadgen_stall_max_ms"),
    ("loadgen CPU %", "loadgen_cpu_pct"),
    ("loadgen CPU µs / delivery", "loadgen_us_per_delivery"),
]


def result_rows(result: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """The standard rows of one result, as (label, [value]) for ``table``."""
    pairs = {
        "sent / acked": f"{result['sent']:,} / {result['acked']:,}",
        "expected / delivered": f"{result['expected']:,} / {result['delivered']:,}",
        "duplicates / unexpected": f"{result['duplicates']} / {result['unexpected']}",
    }
    return [(label, [pairs[label] if key is None else result.get(key, "-")]) for label, key in ROWS]
