"""Percentiles, written once: numpy's default ("linear") definition in plain Python, so the board
side (keyboard_ui's demo summary, the on-board latency test, which may run without numpy) and
the host's benchmarks (measure/) report the same statistic. stdlib only."""
from __future__ import annotations

import math


def percentile(values, q: float) -> float | None:
    """The q-th percentile (0..100) of `values` with linear interpolation between the closest
    ranks (numpy.percentile's default); None for no values."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def percentiles(values, qs=(50, 95, 99), digits: int = 4) -> dict:
    """{"p50": ..., "p95": ..., "p99": ...} rounded to `digits` (None for no values)."""
    ordered = sorted(float(v) for v in values)
    return {f"p{q}": (None if not ordered else round(percentile(ordered, q), digits)) for q in qs}
