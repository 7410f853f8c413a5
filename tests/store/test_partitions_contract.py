"""Every store passes the partitioned store's contract (tests/store/contract_partitions.py) with one partition and
with eight: memory (on a clock the test moves), SQLite (this host's clock; writers in real processes) and
PostgreSQL (the server's clock; tests/store/postgres_cluster.py); and what is particular to the SQLite file: the
number of partitions is fixed when it is created, and a file made before partitions opens with its journal as
partition 0's."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from recoverkit.errors import StoreError
from recoverkit.store import MemoryStore, SQLiteStore, describe_database
from recoverkit.store._schema import MIGRATIONS, SCHEMA_VERSION, migrate

from .contract_base import T0
from .contract_partitions import PartitionContract, PartitionedTestStore
from .postgres_cluster import postgres_cluster, postgres_shared_url  # noqa: F401 - fixtures used by name


class FakeClock:
    """A clock that stands still until the test moves it (thread-safe enough: one float)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class MemoryPartitionContract(PartitionContract):
    def make_store(self, directory: Path) -> MemoryStore:
        self.clock = FakeClock()
        return MemoryStore(self.partitions, clock=self.clock)

    def pass_time(self, seconds: float) -> None:
        self.clock.now += seconds

    def store_now(self) -> float:
        return self.clock.now


class TestMemoryStoreOnePartition(MemoryPartitionContract):
    partitions = 1


class TestMemoryStoreEightPartitions(MemoryPartitionContract):
    partitions = 8


class SQLitePartitionContract(PartitionContract):
    def make_store(self, directory: Path) -> SQLiteStore:
        self.path = directory / "state.db"
        return SQLiteStore(self.path, partitions=self.partitions)

    def opener(self) -> str:
        return f"from recoverkit.store import SQLiteStore\nstore = SQLiteStore({str(self.path)!r})"


class TestSQLiteStoreOnePartition(SQLitePartitionContract):
    partitions = 1


class TestSQLiteStoreEightPartitions(SQLitePartitionContract):
    partitions = 8


_schemas = itertools.count(1)


class PostgresPartitionContract(PartitionContract):
    """Each store is a new schema in one shared database (as in test_postgres_store.py)."""

    @pytest.fixture(autouse=True)
    def _database(self, postgres_shared_url: str) -> Iterator[None]:  # noqa: F811 - the fixture
        pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")
        self.url = postgres_shared_url
        yield

    def make_store(self, directory: Path) -> PartitionedTestStore:
        from recoverkit.store.postgres import PostgresStore, init

        self.schema = f"partitions_{next(_schemas)}"
        init(self.url, partitions=self.partitions, schema=self.schema)
        return PostgresStore(self.url, schema=self.schema, pool_size=8)

    def opener(self) -> str:
        return (
            "from recoverkit.store.postgres import PostgresStore\n"
            f"store = PostgresStore({self.url!r}, schema={self.schema!r})"
        )


class TestPostgresStoreOnePartition(PostgresPartitionContract):
    partitions = 1


class TestPostgresStoreEightPartitions(PostgresPartitionContract):
    partitions = 8


# -- the memory store's own ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("partitions", [0, -1, 1025, True, 2.0, "8"])
def test_a_memory_store_refuses_a_bad_number_of_partitions(partitions: object) -> None:
    with pytest.raises(ValueError, match=r"expected `partitions` to be an integer from 1 to 1024, got"):
        MemoryStore(partitions)  # type: ignore[arg-type]


# -- the SQLite file's own ----------------------------------------------------------------------------------------


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def test_a_new_file_keeps_its_number_of_partitions_and_none_takes_it(path: Path) -> None:
    with SQLiteStore(path, partitions=8) as store:
        assert store.partitions == 8
        store.append_to([(7, b"x")], now=T0)
    with SQLiteStore(path) as store:
        assert store.partitions == 8 and store.partition_heads() == [0] * 7 + [1]
    with SQLiteStore(path, partitions=8) as store:
        assert store.partitions == 8
    info = describe_database(path)
    assert (info.partitions, info.heads, info.last_seq) == (8, [0] * 7 + [1], 1)


def test_a_new_file_without_a_number_has_one_partition(path: Path) -> None:
    with SQLiteStore(path) as store:
        assert store.partitions == 1
        assert store.append_events([b"a"], now=T0) == 1


def test_opening_a_file_with_another_number_of_partitions_names_both_and_the_fix(path: Path) -> None:
    SQLiteStore(path, partitions=8).close()
    with pytest.raises(StoreError, match=r"has 8 journal partitions.*got partitions=4: pass partitions=8"):
        SQLiteStore(path, partitions=4)
    with SQLiteStore(path) as store:
        assert store.partitions == 8  # still the file it was


