"""The checkpoint: the pipeline's state as of a journal position, what a restart restores (:class:`CheckpointStore`)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "check_position",
]

class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """The pipeline's ``state`` as of journal seq ``position`` (every event up to it is reflected in it)."""

    position: int
    state: bytes
    saved_at: float


@runtime_checkable
class CheckpointStore(Protocol):
    """One checkpoint: the pipeline's state as of a journal ``position``; on restart the engine loads it and
    replays the journal after ``position``.

    Guarantees: a save replaces the checkpoint atomically (a reader sees the old one or the new one, whole) and
    never moves it back, whoever saves: so a process that lost the pipeline lease cannot undo its successor's
    progress, and trimming the journal through the position just saved is always safe. It is fenced by the
    position, not by the lease. ``now`` is recorded as ``saved_at``, in epoch seconds passed in by the caller.
    """

    def save_checkpoint(self, position: int, state: bytes, *, now: float) -> bool:
        """Replace the checkpoint, atomically, with ``state`` as of journal seq ``position`` (>= 0).

        A checkpoint never moves back: if the one stored has a higher ``position`` (a process that lost the
        pipeline lease wrote it, or the new owner has not caught up with it yet) it is kept and ``False``
        returned. So after any save, trimming the journal through ``position`` is safe: the stored checkpoint
        covers every event up to it.
        """
        ...

    def load_checkpoint(self) -> Checkpoint | None:
        """The last checkpoint saved, or ``None`` if there is none."""
        ...


def check_position(position: int) -> None:
    if position < 0:
        raise ValueError(f"save_checkpoint: expected `position` >= 0 (a journal seq), got {position!r}")
