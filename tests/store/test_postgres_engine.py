"""Today's engine runs on the PostgreSQL store (one partition, its one-sequence journal and pipeline lease) and
sends what it sends on the in-memory store; the journal benchmark's smoke run works (tests/store/postgres_cluster.py
starts the server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from recoverkit import MemoryStore
from replaying import replay_keys, synthetic_lines

from .postgres_cluster import postgres_cluster, postgres_url  # noqa: F401 - fixtures used by name

pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")

from recoverkit.store.postgres import PostgresStore, init

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_engine_sends_the_same_messages_on_postgres_as_in_memory(postgres_url: str) -> None:  # noqa: F811
    lines = synthetic_lines(400, seed=3)
    in_memory, _, _ = anyio.run(replay_keys, lines, MemoryStore())
    init(postgres_url)
    with PostgresStore(postgres_url) as store:
        on_postgres, _, _ = anyio.run(replay_keys, lines, store)
        assert store.ledger(["sending", "unknown"]) == []
        assert len(store.ledger(["sent"])) == len(on_postgres)
        assert store.check() == []
    assert in_memory and on_postgres == in_memory


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_journal_benchmark_smoke_run_reports_its_ratios(postgres_cluster: object) -> None:  # noqa: F811
    # postgres_cluster only to skip (or fail, in CI) where PostgreSQL is missing: the script starts its own.
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_pg_journal.py", "--quick", "--json", "--timeout", "240"],
        cwd=ROOT, capture_output=True, text=True, timeout=270, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    document = json.loads(done.stdout)
    assert document["problems"] == []
    assert {(row["batch"], row["processes"]) for row in document["results"]} == {(1, 1), (1, 2), (64, 1), (64, 2)}
    for row in document["results"]:
        assert row["bare_events_per_s"] > 0 and row["store_events_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["store_events_per_s"] / row["bare_events_per_s"])
    for key in ("cpu", "cores", "python", "recoverkit", "postgresql", "psycopg"):
        assert document["machine"].get(key), key
