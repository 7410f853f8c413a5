"""The Flask extension on its own: set-up and settings, the session cookie, the request's tracker, the events
recorded from paths, containment of every failure, restore links."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from flask import Flask, jsonify, request

from recoverkit import FakeClock, MemoryChannel, MemoryStore
from recoverkit.contrib.flask import Recoverkit, RecoverkitState, current_tracker, restore_cart, tracker
from recoverkit.errors import ConfigError, LinkError
from recoverkit.integration import SESSION_COOKIE, is_session_id

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from flask_support import no_thread_leak, secrets_env
except ImportError:  # pragma: no cover
    from .flask_support import no_thread_leak, secrets_env

__all__ = ["no_thread_leak", "secrets_env"]  # fixtures used by name

FLOW = {"abandon_after": 60, "flows": [{"name": "quick", "steps": [{"delay": 10, "channel": "email"}]}]}
CART = [{"item_id": "SKU-1", "price": "35.79", "quantity": 1}]


def make_app(rk: Recoverkit | None = None, **settings: Any) -> Flask:
    """A small app: /add tracks an add-to-cart, /sid shows the tracker's session id, /checkout is a page."""
    app = Flask(__name__)
    app.config.update({f"RECOVERKIT_{key}": value for key, value in settings.items()})

    @app.get("/add")
    def add() -> Any:
        kept = tracker.add_to_cart(CART, currency="EUR", cart_id=request.args.get("cart"))
        return jsonify(kept=kept)

    @app.get("/sid")
    def sid() -> Any:
        return jsonify(session_id=current_tracker().session_id, customer_id=current_tracker().customer_id)

    @app.route("/checkout", methods=["GET", "POST"])
    def checkout() -> str:
        return "<h1>checkout</h1>"

    @app.get("/checkout/payment/card")
    def card() -> str:
        return "<h1>card</h1>"

    @app.get("/api/cart")
    def api() -> Any:
        return jsonify(lines=[])

    @app.get("/missing")
    def missing() -> Any:
        return "gone", 404

    @app.get("/moved")
    def moved() -> Any:
        return "", 302, {"Location": "/"}

    @app.get("/broken")
    def broken() -> Any:
        raise RuntimeError("the shop's own bug")

    (rk or Recoverkit()).init_app(app)
    return app


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def apps(no_thread_leak: None) -> Iterator[Callable[..., Flask]]:
    """``apps(**settings)`` builds an app with a MemoryChannel; every engine is closed at teardown."""
    made: list[Flask] = []

    def build(rk: Recoverkit | None = None, **settings: Any) -> Flask:
        settings.setdefault("CHANNELS", {"email": MemoryChannel()})
        app = make_app(rk, **settings)
        made.append(app)
        return app

    yield build
    for app in made:
        Recoverkit.state(app).engine.close()


def journal(app: Flask, store: MemoryStore) -> list[dict[str, Any]]:
    """The events the app's engine accepted, in order."""
    engine = Recoverkit.state(app).engine.get()
    assert engine is not None
    engine.flush()
    return [msgspec.json.decode(entry.data) for entry in store.read_events(0, 1000)]


# -- set-up and settings -----------------------------------------------------------------------------------------


def test_init_app_sets_up_each_app_of_a_factory_without_starting_a_thread(
    apps: Callable[..., Flask], store: MemoryStore
) -> None:
    rk = Recoverkit()
    before = set(threading.enumerate())
    first, second = apps(rk, STORE=store), apps(rk, MODE="off")
    assert set(threading.enumerate()) == before  # the engine is built, its thread starts on the first event

    assert isinstance(first.extensions["recoverkit"], RecoverkitState)
    assert Recoverkit.state(first).extension is rk
    assert Recoverkit.state(first).settings.mode == "embedded"
    assert Recoverkit.state(second).settings.mode == "off"
    assert rk.engine(first) is not None and rk.engine(second) is None
    assert first.test_client().get("/add").json == {"kept": True}
    assert second.test_client().get("/add").json == {"kept": False}  # mode "off" records nothing


def test_init_app_twice_on_one_app_is_refused(apps: Callable[..., Flask]) -> None:
    app = apps()
    with pytest.raises(ConfigError, match="already set up"):
        Recoverkit().init_app(app)


