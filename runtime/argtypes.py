"""Validated argparse types for every CLI module (stdlib only, so it imports on the board).

A number given on the command line is checked where it is parsed: its type, that it is finite,
and its range, so `--window -1`, `--login-timeout nan`, `--sweep 16,abc`, `-k 0` or a 5,001-digit
number end in one line naming the option (exit 2), never a traceback deep in the command, and
never a hang (every timeout finite and positive).
"""
from __future__ import annotations

import argparse
import math

MAX_WINDOW = 4096  # KV slots; the bundle check (runtime/bundle.py) uses the same bound
MAX_DIGITS = 30  # longer than any sensible count or size; also keeps int() far below its own limit


def int_in(low: int | None = None, high: int | None = None):
    """An argparse type: an integer in [low, high] (either end open when None)."""

    def parse(text: str) -> int:
        stripped = text.strip()
        if len(stripped) > MAX_DIGITS:
            raise argparse.ArgumentTypeError(f"{stripped[:20]}... is too long for a number")
        try:
            value = int(stripped)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{stripped[:40]!r} is not an integer") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: {_range(low, high)}")
        return value

    parse.__name__ = "integer"
    return parse


def float_in(low: float | None = None, high: float | None = None, *, low_open: bool = False):
    """An argparse type: a finite float in [low, high] ((low, high] with low_open)."""

    def parse(text: str) -> float:
        stripped = text.strip()
        if len(stripped) > 2 * MAX_DIGITS:
            raise argparse.ArgumentTypeError(f"{stripped[:20]}... is too long for a number")
        try:
            value = float(stripped)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{stripped[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{stripped} is not a finite number")
        if (low is not None and (value < low or (low_open and value == low))) or (high is not None and value > high):
            bracket = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"{value:g} is out of range: {_range(low, high, bracket)}")
        return value

    parse.__name__ = "number"
    return parse


def int_list(low: int | None = None, high: int | None = None, max_items: int = 64):
    """An argparse type: comma-separated integers, each in [low, high] (e.g. `--sweep 16,32,64`)."""
    item = int_in(low, high)

    def parse(text: str) -> list[int]:
        parts = [p for p in text.split(",")]
        if not text.strip() or any(not p.strip() for p in parts):
            raise argparse.ArgumentTypeError(f"{text[:40]!r}: expected comma-separated integers like 16,32,64")
        if len(parts) > max_items:
            raise argparse.ArgumentTypeError(f"{len(parts)} values: at most {max_items}")
        values = []
        for part in parts:
            try:
                values.append(item(part))
            except argparse.ArgumentTypeError as error:
                raise argparse.ArgumentTypeError(f"in {text[:40]!r}: {error}") from None
        return values

    parse.__name__ = "integer list"
    return parse


def _range(low, high, bracket: str = "[") -> str:
    if low is not None and high is not None:
        return f"must be in {bracket}{low:g}, {high:g}]"
    if low is not None:
        return f"must be {'>' if bracket == '(' else '>='} {low:g}"
    return f"must be <= {high:g}"


positive_int = int_in(1)  # counts, sizes, steps
nonnegative_int = int_in(0)  # seeds, "0 = none"
seed_int = int_in(0, 2**32 - 1)  # numpy seeds
positive_seconds = float_in(0.0, 7 * 24 * 3600.0, low_open=True)  # timeouts: finite and > 0
probability = float_in(0.0, 1.0)  # shares, rates, mixture weights
