"""The CLI's commands on a PostgreSQL store given as a ``postgresql://`` URL where they take a path: ``ledger``,
``dead-letters``, ``report --store``, ``replay --store``, ``forget`` and ``export`` (issue 14). Each is run as the
shop runs it, in a process of its own, and nothing it prints holds the password. The commands that run a
pipeline of their own (replay, forget, export) refuse a store of several partitions, saying which command, why
and what to use instead; the others work on any store (tests/store/postgres_cluster.py starts the server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import quote

import msgspec
import pytest

from recoverkit.store import PIPELINE_LEASE, store_label
from recoverkit.synthetic import generate_jsonl

from channels.contract import make_message
from .contract import T0, claim
from .postgres_cluster import postgres_cluster, postgres_url  # noqa: F401 - fixtures used by name

pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")

from recoverkit.store.postgres import PostgresStore, init  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: The cluster trusts its socket, so any password is accepted: one that must never be printed.
PASSWORD = "pw-s3cret-never-shown"


@pytest.fixture
def url(postgres_url: str) -> str:  # noqa: F811
    return postgres_url.replace("recoverkit@", f"recoverkit:{quote(PASSWORD)}@", 1)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``recoverkit ARGS`` in a process of its own; its output never holds the password."""
    done = subprocess.run(
        [sys.executable, "-m", "recoverkit", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "RECOVERKIT_PROGRESS_INTERVAL": "0"},
    )  # fmt: skip
    assert PASSWORD not in done.stdout + done.stderr
    return done


def ledger_store(url: str, partitions: int = 1) -> None:
    """A store with entries a/f/0 (sent), b/f/0 (failed, its error quoting an address), c/f/0 (unknown)."""
    init(url, partitions=partitions)
    with PostgresStore(url) as store:
        store.acquire_lease(PIPELINE_LEASE, "w", ttl=86_400, now=T0)
        for key in ("a/f/0", "b/f/0", "c/f/0"):
            claim(store, key, contact_key="alice@example.com", owner="w", channel="email")
        store.finish("a/f/0", "sent", now=T0 + 3601)
        store.finish("b/f/0", "failed", now=T0 + 3601, error="550 no mailbox alice@example.com")
        store.mark_unknown()


# -- the store's own tables: any number of partitions ----------------------------------------------------------


@pytest.mark.slow
def test_ledger_lists_and_resolves_entries_on_a_url(url: str) -> None:
    ledger_store(url, partitions=3)  # the ledger is the store's, not a partition's: any number of them
    done = cli("ledger", url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{store_label(url)}: 3 entries"
    assert "alice@example.com" not in done.stdout and "***" in done.stdout
    listed = json.loads(cli("ledger", url, "--state", "unknown", "--json").stdout)
    assert listed["path"] == store_label(url)
    assert [(e["key"], e["state"]) for e in listed["entries"]] == [("c/f/0", "unknown")]
    assert cli("ledger", url, "--resolve", "c/f/0", "--as", "sent").returncode == 0
    with PostgresStore(url) as store:
        assert {e.key: e.state for e in store.ledger()} == {"a/f/0": "sent", "b/f/0": "failed", "c/f/0": "sent"}


def test_ledger_on_a_url_without_a_store_fails_with_one_line_naming_the_command(url: str) -> None:
    done = cli("ledger", url)
    assert done.returncode == 2  # as for a state file that cannot be used
    assert done.stderr.count("\n") == 1 and "recoverkit db init" in done.stderr


class _Webhook(BaseHTTPRequestHandler):
    received: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body)["key"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Webhook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_dead_letters_are_listed_and_resent_from_a_url(url: str, webhook: str) -> None:
    init(url, partitions=2)  # the dead letters are the store's, not a partition's
    with PostgresStore(url) as store:
        for key in ("cart-1/default/0", "cart-2/default/0"):
            data = msgspec.json.encode(make_message(key))
            store.add_dead_letter(key, data, error="550 alice@example.com", attempts=3, permanent=True, at=T0)
    listed = cli("dead-letters", "list", url, "--json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["file"] == store_label(url)
    assert [(x["key"], x["channel"], x["attempts"]) for x in document["letters"]] == [
        ("cart-1/default/0", "email", 3), ("cart-2/default/0", "email", 3),
    ]  # fmt: skip
    assert "alice@example.com" not in listed.stdout
    table = cli("dead-letters", "list", url)
    assert f"dead letters in {store_label(url)}: 2" in table.stdout
    resent = cli("dead-letters", "resend", url, "--webhook", webhook, "--key", "cart-2/default/0")
    assert resent.returncode == 0, resent.stderr
    assert "re-sent 1, still failing 0" in resent.stdout
    assert _Webhook.received == ["cart-2/default/0"]
    with PostgresStore(url) as store:
        assert [letter.key for letter in store.dead_letters()] == ["cart-1/default/0"]


@pytest.mark.parametrize("partitions", [1, 2])
def test_report_reads_a_url_and_names_the_store_without_its_password(url: str, partitions: int) -> None:
    init(url, partitions=partitions)
    done = cli("report", "--store", url, "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["store"] == store_label(url)
    assert report["recovery"] is not None and report["uplift"] is not None


# -- a pipeline of their own: one partition ------------------------------------------------------------------


@pytest.mark.slow
def test_replay_export_and_forget_run_on_a_one_partition_url(url: str, tmp_path: Path) -> None:
    init(url)
    events = tmp_path / "events.jsonl"
    lines = [line if isinstance(line, str) else line.decode() for line in generate_jsonl(60, seed=5)]
    events.write_text("\n".join(lines) + "\n")
    customer = next(c for c in (json.loads(line).get("customer_id") for line in lines) if c)

    replayed = cli("replay", str(events), "--store", url, "--json", "--no-progress")
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["events"] == len(lines)
    again = cli("replay", str(events), "--store", url, "--no-progress")
    assert again.returncode == 1 and "already holds" in again.stderr  # one input per store, as on a file

    exported = cli("export", url, customer)
    assert exported.returncode == 0, exported.stderr
    assert customer in exported.stdout
    forgotten = cli("forget", url, customer)
    assert forgotten.returncode == 0, forgotten.stderr + forgotten.stdout
    after = cli("export", url, customer)
    assert after.returncode == 0 and json.loads(after.stdout) != json.loads(exported.stdout)


@pytest.mark.parametrize(
    ("command", "instead"),
    [
        (["replay", "{events}", "--store", "{url}"], "--partitions 1"),
        (["forget", "{url}", "cust-1"], "engine.forget(customer_id)"),
        (["export", "{url}", "cust-1"], "engine.export(customer_id)"),
    ],
)
def test_the_commands_that_run_a_pipeline_refuse_a_partitioned_store_saying_why_and_what_to_use(
    url: str, tmp_path: Path, command: list[str], instead: str
) -> None:
    init(url, partitions=4)
    events = tmp_path / "events.jsonl"
    events.write_text('{"event": "page_view", "session_id": "s1", "ts": 1767225600}\n')
    done = cli(*(part.format(url=url, events=events) for part in command))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr  # one line
    name = command[0]
    assert f"{name}: {store_label(url)} has 4 journal partitions, and {name} cannot run on a partitioned store yet" in (
        done.stderr
    )
    assert instead in done.stderr
    with PostgresStore(url) as store:  # nothing was journaled
        assert store.partition_heads() == [0, 0, 0, 0]