def test_an_app_without_the_extension_says_how_to_set_it_up() -> None:
    app = Flask(__name__)
    with app.test_request_context("/"), pytest.raises(RuntimeError, match=r"call Recoverkit\(app\)"):
        current_tracker()


@pytest.mark.parametrize(
    ("settings", "named", "detail"),
    [
        ({"MODE": "embeded"}, "app.config['RECOVERKIT_MODE']", "'embeded' is not a mode"),
        ({"CHECKOUT_PATHS": {"checkout": "begin_checkout"}}, "app.config['RECOVERKIT_CHECKOUT_PATHS']", "'/...'"),
        ({"CHANNELS": {"email": object()}}, "app.config['RECOVERKIT_CHANNELS']['email']",
         "no `async send(message)` method"),
        ({"CATALOGUE": "recoverkit.MemoryChannel"}, "app.config['RECOVERKIT_CATALOGUE']",
         "is the class MemoryChannel, whose instances (built with MemoryChannel()) have no `async suggest("),
        ({"STORE": 5}, "app.config['RECOVERKIT_STORE']", "got int; expected the path of the SQLite file"),
        ({"CONFIG": {"abandon_after": -5}}, "app.config['RECOVERKIT_CONFIG']", "abandon_after"),
        ({"CLOSE_TIMEOUT": "soon"}, "app.config['RECOVERKIT_CLOSE_TIMEOUT']", "expected seconds"),
        ({"MODE": "journal"}, "app.config['RECOVERKIT_STORE']", "SQLite file the worker reads"),
        ({"CHANELS": {}}, "app.config['RECOVERKIT_CHANELS']", "did you mean 'RECOVERKIT_CHANNELS'"),
        ({"CHANNEL": {}}, "app.config['RECOVERKIT_CHANNEL']", "did you mean 'RECOVERKIT_CHANNELS'"),
        ({"LINK_SECRET": "x" * 40}, "app.config['RECOVERKIT_LINK_SECRET']", "from the environment"),
    ],
)
def test_a_configuration_error_is_raised_by_init_app_and_names_the_key(
    settings: dict[str, Any], named: str, detail: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        make_app(**settings)
    assert named in str(raised.value)
    assert detail in str(raised.value)
    assert "app.config['MODE']" not in str(raised.value)  # every key is named as the shop wrote it


def test_an_engine_that_cannot_be_built_fails_init_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECOVERKIT_LINK_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"RECOVERKIT_LINK_SECRET.*is empty"):
        make_app(CONFIG={"links": {"base_url": "https://shop.example/cart/restore"}})
    with pytest.raises(ConfigError, match=r"^app\.config\['RECOVERKIT_CHANNELS'\]: the flow 'f' step 0 uses "
                       r"channel 'sms'"):
        make_app(CONFIG={"flows": [{"name": "f", "steps": [{"delay": 1, "channel": "sms"}]}]}, CHANNELS={})


def test_a_channel_the_flows_use_without_an_adapter_fails_init_app_naming_the_key() -> None:
    config = {"flows": [{"name": "cart-reminder", "steps": [{"delay": 60}, {"delay": 3600, "channel": "sms"}]}]}
    with pytest.raises(ConfigError) as raised:
        make_app(CONFIG=config, CHANNELS={"email": MemoryChannel()})
    assert str(raised.value).startswith(
        "app.config['RECOVERKIT_CHANNELS']: the flow 'cart-reminder' step 1 uses channel 'sms' but no adapter is "
        "configured for it (configured: ['email']); add app.config['RECOVERKIT_CHANNELS']['sms'] = <adapter>"
    )


def test_an_engine_error_at_init_app_names_the_keys_not_the_engine_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECOVERKIT_CODE_SECRET", raising=False)
    config = {
        "offers": {"ten": {"kind": "discount", "name": "10% off", "percent": 10}},
        "flows": [{"name": "f", "steps": [{"delay": 60, "offer": "ten"}]}],
    }
    with pytest.raises(ConfigError) as raised:
        make_app(CONFIG=config, CHANNELS={"email": MemoryChannel()})
    message = str(raised.value)
    assert message.startswith("app.config RECOVERKIT_* settings: recoverkit cannot start: the flows make offers")
    assert "RECOVERKIT_CODE_SECRET is empty" in message
    assert "set app.config['RECOVERKIT_COUPONS'] to <your CouponProvider>" in message
    assert "to Engine" not in message


