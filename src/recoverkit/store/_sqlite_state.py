"""The named state blobs of a :class:`~recoverkit.store.SQLiteStore` (:class:`~recoverkit.store.StateStore`), in
the ``states`` table; the SQL is shared with PostgreSQL's part."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ._sqlite_file import SQLiteFile
from ._state import SQL, SavedState, check_state

__all__ = ["SQLiteStates", "saved_of"]


def saved_of(row: Sequence[Any] | None) -> SavedState | None:
    """The state a ``SQL["load"]`` row holds."""
    if row is None:
        return None
    name, state, saved_at, owner = row
    return SavedState(name=str(name), state=bytes(state), saved_at=float(saved_at), owner=owner)


class SQLiteStates(SQLiteFile):
    """:class:`~recoverkit.store.StateStore` in the ``states`` table; a fenced save reads ``leases`` in its
    write transaction (one writer at a time: no lease can change between the check and the save)."""

    def save_state(
        self, name: str, state: bytes, *, now: float, lease: str | None = None, owner: str | None = None
    ) -> bool:
        check_state(name, state, now, lease, owner)

        def run(conn: sqlite3.Connection) -> bool:
            if lease is not None:
                held = conn.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (lease,)).fetchone()
                if held is None or held[0] != owner or held[1] <= now:
                    return False
            conn.execute(SQL["save"], (name, bytes(state), now, owner))
            return True

        return self._write("save_state", run)

    def load_state(self, name: str) -> SavedState | None:
        return self._read("load_state", lambda conn: saved_of(conn.execute(SQL["load"], (name,)).fetchone()))
