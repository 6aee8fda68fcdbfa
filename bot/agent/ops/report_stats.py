"""The numbers of the run report: percentiles, a latency summary, a round-edged histogram."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50, 90, 95, 99)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile with linear interpolation between closest ranks (numpy's
    default); ``sorted_values`` must be sorted and not empty."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = (len(sorted_values) - 1) * p / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (rank - lo)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    vals = sorted(values_ms)
    out: dict[str, float | int | None] = {"count": len(vals)}
    keys = ["min", "mean", *(f"p{p}" for p in PERCENTILES), "max"]
    if not vals:
        return {**out, **dict.fromkeys(keys)}
    out["min"] = round(vals[0], 3)
    out["mean"] = round(sum(vals) / len(vals), 3)
    for p in PERCENTILES:
        out[f"p{p}"] = round(percentile(vals, p), 3)
    out["max"] = round(vals[-1], 3)
    return out


def nice_ceil(x: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= x (> 0)."""
    if x <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * base >= x * (1 - 1e-12):
            return float(m * base)
    return 10.0 * base


def histogram(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Equal-width bins from 0 to a round number above the largest value: between 5 and 20
    bins (about the square root of the count). No values: no bins."""
    if not values:
        return [], []
    n_bins = min(20, max(5, math.ceil(math.sqrt(len(values)))))
    hi = nice_ceil(max(values))
    width = hi / n_bins
    edges = [round(i * width, 6) for i in range(n_bins + 1)]
    counts = [0] * n_bins
    for v in values:
        counts[min(n_bins - 1, max(0, int(v / width)))] += 1
    return edges, counts
