"""Reading an HTTP provider's ``Retry-After`` header, for the adapters that speak HTTP (webhook, HTTP)."""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime

__all__ = ["retry_after"]


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header (delay-seconds or an HTTP date), if readable.

    ``None`` for a missing or unreadable header (the engine's own backoff applies); never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value) if len(value) <= 12 else None  # absurdly long: not worth believing
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, float(round(seconds))) if math.isfinite(seconds) else None
