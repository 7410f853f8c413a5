"""The framework-agnostic part of the web integrations: settings, the per-process engine, the request tracker."""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import recoverkit._web_session as web_session
from helpers import T0
from recoverkit import Config, FakeClock, Flow, FlowStep, MemoryChannel, RestoreLinks
from recoverkit.errors import ConfigError, LinkError, StoreError
from recoverkit.integration import (
    SESSION_COOKIE,
    IntegrationSettings,
    LazyEngine,
    Tracker,
    device_of,
    import_object,
    is_session_id,
    new_session_id,
    restore_cart,
)

SOURCE = "settings.RECOVERKIT"


def settings(**values: Any) -> IntegrationSettings:
    return IntegrationSettings.from_mapping(values, source=SOURCE)


@pytest.fixture
def lazy() -> Iterator[LazyEngine]:
    channel = MemoryChannel()
    config = Config(abandon_after=600, flows=[Flow(name="f", steps=[FlowStep(delay=0)])])
    holder = LazyEngine(settings(CONFIG=config, CHANNELS={"email": channel}, CLOCK=FakeClock(T0)))
    yield holder
    holder.close()


# -- settings -----------------------------------------------------------------------------------------------------


def test_no_settings_at_all_is_a_working_default() -> None:
    s = IntegrationSettings.from_mapping(None, source=SOURCE)
    assert (s.mode, s.session_cookie, s.channels, s.checkout_paths) == ("embedded", SESSION_COOKIE, None, {})
    assert s.config == Config()


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"MODE": "embeded"}, "settings.RECOVERKIT['MODE']: 'embeded' is not a mode"),
        ({"MOOD": "x"}, "settings.RECOVERKIT['MOOD'] is not a recoverkit setting (did you mean 'MODE'?)"),
        ({"CHANNEL": {}}, "settings.RECOVERKIT['CHANNEL'] is not a recoverkit setting (did you mean 'CHANNELS'?)"),
        ({"channels": {}}, "settings.RECOVERKIT['channels'] is not a recoverkit setting (did you mean 'CHANNELS'?)"),
        ({"LINK_SECRET": "x" * 40}, "['LINK_SECRET']: recoverkit reads its secrets from the environment, not from "
         "settings; expected os.environ['RECOVERKIT_LINK_SECRET']"),
        ({"STORE": 3}, "['STORE']: got int; expected the path of the SQLite file"),
        ({"CHANNELS": ["email"]}, "settings.RECOVERKIT['CHANNELS']: expected a dict"),
        ({"CHANNELS": {"email": object()}},
         "settings.RECOVERKIT['CHANNELS']['email']: got an instance of object, which has no `async send(message)` "
         "method; expected a channel adapter"),
        ({"SCORER": object()}, "['SCORER']: got an instance of object, which has no `score(cart, features)` method"),
        ({"GUARD": 42}, "['GUARD']: got an instance of int, which is not callable; expected a guard function"),
        ({"CHANNELS": {"email": "no.such.module.Channel"}}, "cannot import module 'no.such.module'"),
        ({"CHANNELS": {"email": "recoverkit.NoSuchChannel"}}, "module 'recoverkit' has no attribute 'NoSuchChannel'"),
        ({"CHECKOUT_PATHS": {"checkout": "begin_checkout"}}, "key 'checkout' is not a URL path"),
        ({"CHECKOUT_PATHS": {"/buy": "purchase"}}, "['CHECKOUT_PATHS']['/buy']: 'purchase' cannot be recorded"),
        ({"SESSION_COOKIE": "a b"}, "['SESSION_COOKIE']: 'a b' is not a cookie name"),
        ({"COOKIE_SECURE": "yes"}, "['COOKIE_SECURE']: expected true, false or None"),
        ({"CLOSE_TIMEOUT": -1}, "['CLOSE_TIMEOUT']: -1; expected seconds"),
        ({"TRACK_PAGE_VIEWS": 1}, "['TRACK_PAGE_VIEWS']: 1; expected true or false"),
        ({"CLOCK": 12}, "['CLOCK']: expected a recoverkit.Clock"),
        ({"MODE": "journal"}, "['MODE']: 'journal' hands events to a worker process through a shared store"),
        ({"CONFIG": {"abandon_after": -5}}, "settings.RECOVERKIT['CONFIG']: invalid configuration at `abandon_after`"),
        ({"CONFIG": 42}, "['CONFIG']: expected a recoverkit.Config, a dict, or the path of a TOML file, got int"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting_the_value_and_what_was_expected(
    values: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError) as info:
        settings(**values)
    assert named in str(info.value)


def test_config_may_be_a_toml_path(tmp_path: Path) -> None:
    path = tmp_path / "shop.toml"
    path.write_text("abandon_after = 120\n")
    assert settings(CONFIG=str(path)).config.abandon_after == 120
    with pytest.raises(ConfigError, match="configuration file not found"):
        settings(CONFIG=str(tmp_path / "missing.toml"))


def test_channels_may_be_import_paths_to_an_object_or_a_class() -> None:
    s = settings(CHANNELS={"email": "recoverkit.MemoryChannel", "sms": "recoverkit.channels:ConsoleChannel"})
    assert s.channels is not None
    assert type(s.channels["email"]).__name__ == "MemoryChannel"
    assert type(s.channels["sms"]).__name__ == "ConsoleChannel"


#: A shop's module of plug-ins, written to a real file and imported by the paths the settings give.
SHOP_PLUGINS = """
from recoverkit import MemoryChannel, StaticCatalogue

outbox = MemoryChannel()
CONSTANT = 42


def make_outbox():
    return outbox


def make_nothing_useful():
    return {"send": None}


class NeedsAnAddress:
    def __init__(self, address):
        self.address = address

    async def send(self, message):
        pass


def catalogue():
    return StaticCatalogue([])


def guard(message):
    return True


class Guard:
    def __call__(self, message):
        return True


class NotAGuard:
    pass
"""


@pytest.fixture
def shop_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    (tmp_path / "shop_plugins_module.py").write_text(SHOP_PLUGINS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("shop_plugins_module")
    sys.modules.pop("shop_plugins_module", None)


def test_a_plug_in_path_may_name_an_instance_a_class_or_a_factory(shop_plugins: ModuleType) -> None:
    s = settings(
        CHANNELS={
            "email": "shop_plugins_module.outbox",
            "sms": "shop_plugins_module:make_outbox",
            "push": "recoverkit.MemoryChannel",
        },
        CATALOGUE="shop_plugins_module.catalogue",
    )
    assert s.channels is not None
    assert s.channels["email"] is shop_plugins.outbox  # an instance: used as it is
    assert s.channels["sms"] is shop_plugins.outbox  # a factory: called with no arguments
    assert isinstance(s.channels["push"], MemoryChannel) and s.channels["push"] is not shop_plugins.outbox
    assert type(s.catalogue).__name__ == "StaticCatalogue"


def test_a_class_given_as_an_object_is_built_not_used_as_the_plug_in() -> None:
    s = settings(CHANNELS={"email": MemoryChannel})
    assert s.channels is not None and isinstance(s.channels["email"], MemoryChannel)


def test_a_guard_path_names_the_guard_itself_never_a_factory(shop_plugins: ModuleType) -> None:
    assert settings(GUARD="shop_plugins_module.guard").guard is shop_plugins.guard
    assert isinstance(settings(GUARD="shop_plugins_module.Guard").guard, shop_plugins.Guard)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"CHANNELS": {"email": "shop_plugins_module.make_nothing_useful"}},
         "settings.RECOVERKIT['CHANNELS']['email']: 'shop_plugins_module.make_nothing_useful' is a function; "
         "make_nothing_useful() returned an instance of dict, which has no `async send(message)` method"),
        ({"CHANNELS": {"email": "shop_plugins_module.NeedsAnAddress"}},
         "settings.RECOVERKIT['CHANNELS']['email']: 'shop_plugins_module.NeedsAnAddress' is the class "
         "NeedsAnAddress; building the plug-in with NeedsAnAddress() failed: TypeError: "),
        ({"CATALOGUE": "shop_plugins_module.CONSTANT"},
         "settings.RECOVERKIT['CATALOGUE']: 'shop_plugins_module.CONSTANT' is an instance of int, which has no "
         "`async suggest(cart, *, kind, limit)` method; expected a catalogue"),
        ({"LOYALTY": "shop_plugins_module.Guard"},
         "settings.RECOVERKIT['LOYALTY']: 'shop_plugins_module.Guard' is the class Guard, whose instances (built "
         "with Guard()) have no `async grant("),
        ({"GUARD": "shop_plugins_module.NotAGuard"},
         "settings.RECOVERKIT['GUARD']: 'shop_plugins_module.NotAGuard' is the class NotAGuard, whose instances "
         "(built with NotAGuard()) are not callable; expected a guard function guard(message) -> bool"),
        ({"GUARD": "shop_plugins_module.CONSTANT"},
         "settings.RECOVERKIT['GUARD']: 'shop_plugins_module.CONSTANT' is an instance of int, which is not callable"),
    ],
)
def test_a_plug_in_path_to_the_wrong_thing_says_what_it_got_and_what_was_expected(
    shop_plugins: ModuleType, values: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        settings(**values)
    assert says in str(info.value)
    assert "import path" in str(info.value)  # what else it could have been


# -- settings: what the engine would refuse, said in the settings' terms -------------------------------------------

ONE_FLOW = {"flows": [{"name": "cart-reminder", "steps": [
    {"delay": 60, "channel": "email"},
    {"delay": 3600, "channel": "sms", "fallback": "email"},
]}]}


def test_a_channel_a_flow_uses_without_an_adapter_names_the_flow_step_and_setting() -> None:
    with pytest.raises(ConfigError) as info:
        settings(CONFIG=ONE_FLOW, CHANNELS={"email": MemoryChannel()})
    assert str(info.value).startswith(
        "settings.RECOVERKIT['CHANNELS']: the flow 'cart-reminder' step 1 uses channel 'sms' but no adapter is "
        "configured for it (configured: ['email']); add settings.RECOVERKIT['CHANNELS']['sms'] = <adapter>"
    )
    assert "Engine" not in str(info.value)


def test_a_channel_only_a_variant_uses_needs_an_adapter_too() -> None:
    config = {"flows": [{"name": "ab", "steps": [{"delay": 60, "variants": [
        {"name": "a"}, {"name": "b", "channel": "push"}]}]}]}
    with pytest.raises(ConfigError, match=r"the flow 'ab' step 0 uses channel 'push'"):
        settings(CONFIG=config, CHANNELS={"email": MemoryChannel()})


def test_mode_off_builds_no_engine_so_the_flows_channels_are_not_required() -> None:
    assert settings(MODE="off", CONFIG=ONE_FLOW, CHANNELS={}).mode == "off"


def test_an_offer_without_its_plug_in_names_the_setting_to_add() -> None:
    config = {
        "offers": {"swap": {"kind": "substitute", "name": "Similar, for less"}},
        "flows": [{"name": "f", "steps": [{"delay": 60, "offer": "swap"}]}],
    }
    with pytest.raises(ConfigError) as info:
        settings(CONFIG=config)
    message = str(info.value)
    assert message.startswith("settings.RECOVERKIT['CATALOGUE']: flow 'f' step 0 (offer 'swap') suggests products")
    assert "set settings.RECOVERKIT['CATALOGUE'] to <your Catalogue>" in message
    assert "Engine" not in message


def test_rates_without_a_base_currency_name_both_settings() -> None:
    from recoverkit import StaticRates

    with pytest.raises(ConfigError) as info:
        settings(RATES=StaticRates({"USD": Decimal("1.08")}))
    assert str(info.value).startswith(
        "settings.RECOVERKIT['CONFIG']: settings.RECOVERKIT['RATES'] is set but `currency.base` is not set"
    )


def test_an_engine_error_at_start_up_names_the_settings_not_the_engine_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RECOVERKIT_CODE_SECRET", raising=False)
    config = {
        "offers": {"ten": {"kind": "discount", "name": "10% off", "percent": 10}},
        "flows": [{"name": "f", "steps": [{"delay": 60, "offer": "ten"}]}],
    }
    s = settings(CONFIG=config, CHANNELS={"email": MemoryChannel()})
    with pytest.raises(ConfigError) as info:
        s.build_engine()
    message = str(info.value)
    assert message.startswith("settings.RECOVERKIT: recoverkit cannot start: the flows make offers with codes")
    assert "RECOVERKIT_CODE_SECRET is empty" in message
    assert "or set settings.RECOVERKIT['COUPONS'] to <your CouponProvider>" in message
    assert "to Engine" not in message
    with pytest.raises(ConfigError, match=r"^settings\.RECOVERKIT: recoverkit cannot start: .*COUPONS"):
        s.new_engine()


def test_settings_spelled_another_way_are_named_that_way_everywhere() -> None:
    def spell(key: str) -> str:
        return f"app.config['RECOVERKIT_{key}']"

    with pytest.raises(ConfigError, match=r"^app\.config\['RECOVERKIT_CHANNELS'\]\['email'\]: got an instance"):
        IntegrationSettings.from_mapping({"CHANNELS": {"email": 1}}, source="app.config", spell=spell)
    with pytest.raises(ConfigError) as info:
        IntegrationSettings.from_mapping({"CONFIG": ONE_FLOW, "CHANNELS": {}}, source="app.config", spell=spell)
    assert "add app.config['RECOVERKIT_CHANNELS']['email'] = <adapter>" in str(info.value)
    s = IntegrationSettings.from_mapping({}, source="app.config", spell=spell)
    assert s.setting("STORE") == "app.config['RECOVERKIT_STORE']"


def test_new_engine_is_an_async_engine_with_the_close_timeout_of_the_settings() -> None:
    from recoverkit import Engine

    engine = settings(CHANNELS={"email": MemoryChannel()}, CLOSE_TIMEOUT=3).new_engine()
    assert isinstance(engine, Engine) and engine.close_timeout == 3.0
    engine.store.close()


def test_import_object_passes_objects_through_and_refuses_a_bare_name() -> None:
    sentinel = object()
    assert import_object(sentinel, setting="X") is sentinel
    with pytest.raises(ConfigError, match="'json' is not an import path"):
        import_object("json", setting="X")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/checkout", "begin_checkout"),
        ("/checkout/", "begin_checkout"),
        ("/checkout/shipping", "add_shipping_info"),
        ("/checkout/shipping/express", "add_shipping_info"),
        ("/checkoutx", None),
        ("/cart", "view_cart"),
        ("/", None),
    ],
)
def test_path_events_take_the_longest_matching_prefix(path: str, expected: str | None) -> None:
    paths = {"/checkout": "begin_checkout", "/checkout/shipping": "add_shipping_info", "/cart": "view_cart"}
    assert settings(CHECKOUT_PATHS=paths).path_event(path) == expected


