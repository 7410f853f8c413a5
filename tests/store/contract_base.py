"""What every store promises, one contract suite per protocol of :mod:`recoverkit.store.base` (saq's style).

===========================  =====================================
``contract_journal.py``      :class:`~recoverkit.store.JournalStore`
``contract_checkpoint.py``   :class:`~recoverkit.store.CheckpointStore`
``contract_leases.py``       :class:`~recoverkit.store.LeaseStore`
``contract_ledger.py``       :class:`~recoverkit.store.LedgerStore`
``contract_facts.py``        :class:`~recoverkit.store.FactStore`
``contract_codes.py``        :class:`~recoverkit.store.CodeStore`
``contract_dead_letters.py`` :class:`~recoverkit.store.DeadLetterStore`
``contract_privacy.py``      :class:`~recoverkit.store.PrivacyStore`
``contract_lifecycle.py``    :class:`~recoverkit.store.StoreLifecycle` and the whole :class:`~recoverkit.store.Store`
===========================  =====================================

A backend joins by subclassing each suite in its own test module and implementing
:meth:`StoreFixture.make_store`, which opens a new, empty store in a given directory::

    class TestMyStoreContract(JournalContract, CheckpointContract, LeaseContract, LedgerContract, FactContract,
                              CodeContract, DeadLetterContract, PrivacyContract, LifecycleContract):
        def make_store(self, directory: Path) -> MyStore:
            return MyStore(...)

(``test_memory_store.py`` and ``test_sqlite_store.py`` do exactly this.) A backend built piece by piece
subclasses the suites of the protocols it implements so far; the suites of ledger, codes and privacy also use
leases (a claim needs :data:`~recoverkit.store.PIPELINE_LEASE`) and the reads of the other tables.
:class:`~tests.store.contract.StoreContract` is all of them in one class.

Times are seconds after :data:`T0`, passed in explicitly: the store never reads a clock. This module holds what
the suites share: the fixture, the times, and helpers that claim, issue and redeem with sensible defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recoverkit.store import PIPELINE_LEASE, CodeRecord, RedeemResult, Store

__all__ = ["OWNER", "T0", "StoreFixture", "claim", "new_code", "owned", "redeem"]

#: 2026-01-01T00:00:00Z
T0 = 1_767_225_600.0
OWNER = "worker-1"


def claim(store: Store, key: str, **overrides: Any) -> str:
    """Claim ``key`` for cart ``cart-1`` / contact ``contact-1`` started at T0, as OWNER at T0 + 3600."""
    fields: dict[str, Any] = {
        "cart_key": "cart-1",
        "contact_key": "contact-1",
        "channel": "email",
        "started_at": T0,
        "owner": OWNER,
        "now": T0 + 3600,
    }
    fields.update(overrides)
    return store.claim(key, **fields)


def new_code(code_hash: str = "h1", **overrides: Any) -> CodeRecord:
    """A 10% code for cart ``cart-1`` / contact ``contact-1`` issued at T0, valid a day, on carts of 20.00 EUR."""
    fields: dict[str, Any] = {
        "cart_key": "cart-1",
        "contact_key": "contact-1",
        "kind": "discount",
        "percent": 10,
        "currency": "EUR",
        "min_value": 2000,
        "issued_at": T0,
        "expires_at": T0 + 86_400,
    }
    fields.update(overrides)
    return CodeRecord(code_hash=code_hash, **fields)


def redeem(store: Store, code_hash: str = "h1", **overrides: Any) -> RedeemResult:
    """Redeem ``code_hash`` as contact-1 for order o-1 of a 50.00 EUR cart at T0 + 3600."""
    fields: dict[str, Any] = {
        "contact_key": "contact-1",
        "cart_value": 5000,
        "currency": "EUR",
        "order_id": "o-1",
        "now": T0 + 3600,
    }
    fields.update(overrides)
    return store.redeem_code(code_hash, **fields)


def owned(store: Store, owner: str = OWNER, now: float = T0) -> Store:
    """``store`` with the pipeline lease held by ``owner`` for a day from ``now``."""
    assert store.acquire_lease(PIPELINE_LEASE, owner, ttl=86_400, now=now)
    return store


class StoreFixture:
    """The hook every contract suite shares: a subclass implements :meth:`make_store`.

    :meth:`make_store` opens a new, empty store in ``directory`` (a fresh temporary directory, which a store
    that needs no file ignores). The ``store`` fixture opens one in ``tmp_path`` and closes it after the test;
    the property tests call :meth:`make_store` themselves, once per example.
    """

    def make_store(self, directory: Path) -> Store:
        raise NotImplementedError(f"{type(self).__name__} must implement make_store(directory)")

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = self.make_store(tmp_path)
        try:
            yield store
        finally:
            store.close()
