"""Formatting numbers, times and text for tables (one place, so every section agrees)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

DASH = "–"


def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: float | None) -> str:
    """A value already on the 0-100 scale."""
    return DASH if value is None else f"{value:.2f}"


def general(value: Any) -> str:
    """Hyperparameters: 0.0001 -> 1e-04, 0.1 -> 0.1, 256 -> 256."""
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def count(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) else DASH


def seconds(value: float | None) -> str:
    if value is None:
        return DASH
    s = int(round(value))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s:02d}s"
    return f"{value:.1f}s"


def timestamp(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return DASH
    return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")


def clip(text: Any, limit: int = 300) -> str:
    if isinstance(text, (list, tuple)):  # a label set (multilabel): its names, not a repr
        text = ", ".join(map(str, text)) or "(none)"
    text = "" if text is None else str(text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
