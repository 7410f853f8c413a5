"""The named state blobs of a :class:`~recoverkit.store.MemoryStore` (:class:`~recoverkit.store.StateStore`)."""

from __future__ import annotations

from ._memory_tables import MemoryTables
from ._state import SavedState, check_state

__all__ = ["MemoryStates"]


class MemoryStates(MemoryTables):
    """:class:`~recoverkit.store.StateStore` in a dict by name; a fenced save reads the leases under the same lock."""

    def save_state(
        self, name: str, state: bytes, *, now: float, lease: str | None = None, owner: str | None = None
    ) -> bool:
        check_state(name, state, now, lease, owner)
        with self._lock:
            self._enter(write=True)
            if lease is not None:
                held = self._leases.get(lease)
                if held is None or held[0] != owner or held[1] <= now:
                    return False
            self._states[name] = SavedState(name=name, state=bytes(state), saved_at=now, owner=owner)
            return True

    def load_state(self, name: str) -> SavedState | None:
        with self._lock:
            self._enter(write=False)
            return self._states.get(name)
