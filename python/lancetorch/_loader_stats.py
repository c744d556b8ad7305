"""A Loader's stats: the counters it keeps (``_NO_STATS``), the totals ``Loader.stats``
reports, and the line an epoch read from storage prints on a terminal."""

from __future__ import annotations

import sys
from typing import Any


def _on_a_terminal() -> bool:
    """Whether a line for the user is seen: stderr a terminal, or a notebook."""
    return (sys.stderr is not None and sys.stderr.isatty()) or "ipykernel" in sys.modules


_NO_STATS: dict[str, float | int] = {
    "index_s": 0.0,
    "read_s": 0.0,
    "take_s": 0.0,
    "convert_s": 0.0,
    "pin_s": 0.0,
    "decode_s": 0.0,
    "wait_s": 0.0,
    "total_s": 0.0,
    "batches": 0,
    "rows": 0,
    "bytes": 0,
    "skipped": 0,
    "store_bytes": 0,
    "store_requests": 0,
    "tier_bytes": 0,
    "delivered_bytes": 0,
    "memory_bytes": 0,
    "shuffle_moved": 0.0,
    "shuffle_rows": 0,
}


def summary(stats: dict[str, Any], before: dict[str, Any], epoch: int, table: str, n: int) -> str:
    """One line on what epoch ``epoch`` of table ``table`` (``n`` rows in the order) cost:
    the ``stats`` since ``before``."""
    d = {k: stats[k] - before[k] for k in stats}
    mb = 1e6
    amplification = d["store_bytes"] / d["delivered_bytes"] if d["delivered_bytes"] else 0
    line = (
        f"lancetorch: epoch {epoch} of table '{table}': {d['rows']:,} rows in "
        f"{d['total_s']:.1f}s; {d['store_bytes'] / mb:,.0f} MB from the store in "
        f"{d['store_requests']:,} requests ({amplification:.2f}x the bytes delivered), "
        f"{d['tier_bytes'] / mb:,.0f} MB from the node tier, "
        f"{d['memory_bytes'] / mb:,.0f} MB from memory"
    )
    if d["shuffle_rows"] and n:
        ratio = 3 * d["shuffle_moved"] / d["shuffle_rows"] / n
        line += f"; rows moved {ratio:.2f}x as far as a full shuffle moves them"
    return line


def totals(stats: dict[str, Any], n: int) -> dict[str, float]:
    """What ``Loader.stats`` reports of the counters ``stats`` (``n`` rows in the order):
    the counters, the rates and ratios made of them."""
    s = dict(stats)
    total = s["total_s"]
    s["rows_per_s"] = s["rows"] / total if total else 0.0
    s["bytes_per_s"] = s["bytes"] / total if total else 0.0
    s["wait_fraction"] = s["wait_s"] / total if total else 0.0
    delivered = s["delivered_bytes"]
    s["read_amplification"] = s["store_bytes"] / delivered if delivered else 0.0
    moved, counted = s.pop("shuffle_moved"), s.pop("shuffle_rows")
    s["shuffle_distance"] = moved / counted / n if counted and n else 0.0
    s["shuffle_ratio"] = 3 * s["shuffle_distance"]
    return s
