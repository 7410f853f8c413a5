"""The audit log on every store: the contract (``contract_audit.py``) on memory, SQLite and PostgreSQL; tampering
with the tables by hand shows in the store's check and ``recoverkit db check`` with the record where the chain
breaks; the triggers refuse changes; several real processes appending at once make one linear chain."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recoverkit.cli import main
from recoverkit.store import MemoryStore, SQLiteStore, check_database

from .contract_audit import AuditContract, entry
from .contract_base import T0
from .postgres_cluster import postgres_cluster, postgres_shared_url, postgres_url  # noqa: F401 - fixtures by name


class TestMemoryAuditContract(AuditContract):
    def make_store(self, directory: Path) -> Any:
        return MemoryStore()


class TestSQLiteAuditContract(AuditContract):
    def make_store(self, directory: Path) -> Any:
        return SQLiteStore(directory / "state.db")


_schemas = itertools.count(1)


class TestPostgresAuditContract(AuditContract):
    @pytest.fixture(autouse=True)
    def _database(self, postgres_shared_url: str) -> Iterator[None]:  # noqa: F811 - the fixture
        pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")
        self.url = postgres_shared_url
        yield

    def make_store(self, directory: Path) -> Any:
        from recoverkit.store.postgres import PostgresStore, init

        schema = f"audit_{next(_schemas)}"
        init(self.url, schema=schema)
        return PostgresStore(self.url, schema=schema, pool_size=8)


# -- SQLite: tampering shows, triggers refuse ------------------------------------------------------------------


@pytest.fixture
def five(tmp_path: Path) -> Path:
    """A store file with five audit records, seq 1..5, the triggers dropped as a tamperer would."""
    path = tmp_path / "state.db"
    with SQLiteStore(path) as store:
        for i in range(5):
            store.append_audit(entry(subject=f"m{i}", at=T0 + i))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_append_only")
    conn.execute("DROP TRIGGER audit_trim_only")
    conn.close()
    return path


def _tamper(path: Path, statement: str) -> list[str]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(statement)
    conn.close()
    with SQLiteStore(path) as store:
        assert store.audit_problems() == store.check()
    return check_database(path)


def test_an_untouched_log_verifies(five: Path) -> None:
    assert check_database(five) == []


def test_a_changed_record_shows_with_its_seq(five: Path) -> None:
    problems = _tamper(five, "UPDATE audit SET actor = 'cli:mallory' WHERE seq = 3")
    assert problems == [
        "audit log: record seq 3 does not match its hash (changed after it was written); expected its content as "
        "appended"
    ]


def test_a_record_deleted_from_the_middle_shows_where_the_chain_breaks(five: Path) -> None:
    problems = _tamper(five, "DELETE FROM audit WHERE seq = 2")
    assert len(problems) == 2
    assert problems[0].startswith("audit log: record seq 3 follows seq 1; expected seq 2")
    assert problems[1].startswith("audit log: record seq 3 has prev_hash")


def test_reordered_records_show(five: Path) -> None:
    # Swap the content of records 2 and 4, keeping the seqs: as if the rows had been moved.
    conn = sqlite3.connect(five, isolation_level=None)
    rows = {
        seq: rest
        for seq, *rest in conn.execute(
            "SELECT seq, at, actor, action, subject_kind, subject, outcome, "
            "detail, prev_hash, hash FROM audit WHERE seq IN (2, 4)"
        )
    }
    for seq, other in ((2, 4), (4, 2)):
        conn.execute("DELETE FROM audit WHERE seq = ?", (seq,))
        conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (seq, *rows[other]))
    conn.close()
    problems = check_database(five)
    assert any(p.startswith("audit log: record seq 2 ") for p in problems)
    assert any(p.startswith("audit log: record seq 4 ") for p in problems)


def test_a_record_deleted_from_the_end_shows_against_the_head(five: Path) -> None:
    problems = _tamper(five, "DELETE FROM audit WHERE seq = 5")
    assert problems == [
        "audit log: the last record is seq 4, but the head records seq 5 "
        f"({problems[0].split('(')[1][:16]}...); expected them to be the same (records were deleted from the end)"
    ]


def test_db_check_reports_a_tampered_log_and_exits_1(five: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tamper(five, "UPDATE audit SET detail = 'as retry' WHERE seq = 4")
    assert main(["db", "check", str(five)]) == 1
    assert "record seq 4 does not match its hash" in capsys.readouterr().out


def test_the_triggers_refuse_to_change_or_delete_a_record(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SQLiteStore(path) as store:
        store.append_audit(entry())
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET actor = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit")
    conn.close()
    assert check_database(path) == []


# -- several processes append at once ---------------------------------------------------------------------------

_APPEND = textwrap.dedent(
    """
    import sys
    from recoverkit.store._audit import AuditEntry
    kind, where, schema, worker, count = sys.argv[1:6]
    if kind == "sqlite":
        from recoverkit.store import SQLiteStore
        store = SQLiteStore(where, busy_timeout=60)
    else:
        from recoverkit.store.postgres import PostgresStore
        store = PostgresStore(where, schema=schema)
    with store:
        for i in range(int(count)):
            store.append_audit(AuditEntry(actor=f"cli:p{worker}", action="resend", subject_kind="message",
                                          subject=f"m{worker}-{i}", outcome="ok", at=1.0e9 + i))
    """
)


def _append_in_processes(kind: str, where: str, schema: str, processes: int, count: int) -> None:
    running = [
        subprocess.Popen([sys.executable, "-c", _APPEND, kind, where, schema, str(w), str(count)])
        for w in range(processes)
    ]
    assert [p.wait(timeout=120) for p in running] == [0] * processes


def _assert_one_chain(store: Any, total: int) -> None:
    records = store.audit_records()
    assert [r.seq for r in records] == list(range(1, total + 1))
    assert len({r.subject for r in records}) == total
    assert store.audit_problems() == []


@pytest.mark.slow
def test_processes_appending_to_one_sqlite_file_make_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SQLiteStore(path).close()
    _append_in_processes("sqlite", str(path), "", processes=4, count=50)
    with SQLiteStore(path) as store:
        _assert_one_chain(store, 200)
    assert check_database(path) == []


@pytest.mark.slow
def test_processes_appending_to_one_postgres_store_make_one_chain(postgres_url: str) -> None:  # noqa: F811
    pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")
    from recoverkit.store.postgres import PostgresStore, init

    init(postgres_url)
    _append_in_processes("postgres", postgres_url, "recoverkit", processes=4, count=50)
    with PostgresStore(postgres_url) as store:
        _assert_one_chain(store, 200)
        assert store.check() == []


def test_a_changed_postgres_record_shows_in_check_and_the_triggers_refuse_changes(
    postgres_url: str,  # noqa: F811
) -> None:
    psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")
    from recoverkit.store.postgres import PostgresStore, init

    init(postgres_url)
    with PostgresStore(postgres_url) as store:
        for i in range(3):
            store.append_audit(entry(subject=f"m{i}", at=T0 + i))
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("SET search_path TO recoverkit")
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute("UPDATE audit SET actor = 'cli:mallory' WHERE seq = 2")
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute("DELETE FROM audit WHERE seq = 1")
            assert store.check() == []
            conn.execute("ALTER TABLE audit DISABLE TRIGGER audit_append_only")
            conn.execute("UPDATE audit SET actor = 'cli:mallory' WHERE seq = 2")
        assert store.check() == [
            "audit log: record seq 2 does not match its hash (changed after it was written); expected its content as "
            "appended"
        ]


def test_the_cli_lists_a_postgres_audit_log_and_db_check_reports_a_broken_chain(
    postgres_url: str,  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")
    from recoverkit.store.postgres import PostgresStore, init

    init(postgres_url)
    with PostgresStore(postgres_url) as store:
        store.append_audit(entry(action="forget", subject_kind="customer", subject="c1"))
        store.append_audit(entry(at=T0 + 1))
        hashed = store.hash_contact("c1")
    assert main(["audit", postgres_url, "--jsonl", "--customer", "c1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and f'"subject":"{hashed}"' in lines[0]
    assert main(["db", "check", postgres_url]) == 0
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE recoverkit.audit DISABLE TRIGGER audit_append_only")
        conn.execute("DELETE FROM recoverkit.audit WHERE seq = 2")
    capsys.readouterr()
    assert main(["db", "check", postgres_url]) == 1
    assert "the last record is seq 1, but the head records seq 2" in capsys.readouterr().out
