"""The Django app: settings validated at start-up with errors naming ``settings.RECOVERKIT[...]``, an engine built
but not started by ``ready()``, rebuilt when the settings change, the system checks, and packaging."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from django_support import EXAMPLE, setup
except ImportError:  # pragma: no cover
    from .django_support import EXAMPLE, setup

setup()

from django.apps import apps  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core import checks  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

import recoverkit.contrib.django as rk_django  # noqa: E402
from recoverkit import BackgroundEngine, FakeClock, MemoryChannel, MemoryStore  # noqa: E402
from recoverkit.contrib.django import RecoverkitState, get_engine, get_state, settings_from_django  # noqa: E402
from recoverkit.errors import ConfigError  # noqa: E402

try:
    from django_support.fixtures import journal, no_engine_leak, rk
    from django_support.processes import process_env
except ImportError:  # pragma: no cover
    from .django_support.fixtures import journal, no_engine_leak, rk
    from .django_support.processes import process_env

__all__ = ["no_engine_leak", "rk"]  # fixtures used by name


# -- settings ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "named", "detail"),
    [
        ({"MODE": "embeded"}, "settings.RECOVERKIT['MODE']", "'embeded' is not a mode"),
        ({"CHECKOUT_PATHS": {"checkout": "begin_checkout"}}, "settings.RECOVERKIT['CHECKOUT_PATHS']", "'/...'"),
        ({"CHECKOUT_PATHS": {"/pay": "purchase"}}, "settings.RECOVERKIT['CHECKOUT_PATHS']['/pay']",
         "cannot be recorded from a page load"),
        ({"CHANNELS": {"email": object()}}, "settings.RECOVERKIT['CHANNELS']['email']",
         "no `async send(message)` method"),
        ({"GUARD": "recoverkit.MemoryChannel"}, "settings.RECOVERKIT['GUARD']",
         "is the class MemoryChannel, whose instances (built with MemoryChannel()) are not callable"),
        ({"CHANNELS": {"email": "myshop.nowhere.Mail"}}, "settings.RECOVERKIT['CHANNELS']['email']",
         "cannot import module 'myshop.nowhere'"),
        ({"CONFIG": {"abandon_after": -5}}, "settings.RECOVERKIT['CONFIG']", "abandon_after"),
        ({"CLOSE_TIMEOUT": "soon"}, "settings.RECOVERKIT['CLOSE_TIMEOUT']", "expected seconds"),
        ({"MODE": "journal"}, "settings.RECOVERKIT['STORE']", "SQLite file the worker reads"),
        ({"CHANELS": {}}, "settings.RECOVERKIT['CHANELS']", "did you mean 'CHANNELS'"),
        ({"CHANNEL": {}}, "settings.RECOVERKIT['CHANNEL']", "did you mean 'CHANNELS'"),
        ({"LINK_SECRET": "x" * 40}, "settings.RECOVERKIT['LINK_SECRET']", "os.environ['RECOVERKIT_LINK_SECRET']"),
        (["MODE", "off"], "settings.RECOVERKIT", "expected a dict"),
    ],
)
def test_a_configuration_error_names_the_setting_as_the_shop_wrote_it(value: Any, named: str, detail: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_from_django(value)
    assert named in str(raised.value) and detail in str(raised.value)


def test_no_recoverkit_setting_means_every_default() -> None:
    defaults = settings_from_django(None)
    assert (defaults.mode, defaults.channels, defaults.checkout_paths) == ("embedded", None, {})


def test_settings_set_to_none_count_as_not_set() -> None:
    assert settings_from_django({"MODE": None, "COOKIE_SECURE": None, "STORE": None}).mode == "embedded"


def test_ready_refuses_broken_settings_and_keeps_the_running_state(
    rk: Callable[..., RecoverkitState], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = rk(CHANNELS={"email": MemoryChannel()})
    monkeypatch.setattr(settings, "RECOVERKIT", {"MODE": "embeded"})  # as if settings.py said so at start-up
    with pytest.raises(ConfigError, match=r"settings\.RECOVERKIT\['MODE'\]: 'embeded' is not a mode"):
        apps.get_app_config("recoverkit").ready()
    assert get_state() is state


def test_what_only_the_engine_checks_fails_at_start_up_too(
    rk: Callable[..., RecoverkitState], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECOVERKIT_LINK_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"settings\.RECOVERKIT: recoverkit cannot start: .*RECOVERKIT_LINK_SECRET"):
        rk(CONFIG={"links": {"base_url": "https://shop.example/cart/restore"}})
    with pytest.raises(ConfigError, match=r"^settings\.RECOVERKIT\['CHANNELS'\]: the flow 'f' step 0 uses "
                       r"channel 'sms'"):
        rk(CONFIG={"flows": [{"name": "f", "steps": [{"delay": 1, "channel": "sms"}]}]}, CHANNELS={})


def test_a_channel_the_flows_use_without_an_adapter_stops_ready_naming_the_setting(
    rk: Callable[..., RecoverkitState], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = rk(CHANNELS={"email": MemoryChannel()})
    config = {"flows": [{"name": "cart-reminder", "steps": [{"delay": 60}, {"delay": 3600, "channel": "sms"}]}]}
    monkeypatch.setattr(settings, "RECOVERKIT", {"CONFIG": config, "CHANNELS": {"email": MemoryChannel()}})
    with pytest.raises(ConfigError) as raised:
        apps.get_app_config("recoverkit").ready()
    assert str(raised.value).startswith(
        "settings.RECOVERKIT['CHANNELS']: the flow 'cart-reminder' step 1 uses channel 'sms' but no adapter is "
        "configured for it (configured: ['email']); add settings.RECOVERKIT['CHANNELS']['sms'] = <adapter>"
    )
    assert get_state() is state
    errors = checks.run_checks(tags=["recoverkit"])  # what `manage.py check` says about the same settings
    assert [(e.id, e.msg) for e in errors if e.id == "recoverkit.E001"] == [("recoverkit.E001", str(raised.value))]


def test_an_offer_without_its_plug_in_stops_ready_naming_the_setting(rk: Callable[..., RecoverkitState]) -> None:
    config = {
        "offers": {"double": {"kind": "loyalty_bonus", "name": "Double points", "multiplier": 2}},
        "flows": [{"name": "f", "steps": [{"delay": 60, "offer": "double"}]}],
    }
    with pytest.raises(ConfigError) as raised:
        rk(CONFIG=config, CHANNELS={"email": MemoryChannel()})
    assert str(raised.value).startswith("settings.RECOVERKIT['LOYALTY']: flow 'f' step 0 (offer 'double') grants")
    assert "set settings.RECOVERKIT['LOYALTY'] to <your Loyalty>" in str(raised.value)
    assert "Engine" not in str(raised.value)


def test_a_channel_may_be_named_by_import_path(rk: Callable[..., RecoverkitState]) -> None:
    state = rk(CHANNELS={"email": "recoverkit.MemoryChannel"})
    assert state.settings.channels is not None
    assert isinstance(state.settings.channels["email"], MemoryChannel)


# -- the engine: built at start-up, started by the first event, one per settings --------------------------------------


def test_ready_builds_the_engine_without_starting_a_thread(rk: Callable[..., RecoverkitState]) -> None:
    rk(CHANNELS={"email": MemoryChannel()})
    before = set(threading.enumerate())
    apps.get_app_config("recoverkit").ready()  # as every management command, and gunicorn's master, run it
    apps.get_app_config("recoverkit").ready()  # and the autoreloader's two processes
    assert set(threading.enumerate()) == before
    engine = get_engine()
    assert isinstance(engine, BackgroundEngine)

    assert Client().get("/t/add").json() == {"kept": True}  # the first event starts the engine's thread
    started = set(threading.enumerate()) - before
    assert len(started) == 1, started  # the engine's own loop thread, and nothing else


def test_changed_settings_get_an_engine_of_their_own_and_the_old_one_is_closed(
    rk: Callable[..., RecoverkitState],
) -> None:
    first_store, second_store = MemoryStore(), MemoryStore()
    first = rk(STORE=first_store, CHANNELS={"email": MemoryChannel()})
    assert Client().get("/t/add").json() == {"kept": True}
    old_engine = first.engine.get()
    second = rk(STORE=second_store, CHANNELS={"email": MemoryChannel()})
    assert second is not first and get_state() is second
    assert first.engine.get() is None  # closed: it refuses events from now on
    assert old_engine is not None and old_engine.track({"event": "page_view", "session_id": "s"}) is False
    Client().get("/t/add")
    assert len(journal(second_store)) == 1


def test_the_metrics_recipe_of_the_docs_reads_the_process_engine(rk: Callable[..., RecoverkitState]) -> None:
    from prometheus_client import generate_latest

    import recoverkit.metrics

    registry = recoverkit.metrics.register(get_engine)  # as docs/django.md and docs/metrics.md write it
    rk(CHANNELS={"email": MemoryChannel()})
    assert Client().get("/t/add").json() == {"kept": True}
    rk_django.flush()
    assert b"recoverkit_events_accepted_total 1.0" in generate_latest(registry)
    rk(CHANNELS={"email": MemoryChannel()})  # a new engine (as after a fork): the registry follows get_engine
    assert b"recoverkit_events_accepted_total 0.0" in generate_latest(registry)


def test_mode_off_builds_no_engine(rk: Callable[..., RecoverkitState]) -> None:
    rk(MODE="off")
    assert get_engine() is None
    rk_django.flush()  # nothing to wait for


def test_flush_with_a_fake_clock_fires_what_fell_due(rk: Callable[..., RecoverkitState]) -> None:
    outbox, clock = MemoryChannel(), FakeClock()
    rk(CHANNELS={"email": outbox}, CLOCK=clock,
       CONFIG={"abandon_after": 60, "flows": [{"name": "quick", "steps": [{"delay": 10, "channel": "email"}]}]})
    Client().get("/t/shop/c-1")
    rk_django.flush()
    clock.advance(60 + 10 + 1)
    rk_django.flush()
    assert [(m.flow, m.recipient.email) for m in outbox.sent] == [("quick", "c-1@example.com")]


# -- system checks ---------------------------------------------------------------------------------------------------


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


def test_the_checks_pass_for_a_project_set_up_as_documented() -> None:
    assert ids(checks.run_checks(tags=["recoverkit"], include_deployment_checks=True)) == []


def test_a_missing_middleware_is_a_warning() -> None:
    middleware = [m for m in settings.MIDDLEWARE if "recoverkit" not in m]
    with override_settings(MIDDLEWARE=middleware):
        [warning] = checks.run_checks(tags=["recoverkit"])
    assert warning.id == "recoverkit.W001" and "RecoverkitMiddleware" in warning.hint


def test_a_subclass_of_the_middleware_counts_as_the_middleware() -> None:
    middleware = [m for m in settings.MIDDLEWARE if "recoverkit" not in m]
    with override_settings(MIDDLEWARE=[*middleware, "django_support.shop_middleware.ShopRecoverkitMiddleware"]):
        assert ids(checks.run_checks(tags=["recoverkit"])) == []


def test_settings_broken_after_start_up_are_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "RECOVERKIT", {"MODE": "embeded"})
    [error] = checks.run_checks(tags=["recoverkit"])
    assert error.id == "recoverkit.E001" and "settings.RECOVERKIT['MODE']" in error.msg


def test_restore_links_without_their_secret_are_an_error_in_mode_off(
    rk: Callable[..., RecoverkitState], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECOVERKIT_LINK_SECRET", raising=False)
    rk(MODE="off", CONFIG={"links": {"base_url": "https://shop.example/cart/restore"}})  # no engine to notice
    [error] = checks.run_checks(tags=["recoverkit"])
    assert error.id == "recoverkit.E002" and "RECOVERKIT_LINK_SECRET" in error.msg


def test_an_insecure_cookie_beside_a_secure_session_is_a_deployment_warning(
    rk: Callable[..., RecoverkitState],
) -> None:
    rk(MODE="off", COOKIE_SECURE=False)
    with override_settings(SESSION_COOKIE_SECURE=True):
        assert ids(checks.run_checks(tags=["recoverkit"])) == []
        [warning] = checks.run_checks(tags=["recoverkit"], include_deployment_checks=True)
    assert warning.id == "recoverkit.W002"


# -- packaging -------------------------------------------------------------------------------------------------------


def test_recoverkit_imports_without_django_and_says_how_to_install_it() -> None:
    script = (
        "import sys; sys.modules['django'] = None\n"
        "import recoverkit, recoverkit.integration, recoverkit.contrib\n"
        "try:\n    import recoverkit.contrib.django\nexcept ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'recoverkit[django]'" in done.stdout


@pytest.mark.slow
def test_django_set_up_in_a_fresh_process_starts_no_thread(tmp_path: Path) -> None:
    # ready() in a process of its own, as gunicorn's master runs it before forking with --preload: a thread
    # started there would be dead in every worker.
    script = (
        "import threading, django\n"
        "django.setup()\n"
        "from recoverkit.contrib.django import get_engine\n"
        "assert get_engine() is not None\n"
        "print(sorted(t.name for t in threading.enumerate()))\n"
    )
    env = process_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), env["PYTHONPATH"]])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['MainThread']"


def test_the_public_names_are_all_exported_and_sorted() -> None:
    assert rk_django.__all__ == sorted(rk_django.__all__)
    for name in rk_django.__all__:
        assert getattr(rk_django, name) is not None
    public = {name for name, value in vars(rk_django).items()
              if not name.startswith("_") and not isinstance(value, ModuleType) and name != "annotations"}
    assert public == set(rk_django.__all__)
