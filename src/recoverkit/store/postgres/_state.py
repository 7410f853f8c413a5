"""The named state blobs of a :class:`~recoverkit.store.postgres.PostgresStore`
(:class:`~recoverkit.store.StateStore`), with the statements SQLite's part runs (``%s`` for ``?``)."""

from __future__ import annotations

from typing import Final

from .._sqlite_state import saved_of
from .._state import SQL as _SQLITE
from .._state import SavedState, check_state
from ._plumbing import Conn, Plumbing

__all__ = ["PostgresStates"]

_SQL: Final = {name: statement.replace("?", "%s") for name, statement in _SQLITE.items()}


class PostgresStates(Plumbing):
    """:class:`~recoverkit.store.StateStore` in the ``states`` table. A fenced save reads the lease's row
    ``FOR SHARE``: a take-over of the lease (an update of that row) waits until the save commits, and a save
    after the take-over sees the new owner."""

    def save_state(
        self, name: str, state: bytes, *, now: float, lease: str | None = None, owner: str | None = None
    ) -> bool:
        check_state(name, state, now, lease, owner)

        def run(conn: Conn) -> bool:
            if lease is not None:
                held = conn.execute(
                    "SELECT owner, expires_at FROM leases WHERE name = %s FOR SHARE", (lease,)
                ).fetchone()
                if held is None or held[0] != owner or held[1] <= now:
                    return False
            conn.execute(_SQL["save"], (name, bytes(state), now, owner))
            return True

        return self._write("save_state", run)

    def load_state(self, name: str) -> SavedState | None:
        return self._read("load_state", lambda conn: saved_of(conn.execute(_SQL["load"], (name,)).fetchone()))
