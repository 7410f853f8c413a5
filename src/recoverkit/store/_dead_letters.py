"""Dead letters: messages that failed for good, kept until re-sent or purged (:class:`DeadLetterStore`)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from ..errors import StoreError

__all__ = [
    "DeadLetterRecord",
    "DeadLetterStore",
    "missing_dead_letter",
]

class DeadLetterRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A message that failed for good: ``data`` is the encoded message, the rest as in ``DeadLetter``.

    ``contact_key`` is the contact the message was for (``""`` when the caller did not say), so that
    :meth:`~recoverkit.store.PrivacyStore.forget` and :meth:`~recoverkit.store.PrivacyStore.export` find the letter.
    """

    key: str
    data: bytes
    error: str
    attempts: int
    permanent: bool
    at: float
    contact_key: str = ""


@runtime_checkable
class DeadLetterStore(Protocol):
    """Dead letters, as :mod:`recoverkit.deadletters` keeps them in memory, each with the contact it was for.

    Guarantees: each call is one transaction; a letter added is listed until :meth:`mark_resent` or
    :meth:`~recoverkit.store.PrivacyStore.purge`. Not fenced by the lease. ``at`` is when the message failed for
    good, epoch seconds on the engine's clock passed in by the caller.
    """

    def add_dead_letter(
        self, key: str, data: bytes, *, error: str, attempts: int, permanent: bool, at: float, contact_key: str = ""
    ) -> None:
        """Keep a message that failed for good; a letter already kept under ``key`` is replaced.

        ``contact_key`` names the contact the message was for. Pass it: a letter kept without one (``""``)
        holds the contact's address in ``data`` but is found by neither :meth:`forget` nor :meth:`export`.
        """
        ...

    def dead_letters(self) -> list[DeadLetterRecord]:
        """The dead letters not yet re-sent, in the order they were added."""
        ...

    def mark_resent(self, key: str) -> None:
        """Record that the dead letter ``key`` was delivered by a re-send: it leaves :meth:`dead_letters`.

        Marking a letter twice is harmless; a key that was never dead-lettered raises ``StoreError``.
        """
        ...


def missing_dead_letter(key: str) -> StoreError:
    return StoreError(f"no dead letter with key {key!r}")