def test_page_views_are_recorded_only_when_asked() -> None:
    assert settings().path_event("/products/1") is None
    assert settings(TRACK_PAGE_VIEWS=True).path_event("/products/1") == "page_view"


# -- session ids and segments ------------------------------------------------------------------------------------


def test_session_ids_are_fresh_url_safe_and_recognised() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(is_session_id(i) for i in ids)


@pytest.mark.parametrize("value", [None, "", "short", "x" * 23, "a" * 21 + "!", 12, "a" * 22 + "\n"])
def test_anything_else_is_not_a_session_id(value: object) -> None:
    assert not is_session_id(value)


@pytest.mark.parametrize(
    ("agent", "device"),
    [
        (None, None),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148", "mobile"),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/120 Mobile Safari/537.36", "mobile"),
        ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)", "tablet"),
        ("Mozilla/5.0 (Linux; Android 13; SM-X200) Chrome/120 Safari/537.36", "tablet"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120 Safari/537.36", "desktop"),
        ("Googlebot/2.1 (+http://www.google.com/bot.html)", "bot"),
        ("curl/8.5.0", "bot"),
    ],
)
def test_device_of_a_user_agent(agent: str | None, device: str | None) -> None:
    assert device_of(agent) == device


AGENT_WORDS = ["Mozilla/5.0", "iPhone", "iPad", "Android 14", "Mobile", "Tablet", "Kindle", "Silk", "Googlebot",
               "bot", "BOT/1", "robots", "crawler", "Spider", "curl/8", "python-requests/2", "HeadlessChrome",
               "Windows Phone", "MOBI", "Chrome/124", " ", ";", "(", ")", "\n",
               "\u017fpider", "\u212aindle"]  # long s, Kelvin sign: what IGNORECASE folds to s and k  # fmt: skip


