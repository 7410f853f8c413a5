"""recoverkit.audit, the front a console calls: record_action, note_config, config_fingerprint, cli_actor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recoverkit.audit import CONFIG_CHANGED, cli_actor, config_fingerprint, note_config, record_action
from recoverkit.config import Config, load_config
from recoverkit.store import SQLiteStore

T0 = 1_767_225_600.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "state.db") as store:
        yield store


def test_record_action_appends_who_what_when_on_what_and_the_outcome(store: SQLiteStore) -> None:
    record = record_action(store, actor="console:42", action="resend", message="c1/recover/0", at=T0)
    assert (record.seq, record.actor, record.action, record.subject_kind, record.subject, record.outcome,
            record.at) == (1, "console:42", "resend", "message", "c1/recover/0", "ok", T0)  # fmt: skip
    refused = record_action(store, actor="console:7", action="export", customer="c1", outcome="refused", at=T0 + 1,
                            detail="missing permission recoverkit.export_customer")  # fmt: skip
    assert refused.subject == store.hash_contact("c1") and refused.outcome == "refused"
    assert record_action(store, actor="console:7", action="view", cart="cart-9", at=T0 + 2).subject == "cart-9"
    assert store.audit_problems() == []


@pytest.mark.parametrize("subjects", [{}, {"customer": "c1", "cart": "cart-1"}])
def test_record_action_needs_exactly_one_subject(store: SQLiteStore, subjects: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="exactly one of `customer`, `cart` or `message`"):
        record_action(store, actor="console:1", action="export", at=T0, **subjects)  # type: ignore[arg-type]
    assert store.audit_records() == []


def test_a_store_without_an_audit_log_is_refused_not_skipped() -> None:
    class WithoutAudit:  # a shop's own store that implements the engine's protocols but not the audit log
        pass

    with pytest.raises(TypeError, match="expected a store with an audit log"):
        record_action(WithoutAudit(), actor="console:1", action="export", customer="c1", at=T0)  # type: ignore[arg-type]


def test_the_fingerprint_ignores_the_order_of_the_file_but_not_a_value(tmp_path: Path) -> None:
    one, two, three = tmp_path / "1.toml", tmp_path / "2.toml", tmp_path / "3.toml"
    one.write_text('abandon_after = 1800\nsession_timeout = 7200\n[channels.sms]\naddress = "phone"\n')
    two.write_text('session_timeout = 7200\nabandon_after = 1800\n[channels.sms]\naddress = "phone"\n')
    three.write_text('abandon_after = 900\nsession_timeout = 7200\n[channels.sms]\naddress = "phone"\n')
    assert config_fingerprint(load_config(one)) == config_fingerprint(load_config(two))
    assert config_fingerprint(load_config(one)) != config_fingerprint(load_config(three))


def test_note_config_records_the_first_configuration_and_each_change_only(store: SQLiteStore) -> None:
    first = note_config(store, Config(), actor="engine:web-1", at=T0)
    assert first is not None and first.action == CONFIG_CHANGED and first.subject_kind == "config"
    assert first.detail == f"fingerprint {config_fingerprint(Config())}"
    assert note_config(store, Config(), actor="engine:web-2", at=T0 + 1) is None
    changed = note_config(store, Config(abandon_after=900), actor="engine:web-1", at=T0 + 2)
    assert changed is not None
    assert changed.detail == (
        f"fingerprint {config_fingerprint(Config(abandon_after=900))} was {config_fingerprint(Config())}"
    )
    assert [r.seq for r in store.audit_records(actions=[CONFIG_CHANGED])] == [1, 2]


def test_the_cli_actor_is_the_named_operator_or_the_system_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERKIT_ACTOR", "ada")
    assert cli_actor() == "cli:ada"
    monkeypatch.delenv("RECOVERKIT_ACTOR")
    assert cli_actor().startswith("cli:") and len(cli_actor()) > 4


@pytest.mark.anyio
async def test_an_engine_records_a_configuration_it_starts_with_once(tmp_path: Path) -> None:
    # The first worker of a deploy records config.changed; another starting with the same configuration finds
    # it recorded; a new configuration is recorded again. A replay (event time) records nothing, nor an engine
    # that sends nothing (the CLI's).
    from recoverkit import Engine, EventClock, FakeClock
    from recoverkit.audit import AuditRecord

    path = tmp_path / "state.db"

    async def start(config: Config, **options: Any) -> None:
        async with Engine(config, store=str(path), clock=options.pop("clock", FakeClock(T0)), **options):
            pass

    def changes() -> list[AuditRecord]:
        with SQLiteStore(path) as store:
            return store.audit_records(actions=[CONFIG_CHANGED])

    await start(Config(abandon_after=1800))
    await start(Config(abandon_after=1800))
    assert [(r.actor.split(":")[0], r.at) for r in changes()] == [("engine", T0)]
    await start(Config(abandon_after=900))
    await start(Config(abandon_after=600), clock=EventClock())
    await start(Config(abandon_after=300), deliver=False)  # a maintenance command's engine: sends nothing
    recorded = changes()
    assert len(recorded) == 2 and recorded[1].detail.endswith(recorded[0].detail.split()[1])
