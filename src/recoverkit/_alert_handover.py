"""The engine-run watcher across hand-overs: the holder of the ``alerts`` lease saves its watcher's state with
the journal positions it reached (:class:`HolderState`, in the store's :class:`~recoverkit.store.StateStore`
under :data:`STATE_NAME`), and the next holder goes on from it (:func:`restore`).

Fenced: a save is written only while the saver holds the ``alerts`` lease, checked in the save's transaction, so
a holder that lost the lease never overwrites what its successor saved.

How a new holder starts (:class:`Start`):

- ``"resumed"``: a state saved at most the longest window plus ``lateness`` ago, and every journal still holds
  every entry after its saved position (nothing trimmed in between): the watcher is the saved one, reading on
  from the saved positions; it judges at once and raises what the old holder would have raised.
- ``"baselines"``: a state saved at most ``baseline_half_life`` ago, but too old to resume or with entries trimmed
  after its positions (the windows would miss events, and a window missing events looks like an outage): the
  baselines, labels, open incidents and statistics are kept, the minutes start at the first event read (from the
  journal still kept, as a new watcher does), and each window is judged once it is whole (7 and 15 minutes by
  default) instead of after two hours of relearning.
- ``"fresh"``: nothing saved, a state older than that, another format (logged), a store without
  :class:`~recoverkit.store.StateStore`: a new watcher, as before.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Final, Literal

import msgspec

from ._alert_settings import AlertsConfig
from ._alert_sinks import AlertSink
from ._alert_sources import JournalSource, OutcomeSource
from ._alert_state import StateFormatError
from ._alert_watcher import AlertWatcher
from ._log import get_logger
from .store._state import SavedState

__all__ = ["STATE_NAME", "HolderState", "Start", "restore", "snapshot"]

_log = get_logger("recoverkit.alerts")

#: The name the holder's state is saved under in the store.
STATE_NAME: Final = "alerts"
_FORMAT: Final = 1


class HolderState(msgspec.Struct, frozen=True, kw_only=True):
    """What a holder saves: the watcher's state, each journal's position (in the order of the sources), the
    latest send outcome time read, when and by whom."""

    format: int = _FORMAT
    watcher: bytes
    positions: list[int]
    outcomes_high: float
    saved_at: float
    owner: str


class _Head(msgspec.Struct):
    format: int


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(HolderState)
_HEAD: Final = msgspec.msgpack.Decoder(_Head)


def snapshot(
    watcher: AlertWatcher, journals: Sequence[JournalSource], outcomes: OutcomeSource, *, now: float, owner: str
) -> bytes | None:
    """The state to save, or ``None`` while a source holds items read but not fed (their positions would skip
    them): call it after a poll that caught up."""
    if outcomes.buffer or any(source.buffer for source in journals):
        return None
    return _ENCODER.encode(HolderState(
        watcher=watcher.state(), positions=[source.position for source in journals], outcomes_high=outcomes.high,
        saved_at=now, owner=owner,
    ))


@dataclasses.dataclass(frozen=True, slots=True)
class Start:
    """How a new holder starts: its watcher, where each journal is read from, where the outcomes are read from
    (``None``: the default, the longest window back), and which of the three ways (module docstring)."""

    watcher: AlertWatcher
    positions: list[int]
    outcomes_since: float | None
    how: Literal["resumed", "baselines", "fresh"]


def restore(
    saved: SavedState | None,
    config: AlertsConfig,
    sinks: Sequence[AlertSink],
    *,
    now: float,
    journals: int,
    contiguous: Callable[[int, int], bool],
) -> Start:
    """The start of a new holder from ``saved`` (the store's :data:`STATE_NAME`), at wall time ``now``;
    ``contiguous(journal, position)`` says whether that journal still holds every entry after ``position``."""
    if saved is None:
        return _fresh(config, sinks, journals)
    try:
        if _HEAD.decode(saved.state).format != _FORMAT:
            raise StateFormatError(f"alerts holder state: unknown `format`, expected {_FORMAT}")
        state = _DECODER.decode(saved.state)
    except (msgspec.DecodeError, StateFormatError) as exc:
        _log.warning("purchase_path_state_unreadable", error=str(exc))
        return _fresh(config, sinks, journals)
    age = now - state.saved_at
    try:
        if (
            0 <= age <= config.windows[-1] + config.lateness
            and len(state.positions) == journals
            and all(contiguous(journal, position) for journal, position in enumerate(state.positions))
        ):
            watcher = AlertWatcher.from_state(state.watcher, config, sinks=sinks)
            since = state.outcomes_high if math.isfinite(state.outcomes_high) else None
            return Start(watcher, list(state.positions), since, "resumed")
        if 0 <= age <= config.baseline_half_life:
            watcher = AlertWatcher.from_state(state.watcher, config, sinks=sinks, windows=False)
            return Start(watcher, [0] * journals, None, "baselines")
    except StateFormatError as exc:
        _log.warning("purchase_path_state_unreadable", error=str(exc))
    return _fresh(config, sinks, journals)


def _fresh(config: AlertsConfig, sinks: Sequence[AlertSink], journals: int) -> Start:
    return Start(AlertWatcher(config, sinks=sinks), [0] * journals, None, "fresh")