@given(st.lists(st.sampled_from(AGENT_WORDS), max_size=12).map("".join) | st.text(max_size=40))
def test_the_device_class_is_what_the_case_insensitive_patterns_say(agent: str) -> None:
    # The lower-cased fast path and the cache must answer as re.IGNORECASE does, non-ASCII agents included.
    ua = agent[:512]
    expected = (
        None if not agent
        else "bot" if web_session._BOT.search(ua)
        else "tablet" if web_session._TABLET.search(ua)
        else "mobile" if web_session._MOBILE.search(ua)
        else "desktop"
    )  # fmt: skip
    assert device_of(agent) == expected
    assert device_of(agent) == expected  # answered from the cache


def test_the_device_cache_is_bounded() -> None:
    for k in range(3 * web_session._DEVICE_CACHE_SIZE):
        device_of(f"Mozilla/5.0 agent {k}")
        assert len(web_session._device_cache) <= web_session._DEVICE_CACHE_SIZE


# -- the tracker ----------------------------------------------------------------------------------------------------


class Sink:
    def __init__(self, answer: bool = True) -> None:
        self.events: list[Mapping[str, Any]] = []
        self.answer = answer

    def __call__(self, event: Mapping[str, Any]) -> bool:
        self.events.append(event)
        return self.answer


