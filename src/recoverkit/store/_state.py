"""Named state blobs shared by every process of a shop (:class:`StateStore`): what one process keeps so that the
next one to take over its job goes on where it stopped (the purchase-path watcher's saved state,
docs/alerts.md, "The saved state").

This protocol is not part of :class:`~recoverkit.store.Store`: a shop's own store without it still runs; a
watcher on such a store relearns after a hand-over, as before. The stores recoverkit ships (memory, SQLite,
PostgreSQL, and the partitioned ones: the state is shop-wide, one row per name whatever the partitions) implement it.
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

import msgspec

__all__ = ["MAX_STATE_BYTES", "POSTGRES_STATES", "SQLITE_STATES", "SavedState", "StateStore", "check_state"]

#: The largest blob :meth:`StateStore.save_state` takes (the watcher's is tens of kilobytes; 16 MiB is a bug).
MAX_STATE_BYTES: Final = 16 * 1024 * 1024


class SavedState(msgspec.Struct, frozen=True, kw_only=True):
    """The blob last saved under ``name``, when (``saved_at``, the saver's ``now``) and by whom (``owner``, the
    lease holder it was fenced by, or ``None``)."""

    name: str
    state: bytes
    saved_at: float
    owner: str | None


@runtime_checkable
class StateStore(Protocol):
    """Named state blobs, one row per name, each save overwriting the last.

    Guarantees: each call is one transaction, atomic across every process sharing the store; a
    :meth:`load_state` returns one whole saved blob, never a mix of two saves. A save fenced by a lease
    (``lease`` and ``owner``) is written only if ``owner`` holds that lease (:class:`~recoverkit.store.LeaseStore`)
    at ``now``, checked in the save's own transaction: a process that lost the lease never overwrites what the
    new holder saved. ``now`` is wall-clock epoch seconds, the clock the leases are judged by.

    Personal data: none may be saved here. It is kept outside the privacy tables (``forget`` and ``purge`` do not
    look here): a blob must hold only figures such as counts by step, page type, form field, error code and channel,
    never a session, customer or address. Retention: one row per name, replaced by each save; nothing expires.
    """

    def save_state(
        self, name: str, state: bytes, *, now: float, lease: str | None = None, owner: str | None = None
    ) -> bool:
        """Save ``state`` under ``name`` at ``now``, replacing what was there; returns whether it was saved
        (``False`` only when fenced: ``owner`` does not hold ``lease`` at ``now``). ``lease`` and ``owner`` come
        together or not at all (:class:`ValueError`), as does a bad name or a blob over :data:`MAX_STATE_BYTES`."""
        ...

    def load_state(self, name: str) -> SavedState | None:
        """The state last saved under ``name``, or ``None`` if none was."""
        ...


def check_state(name: str, state: bytes, now: float, lease: str | None, owner: str | None) -> None:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ValueError(f"save_state: expected `name` to be a non-empty string of at most 200 characters, got {name!r}")
    if not isinstance(state, (bytes, bytearray, memoryview)):
        raise ValueError(f"save_state: expected `state` to be bytes, got {type(state).__name__}")
    if len(state) > MAX_STATE_BYTES:
        raise ValueError(f"save_state: expected `state` of at most {MAX_STATE_BYTES} bytes, got {len(state)}")
    if not now == now or now in (float("inf"), float("-inf")):  # NaN or infinite
        raise ValueError(f"save_state: expected `now` to be epoch seconds, got {now!r}")
    if (lease is None) != (owner is None) or lease == "" or owner == "":
        raise ValueError(f"save_state: expected `lease` and `owner` both (non-empty) or neither, got {lease!r} and {owner!r}")


#: SQLite's migration 8.
SQLITE_STATES: Final = """
-- Named state blobs shared by the shop's processes (store/_state.py): one row per name, replaced by each save.
CREATE TABLE states (
    name TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    saved_at REAL NOT NULL,
    owner TEXT
) WITHOUT ROWID;
"""

#: PostgreSQL's migration 4.
POSTGRES_STATES: Final = """
    CREATE TABLE states (
        name text PRIMARY KEY, state bytea NOT NULL, saved_at double precision NOT NULL, owner text
    );
"""

#: The statements both SQL stores run (``?`` placeholders; PostgreSQL's part swaps them for ``%s``).
SQL: Final = {
    "save": (
        "INSERT INTO states (name, state, saved_at, owner) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "state = excluded.state, saved_at = excluded.saved_at, owner = excluded.owner"
    ),
    "load": "SELECT name, state, saved_at, owner FROM states WHERE name = ?",
}
