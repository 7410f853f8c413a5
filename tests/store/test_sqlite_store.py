"""SQLiteStore beyond the contract: persistence, group commit, schema and file checks, fork and lock safety."""

from __future__ import annotations

import gc
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from recoverkit.errors import ConfigError, StoreError
from recoverkit.store import (
    PIPELINE_LEASE,
    Checkpoint,
    JournalEntry,
    SQLiteStore,
    check_database,
    describe_database,
)
from recoverkit.store._schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, migrate, split_statements

from .contract import (
    T0,
    CheckpointContract,
    CodeContract,
    DeadLetterContract,
    FactContract,
    JournalContract,
    LeaseContract,
    LedgerContract,
    LifecycleContract,
    PrivacyContract,
    claim,
)


class TestSQLiteStoreContract(
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
    def make_store(self, directory: Path) -> SQLiteStore:
        return SQLiteStore(directory / "state.db")


class TestSQLiteStoreFullSyncContract(
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
    def make_store(self, directory: Path) -> SQLiteStore:
        return SQLiteStore(directory / "state.db", synchronous="full")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Hold the file's write lock from another connection, as a busy process would."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


def run_while_locked(path: Path, calls: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    """Start every call in its own thread while the write lock is held elsewhere, then release it.

    The writer takes the first operation and waits for the lock; the others queue meanwhile, so at most two
    group commits carry them all. Returns ("ok", result) or ("error", exception) per call, in order.
    """
    results: list[tuple[str, Any]] = [("missing", None)] * len(calls)
    started = [threading.Event() for _ in calls]

    def run(index: int) -> None:
        started[index].set()
        try:
            results[index] = ("ok", calls[index]())
        except Exception as exc:
            results[index] = ("error", exc)

    with write_lock_held(path):
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
        for thread in threads:
            thread.start()
        for event in started:
            event.wait()
        time.sleep(0.3)  # from "about to call" to "queued" is microseconds; this is ample
    for thread in threads:
        thread.join()
    return results


# -- persistence ---------------------------------------------------------------------------------------------


def test_everything_survives_close_and_reopen(path: Path) -> None:
    with SQLiteStore(path) as store:
        store.append_events([b"a", b"b", b"c"], now=T0)
        store.trim_events(1)
        store.save_checkpoint(2, b"state", now=T0 + 1)
        store.record_purchase(cart_key="cart-1", contact_key=None, at=T0 + 2)
        assert store.acquire_lease(PIPELINE_LEASE, "w1", ttl=100, now=T0)
        claim(store, "k1", owner="w1", cart_key="cart-2", now=T0 + 3)
        store.add_dead_letter("d", b"msg", error="e", attempts=3, permanent=False, at=T0 + 4)
    with SQLiteStore(path) as store:
        assert store.read_events(0, 10) == [
            JournalEntry(seq=2, data=b"b", accepted_at=T0),
            JournalEntry(seq=3, data=b"c", accepted_at=T0),
        ]
        assert store.last_seq() == 3
        assert store.load_checkpoint() == Checkpoint(position=2, state=b"state", saved_at=T0 + 1)
        assert claim(store, "k2", owner="w1", now=T0 + 5) == "purchased"
        assert store.lease_holder(PIPELINE_LEASE, now=T0 + 50) == "w1"
        assert [(e.key, e.state) for e in store.ledger()] == [("k1", "sending")]
        assert [d.key for d in store.dead_letters()] == ["d"]
        assert store.check() == []


def test_the_last_seq_survives_a_reopen_after_trimming_everything(path: Path) -> None:
    with SQLiteStore(path) as store:
        store.append_events([b"a", b"b"], now=T0)
        store.trim_events(2)
    with SQLiteStore(path) as store:
        assert store.last_seq() == 2
        assert store.append_events([b"c"], now=T0) == 3


def test_two_store_objects_on_one_file_see_each_others_commits(path: Path) -> None:
    with SQLiteStore(path) as first, SQLiteStore(path) as second:
        first.append_events([b"a"], now=T0)
        assert second.read_events(0, 10) == [JournalEntry(seq=1, data=b"a", accepted_at=T0)]
        assert second.append_events([b"b"], now=T0) == 2
        assert first.acquire_lease(PIPELINE_LEASE, "w", ttl=60, now=T0)
        assert claim(first, "k", owner="w", now=T0 + 1) == "claimed"
        assert claim(second, "k", owner="w", now=T0 + 1) == "duplicate"


def test_reads_in_many_threads_each_see_the_committed_state(path: Path) -> None:
    with SQLiteStore(path) as store:
        store.append_events([b"x"] * 10, now=T0)
        seen: list[int] = []

        def read() -> None:
            seen.append(len(store.read_events(0, 100)))

        threads = [threading.Thread(target=read) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert seen == [10] * 6


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc")
def test_the_read_connections_of_finished_threads_are_closed(path: Path) -> None:
    # The engine reads from worker threads that come and go; each one's connection must go with it.
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    def read_in_threads(count: int) -> int:
        for _ in range(count):
            thread = threading.Thread(target=store.read_events, args=(0, 1))
            thread.start()
            thread.join()
        gc.collect()
        return open_files()

    with SQLiteStore(path) as store:
        # SQLite keeps a closed connection's descriptor for reuse while others in the process hold locks on
        # the file, so compare after a warm-up: the count must not grow with the number of threads.
        warm = read_in_threads(3)
        assert read_in_threads(20) == warm


# -- group commit ----------------------------------------------------------------------------------------------


def test_writes_queued_while_the_writer_waits_for_the_lock_go_out_together(path: Path) -> None:
    with SQLiteStore(path, busy_timeout=10) as store:
        before = store.statistics()
        results = run_while_locked(path, [lambda i=i: store.append_events([f"e{i}".encode()], now=T0)
                                          for i in range(8)])  # fmt: skip
        after = store.statistics()
        assert sorted(result for _, result in results) == list(range(1, 9))
        assert after.operations - before.operations == 8
        assert after.commits - before.commits <= 2  # eight writes, at most two commits
        assert after.largest_group >= 4


def test_many_threads_appending_at_once_share_commits_and_get_unique_seqs(path: Path) -> None:
    seqs: list[int] = []
    lock = threading.Lock()
    # "full": every commit waits for an fsync, during which the other threads' appends pile up
    with SQLiteStore(path, synchronous="full") as store:

        def append(thread: int) -> None:
            for i in range(50):
                last = store.append_events([f"{thread}-{i}-a".encode(), f"{thread}-{i}-b".encode()], now=T0)
                with lock:
                    seqs.extend((last - 1, last))

        threads = [threading.Thread(target=append, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = store.statistics()
        assert sorted(seqs) == list(range(1, 801))
        assert stats.operations == 400
        assert stats.commits < stats.operations
        assert store.last_seq() == 800


def test_a_failing_operation_fails_alone_and_its_partial_writes_are_rolled_back(path: Path) -> None:
    with SQLiteStore(path, busy_timeout=10) as store:
        store.add_dead_letter("d", b"original", error="e", attempts=1, permanent=True, at=T0)
        store.acquire_lease(PIPELINE_LEASE, "w", ttl=60, now=T0)
        before = store.statistics()
        results = run_while_locked(
            path,
            [
                lambda: store.append_events([b"a"], now=T0),
                lambda: store.resolve("never-claimed", "sent"),
                # deletes the old letter, then fails to insert (data NULL): the delete must be undone
                lambda: store.add_dead_letter("d", None, error="e", attempts=1, permanent=True, at=T0),  # type: ignore[arg-type]
                lambda: claim(store, "k", owner="w", now=T0 + 1),
                lambda: store.append_events([b"b"], now=T0),
            ],
        )
        after = store.statistics()
    assert [status for status, _ in results] == ["ok", "error", "error", "ok", "ok"]
    assert isinstance(results[1][1], StoreError) and "never-claimed" in str(results[1][1])
    assert isinstance(results[2][1], StoreError)
    assert re.search(r"state\.db: add_dead_letter failed: NOT NULL constraint failed", str(results[2][1]))
    assert isinstance(results[2][1].__cause__, sqlite3.IntegrityError)
    assert results[3][1] == "claimed"
    assert after.commits - before.commits <= 2 and after.failed - before.failed == 2
    with SQLiteStore(path) as store:
        assert sorted(e.data for e in store.read_events(0, 10)) == [b"a", b"b"]  # queue order is thread order
        assert [(d.key, d.data) for d in store.dead_letters()] == [("d", b"original")]
        assert [e.key for e in store.ledger()] == ["k"]


def test_an_operation_that_breaks_the_writer_fails_its_callers_and_the_writer_carries_on(path: Path) -> None:
    class Escaped(BaseException):  # gets past the per-operation handling, as a bug in the store would
        pass

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO journal (data, accepted_at) VALUES (x'00', 0)")
        raise Escaped

    with SQLiteStore(path) as store:
        with pytest.raises(StoreError, match=r"state\.db: the store's writer failed: .*Escaped"):
            store._write("broken", broken)
        assert store.append_events([b"a"], now=T0) == 1  # the broken op's insert was rolled back
        assert [e.data for e in store.read_events(0, 10)] == [b"a"]


def test_a_write_fails_with_the_busy_timeout_named_when_another_process_holds_the_lock(path: Path) -> None:
    with SQLiteStore(path, busy_timeout=0.2) as store:
        with write_lock_held(path):
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"state\.db: append_events.*busy_timeout=0\.2s"):
                store.append_events([b"a"], now=T0)
            assert time.monotonic() - started >= 0.19
        assert store.append_events([b"a"], now=T0) == 1  # and works again once the lock is free
        assert store.statistics().failed == 1


def test_writes_queued_before_close_are_committed(path: Path) -> None:
    store = SQLiteStore(path, busy_timeout=10)
    results = run_while_locked(path, [lambda i=i: store.append_events([b"x"], now=T0) for i in range(4)])
    store.close()
    assert sorted(r for _, r in results) == [1, 2, 3, 4]
    with SQLiteStore(path) as reopened:
        assert reopened.last_seq() == 4


# -- options ---------------------------------------------------------------------------------------------------


def test_synchronous_full_is_accepted_and_writes_persist(path: Path) -> None:
    with SQLiteStore(path, synchronous="full") as store:
        assert store.synchronous == "full"
        store.append_events([b"a"], now=T0)
    with SQLiteStore(path) as store:
        assert store.last_seq() == 1


def test_an_unknown_synchronous_setting_is_refused_by_name(path: Path) -> None:
    with pytest.raises(ConfigError, match=r"`synchronous` to be 'normal' or 'full', got 'off'"):
        SQLiteStore(path, synchronous="off")  # type: ignore[arg-type]
    assert not path.exists()


@pytest.mark.parametrize("timeout", [-1, float("inf"), float("nan"), "5", True])
def test_a_bad_busy_timeout_is_refused_by_value(path: Path, timeout: Any) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"`busy_timeout` to be seconds >= 0, got {timeout!r}")):
        SQLiteStore(path, busy_timeout=timeout)


@pytest.mark.parametrize("name", [":memory:", "", "file:state.db?mode=memory"])
def test_an_in_memory_database_is_refused_with_the_alternative(name: str) -> None:
    with pytest.raises(ConfigError, match=r"expected the path of a file.*MemoryStore"):
        SQLiteStore(name)


def test_a_path_in_a_missing_directory_is_refused_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "state.db"
    with pytest.raises(StoreError, match=rf"cannot open {re.escape(str(missing))}: .*existing, writable directory"):
        SQLiteStore(missing)


def test_repr_names_the_file_and_state(path: Path) -> None:
    store = SQLiteStore(path)
    assert repr(store) == f"SQLiteStore({str(path)!r}, synchronous='normal', open)"
    store.close()
    assert repr(store).endswith("closed)")


# -- what a file must be ---------------------------------------------------------------------------------------


def test_a_new_file_is_marked_as_a_recoverkit_store_of_the_current_version_in_wal_mode(path: Path) -> None:
    SQLiteStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_empty_file_becomes_a_store(path: Path) -> None:
    path.touch()
    with SQLiteStore(path) as store:
        assert store.append_events([b"a"], now=T0) == 1


def test_a_file_of_a_newer_schema_is_refused_naming_file_and_versions(path: Path) -> None:
    SQLiteStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
    expected = rf"{re.escape(str(path))} has schema version 99.*supports schema versions up to {SCHEMA_VERSION}"
    with pytest.raises(StoreError, match=expected):
        SQLiteStore(path)


def test_a_file_that_is_not_a_database_is_refused_naming_it(path: Path) -> None:
    path.write_bytes(b"order_id,total\n" * 1000)
    with pytest.raises(StoreError, match=rf"{re.escape(str(path))} is not a SQLite database; expected a recoverkit"):
        SQLiteStore(path)
    assert path.read_bytes() == b"order_id,total\n" * 1000


def test_another_applications_database_is_refused(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA application_id = 42")
    with pytest.raises(StoreError, match=r"another application \(application_id 0x2a\)"):
        SQLiteStore(path)


def test_a_database_with_foreign_tables_is_refused_and_left_alone(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
        conn.commit()
    with pytest.raises(StoreError, match=r"not a recoverkit store .*tables: orders"):
        SQLiteStore(path)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0


def test_check_reports_a_missing_table(path: Path) -> None:
    with SQLiteStore(path) as store:
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("DROP TABLE leases")
        assert store.check() == ["table leases is missing"]


# -- migrations ------------------------------------------------------------------------------------------------

M1 = "CREATE TABLE a (x INTEGER);\nINSERT INTO a VALUES (1);"
M2 = "-- a second version\nALTER TABLE a ADD COLUMN y TEXT DEFAULT 'new';\nCREATE TABLE b (z);"


def test_migrate_applies_only_the_missing_migrations_in_order(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "m.db", isolation_level=None)) as conn:
        assert migrate(conn, "m.db", [M1]) == 0
        assert migrate(conn, "m.db", [M1, M2]) == 1
        assert migrate(conn, "m.db", [M1, M2]) == 2  # nothing left to do
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("SELECT x, y FROM a").fetchall() == [(1, "new")]


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "m.db", isolation_level=None)) as conn:
        migrate(conn, "m.db", [M1])
        with pytest.raises(sqlite3.OperationalError, match="no such table: nope"):
            migrate(conn, "m.db", [M1, "CREATE TABLE b (z);\nINSERT INTO nope VALUES (1);"])
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'b'").fetchall() == []
        assert not conn.in_transaction


def test_split_statements_keeps_semicolons_inside_strings_and_triggers() -> None:
    script = """
    -- comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');

    CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN
        UPDATE t SET x = 'c;d';
    END;
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[0] == "CREATE TABLE t (x TEXT DEFAULT 'a;b');"
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


def test_split_statements_refuses_an_unfinished_statement() -> None:
    with pytest.raises(ValueError, match="incomplete statement: 'CREATE TABLE t"):
        split_statements("CREATE TABLE t (x)")


def test_a_version_1_file_is_migrated_keeping_its_rows(path: Path) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        assert migrate(conn, str(path), MIGRATIONS[:1]) == 0
        conn.execute(
            "INSERT INTO ledger (key, cart_key, contact_key, channel, state, owner, started_at, claimed_at) "
            "VALUES ('k', 'c', 'p', 'email', 'sent', 'w', 0, 1)"
        )
        conn.execute("INSERT INTO dead_letters (key, data, error, attempts, permanent, at) VALUES ('d', x'7b7d', "
                     "'e', 1, 1, 2)")  # fmt: skip
        conn.execute("INSERT INTO purchases (kind, key, at) VALUES ('contact', 'p', 3)")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    with SQLiteStore(path) as store:
        assert store.check() == []
        assert [(e.key, e.contact_key, e.state) for e in store.ledger()] == [("k", "p", "sent")]
        assert [(d.key, d.contact_key) for d in store.dead_letters()] == [("d", "")]  # the new column's default
        assert store.forget("p", at=4).ledger_entries == 1  # the new tables work
        assert store.is_suppressed("p")
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
        (salt,) = conn.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()
        assert isinstance(salt, bytes) and len(salt) == 32


# -- data protection ---------------------------------------------------------------------------------------------


def test_the_salt_is_kept_in_the_file_so_hashes_survive_a_restart_and_match_across_store_objects(path: Path) -> None:
    with SQLiteStore(path) as first, SQLiteStore(path) as second:
        hashed = first.hash_contact("alice@example.com")
        assert second.hash_contact("alice@example.com") == hashed
        first.suppress("alice@example.com", reason="unsubscribed", at=T0)
        assert second.is_suppressed("alice@example.com")
    with SQLiteStore(path) as reopened:
        assert reopened.hash_contact("alice@example.com") == hashed
        assert reopened.is_suppressed("alice@example.com")


def test_suppressions_keep_the_hash_never_the_contact_and_the_first_reason(path: Path) -> None:
    with SQLiteStore(path) as store:
        store.suppress("alice@example.com", reason="unsubscribed", at=T0)
        store.suppress("alice@example.com", reason="complaint", at=T0 + 1)
        store.suppress("bob@example.com", reason="complaint", at=T0)
        store.forget("bob@example.com", at=T0 + 2)
        alice, bob = store.hash_contact("alice@example.com"), store.hash_contact("bob@example.com")
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT hash, reason, at FROM suppression ORDER BY at").fetchall()
    assert sorted(rows) == sorted([(alice, "unsubscribed", T0), (bob, "forgotten", T0 + 2)])


def test_after_forget_no_table_holds_the_contact_key(path: Path) -> None:
    with SQLiteStore(path) as store:
        store.acquire_lease(PIPELINE_LEASE, "w", ttl=60, now=T0)
        claim(store, "k", contact_key="alice@example.com", owner="w", now=T0 + 1)
        store.add_dead_letter("k", b'{"email": "alice@example.com"}', error="e", attempts=1, permanent=True, at=T0,
                              contact_key="alice@example.com")  # fmt: skip
        store.record_purchase(cart_key=None, contact_key="alice@example.com", at=T0)
        store.forget("alice@example.com", at=T0 + 2)
        # deleted content is zeroed in the pages rewritten, at least (see the module docstring)
        assert store._write("probe", lambda conn: conn.execute("PRAGMA secure_delete").fetchone()[0]) in (1, 2)
    with closing(sqlite3.connect(path)) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                assert not any(b"alice@" in (v if isinstance(v, bytes) else str(v).encode()) for v in row), table
    assert b"alice@" not in path.read_bytes()


def test_forget_is_one_transaction_a_failure_leaves_everything_as_it_was(path: Path) -> None:
    with SQLiteStore(path) as store:
        store.acquire_lease(PIPELINE_LEASE, "w", ttl=60, now=T0)
        claim(store, "k", contact_key="p", owner="w", now=T0 + 1)
        store.add_dead_letter("d", b"{}", error="e", attempts=1, permanent=True, at=T0, contact_key="p")
        store.record_purchase(cart_key=None, contact_key="p", at=T0)
        with closing(sqlite3.connect(path)) as conn:  # the ledger rewrite, after the deletes, fails
            conn.execute("CREATE TRIGGER refuse BEFORE UPDATE ON ledger BEGIN SELECT RAISE(ABORT, 'refused'); END")
        with pytest.raises(StoreError, match=r"forget failed: refused"):
            store.forget("p", at=T0 + 2)
        export = store.export("p")
        assert ([d.key for d in export.dead_letters], export.purchased_at, export.suppressed) == (["d"], T0, False)
        assert [e.contact_key for e in export.ledger] == ["p"]


def test_a_store_file_without_its_salt_is_refused_and_check_says_why(path: Path) -> None:
    SQLiteStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'salt'")
        conn.commit()
    assert check_database(path) == ["table meta has no 'salt' row; expected the store's secret salt"]
    with pytest.raises(StoreError, match=rf"{re.escape(str(path))}: table meta has no 'salt' row.*cannot be matched"):
        SQLiteStore(path)


def test_check_reports_a_damaged_salt(path: Path) -> None:
    with SQLiteStore(path) as store:
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("UPDATE meta SET value = x'00' WHERE key = 'salt'")
            conn.commit()
        assert store.check() == ["the 'salt' in table meta is 1 bytes; expected 32 bytes"]


# -- reading a file without opening a store ----------------------------------------------------------------------


def test_check_database_and_describe_database_neither_create_nor_migrate(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="no such file"):
        check_database(missing)
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    assert check_database(empty) == [f"schema version 0 is older than {SCHEMA_VERSION}: opening the file with "
                                     "SQLiteStore migrates it"]  # fmt: skip
    assert describe_database(empty).rows == {}
    assert empty.stat().st_size == 0


def test_describe_database_counts_rows_and_lists_leases(path: Path) -> None:
    with SQLiteStore(path) as store:
        store.append_events([b"a", b"b"], now=T0)
        store.save_checkpoint(1, b"s", now=T0)
        store.acquire_lease(PIPELINE_LEASE, "w1", ttl=30, now=T0)
        info = describe_database(path)
    assert info.schema_version == info.supported_version == SCHEMA_VERSION
    assert info.rows == {"assignments": 0, "audit": 0, "audit_chain": 1, "checkpoint": 1, "code_attempts": 0,
                         "codes": 0, "conversions": 0, "dead_letters": 0, "journal": 2, "journal_heads": 1,
                         "leases": 1, "ledger": 0, "meta": 1, "onsite": 0, "outcomes": 0, "partition_checkpoints": 0,
                         "partition_leases": 1, "purchases": 0, "states": 0, "suppression": 0, "visits": 0}  # fmt: skip
    assert [(lease.name, lease.owner, lease.expires_at) for lease in info.leases] == [("pipeline", "w1", T0 + 30)]
    assert (info.last_seq, info.checkpoint_position) == (2, 1)


# -- fork ------------------------------------------------------------------------------------------------------


def test_a_store_used_after_fork_raises_with_the_fix_and_the_parent_is_unharmed(path: Path) -> None:
    store = SQLiteStore(path)
    store.append_events([b"before"], now=T0)
    store.read_events(0, 1)  # this thread now has a read connection too
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "fork() of a multi-threaded process"
        pid = os.fork()
    if pid == 0:  # the child: report and leave at once, without running pytest's teardown
        try:
            messages = []
            for call in (lambda: store.append_events([b"child"], now=T0), lambda: store.read_events(0, 1)):
                try:
                    call()
                    messages.append("no error")
                except StoreError as exc:
                    messages.append(str(exc))
            store.close()  # must not touch the parent's connections
            os.write(write_end, "\n".join(messages).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        messages = pipe.read().decode().split("\n")
    os.waitpid(pid, 0)
    assert len(messages) == 2
    for message in messages:
        assert re.fullmatch(
            rf"SQLiteStore\({re.escape(str(path))}\) was opened in process {os.getpid()} and used in process \d+: "
            r"a SQLite connection must not cross a fork; open the store after forking",
            message,
        ), message
    assert store.append_events([b"after"], now=T0) == 2
    assert [e.data for e in store.read_events(0, 10)] == [b"before", b"after"]
    assert store.check() == []
    store.close()
