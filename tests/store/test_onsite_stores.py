"""The on-site offers' contract (:mod:`.contract_onsite`) on each store recoverkit ships."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recoverkit.store import SQLiteStore
from recoverkit.store.memory import MemoryStore

from .contract_onsite import OnsiteContract
from .postgres_cluster import postgres_cluster, postgres_shared_url  # noqa: F401 - fixtures used by name


class TestMemoryOnsite(OnsiteContract):
    def make_store(self, directory: Path) -> Any:
        return MemoryStore()


class TestSQLiteOnsite(OnsiteContract):
    def make_store(self, directory: Path) -> Any:
        return SQLiteStore(directory / "store.db")


_schemas = itertools.count(1)


class TestPostgresOnsite(OnsiteContract):
    @pytest.fixture(autouse=True)
    def _database(self, postgres_shared_url: str) -> Iterator[None]:  # noqa: F811 - the fixture
        pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")
        self.url = postgres_shared_url
        yield

    def make_store(self, directory: Path) -> Any:
        from recoverkit.store.postgres import PostgresStore, init

        schema = f"onsite_{next(_schemas)}"
        init(self.url, schema=schema)
        return PostgresStore(self.url, schema=schema, pool_size=4)
