"""The CLI's audit trail: forget, export, resolve and resend are recorded in the store's audit log (ok or failed,
who, when, on what), a configuration change at start-up too; ``recoverkit audit`` lists and exports the log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from recoverkit.cli import main
from recoverkit.store import PIPELINE_LEASE, SQLiteStore
from test_cli import Receiver, dead_letter_file
from test_cli_store import shop_events


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state file after a replay of the shop's events (customer c1 has a ledger entry), run by ``ops``."""
    monkeypatch.setenv("RECOVERKIT_ACTOR", "ops")
    path = tmp_path / "state.db"
    assert main(["replay", str(shop_events(tmp_path / "events.jsonl")), "--store", str(path), "--json"]) == 0
    capsys.readouterr()
    return path


def exported(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(["audit", *argv, "--jsonl"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_forget_and_export_are_recorded_with_the_customer_as_its_keyed_hash(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = time.time()
    assert main(["export", str(db), "c1"]) == 0
    assert main(["forget", str(db), "c1"]) == 0
    capsys.readouterr()
    records = exported(capsys, str(db))
    with SQLiteStore(db) as store:
        hashed = store.hash_contact("c1")
    assert [(r["seq"], r["actor"], r["action"], r["subject_kind"], r["subject"], r["outcome"]) for r in records] == [
        (1, "cli:ops", "export", "customer", hashed, "ok"),
        (2, "cli:ops", "forget", "customer", hashed, "ok"),
    ]
    assert before <= records[0]["at"] <= records[1]["at"] <= time.time()  # the CLI's clock: the wall clock
    assert records[1]["prev_hash"] == records[0]["hash"]
    assert '"c1"' not in json.dumps(records)
    assert main(["db", "check", str(db)]) == 0


def test_a_resolve_is_recorded_ok_and_a_refused_one_as_failed(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SQLiteStore(db) as store:  # a send cut short by a crash: its outcome is unknown
        now = time.time()
        assert store.acquire_lease(PIPELINE_LEASE, "w1", ttl=60, now=now)
        store.claim("s9/cart-recovery/0", cart_key="s9", contact_key="c9", channel="email", started_at=now,
                    owner="w1", now=now)  # fmt: skip
        store.mark_unknown("w1")
    assert main(["ledger", str(db), "--resolve", "s9/cart-recovery/0", "--as", "sent"]) == 0
    assert main(["ledger", str(db), "--resolve", "no/such/0", "--as", "retry"]) == 2
    capsys.readouterr()
    records = exported(capsys, str(db), "--action", "resolve")
    assert [(r["subject_kind"], r["subject"], r["outcome"], r["detail"][:8]) for r in records] == [
        ("message", "s9/cart-recovery/0", "ok", "as sent"),
        ("message", "no/such/0", "failed", "as retry"),
    ]


def test_a_resend_from_a_dead_letter_file_is_recorded_in_the_store_named(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    letters = dead_letter_file(tmp_path / "dead.jsonl")
    with Receiver() as receiver:
        assert main(["dead-letters", "resend", str(letters), "--webhook", receiver.url, "--store", str(db)]) == 0
    capsys.readouterr()
    records = exported(capsys, str(db), "--action", "resend")
    assert sorted((r["subject"], r["outcome"]) for r in records) == [("cart0/f/0", "ok"), ("cart1/f/0", "ok")]


def test_a_resend_that_fails_is_recorded_as_failed(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    letters = dead_letter_file(tmp_path / "dead.jsonl", carts=1)
    with Receiver(status=410) as receiver:
        assert main(["dead-letters", "resend", str(letters), "--webhook", receiver.url, "--store", str(db)]) == 1
    capsys.readouterr()
    records = exported(capsys, str(db), "--action", "resend")
    assert [(r["subject"], r["outcome"], r["detail"]) for r in records] == [
        ("cart0/f/0", "failed", "PermanentDeliveryError")
    ]


def test_a_configuration_change_is_recorded_once_per_change(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "recoverkit.toml"
    config.write_text("abandon_after = 1800\n")
    for _ in range(2):
        assert main(["export", str(db), "c1", "--config", str(config)]) == 0
    config.write_text("abandon_after = 900\n")
    assert main(["export", str(db), "c1", "--config", str(config)]) == 0
    capsys.readouterr()
    changes = exported(capsys, str(db), "--action", "config.changed")
    assert len(changes) == 2
    first, second = (change["detail"].split() for change in changes)
    assert first[0] == second[0] == "fingerprint" and len(first) == 2
    assert second[2:] == ["was", first[1]] and second[1] != first[1]


def test_audit_filters_by_time_action_and_customer_and_lists_a_table(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(db), "c1"]) == 0
    assert main(["export", str(db), "c2"]) == 0
    capsys.readouterr()
    assert [r["seq"] for r in exported(capsys, str(db), "--customer", "c2")] == [2]
    assert exported(capsys, str(db), "--since", "2999-01-01") == []
    assert len(exported(capsys, str(db), "--until", "2999-01-01T00:00Z", "--action", "export")) == 2
    assert exported(capsys, str(db), "--action", "forget") == []
    assert main(["audit", str(db)]) == 0
    out = capsys.readouterr().out
    assert "2 audit record(s)" in out and "cli:ops" in out and "export" in out


def test_audit_of_a_missing_file_fails_without_creating_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(tmp_path / "nope.db")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "nope.db").exists()


def test_audit_refuses_a_time_it_cannot_read(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["audit", str(db), "--since", "last tuesday"])
    assert "expected epoch seconds or an ISO 8601 date" in capsys.readouterr().err
