"""Every store contract suite in one class, and the helpers the store tests share (see :mod:`.contract_base`).

:class:`StoreContract` is what a backend that implements the whole :class:`~recoverkit.store.Store` may subclass
instead of listing the suites one by one; both run the same tests.
"""

from __future__ import annotations

from .contract_base import OWNER, T0, StoreFixture, claim, new_code, owned, redeem
from .contract_checkpoint import CheckpointContract
from .contract_codes import CodeContract
from .contract_dead_letters import DeadLetterContract
from .contract_facts import FactContract
from .contract_journal import JournalContract
from .contract_leases import LeaseContract
from .contract_ledger import LedgerContract
from .contract_lifecycle import LifecycleContract
from .contract_privacy import PrivacyContract

__all__ = [
    "OWNER",
    "T0",
    "CheckpointContract",
    "CodeContract",
    "DeadLetterContract",
    "FactContract",
    "JournalContract",
    "LeaseContract",
    "LedgerContract",
    "LifecycleContract",
    "PrivacyContract",
    "StoreContract",
    "StoreFixture",
    "claim",
    "new_code",
    "owned",
    "redeem",
]


class StoreContract(
    JournalContract,
    CheckpointContract,
    LeaseContract,
    LedgerContract,
    FactContract,
    CodeContract,
    DeadLetterContract,
    PrivacyContract,
    LifecycleContract,
):
    """Every suite: subclass as ``class TestMyStore(StoreContract)`` and implement ``make_store``."""