def test_the_tracker_fills_in_session_customer_and_segments_and_drops_none() -> None:
    sink = Sink()
    tracker = Tracker(sink, "sid-1", customer_id="c-1", device="mobile", source="newsletter")
    assert tracker.add_to_cart([{"item_id": "A", "price": Decimal("9.90")}], currency="EUR", cart_id=None)
    assert sink.events == [
        {"event": "add_to_cart", "session_id": "sid-1", "device": "mobile", "source": "newsletter",
         "customer_id": "c-1", "items": [{"item_id": "A", "price": Decimal("9.90")}], "currency": "EUR"},
    ]  # fmt: skip


def test_identify_binds_the_customer_for_the_rest_of_the_request() -> None:
    sink = Sink()
    tracker = Tracker(sink, "sid-1")
    tracker.begin_checkout()
    tracker.identify("c-7", email="ada@example.com")
    tracker.purchase(transaction_id="o-1", value="19.90", currency="EUR")
    assert [e.get("customer_id") for e in sink.events] == [None, "c-7", "c-7"]
    assert sink.events[1]["email"] == "ada@example.com"


@pytest.mark.parametrize(
    ("method", "kwargs", "kind"),
    [
        ("view_item", {"items": [{"item_id": "A"}]}, "view_item"),
        ("remove_from_cart", {"items": [{"item_id": "A"}]}, "remove_from_cart"),
        ("view_cart", {}, "view_cart"),
        ("add_shipping_info", {"shipping": "4.90"}, "add_shipping_info"),
        ("add_payment_info", {"payment_type": "card"}, "add_payment_info"),
        ("payment_failed", {"error_code": "card_declined"}, "payment_failed"),
        ("form_error", {"form_field": "postcode"}, "form_error"),
        ("exit_intent", {}, "exit_intent"),
        ("consent", {"granted": ["email"]}, "consent"),
    ],
)
def test_every_helper_records_its_event_kind(method: str, kwargs: dict[str, Any], kind: str) -> None:
    sink = Sink()
    getattr(Tracker(sink, "sid-1"), method)(**kwargs)
    assert sink.events[0]["event"] == kind


