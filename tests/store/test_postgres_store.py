"""The PostgreSQL store passes every store contract suite (one per protocol), on a real server
(tests/store/postgres_cluster.py).

The journal and checkpoint suites run on a store of one partition: their one-sequence methods are partition 0 of
such a store (a store of several partitions refuses them; tests/store/test_postgres_partitions.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from recoverkit.store import Store

from .contract import (
    CheckpointContract,
    CodeContract,
    DeadLetterContract,
    FactContract,
    JournalContract,
    LeaseContract,
    LedgerContract,
    LifecycleContract,
    PrivacyContract,
)
from .postgres_cluster import postgres_cluster, postgres_shared_url  # noqa: F401 - fixtures used by name

pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")

from recoverkit.store.postgres import PostgresStore, init  # noqa: E402

_schemas = itertools.count(1)


class TestPostgresStoreContract(
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
    """Each store the contract opens is a new schema in one shared database: separate, as the contract wants
    (another salt, another journal), and quicker than a database each (0.16 s against 0.4 s to make and drop)."""

    @pytest.fixture(autouse=True)
    def _database(self, postgres_shared_url: str) -> Iterator[None]:  # noqa: F811 - the fixture
        self.url = postgres_shared_url
        yield

    def make_store(self, directory: Path) -> Store:
        schema = f"store_{next(_schemas)}"
        init(self.url, schema=schema)
        return PostgresStore(self.url, schema=schema, pool_size=8)
