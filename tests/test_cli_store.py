"""The commands that work on a state file: replay --store/--resume, forget, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recoverkit.cli import main
from recoverkit.store import SQLiteStore

T0 = 1_767_225_600.0
EMAIL = "ada@example.invalid"


def line(**event: Any) -> str:
    return json.dumps(event)


def shop_events(path: Path) -> Path:
    cart = {"currency": "EUR", "items": [{"item_id": "A", "price": "10.00", "quantity": 1}]}
    lines = [
        line(event="identify", session_id="s1", ts=T0, customer_id="c1", email=EMAIL),
        line(event="consent", session_id="s1", ts=T0, customer_id="c1", granted=["email"]),
        line(event="add_to_cart", session_id="s1", ts=T0 + 1, customer_id="c1", **cart),
        line(event="add_to_cart", session_id="s2", ts=T0 + 2, **cart),
        "not json",
        line(event="page_view", session_id="s3", ts=T0 + 20_000),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_forget_and_export_on_a_state_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events, db = shop_events(tmp_path / "events.jsonl"), tmp_path / "state.db"
    assert main(["replay", str(events), "--store", str(db), "--json"]) == 0
    capsys.readouterr()

    assert main(["export", str(db), "c1"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["contact"]["email"] == EMAIL
    assert [e["key"] for e in exported["store"][0]["ledger"]] == ["s1/cart-recovery/0"]

    assert main(["forget", str(db), "c1"]) == 0
    assert "erased" in capsys.readouterr().out
    assert main(["export", str(db), "c1"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["contact"] is None and exported["store"][0]["suppressed"] is True
    assert main(["db", "check", str(db)]) == 0


def test_forget_names_a_missing_state_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["forget", str(tmp_path / "nope.db"), "c1"]) == 1
    assert "no such state file" in capsys.readouterr().err
    assert not (tmp_path / "nope.db").exists()


def test_a_resumed_replay_skips_what_the_store_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events, db = shop_events(tmp_path / "events.jsonl"), tmp_path / "state.db"
    # An interrupted replay: the store has accepted the first three valid events only.
    head = tmp_path / "head.jsonl"
    head.write_text("".join(events.read_text().splitlines(keepends=True)[:3]))
    assert main(["replay", str(head), "--store", str(db), "--json"]) == 0
    capsys.readouterr()
    assert main(["replay", str(events), "--store", str(db), "--resume", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # The summary covers the whole file: three valid events skipped as already accepted, then s2's add_to_cart
    # and s3's page view accepted now; "not json" is counted invalid.
    assert summary["resumed_after"] == 3
    assert summary["accepted"] - summary["resumed_after"] == 2
    assert summary["invalid"] == {"malformed_json": 1}
    with SQLiteStore(db) as store:
        assert store.last_seq() == 5  # each valid event journaled exactly once
        assert [e.key for e in store.ledger()] == ["s1/cart-recovery/0"]  # s2 is anonymous: no consent
    assert summary["abandonments"] == {"inactivity": 2}  # counted across both runs: the state was restored