def test_a_failing_sink_never_raises_into_the_view() -> None:
    def broken(event: Mapping[str, Any]) -> bool:
        raise RuntimeError("boom")

    assert Tracker(broken, "sid-1").begin_checkout() is False


def test_non_finite_floats_are_dropped_before_they_reach_the_engine() -> None:
    sink = Sink()
    Tracker(sink, "sid-1").add_shipping_info(shipping=float("nan"))
    assert "shipping" not in sink.events[0]


# -- the per-process engine ----------------------------------------------------------------------------------------


def test_the_engine_is_built_once_on_first_use_and_shared_by_threads(lazy: LazyEngine) -> None:
    assert lazy._engine is None
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(lazy.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(engine) for engine in seen}) == 1 and seen[0] is not None


def test_events_tracked_through_the_holder_reach_the_adapter(lazy: LazyEngine) -> None:
    channel = lazy.settings.channels["email"]  # type: ignore[index]
    clock = lazy.settings.clock
    assert isinstance(channel, MemoryChannel) and isinstance(clock, FakeClock)
    tracker = Tracker(lazy.track, "sid-1")
    tracker.identify("c-1", email="ada@example.com")
    tracker.consent(granted=["email"])
    tracker.add_to_cart([{"item_id": "A", "price": "20.00"}], currency="EUR")
    engine = lazy.get()
    assert engine is not None
    engine.flush()
    clock.advance(601)
    engine.flush()
    assert [m.recipient.contact_key for m in channel.sent] == ["c-1"]


