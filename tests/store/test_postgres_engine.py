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

from recoverkit import Config, Engine, EventClock, MemoryStore
from recoverkit.channels.base import Message
from recoverkit.store import Store
from recoverkit.synthetic import generate_jsonl

from .postgres_cluster import postgres_cluster, postgres_url  # noqa: F401 - fixtures used by name

pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")

from recoverkit.store.postgres import PostgresStore, init  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class _Record:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def send(self, message: Message) -> None:
        self.keys.append(message.key)


async def _replay(lines: list[bytes], store: Store) -> list[str]:
    config = Config()
    used = sorted({ch for f in config.flows for s in f.steps for ch in (s.channel, s.fallback) if ch})
    record = _Record()
    async with Engine(config, channels=dict.fromkeys(used, record), clock=EventClock(), store=store) as engine:
        for i in range(0, len(lines), 256):
            await engine.submit_many(lines[i : i + 256])
        await engine.flush(end_of_input=True)
    return sorted(record.keys)


@pytest.mark.slow
def test_the_engine_sends_the_same_messages_on_postgres_as_in_memory(postgres_url: str) -> None:  # noqa: F811
    lines = [line if isinstance(line, bytes) else line.encode() for line in generate_jsonl(400, seed=3)]
    in_memory = anyio.run(_replay, lines, MemoryStore())
    init(postgres_url)
    with PostgresStore(postgres_url) as store:
        on_postgres = anyio.run(_replay, lines, store)
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
