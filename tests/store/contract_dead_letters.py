"""The contract of :class:`~recoverkit.store.DeadLetterStore`: dead letters: kept in order, replaced, marked re-sent.

See :mod:`tests.store.contract_base` for how a backend subclasses it."""

from __future__ import annotations

import pytest

from recoverkit.errors import StoreError
from recoverkit.store import (
    DeadLetterRecord,
    DeadLetterStore,
    Store,
)

from .contract_base import T0, StoreFixture

__all__ = ["DeadLetterContract"]


class DeadLetterContract(StoreFixture):
    """What every store promises as a :class:`~recoverkit.store.DeadLetterStore`."""

    def test_satisfies_the_dead_letter_store_protocol(self, store: Store) -> None:
        assert isinstance(store, DeadLetterStore)

    def test_dead_letters_are_listed_in_the_order_they_were_added(self, store: Store) -> None:
        store.add_dead_letter("b/f/0", b'{"key":"b/f/0"}', error="PermanentDeliveryError: 550", attempts=1,
                              permanent=True, at=T0)  # fmt: skip
        store.add_dead_letter("a/f/0", b"{}", error="TimeoutError", attempts=5, permanent=False, at=T0 + 1)
        assert store.dead_letters() == [
            DeadLetterRecord(key="b/f/0", data=b'{"key":"b/f/0"}', error="PermanentDeliveryError: 550", attempts=1,
                             permanent=True, at=T0),
            DeadLetterRecord(key="a/f/0", data=b"{}", error="TimeoutError", attempts=5, permanent=False, at=T0 + 1),
        ]  # fmt: skip

    def test_a_dead_letter_added_again_replaces_the_old_one_at_the_end(self, store: Store) -> None:
        store.add_dead_letter("a", b"1", error="e1", attempts=1, permanent=False, at=T0)
        store.add_dead_letter("b", b"2", error="e2", attempts=1, permanent=False, at=T0)
        store.add_dead_letter("a", b"3", error="e3", attempts=2, permanent=True, at=T0 + 5)
        assert [(d.key, d.data, d.error, d.attempts, d.permanent) for d in store.dead_letters()] == [
            ("b", b"2", "e2", 1, False),
            ("a", b"3", "e3", 2, True),
        ]

    def test_a_resent_letter_leaves_the_list_and_marking_it_again_is_harmless(self, store: Store) -> None:
        store.add_dead_letter("a", b"1", error="e", attempts=1, permanent=False, at=T0)
        store.add_dead_letter("b", b"2", error="e", attempts=1, permanent=False, at=T0)
        store.mark_resent("a")
        store.mark_resent("a")
        assert [d.key for d in store.dead_letters()] == ["b"]

    def test_marking_an_unknown_dead_letter_resent_raises(self, store: Store) -> None:
        with pytest.raises(StoreError, match="no dead letter with key 'nope'"):
            store.mark_resent("nope")

    def test_a_letter_dead_again_after_a_resend_is_listed_again(self, store: Store) -> None:
        store.add_dead_letter("a", b"1", error="e", attempts=1, permanent=False, at=T0)
        store.mark_resent("a")
        store.add_dead_letter("a", b"1", error="e again", attempts=1, permanent=True, at=T0 + 9)
        assert [(d.key, d.error) for d in store.dead_letters()] == [("a", "e again")]

    def test_a_dead_letter_keeps_the_contact_it_was_for(self, store: Store) -> None:
        store.add_dead_letter("a", b"1", error="e", attempts=1, permanent=False, at=T0, contact_key="contact-1")
        store.add_dead_letter("b", b"2", error="e", attempts=1, permanent=False, at=T0)
        assert [(d.key, d.contact_key) for d in store.dead_letters()] == [("a", "contact-1"), ("b", "")]
