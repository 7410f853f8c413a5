"""``recoverkit db check`` and ``recoverkit db info``: look at a state file without changing it."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from recoverkit.cli import main
from recoverkit.store import PIPELINE_LEASE, SQLiteStore
from recoverkit.store._schema import SCHEMA_VERSION

from .contract import T0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def test_check_says_ok_for_a_healthy_store(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SQLiteStore(path) as store:
        store.append_events([b"a"], now=T0)
        assert main(["db", "check", str(path)]) == 0  # beside a running store, too
    assert capsys.readouterr().out.strip() == f"{path}: ok"


def test_check_lists_the_problems_and_exits_1(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    SQLiteStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TABLE ledger")
    assert main(["db", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: 1 problem(s)" in out
    assert "table ledger is missing" in out


def test_check_reports_a_newer_schema_as_a_problem(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    SQLiteStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1:d}")
    assert main(["db", "check", str(path)]) == 1
    assert f"has schema version {SCHEMA_VERSION + 1}, written by a newer recoverkit" in capsys.readouterr().out


def test_check_of_a_file_that_is_not_a_database_fails_naming_it(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path.write_text("hello\n" * 500)
    assert main(["db", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "is not a SQLite database" in err and path.name in err


def test_check_of_a_missing_file_fails_and_does_not_create_it(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "check", str(path)]) == 1
    assert "no such file" in capsys.readouterr().err
    assert not path.exists()


def test_info_shows_version_rows_per_table_and_the_lease_holder(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SQLiteStore(path) as store:
        store.append_events([b"a", b"b", b"c"], now=T0)
        store.save_checkpoint(2, b"state", now=T0)
        store.acquire_lease(PIPELINE_LEASE, "host-1:4242", ttl=60, now=time.time())
    assert main(["db", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: schema version {SCHEMA_VERSION} (this recoverkit: {SCHEMA_VERSION})" in out
    assert "journal: last seq 3; checkpoint at seq 2" in out
    tables = ("checkpoint", "code_attempts", "codes", "dead_letters", "journal", "leases", "ledger", "meta",
              "purchases", "suppression")  # fmt: skip
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.split()[:1] in [[t] for t in tables]}
    assert rows == {"checkpoint": "1", "code_attempts": "0", "codes": "0", "dead_letters": "0", "journal": "3",
                    "leases": "1", "ledger": "0", "meta": "1", "purchases": "0", "suppression": "0"}  # fmt: skip
    assert "lease pipeline: held by host-1:4242, expires in" in out


def test_info_says_when_a_lease_has_expired(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SQLiteStore(path) as store:
        store.acquire_lease(PIPELINE_LEASE, "gone", ttl=1, now=T0)
    assert main(["db", "info", str(path)]) == 0
    assert "lease pipeline: held by gone, expired" in capsys.readouterr().out


def test_info_of_a_store_without_leases_says_so(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    SQLiteStore(path).close()
    assert main(["db", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "leases: none" in out and "checkpoint none" in out


def test_db_needs_an_action_it_knows(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["db", "vacuum", str(path)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'vacuum'" in capsys.readouterr().err
