"""The named state blobs' contract (:mod:`.contract_state`) on each store recoverkit ships, partitioned or not,
and through a partition's view (the state is shop-wide: one row per name whatever the partition)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recoverkit.store import SQLiteStore
from recoverkit.store._partition_view import PartitionView
from recoverkit.store.memory import MemoryStore

from .contract_base import T0
from .contract_state import StateContract
from .postgres_cluster import postgres_cluster, postgres_shared_url  # noqa: F401 - fixtures used by name


class TestMemoryStates(StateContract):
    def make_store(self, directory: Path) -> Any:
        return MemoryStore()


class TestSQLiteStates(StateContract):
    def make_store(self, directory: Path) -> Any:
        return SQLiteStore(directory / "store.db")


class TestPartitionedSQLiteStates(StateContract):
    def make_store(self, directory: Path) -> Any:
        return SQLiteStore(directory / "store.db", partitions=4)


class TestPartitionViewStates(StateContract):
    def make_store(self, directory: Path) -> Any:
        return PartitionView(MemoryStore(partitions=4), 2)


_schemas = itertools.count(1)


class TestPostgresStates(StateContract):
    @pytest.fixture(autouse=True)
    def _database(self, postgres_shared_url: str) -> Iterator[None]:  # noqa: F811 - the fixture
        pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")
        self.url = postgres_shared_url
        yield

    def make_store(self, directory: Path) -> Any:
        from recoverkit.store.postgres import PostgresStore, init

        schema = f"states_{next(_schemas)}"
        init(self.url, schema=schema, partitions=2)
        return PostgresStore(self.url, schema=schema, pool_size=4)


def test_a_state_saved_through_one_partition_view_is_the_shops(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", partitions=4)
    try:
        assert PartitionView(store, 1).save_state("watcher", b"shop", now=T0) is True
        assert PartitionView(store, 3).load_state("watcher").state == b"shop"
        assert store.load_state("watcher").state == b"shop"
    finally:
        store.close()


def test_a_state_survives_reopening_the_file(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "store.db") as store:
        store.save_state("watcher", b"kept", now=T0)
    with SQLiteStore(tmp_path / "store.db") as store:
        assert store.load_state("watcher").state == b"kept"
