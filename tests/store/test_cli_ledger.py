"""``recoverkit ledger``: list the dispatch ledger of a state file, and resolve an entry by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from recoverkit.cli import main
from recoverkit.store import PIPELINE_LEASE, SQLiteStore

from .contract import T0, claim


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A store with entries a/f/0 (sent), b/f/0 (failed, with an error quoting an address), c/f/0 (unknown)."""
    file = tmp_path / "state.db"
    with SQLiteStore(file) as store:
        store.acquire_lease(PIPELINE_LEASE, "w", ttl=86_400, now=T0)
        for key in ("a/f/0", "b/f/0", "c/f/0"):
            claim(store, key, contact_key="alice@example.com", owner="w", channel="email")
        store.finish("a/f/0", "sent", now=T0 + 3601)
        store.finish("b/f/0", "failed", now=T0 + 3601, error="550 no mailbox alice@example.com (+44 20 7946 0958)")
        store.mark_unknown()
    return file


def states(path: Path) -> dict[str, str]:
    with SQLiteStore(path) as store:
        return {entry.key: entry.state for entry in store.ledger()}


def test_ledger_lists_key_state_channel_time_and_error(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{path}: 3 entries"
    cells = [re.split(r" {2,}", line.strip()) for line in out.splitlines()]  # plain columns, two spaces apart
    rows = {row[0]: row[1:4] for row in cells if row[0] in ("a/f/0", "b/f/0", "c/f/0")}
    assert rows == {
        "a/f/0": ["sent", "email", "2026-01-01 01:00:00"],
        "b/f/0": ["failed", "email", "2026-01-01 01:00:00"],
        "c/f/0": ["unknown", "email", "2026-01-01 01:00:00"],
    }
    assert "550 no mailbox" in out


def test_ledger_never_shows_addresses_or_phone_numbers(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", str(path)]) == 0
    out = capsys.readouterr().out
    assert "alice" not in out and "example.com" not in out and "7946" not in out
    assert "550 no mailbox *** (***)" in out


def test_ledger_json_is_one_document_without_customer_ids_or_addresses(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ledger", str(path), "--state", "failed", "unknown", "--json"]) == 0
    out = capsys.readouterr().out
    document = json.loads(out)
    assert document["path"] == str(path) and document["states"] == ["failed", "unknown"]
    entries = {entry["key"]: entry for entry in document["entries"]}
    assert set(entries) == {"b/f/0", "c/f/0"}
    assert entries["b/f/0"]["state"] == "failed" and entries["b/f/0"]["claimed_at"] == T0 + 3600
    assert entries["b/f/0"]["error"] == "550 no mailbox *** (***)"
    assert "cart_key" not in entries["b/f/0"] and "contact_key" not in entries["b/f/0"]
    assert "alice" not in out and "7946" not in out


def test_ledger_resolve_json_says_what_was_done(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", str(path), "--resolve", "c/f/0", "--as", "retry", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"key": "c/f/0", "resolved_as": "retry"}
    assert "c/f/0" not in states(path)


def test_ledger_lists_only_the_states_asked_for(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", str(path), "--state", "failed", "--state", "unknown"]) == 0
    out = capsys.readouterr().out
    assert "2 entries in state failed, unknown" in out
    assert "b/f/0" in out and "c/f/0" in out and "a/f/0" not in out
    assert main(["ledger", str(path), "--state", "sent", "sending"]) == 0
    out = capsys.readouterr().out
    assert "1 entry in state sent, sending" in out and "a/f/0" in out


def test_ledger_says_when_no_entry_matches(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", str(path), "--state", "dead"]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: 0 entries in state dead"


def test_ledger_refuses_an_unknown_state(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ledger", str(path), "--state", "pending"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'pending'" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["c/f/0", "b/f/0"])  # unknown, failed
def test_resolve_as_sent_records_the_entry_as_sent(path: Path, capsys: pytest.CaptureFixture[str], key: str) -> None:
    assert main(["ledger", str(path), "--resolve", key, "--as", "sent"]) == 0
    assert capsys.readouterr().out.strip() == f"{key}: recorded as sent"
    assert states(path)[key] == "sent"


def test_resolve_as_retry_deletes_the_entry(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", str(path), "--resolve", "c/f/0", "--as", "retry"]) == 0
    assert capsys.readouterr().out.strip() == "c/f/0: deleted; the key can be claimed again"
    assert states(path) == {"a/f/0": "sent", "b/f/0": "failed"}


def test_resolve_of_a_key_not_in_the_ledger_exits_2_with_one_line(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ledger", str(path), "--resolve", "nope", "--as", "sent"]) == 2
    captured = capsys.readouterr()
    assert (
        captured.err.strip() == "error: no ledger entry for key 'nope': it was never claimed, or resolved for a retry"
    )
    assert captured.out == ""


def test_resolve_of_an_entry_in_the_wrong_state_exits_2_naming_it(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ledger", str(path), "--resolve", "a/f/0", "--as", "retry"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "cannot resolve key 'a/f/0': its ledger entry is 'sent', expected one of ['unknown', 'failed']" in err
    assert states(path)["a/f/0"] == "sent"


@pytest.mark.parametrize("extra", [[], ["--resolve", "c/f/0", "--as", "sent"]])
def test_a_missing_file_exits_2_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    missing = tmp_path / ("a long directory name " * 5) / "missing.db"  # the message stays one line
    assert main(["ledger", str(missing), *extra]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {missing}: no such file; expected an existing recoverkit store"
    assert not missing.exists()


def test_a_file_that_is_not_a_store_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "orders.csv"
    file.write_text("order_id,total\n" * 500)
    assert main(["ledger", str(file)]) == 2
    assert "is not a SQLite database" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--as", "sent"], "--as needs --resolve KEY"),
        (["--resolve", "c/f/0"], "--resolve KEY needs --as sent or --as retry"),
        (["--resolve", "c/f/0", "--as", "sent", "--state", "sent"], "cannot be combined with --resolve"),
    ],
)
def test_resolve_options_that_do_not_go_together_exit_2(
    path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["ledger", str(path), *argv]) == 2
    assert message in capsys.readouterr().err
    assert states(path)["c/f/0"] == "unknown"


def test_resolve_as_needs_a_known_resolution(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ledger", str(path), "--resolve", "c/f/0", "--as", "delivered"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'delivered'" in capsys.readouterr().err