def test_a_process_forked_without_pythons_fork_hooks_gets_an_engine_of_its_own(
    apps: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = apps()
    holder = Recoverkit.state(app).engine
    parent = holder.get()
    assert parent is not None and holder.get() is parent  # same process, same engine
    with monkeypatch.context() as patched:
        patched.setattr("recoverkit.integration.os.getpid", lambda: 1)  # as a uWSGI worker sees it
        child = holder.get()
        assert child is not None and child is not parent and holder.get() is child
        assert app.test_client().get("/add").json == {"kept": True}
        child.close()
    parent.close()


def test_settings_set_to_none_count_as_not_set(apps: Callable[..., Flask]) -> None:
    app = apps(MODE=None, COOKIE_SECURE=None, STORE=None)
    assert Recoverkit.state(app).settings.mode == "embedded"


# -- the session cookie --------------------------------------------------------------------------------------------


def test_a_session_id_is_minted_and_set_as_a_first_party_cookie(apps: Callable[..., Flask]) -> None:
    client = apps().test_client()
    response = client.get("/sid")
    [cookie] = response.headers.getlist("Set-Cookie")
    name, _, rest = cookie.partition("=")
    value = rest.split(";", 1)[0]
    assert name == SESSION_COOKIE and is_session_id(value)
    assert value == response.json["session_id"]
    attributes = {part.strip().split("=")[0] for part in cookie.split(";")[1:]}
    assert {"HttpOnly", "Path", "Max-Age", "SameSite"} <= attributes
    assert "SameSite=Lax" in cookie and "Max-Age=2592000" in cookie and "Secure" not in attributes


def test_the_cookie_is_reused_and_not_set_again(apps: Callable[..., Flask]) -> None:
    client = apps().test_client()
    first = client.get("/sid").json["session_id"]
    response = client.get("/sid")
    assert response.json["session_id"] == first
    assert response.headers.getlist("Set-Cookie") == []


@pytest.mark.parametrize("forged", ["admin", "x" * 22 + "'", "a" * 23, "", "<script>alert(1)</script>"])
def test_a_forged_cookie_is_replaced(apps: Callable[..., Flask], forged: str) -> None:
    client = apps().test_client()
    client.set_cookie(SESSION_COOKIE, forged)
    response = client.get("/sid")
    minted = response.json["session_id"]
    assert minted != forged and is_session_id(minted)
    assert response.headers["Set-Cookie"].startswith(f"{SESSION_COOKIE}={minted};")


@pytest.mark.parametrize(
    ("setting", "base_url", "secure"),
    [(None, "http://localhost", False), (None, "https://localhost", True), (True, "http://localhost", True),
     (False, "https://localhost", False)],
)
def test_the_cookie_is_secure_as_configured_or_as_the_request_is(
    apps: Callable[..., Flask], setting: bool | None, base_url: str, secure: bool
) -> None:
    client = apps(COOKIE_SECURE=setting).test_client()
    cookie = client.get("/sid", base_url=base_url).headers["Set-Cookie"]
    assert ("; Secure" in cookie) is secure


def test_the_cookie_name_is_configurable(apps: Callable[..., Flask]) -> None:
    client = apps(SESSION_COOKIE="shop_rk").test_client()
    assert client.get("/sid").headers["Set-Cookie"].startswith("shop_rk=")


def test_mode_off_sets_no_cookie(apps: Callable[..., Flask]) -> None:
    client = apps(MODE="off").test_client()
    assert client.get("/sid").headers.getlist("Set-Cookie") == []


# -- the tracker ---------------------------------------------------------------------------------------------------


def test_events_carry_the_session_customer_device_source_and_the_time_of_the_request(
    apps: Callable[..., Flask], store: MemoryStore, clock: FakeClock
) -> None:
    rk = Recoverkit()

    @rk.customer_loader
    def load() -> int:
        return 42

    app = apps(rk, STORE=store, CLOCK=clock)
    client = app.test_client()
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"
    session_id = client.get("/sid").json["session_id"]
    at = clock.now()
    client.get("/add?utm_source=newsletter&cart=c-1", headers={"User-Agent": iphone})
    clock.advance(120)  # the engine journals after this: the event still says when the request happened
    [event] = journal(app, store)
    assert event["event"] == "add_to_cart"
    assert (event["session_id"], event["customer_id"], event["cart_id"]) == (session_id, "42", "c-1")
    assert (event["device"], event["source"]) == ("mobile", "newsletter")
    assert event["ts"] == at


def test_without_a_customer_loader_the_shopper_is_a_guest_until_identified(apps: Callable[..., Flask]) -> None:
    assert apps().test_client().get("/sid").json["customer_id"] is None


@pytest.mark.parametrize("value", [RuntimeError("db down"), object(), True])
def test_a_failing_or_strange_customer_loader_makes_a_guest_and_never_fails_the_request(
    apps: Callable[..., Flask], value: object
) -> None:
    rk = Recoverkit()

    @rk.customer_loader
    def load() -> object:
        if isinstance(value, Exception):
            raise value
        return value

    response = apps(rk).test_client().get("/sid")
    assert response.status_code == 200 and response.json["customer_id"] is None


def test_the_tracker_is_one_per_request(apps: Callable[..., Flask]) -> None:
    app = apps()
    with app.test_request_context("/"):
        assert current_tracker() is current_tracker()
        first = current_tracker().session_id
    with app.test_request_context("/"):
        assert current_tracker().session_id != first


# -- events recorded from paths ------------------------------------------------------------------------------------


def kinds(app: Flask, store: MemoryStore) -> list[str]:
    return [event["event"] for event in journal(app, store)]


def test_checkout_paths_are_recorded_on_a_successful_get_only(apps: Callable[..., Flask], store: MemoryStore) -> None:
    app = apps(STORE=store, CHECKOUT_PATHS={"/checkout": "begin_checkout", "/missing": "view_cart",
                                            "/moved": "view_cart", "/broken": "view_cart"})
    client = app.test_client()
    client.post("/checkout")
    client.head("/checkout")
    assert client.get("/missing").status_code == 404
    assert client.get("/moved").status_code == 302
    assert client.get("/broken").status_code == 500
    assert kinds(app, store) == []
    assert client.get("/checkout").status_code == 200
    assert kinds(app, store) == ["begin_checkout"]


def test_the_longest_checkout_path_wins(apps: Callable[..., Flask], store: MemoryStore) -> None:
    app = apps(STORE=store, CHECKOUT_PATHS={"/checkout": "begin_checkout", "/checkout/payment": "add_payment_info"})
    app.test_client().get("/checkout/payment/card")
    assert kinds(app, store) == ["add_payment_info"]


def test_page_views_are_html_pages_only(apps: Callable[..., Flask], store: MemoryStore, tmp_path: Any) -> None:
    app = apps(STORE=store, TRACK_PAGE_VIEWS=True)
    app.static_folder = str(tmp_path)
    (tmp_path / "shop.html").write_text("<p>a static file</p>")
    client = app.test_client()
    client.get("/api/cart")  # JSON
    static = client.get("/static/shop.html")  # the static endpoint, even as HTML
    assert static.status_code == 200 and static.mimetype == "text/html"
    static.close()
    assert kinds(app, store) == []
    client.get("/checkout")
    assert kinds(app, store) == ["page_view"]


def test_without_settings_nothing_is_recorded_from_paths(apps: Callable[..., Flask], store: MemoryStore) -> None:
    app = apps(STORE=store)
    app.test_client().get("/checkout")
    assert kinds(app, store) == []


# -- containment ---------------------------------------------------------------------------------------------------


def test_a_broken_engine_never_fails_a_request(
    apps: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = apps(CHECKOUT_PATHS={"/checkout": "begin_checkout"})
    engine = Recoverkit.state(app).engine

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the engine is broken")

    monkeypatch.setattr(engine, "get", broken)  # cannot even be built any more
    client = app.test_client()
    response = client.get("/checkout")
    assert response.status_code == 200 and response.headers["Set-Cookie"].startswith(SESSION_COOKIE)
    assert client.get("/add").json == {"kept": False}

    monkeypatch.setattr(engine, "track", broken)  # raises where it must not
    assert client.get("/add").json == {"kept": False}
    assert client.get("/checkout").status_code == 200


def test_a_failure_in_the_request_hook_never_fails_a_request(
    apps: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = apps(CHECKOUT_PATHS={"/checkout": "begin_checkout"})

    def broken(path: str) -> str:
        raise RuntimeError("hook bug")

    monkeypatch.setattr(Recoverkit.state(app).settings, "path_event", broken)
    response = app.test_client().get("/checkout")
    assert response.status_code == 200 and response.get_data(as_text=True) == "<h1>checkout</h1>"


def test_a_failure_building_the_tracker_leaves_views_an_inert_one(
    apps: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(user_agent: str | None) -> str:
        raise RuntimeError("broken")

    monkeypatch.setattr("recoverkit.contrib.flask._extension.device_of", broken)
    response = apps().test_client().get("/add")
    assert response.status_code == 200 and response.json == {"kept": False}
    assert response.headers.getlist("Set-Cookie") == []


def test_after_close_requests_still_work_and_record_nothing(apps: Callable[..., Flask]) -> None:
    rk = Recoverkit()
    app = apps(rk)
    client = app.test_client()
    assert client.get("/add").json == {"kept": True}
    rk.close(app)
    assert client.get("/add").json == {"kept": False}


# -- restore links -------------------------------------------------------------------------------------------------


def restore_app(apps: Callable[..., Flask], **settings: Any) -> Flask:
    config = {**FLOW, "links": {"base_url": "https://shop.example/cart/restore", "max_age": 3600}}
    app = apps(CONFIG=config, **settings)
    carts = {"cart-7": ["SKU-1"]}

    @app.get("/cart/restore")
    def restore() -> Any:
        try:
            return jsonify(lines=restore_cart(carts.__getitem__))
        except LinkError as error:
            return jsonify(problem=error.reason), 400

    return app


def link_for(app: Flask, cart_key: str, now: float | None = None) -> str:
    links = Recoverkit.state(app).links
    assert links is not None
    url = links.build(cart_key, now=now)
    assert url.startswith("https://shop.example/cart/restore?t=")
    return url.removeprefix("https://shop.example")


@pytest.mark.parametrize("mode", ["embedded", "off"])
def test_restore_cart_loads_the_linked_cart_and_records_the_visit(
    apps: Callable[..., Flask], secrets_env: dict[str, str], store: MemoryStore, clock: FakeClock,
    mode: str,
) -> None:
    app = restore_app(apps, STORE=store, CLOCK=clock, MODE=mode)
    response = app.test_client().get(link_for(app, "cart-7", now=clock.now()))
    assert response.json == {"lines": ["SKU-1"]}
    if mode == "embedded":
        [visit] = journal(app, store)
        assert (visit["event"], visit["page_type"], visit["cart_id"]) == ("page_view", "cart_restore", "cart-7")


def test_restore_cart_answers_bad_links_before_loading_anything(
    apps: Callable[..., Flask], secrets_env: dict[str, str], store: MemoryStore, clock: FakeClock
) -> None:
    app = restore_app(apps, STORE=store, CLOCK=clock)
    client = app.test_client()
    good = link_for(app, "cart-7", now=clock.now())
    assert client.get("/cart/restore").json == {"problem": "malformed"}
    assert client.get("/cart/restore?t=nonsense").json == {"problem": "malformed"}
    assert client.get(good[:-3] + ("xyz" if not good.endswith("xyz") else "abc")).json == {"problem": "tampered"}
    clock.advance(3600)  # the link's max_age, on the configured clock
    assert client.get(good).json == {"problem": "expired"}
    assert journal(app, store) == []  # no visit recorded for a bad link


def test_restore_cart_without_links_configured_is_a_configuration_error(apps: Callable[..., Flask]) -> None:
    app = apps()
    with app.test_request_context("/cart/restore?t=abc"), pytest.raises(ConfigError, match="base_url"):
        restore_cart(lambda key: key)


# -- packaging -----------------------------------------------------------------------------------------------------


def test_recoverkit_imports_without_flask_and_says_how_to_install_it() -> None:
    script = (
        "import sys; sys.modules['flask'] = None\n"
        "import recoverkit, recoverkit.integration, recoverkit.contrib\n"
        "try:\n    import recoverkit.contrib.flask\nexcept ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'recoverkit[flask]'" in done.stdout