@pytest.mark.parametrize("partitions", [0, 1025, True, "8"])
def test_a_bad_number_of_partitions_is_refused_before_the_file_is_made(path: Path, partitions: object) -> None:
    with pytest.raises(ValueError, match=r"expected `partitions` to be an integer from 1 to 1024"):
        SQLiteStore(path, partitions=partitions)  # type: ignore[arg-type]
    assert not path.exists()


def test_processes_creating_one_file_at_once_agree_on_its_partitions(path: Path) -> None:
    """Threads stand for processes here: each opens its own store, so its own connection and its own migration
    under BEGIN IMMEDIATE; one creates the tables with its number, the others find them."""
    answers: list[object] = []

    def open_store() -> None:
        try:
            with SQLiteStore(path, partitions=16, busy_timeout=30) as store:
                answers.append(store.partitions)
        except Exception as exc:  # collected, then asserted absent
            answers.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [16] * 4
    with SQLiteStore(path) as store:
        assert store.partitions == 16 and store.check() == []


def _old_file(path: Path) -> None:
    """A store file as recoverkit wrote it before partitions (schema version 4): 5 events, 2 of them trimmed, a
    checkpoint, a lease and a ledger entry."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate(conn, str(path), MIGRATIONS[:4])
        conn.executemany(
            "INSERT INTO journal (data, accepted_at) VALUES (?, ?)", [(f"e{n}".encode(), T0 + n) for n in range(1, 6)]
        )
        conn.execute("DELETE FROM journal WHERE seq <= 2")
        conn.execute("INSERT INTO checkpoint (id, position, state, saved_at) VALUES (1, 2, x'00', 0)")
        conn.execute("INSERT INTO leases (name, owner, expires_at) VALUES ('pipeline', 'w', 0)")
        conn.execute(
            "INSERT INTO ledger (key, cart_key, contact_key, channel, state, owner, started_at, claimed_at) "
            "VALUES ('k', 'c', 'p', 'email', 'sending', 'w', 0, 1)"
        )
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4


def test_a_file_from_before_partitions_opens_with_its_journal_as_partition_0(path: Path) -> None:
    _old_file(path)
    with SQLiteStore(path) as store:
        assert store.partitions == 1
        assert [(e.seq, e.data, e.accepted_at) for e in store.read_events(0, 10)] == [
            (3, b"e3", T0 + 3), (4, b"e4", T0 + 4), (5, b"e5", T0 + 5),
        ]  # fmt: skip
        assert store.read_partition(0, 0, 10) == store.read_events(0, 10)
        assert store.last_seq() == store.partition_head(0) == 5
        assert store.append_events([b"e6"], now=T0 + 6) == 6  # positions go on, none reused
        checkpoint = store.load_checkpoint()
        assert checkpoint is not None and checkpoint.position == 2
        assert [(e.key, e.state) for e in store.ledger()] == [("k", "sending")]
        assert store.mark_unknown(None) == 1  # a pipeline claim: in no partition
        assert store.check() == []
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8


def test_a_file_from_before_partitions_an_empty_one_too_has_its_last_seq_as_head(path: Path) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate(conn, str(path), MIGRATIONS[:4])
        conn.execute("INSERT INTO journal (data, accepted_at) VALUES (x'00', 0)")
        conn.execute("DELETE FROM journal")
    with SQLiteStore(path) as store:
        assert store.last_seq() == 1 and store.read_events(0, 10) == []
        assert store.append_events([b"a"], now=T0) == 2


def test_a_file_from_before_partitions_is_not_migrated_for_another_number(path: Path) -> None:
    _old_file(path)
    with pytest.raises(StoreError, match=r"has 1 journal partitions.*got partitions=8"):
        SQLiteStore(path, partitions=8)
    with closing(sqlite3.connect(path)) as conn:  # rolled back whole: still the old file
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    with SQLiteStore(path, partitions=1) as store:
        assert store.last_seq() == 5


def test_a_row_written_into_the_journal_by_hand_without_a_seq_gets_its_partitions_next(path: Path) -> None:
    with SQLiteStore(path, partitions=4) as store:
        store.append_to([(2, b"a")], now=T0)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO journal (part, data, accepted_at) VALUES (2, x'62', 0)")
    with SQLiteStore(path) as store:
        assert [(e.seq, e.data) for e in store.read_partition(2, 0, 10)] == [(1, b"a"), (2, b"b")]
        assert store.partition_head(2) == 2 and store.check() == []


def test_check_reports_a_gap_in_a_partition_and_a_missing_lease_row(path: Path) -> None:
    with SQLiteStore(path, partitions=4) as store:
        store.append_to([(1, b"a"), (1, b"b"), (1, b"c")], now=T0)
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("DELETE FROM journal WHERE part = 1 AND seq = 2")
            conn.execute("DELETE FROM partition_leases WHERE part = 3")
        assert store.check() == [
            "partition_leases has rows for 3 partitions (0..2); expected 0..3",
            "journal partition 1 has a gap: 2 events between positions 1 and 3",
        ]
