"""The dispatch ledger as a state machine: every store answers as a few lines of Python say it must.

Hypothesis drives a store through leases, purchases, claims, finishes, restarts (``mark_unknown``) and
resolutions on a small key space (3 idempotency keys, 2 carts, 2 contacts, 2 owners) while time moves forward,
and compares each answer and the whole ledger with a model written from the docstrings of
:mod:`recoverkit.store.base`. Besides "the store agrees with the model", the guarantees a shop relies on are
checked from the answers alone: never two ``"claimed"`` for a key without a ``resolve(key, "retry")``
between, never ``"claimed"`` after a purchase of the cart or by the contact since the cart started, and
``"claimed"`` only for the holder of an unexpired pipeline lease.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from recoverkit.errors import StoreError
from recoverkit.store import PIPELINE_LEASE, LedgerEntry, MemoryStore, SQLiteStore, Store

from .contract import T0

KEYS = ("k0", "k1", "k2")
CARTS = ("c0", "c1")
CONTACTS = ("p0", "p1")
OWNERS = ("w0", "w1")
LEDGER_STATES = ("sending", "sent", "failed", "dead", "cancelled", "unknown")

_keys = st.sampled_from(KEYS)
_owners = st.sampled_from(OWNERS)
# Halves and whole seconds: every time stays exact in a float, so equal times compare equal in both stores.
_steps = st.sampled_from((0.0, 0.5, 1.0, 5.0, 60.0))
_ttls = st.sampled_from((1.0, 5.0, 60.0, 600.0))
_offsets = st.sampled_from((-60.0, -1.0, 0.0, 1.0, 60.0))  # a purchase's time relative to now
_ages = st.sampled_from((0.0, 1.0, 60.0, 3600.0))  # how long before now the claimed cart started


class LedgerMachine(RuleBasedStateMachine):
    """One store and the model of what it holds: the pipeline lease, the latest purchases, the ledger."""

    def __init__(self, open_store: Callable[[], Store]) -> None:
        super().__init__()
        self.store = open_store()
        self.now = T0
        self.lease: tuple[str, float] | None = None  # (owner, expires_at)
        self.purchases: dict[tuple[str, str], float] = {}  # ("cart" | "contact", key) -> latest purchase time
        self.ledger: dict[str, LedgerEntry] = {}  # in claim order: a retried key is claimed again at the end
        # Read from the store's answers alone, for the guarantees: independent of the model above.
        self.claimed: set[str] = set()  # told "claimed", not resolved for a retry since
        self.purchase_log: list[tuple[str | None, str | None, float]] = []

    def teardown(self) -> None:
        try:
            assert self.store.check() == []
        finally:
            self.store.close()

    # -- time and the lease ---------------------------------------------------------------------------------

    def _holder(self) -> str | None:
        return self.lease[0] if self.lease is not None and self.lease[1] > self.now else None

    @initialize(owner=_owners, ttl=_ttls)
    def start_with_a_lease(self, owner: str, ttl: float) -> None:
        """Most runs should get past "not_owner": the engine claims while it holds the lease."""
        self.acquire_lease(owner, ttl)

    @rule(seconds=_steps | st.none())
    def advance(self, seconds: float | None) -> None:
        """Move time on; ``None`` moves it to the lease's expiry exactly, the edge where it has just expired."""
        if seconds is not None:
            self.now += seconds
        elif self.lease is not None and self.lease[1] > self.now:
            self.now = self.lease[1]

    @rule(owner=_owners, ttl=_ttls)
    def acquire_lease(self, owner: str, ttl: float) -> None:
        expected = self._holder() in (None, owner)
        assert self.store.acquire_lease(PIPELINE_LEASE, owner, ttl=ttl, now=self.now) is expected
        if expected:
            self.lease = (owner, self.now + ttl)

    @rule(ttl=_ttls)
    def renew_lease(self, ttl: float) -> None:
        """The lease's owner takes it again: a renewal, or a late one after it expired (free or taken)."""
        self.acquire_lease(self.lease[0] if self.lease is not None else OWNERS[0], ttl)

    @rule(owner=_owners)
    def release_lease(self, owner: str) -> None:
        self.store.release_lease(PIPELINE_LEASE, owner)
        if self.lease is not None and self.lease[0] == owner:  # expired or not: it is the owner's row
            self.lease = None

    # -- purchases and claims -------------------------------------------------------------------------------

    @rule(
        keys=st.one_of(
            st.tuples(st.sampled_from(CARTS), st.none()),
            st.tuples(st.none(), st.sampled_from(CONTACTS)),
            st.tuples(st.sampled_from(CARTS), st.sampled_from(CONTACTS)),
        ),
        offset=_offsets,
    )
    def record_purchase(self, keys: tuple[str | None, str | None], offset: float) -> None:
        cart, contact = keys
        at = self.now + offset
        self.store.record_purchase(cart_key=cart, contact_key=contact, at=at)
        for kind, key in (("cart", cart), ("contact", contact)):
            if key is not None:
                self.purchases[(kind, key)] = max(at, self.purchases.get((kind, key), at))
        self.purchase_log.append((cart, contact, at))

    _claims: ClassVar[dict[str, st.SearchStrategy[Any]]] = {
        "key": _keys,
        "cart": st.sampled_from(CARTS),
        "contact": st.sampled_from(CONTACTS),
        "channel": st.sampled_from(("email", "sms")),
        "age": _ages,
    }

    @rule(owner=_owners, **_claims)
    def claim(self, key: str, cart: str, contact: str, channel: str, age: float, owner: str) -> None:
        self._claim(key, cart, contact, channel, age, owner)

    # A second rule for the same method, so that claims are frequent and most come from the lease's owner, as
    # in the engine (its lease may have expired meanwhile: that is the point of asking the store).
    @rule(**_claims)
    def claim_as_the_lease_owner(self, key: str, cart: str, contact: str, channel: str, age: float) -> None:
        self._claim(key, cart, contact, channel, age, self.lease[0] if self.lease is not None else OWNERS[0])

    def _claim(self, key: str, cart: str, contact: str, channel: str, age: float, owner: str) -> None:
        started_at = self.now - age
        bought = max(self.purchases.get(("cart", cart), -1.0), self.purchases.get(("contact", contact), -1.0))
        if self._holder() != owner:
            expected = "not_owner"
        elif key in self.ledger:
            expected = "duplicate"
        elif bought >= started_at:
            expected = "purchased"
        else:
            expected = "claimed"
        got = self.store.claim(
            key, cart_key=cart, contact_key=contact, channel=channel, started_at=started_at, owner=owner, now=self.now
        )
        if got == "claimed":
            assert key not in self.claimed, f"{key} claimed twice without a retry in between"
            assert not [
                (c, p, at) for c, p, at in self.purchase_log if (c == cart or p == contact) and at >= started_at
            ], f"{key} claimed for {cart}/{contact} started at {started_at} after a purchase"
            assert self.lease is not None and self.lease[0] == owner and self.lease[1] > self.now, (
                f"{key} claimed by {owner} at {self.now}, lease {self.lease}"
            )
            self.claimed.add(key)
        assert got == expected
        if got == "claimed":
            self.ledger[key] = LedgerEntry(
                key=key,
                cart_key=cart,
                contact_key=contact,
                channel=channel,
                state="sending",
                owner=owner,
                started_at=started_at,
                claimed_at=self.now,
            )

    # -- the ledger's state table ---------------------------------------------------------------------------

    def _pick(self, data: st.DataObject, states: tuple[str, ...]) -> str:
        """A key, often one whose entry is in ``states`` (random keys rarely are), sometimes any key."""
        fitting = sorted(key for key, e in self.ledger.items() if e.state in states)
        return data.draw(st.sampled_from(fitting) | _keys if fitting else _keys, label="key")

    @rule(
        data=st.data(),
        outcome=st.sampled_from(("sent", "failed", "dead", "cancelled")),
        error=st.none() | st.just("503"),
    )
    def finish(self, data: st.DataObject, outcome: str, error: str | None) -> None:
        key = self._pick(data, ("sending", "unknown"))
        entry = self.ledger.get(key)
        if entry is None or entry.state not in ("sending", "unknown"):
            with pytest.raises(StoreError, match=re.escape(repr(key))):
                self.store.finish(key, outcome, now=self.now, error=error)  # type: ignore[arg-type]
            return
        self.store.finish(key, outcome, now=self.now, error=error)  # type: ignore[arg-type]
        self.ledger[key] = msgspec.structs.replace(entry, state=outcome, finished_at=self.now, error=error)

    @rule(owner=st.none() | _owners)
    def mark_unknown(self, owner: str | None) -> None:
        sending = [
            key for key, e in self.ledger.items() if e.state == "sending" and (owner is None or e.owner == owner)
        ]
        assert self.store.mark_unknown(owner) == len(sending)
        for key in sending:
            self.ledger[key] = msgspec.structs.replace(self.ledger[key], state="unknown")

    @rule(data=st.data(), outcome=st.sampled_from(("sent", "retry")))
    def resolve(self, data: st.DataObject, outcome: str) -> None:
        key = self._pick(data, ("unknown", "failed"))
        entry = self.ledger.get(key)
        if entry is None or entry.state not in ("unknown", "failed"):
            with pytest.raises(StoreError, match=re.escape(repr(key))):
                self.store.resolve(key, outcome)  # type: ignore[arg-type]
            return
        self.store.resolve(key, outcome)  # type: ignore[arg-type]
        if outcome == "retry":
            del self.ledger[key]
            self.claimed.discard(key)
        else:
            self.ledger[key] = msgspec.structs.replace(entry, state="sent")

    # -- what must hold after every step --------------------------------------------------------------------

    @invariant()
    def the_ledger_is_the_model(self) -> None:
        assert self.store.ledger() == list(self.ledger.values())
        for state in LEDGER_STATES:
            assert self.store.ledger([state]) == [e for e in self.ledger.values() if e.state == state]  # type: ignore[list-item]

    @invariant()
    def the_lease_holder_is_the_model(self) -> None:
        assert self.store.lease_holder(PIPELINE_LEASE, now=self.now) == self._holder()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_ledger_answers_as_documented(kind: str, tmp_path: Path) -> None:
    files = itertools.count()

    def open_store() -> Store:
        if kind == "memory":
            return MemoryStore()
        return SQLiteStore(tmp_path / f"state-{next(files)}.db")  # a new file for each example

    run_state_machine_as_test(
        lambda: LedgerMachine(open_store),
        settings=settings(max_examples=100, stateful_step_count=30, deadline=None),
    )
