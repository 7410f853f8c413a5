"""The plug-in bundle: one typed, frozen object, validated once, taken by every engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from recoverkit import (
    BackgroundEngine,
    Config,
    ConfigError,
    ConsoleChannel,
    Engine,
    FakeClock,
    Flow,
    FlowStep,
    MemoryChannel,
    Plugins,
    RestoreLinks,
)

# The webhook channel is used by step 0, the sms channel only by step 1's fallback.
CONFIG = Config(
    flows=[
        Flow(name="f", steps=[FlowStep(delay=0, channel="webhook"), FlowStep(delay=60, channel="webhook",
                                                                         fallback="sms")]),
    ]
)


def test_validate_names_the_key_path_of_a_channel_without_an_adapter() -> None:
    plugins = Plugins(channels={"webhook": MemoryChannel()})
    with pytest.raises(ConfigError, match=r"`flows\[0\]\.steps\[1\]\.fallback`: the flows use channel\(s\) \['sms'\]"):
        plugins.validate(CONFIG)


def test_validate_refuses_an_adapter_without_send_naming_the_channel() -> None:
    plugins = Plugins(channels={"webhook": MemoryChannel(), "sms": object()})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"channel 'sms': object has no `send\(message\)` method"):
        plugins.validate(CONFIG)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("scorer", r"scorer object has no `score\(cart, features\)` method"),
        ("guard", r"guard must be callable as guard\(message\) -> bool, got object"),
        ("store", r"store must be a recoverkit.store.Store or the path of a SQLite file, got object"),
        ("catalogue", r"catalogue object has no `suggest"),
        ("loyalty", r"loyalty object has no `grant"),
        ("rates", r"rates object has no `rate\(currency\)` method"),
    ],
)
def test_validate_refuses_a_plug_in_that_is_not_one_naming_it(field: str, message: str) -> None:
    plugins = Plugins(**{field: object()})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        plugins.validate(Config())


def test_validate_refuses_a_config_that_is_not_one() -> None:
    with pytest.raises(ConfigError, match=r"config must be a recoverkit.Config, got dict"):
        Plugins().validate({})  # type: ignore[arg-type]


def test_validate_gives_each_used_channel_a_console_adapter_by_default_and_changes_nothing_given() -> None:
    plugins = Plugins()
    validated = plugins.validate(CONFIG)
    assert sorted(validated.channels or {}) == ["sms", "webhook"]
    assert all(isinstance(adapter, ConsoleChannel) for adapter in (validated.channels or {}).values())
    assert plugins.channels is None  # a new bundle: the one given is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        plugins.channels = {}  # type: ignore[misc]


def test_an_engine_runs_with_the_plug_ins_of_the_bundle() -> None:
    channel, clock = MemoryChannel(), FakeClock(1_000.0)
    engine = Engine(CONFIG, plugins=Plugins(channels={"webhook": channel, "sms": channel}, clock=clock))
    assert engine.channels == {"webhook": channel, "sms": channel}
    assert engine.clock is clock


def test_a_keyword_argument_adds_to_the_bundle() -> None:
    channel, clock = MemoryChannel(), FakeClock(1_000.0)
    engine = Engine(CONFIG, plugins=Plugins(clock=clock), channels={"webhook": channel, "sms": channel})
    assert (engine.clock, engine.channels["webhook"]) == (clock, channel)


def test_a_plug_in_given_both_in_the_bundle_and_as_a_keyword_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"^clock was given both as a keyword argument and in plugins="):
        Engine(Config(), plugins=Plugins(clock=FakeClock(0.0)), clock=FakeClock(0.0))
    with pytest.raises(TypeError, match=r"^clock was given both"):
        BackgroundEngine(Config(), plugins=Plugins(clock=FakeClock(0.0)), clock=FakeClock(0.0), close_at_exit=False)


def test_a_background_engine_passes_owner_deliver_and_links_through(tmp_path: Path) -> None:
    links = RestoreLinks("k" * 40, "https://shop.example/cart/restore")
    bg = BackgroundEngine(
        Config(), plugins=Plugins(links=links), owner="worker-7", deliver=False, store=tmp_path / "rk.sqlite",
        close_at_exit=False,
    )
    try:
        assert (bg.engine.owner, bg.engine.dispatch.delivering, bg.engine.links) == ("worker-7", False, links)
        assert bg.engine.plugins.links is links
    finally:
        bg.close()


def test_a_background_engine_refuses_an_argument_the_engine_does_not_take() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'chanels'"):
        BackgroundEngine(Config(), chanels={}, close_at_exit=False)