def test_the_sink_stamps_the_trackers_events_in_place_for_the_process_engine(lazy: LazyEngine) -> None:
    sink = lazy.sink()
    engine = lazy.get()
    assert engine is not None and lazy.sink() is sink  # one per engine, not one per request
    seen: list[Mapping[str, Any]] = []
    real = engine.track
    engine.track = lambda event: seen.append(event) or real(event)  # type: ignore[method-assign]
    event: dict[str, Any] = {"event": "page_view", "session_id": "s"}
    assert sink(event) is True
    assert seen == [event] and event["ts"] == T0  # the tracker's own dict, stamped on the engine's clock
    assert sink({"event": "page_view", "session_id": "s", "ts": T0 - 5}) is True
    assert seen[-1]["ts"] == T0 - 5


def test_a_sink_in_a_process_forked_without_fork_hooks_reaches_its_own_engine(
    lazy: LazyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = lazy.get()
    parent_sink = lazy.sink()
    monkeypatch.setattr("recoverkit.integration.os.getpid", lambda: 999_999)  # as uWSGI's C fork leaves it
    child_sink = lazy.sink()
    child = lazy.get()
    assert child is not None and child is not parent
    assert child_sink is not parent_sink and getattr(child_sink, "engine", None) is child


def test_a_sink_records_nothing_when_nothing_can_record(monkeypatch: pytest.MonkeyPatch) -> None:
    event = {"event": "page_view", "session_id": "s"}
    assert LazyEngine(settings(MODE="off")).sink()(dict(event)) is False
    closed = LazyEngine(settings())
    closed.close()
    assert closed.sink()(dict(event)) is False
    broken = LazyEngine(settings())

    def cannot_build() -> None:
        raise ConfigError("no engine here")

    monkeypatch.setattr(broken, "get", cannot_build)
    assert broken.sink()(dict(event)) is False  # logged as engine_unavailable, never raised


def test_mode_off_holds_no_engine_and_records_nothing() -> None:
    holder = LazyEngine(settings(MODE="off"))
    assert holder.get() is None and holder.track({"event": "page_view", "session_id": "s"}) is False
    assert holder.links is None


def test_journal_mode_builds_an_engine_that_never_runs_the_pipeline(tmp_path: Path) -> None:
    holder = LazyEngine(settings(MODE="journal", STORE=str(tmp_path / "state.db")))
    try:
        engine = holder.get()
        assert engine is not None and engine.engine.runs_pipeline is False
        assert holder.track({"event": "page_view", "session_id": "s"}) is True
        engine.flush()
        assert engine.statistics().owner is False
        assert engine.engine.store.last_seq() == 1  # journaled for the worker
    finally:
        holder.close()


def test_a_closed_holder_refuses_events_without_raising(lazy: LazyEngine) -> None:
    assert lazy.track({"event": "page_view", "session_id": "s"}) is True
    lazy.close()
    assert lazy.track({"event": "page_view", "session_id": "s"}) is False
    lazy.close()  # idempotent


def test_an_engine_that_cannot_be_built_does_not_fail_the_request() -> None:
    holder = LazyEngine(settings())
    holder.settings.channels = {"email": object()}  # type: ignore[dict-item]  # broken after validation
    assert holder.track({"event": "page_view", "session_id": "s"}) is False


# -- restoring a cart from a link ----------------------------------------------------------------------------------

LINKS = RestoreLinks("k" * 40, "https://shop.example/cart/restore")


def test_restore_cart_loads_the_linked_cart_and_records_the_visit() -> None:
    sink = Sink()
    token = LINKS.token("cart-42")
    loaded = restore_cart(LINKS, token, lambda key: {"cart": key}, tracker=Tracker(sink, "sid-9"))
    assert loaded == {"cart": "cart-42"}
    assert sink.events == [
        {"event": "page_view", "session_id": "sid-9", "page_type": "cart_restore", "cart_id": "cart-42"}
    ]


@pytest.mark.parametrize("token", [None, "", "garbage", LINKS.token("cart-1")[:-3] + "AAA"])
def test_a_bad_link_raises_before_the_cart_is_loaded_and_records_nothing(token: str | None) -> None:
    sink = Sink()
    loads: list[str] = []
    with pytest.raises(LinkError):
        restore_cart(LINKS, token, loads.append, tracker=Tracker(sink, "sid-9"))
    assert loads == [] and sink.events == []


def test_restore_cart_without_links_configured_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\[links\] base_url"):
        restore_cart(None, "t", lambda key: key)


def test_events_are_stamped_when_tracked_not_when_the_engine_drains(lazy: LazyEngine) -> None:
    clock = lazy.settings.clock
    assert isinstance(clock, FakeClock)
    seen: list[Mapping[str, Any]] = []
    engine = lazy.get()
    assert engine is not None
    real = engine.track
    engine.track = lambda event: seen.append(event) or real(event)  # type: ignore[method-assign]
    lazy.track({"event": "page_view", "session_id": "s"})
    lazy.track({"event": "page_view", "session_id": "s", "ts": T0 - 5})
    assert [e["ts"] for e in seen] == [T0, T0 - 5]


def test_a_process_forked_without_fork_hooks_builds_its_own_engine(
    lazy: LazyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = lazy.get()
    monkeypatch.setattr("recoverkit.integration.os.getpid", lambda: 999_999)  # as uWSGI's C fork leaves it
    child = lazy.get()
    assert child is not None and child is not parent
    assert lazy.get() is child


def test_restore_cart_checks_expiry_on_the_engine_clock() -> None:
    token = LINKS.token("cart-1", now=T0)
    assert restore_cart(LINKS, token, lambda key: key, now=T0 + 60) == "cart-1"
    with pytest.raises(LinkError) as info:
        restore_cart(LINKS, token, lambda key: key, now=T0 + 8 * 86_400)
    assert info.value.reason == "expired"


def test_closing_a_background_engine_that_never_started_closes_the_file_it_opened(tmp_path: Path) -> None:
    holder = LazyEngine(settings(STORE=str(tmp_path / "state.db")))
    engine = holder.get()
    assert engine is not None
    holder.close()
    with pytest.raises(StoreError, match="used after close"):
        engine.engine.store.last_seq()


def test_offer_plug_ins_reach_the_engine_from_the_settings() -> None:
    from recoverkit import MemoryLoyalty, StaticCatalogue, StaticRates

    catalogue, loyalty, rates = StaticCatalogue([]), MemoryLoyalty(), StaticRates({"USD": Decimal("1.08")})
    s = settings(CONFIG={"currency": {"base": "EUR"}}, CATALOGUE=catalogue, LOYALTY=loyalty, RATES=rates)
    kwargs = s.engine_kwargs()
    assert (kwargs["catalogue"], kwargs["loyalty"], kwargs["rates"]) == (catalogue, loyalty, rates)
    holder = LazyEngine(s)
    try:
        assert holder.get() is not None
    finally:
        holder.close()


def test_a_journal_only_engine_without_a_shared_store_is_refused_at_start_up() -> None:
    from recoverkit import Engine

    with pytest.raises(ConfigError, match=r"pipeline=False journals events for a worker .* needs a shared store"):
        Engine(Config(), channels={"email": MemoryChannel()}, pipeline=False)


@pytest.mark.anyio
async def test_a_journal_only_engine_never_takes_the_lease_even_when_it_is_free(tmp_path: Path) -> None:
    from recoverkit import Engine

    async with Engine(Config(), channels={"email": MemoryChannel()}, store=tmp_path / "s.db", pipeline=False) as e:
        assert e.track({"event": "page_view", "session_id": "s"}) is True
        await e.flush()
        assert e.is_owner is False and e.statistics().owner is False
        assert e.store.lease_holder("pipeline", now=time.time()) is None
        assert e.store.last_seq() == 1
