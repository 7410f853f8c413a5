"""A shop's history as labelled examples: every abandoned cart, its features then, and whether it was bought.

The events are read as ``recoverkit replay`` and ``recoverkit report`` read them (JSON lines, or a REES46 /
Retailrocket CSV export; :func:`recoverkit.analytics.load_events`), sorted as the engine's ingest orders them,
and run through the engine's own sessionize stage in event time: the same timers decide what is abandoned and
when, and the same purchase logic decides what was bought (a purchase of the cart, or one by its customer in
another session, closes it: :class:`~recoverkit.sessionize.Converted`). Nothing here is a second definition.

An abandonment is **converted** when a conversion of the same cart follows it within ``window`` seconds
(the configuration's ``recovery_window`` by default). It is **censored**, and left out whatever happened,
when the events end before its window does: whether it would have been bought is not known, and keeping only
the ones bought early in their window would make the late carts look better than they are.

The history should be one in which carts were not messaged (or a holdout's carts): carts bought after a
recovery message would teach the model that the message's effect is the cart's own intent.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import msgspec

from .analytics.sources import EventFormat, EventSource, load_events
from .config import Config
from .events import Event
from .score import Features, features_of
from .sessionize import Abandoned, Converted, Sessionize

__all__ = ["Example", "History", "abandonment_history", "split_by_time"]

#: Events handed to the sessionizer at a time; in event time any size decides the same.
_CHUNK: Final = 4096


class Example(msgspec.Struct, frozen=True, kw_only=True):
    """One abandonment: the cart, when it was abandoned, its features then, and whether and when it was bought
    within the window."""

    cart_key: str
    at: float
    features: Features
    converted: bool
    converted_at: float | None = None


class History(msgspec.Struct, frozen=True, kw_only=True):
    """The labelled abandonments of an event file, in time order, and what was read.

    ``abandonments`` counts all of them; ``censored`` those left out because the events end within their
    window.
    """

    examples: list[Example]
    abandonments: int
    censored: int
    window: float
    source: EventSource


def abandonment_history(
    source: str | Path | list[bytes] | Iterable[Event],
    *,
    config: Config | None = None,
    format: EventFormat = "auto",
    window: float | None = None,
) -> History:
    """Replay ``source`` through the sessionize stage of ``config`` and label every abandonment.

    ``window`` (seconds, at most ``config.recovery_window``, which is also the default) is how long after an
    abandonment a purchase still counts. Events are held in memory (split very large files by time first).
    """
    config = config if config is not None else Config()
    window = config.recovery_window if window is None else float(window)
    if not 0 < window <= config.recovery_window:
        raise ValueError(
            f"window={window:g} s; expected more than 0 and at most recovery_window ({config.recovery_window:g} s), "
            "after which the engine forgets an abandoned cart and cannot see it bought"
        )
    log = load_events(source, format=format)
    out, end = _sessionize(log.events, config)
    bought: dict[str, list[float]] = {}
    for item in out:
        if type(item) is Converted:
            bought.setdefault(item.cart_key, []).append(item.at)
    examples: list[Example] = []
    abandoned = [item for item in out if type(item) is Abandoned]
    censored = 0
    for item in abandoned:
        if item.at + window > end:
            # Left out whatever happened: keeping the ones bought early in their window would bias the labels.
            censored += 1
            continue
        examples.append(_example(item, bought.get(item.cart.cart_key, []), window))
    examples.sort(key=lambda e: e.at)
    return History(examples=examples, abandonments=len(abandoned), censored=censored, window=window, source=log.source)


def _sessionize(events: Sequence[Event], config: Config) -> tuple[list[object], float]:
    """What the sessionize stage made of ``events`` in event time, and the last event's time (-inf for none)."""
    stage = Sessionize(config, event_time=True)
    out: list[object] = []
    for i in range(0, len(events), _CHUNK):
        stage.handle(events[i : i + _CHUNK], out)
    end = float(events[-1].ts) if events else -math.inf  # type: ignore[arg-type]  # load_events: ts is a float
    if events:
        stage.advance(end, out)  # as a replay's end of input: carts still open are censored, not abandoned
    return out, end


def _example(item: Abandoned, times: list[float], window: float) -> Example:
    """The abandonment ``item`` labelled by its cart's conversion ``times`` (in time order)."""
    k = bisect_right(times, item.at)
    first = times[k] if k < len(times) else None
    converted = first is not None and first <= item.at + window
    return Example(
        cart_key=item.cart.cart_key, at=item.at, features=features_of(item), converted=converted,
        converted_at=first if converted else None,
    )  # fmt: skip


def split_by_time(examples: Sequence[Example], test_share: float) -> tuple[list[Example], list[Example]]:
    """The earlier ``1 - test_share`` of ``examples`` (by abandonment time) and the later rest.

    Abandonments at the same instant stay on one side.
    """
    if not 0 <= test_share < 1:
        raise ValueError(f"test_share={test_share!r}; expected a share from 0 up to (not including) 1")
    ordered = sorted(examples, key=lambda e: e.at)
    cut = len(ordered) - round(len(ordered) * test_share)
    while 0 < cut < len(ordered) and ordered[cut].at == ordered[cut - 1].at:
        cut += 1
    return ordered[:cut], ordered[cut:]
