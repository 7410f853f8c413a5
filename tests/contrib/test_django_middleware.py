"""RecoverkitMiddleware and the request's tracker: the session cookie, the customer, the events a page load
records, synchronously and under ASGI, and containment of every failure."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction, sync_to_async

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from django_support import setup
except ImportError:  # pragma: no cover
    from .django_support import setup

setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

import recoverkit.contrib.django as rk_django  # noqa: E402
from recoverkit import FakeClock, MemoryChannel, MemoryStore  # noqa: E402
from recoverkit.contrib.django import RecoverkitMiddleware, RecoverkitState  # noqa: E402
from recoverkit.integration import SESSION_COOKIE, is_session_id  # noqa: E402

try:
    from django_support.fixtures import journal, no_engine_leak, rk
except ImportError:  # pragma: no cover
    from .django_support.fixtures import journal, no_engine_leak, rk

__all__ = ["no_engine_leak", "rk"]  # fixtures used by name

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"
_users = itertools.count(1)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def embedded(rk: Callable[..., RecoverkitState], store: MemoryStore, clock: FakeClock) -> RecoverkitState:
    """recoverkit on, its events journaled into ``store``, time on ``clock``."""
    return rk(STORE=store, CLOCK=clock, CHANNELS={"email": MemoryChannel()})


def new_user() -> Any:
    return get_user_model().objects.create_user(f"shopper-{next(_users)}")


def kinds(store: MemoryStore) -> list[str]:
    return [event["event"] for event in journal(store)]


def set_cookie(response: Any) -> Any:
    return response.cookies.get(SESSION_COOKIE)


# -- the session cookie ------------------------------------------------------------------------------------------


def test_a_session_id_is_minted_and_set_as_a_first_party_cookie(embedded: RecoverkitState) -> None:
    response = Client().get("/t/sid")
    cookie = set_cookie(response)
    assert cookie is not None and is_session_id(cookie.value)
    assert cookie.value == response.json()["session_id"]
    assert cookie["httponly"] is True and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert cookie["max-age"] == 30 * 86_400 and not cookie["secure"]
    assert "Cookie" in response["Vary"]  # never served from a shared cache to another visitor


def test_the_cookie_is_reused_and_not_set_again(embedded: RecoverkitState) -> None:
    client = Client()
    first = client.get("/t/sid").json()["session_id"]
    response = client.get("/t/sid")
    assert response.json()["session_id"] == first
    assert set_cookie(response) is None


@pytest.mark.parametrize("forged", ["admin", "x" * 22 + "'", "a" * 23, "", "<script>alert(1)</script>"])
def test_a_forged_cookie_is_replaced(embedded: RecoverkitState, forged: str) -> None:
    client = Client()
    client.cookies[SESSION_COOKIE] = forged
    response = client.get("/t/sid")
    minted = response.json()["session_id"]
    assert minted != forged and is_session_id(minted)
    assert set_cookie(response).value == minted


@pytest.mark.parametrize(
    ("setting", "https", "secure"),
    [(None, False, False), (None, True, True), (True, False, True), (False, True, False)],
)
def test_the_cookie_is_secure_as_configured_or_as_the_request_is(
    rk: Callable[..., RecoverkitState], setting: bool | None, https: bool, secure: bool
) -> None:
    rk(COOKIE_SECURE=setting, CHANNELS={"email": MemoryChannel()})
    cookie = set_cookie(Client().get("/t/sid", secure=https))
    assert bool(cookie["secure"]) is secure


def test_the_cookie_name_is_configurable(rk: Callable[..., RecoverkitState]) -> None:
    rk(SESSION_COOKIE="shop_rk", CHANNELS={"email": MemoryChannel()})
    response = Client().get("/t/sid")
    assert response.cookies["shop_rk"].value == response.json()["session_id"]
    assert SESSION_COOKIE not in response.cookies


def test_mode_off_sets_no_cookie_and_records_nothing(rk: Callable[..., RecoverkitState]) -> None:
    rk(MODE="off")
    response = Client().get("/t/add")
    assert response.json() == {"kept": False}
    assert SESSION_COOKIE not in response.cookies


# -- the tracker -------------------------------------------------------------------------------------------------


def test_events_carry_the_session_customer_device_source_and_the_time_of_the_request(
    embedded: RecoverkitState, store: MemoryStore, clock: FakeClock
) -> None:
    user = new_user()
    client = Client(HTTP_USER_AGENT=IPHONE)
    client.force_login(user)
    session_id = client.get("/t/sid").json()["session_id"]
    at = clock.now()
    client.get("/t/add?utm_source=newsletter&cart=c-1")
    clock.advance(120)  # the engine journals after this: the event still says when the request happened
    [event] = journal(store)
    assert event["event"] == "add_to_cart"
    assert (event["session_id"], event["customer_id"], event["cart_id"]) == (session_id, str(user.pk), "c-1")
    assert (event["device"], event["source"]) == ("mobile", "newsletter")
    assert event["ts"] == at


@pytest.mark.parametrize(
    ("query", "source"),
    [("utm%5Fsource=ads&cart=c-1", "ads"), ("cart=c-1&utm_source=a&utm_source=b", "b"), ("cart=c-1", None),
     ("utm_source=&cart=c-1", None), ("x=%41&cart=c-1", None)],
)  # fmt: skip
def test_the_traffic_source_is_read_as_django_parses_the_query(
    embedded: RecoverkitState, store: MemoryStore, query: str, source: str | None
) -> None:
    # The middleware parses the query only when utm_source may be in it: spelled out, or percent-encoded.
    Client().get(f"/t/add?{query}")
    [event] = journal(store)
    assert event.get("source") == source


def test_a_guest_has_no_customer_id(embedded: RecoverkitState, store: MemoryStore) -> None:
    assert Client().get("/t/sid").json()["customer_id"] is None
    Client().get("/t/add")
    [event] = journal(store)
    assert "customer_id" not in event


def test_the_auth_app_is_looked_for_again_when_the_installed_apps_change() -> None:
    from django.apps import apps

    from recoverkit.contrib.django.tracking import _auth_installed

    assert _auth_installed() is True
    apps.set_available_apps([config.name for config in apps.get_app_configs() if config.label != "auth"])
    try:
        assert _auth_installed() is False  # a guest whatever request.user says: no auth app, no customer
    finally:
        apps.unset_available_apps()
    assert _auth_installed() is True


def test_the_customer_is_looked_up_only_when_an_event_needs_it(embedded: RecoverkitState) -> None:
    client = Client()
    client.force_login(new_user())
    with CaptureQueriesContext(connection) as idle:
        assert client.get("/t/idle").status_code == 200  # the view never uses the tracker
    with CaptureQueriesContext(connection) as used:
        client.get("/t/add")
    assert [q for q in idle.captured_queries if "auth_user" in q["sql"]] == []
    assert len([q for q in used.captured_queries if "auth_user" in q["sql"]]) == 1


def test_identify_replaces_the_looked_up_customer(embedded: RecoverkitState, store: MemoryStore) -> None:
    client = Client()
    client.force_login(new_user())
    client.get("/t/shop/crm-77")
    events = journal(store)
    assert {event["customer_id"] for event in events} == {"crm-77"}


def test_logging_in_stitches_the_guest_session_to_the_customer(
    embedded: RecoverkitState, store: MemoryStore
) -> None:
    user = new_user()
    client = Client()
    session_id = client.get("/t/sid").json()["session_id"]
    assert client.get(f"/t/login/{user.pk}").status_code == 200
    [event] = journal(store)
    assert (event["event"], event["customer_id"], event["session_id"]) == ("identify", str(user.pk), session_id)
    assert "email" not in event  # contact details are the shop's to send


def test_logging_out_starts_a_new_guest_session(embedded: RecoverkitState, store: MemoryStore) -> None:
    user = new_user()
    client = Client()
    client.get(f"/t/login/{user.pk}")
    before = client.get("/t/sid").json()
    assert before["customer_id"] == str(user.pk)
    response = client.get("/t/logout")
    assert set_cookie(response).value != before["session_id"] and is_session_id(set_cookie(response).value)
    after = client.get("/t/sid").json()
    assert after == {"session_id": set_cookie(response).value, "customer_id": None}
    client.get("/t/add")
    assert [(e["event"], e["session_id"], e.get("customer_id")) for e in journal(store)] == [
        ("identify", before["session_id"], str(user.pk)), ("add_to_cart", after["session_id"], None)]


def test_track_records_any_event_kind_for_the_request(embedded: RecoverkitState, store: MemoryStore) -> None:
    Client().get("/t/shop/c-9")
    assert kinds(store) == ["identify", "consent", "add_to_cart"]


# -- events recorded from paths ----------------------------------------------------------------------------------


def test_checkout_paths_are_recorded_on_a_successful_get_only(
    rk: Callable[..., RecoverkitState], store: MemoryStore
) -> None:
    rk(STORE=store, CHANNELS={"email": MemoryChannel()},
       CHECKOUT_PATHS={"/t/checkout": "begin_checkout", "/t/missing": "view_cart", "/t/moved": "view_cart",
                       "/t/broken": "view_cart"})
    client = Client(raise_request_exception=False)
    client.post("/t/checkout")
    client.head("/t/checkout")
    assert client.get("/t/missing").status_code == 404
    assert client.get("/t/moved").status_code == 302
    assert client.get("/t/broken").status_code == 500
    assert kinds(store) == []
    assert client.get("/t/checkout").status_code == 200
    assert kinds(store) == ["begin_checkout"]


def test_the_longest_checkout_path_wins(rk: Callable[..., RecoverkitState], store: MemoryStore) -> None:
    rk(STORE=store, CHANNELS={"email": MemoryChannel()},
       CHECKOUT_PATHS={"/t/checkout": "begin_checkout", "/t/checkout/payment": "add_payment_info"})
    Client().get("/t/checkout/payment/card")
    assert kinds(store) == ["add_payment_info"]


def test_page_views_are_html_pages_only(rk: Callable[..., RecoverkitState], store: MemoryStore) -> None:
    rk(STORE=store, CHANNELS={"email": MemoryChannel()}, TRACK_PAGE_VIEWS=True)
    client = Client()
    client.get("/t/api")  # JSON
    with override_settings(STATIC_URL="/t/checkout/"):  # an HTML file under the static URL is no page view
        assert client.get("/t/checkout/payment/card").status_code == 200
    assert kinds(store) == []
    client.get("/t/checkout")
    assert kinds(store) == ["page_view"]


def test_without_checkout_paths_nothing_is_recorded_from_paths(
    embedded: RecoverkitState, store: MemoryStore
) -> None:
    Client().get("/t/checkout")
    assert kinds(store) == []


# -- containment -------------------------------------------------------------------------------------------------


def test_a_broken_engine_never_fails_a_request(
    rk: Callable[..., RecoverkitState], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = rk(CHANNELS={"email": MemoryChannel()}, CHECKOUT_PATHS={"/t/checkout": "begin_checkout"})

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the engine is broken")

    monkeypatch.setattr(state.engine, "get", broken)  # cannot even be built any more
    client = Client()
    response = client.get("/t/checkout")
    assert response.status_code == 200 and set_cookie(response) is not None
    assert client.get("/t/add").json() == {"kept": False}

    monkeypatch.setattr(state.engine, "track", broken)  # raises where it must not
    assert client.get("/t/add").json() == {"kept": False}
    assert client.get("/t/checkout").status_code == 200


def test_a_failure_after_the_view_never_fails_a_request(
    rk: Callable[..., RecoverkitState], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = rk(CHANNELS={"email": MemoryChannel()}, CHECKOUT_PATHS={"/t/checkout": "begin_checkout"})

    def broken(path: str) -> str:
        raise RuntimeError("hook bug")

    monkeypatch.setattr(state.settings, "path_event", broken)
    response = Client().get("/t/checkout")
    assert response.status_code == 200 and response.content == b"<h1>checkout</h1>"


def test_a_failure_setting_the_request_up_leaves_views_an_inert_tracker(
    embedded: RecoverkitState, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(user_agent: str | None) -> str:
        raise RuntimeError("broken")

    monkeypatch.setattr("recoverkit.contrib.django.middleware.device_of", broken)
    response = Client().get("/t/add")
    assert response.status_code == 200 and response.json() == {"kept": False}
    assert set_cookie(response) is None


def test_broken_settings_at_request_time_leave_views_an_inert_tracker(
    embedded: RecoverkitState, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> Any:
        raise RuntimeError("no state")

    monkeypatch.setattr("recoverkit.contrib.django.middleware.get_state", broken)
    assert Client().get("/t/add").json() == {"kept": False}


def test_after_close_requests_still_work_and_record_nothing(embedded: RecoverkitState) -> None:
    client = Client()
    assert client.get("/t/add").json() == {"kept": True}
    rk_django.close()
    assert client.get("/t/add").json() == {"kept": False}


def test_without_the_middleware_views_get_a_tracker_that_records_nothing(embedded: RecoverkitState) -> None:
    from django.conf import settings

    middleware = [m for m in settings.MIDDLEWARE if "recoverkit" not in m]
    with override_settings(MIDDLEWARE=middleware):
        response = Client().get("/t/add")
    assert response.status_code == 200 and response.json() == {"kept": False}
    assert set_cookie(response) is None


# -- under ASGI ----------------------------------------------------------------------------------------------------


def test_the_middleware_is_a_coroutine_function_exactly_when_the_chain_is_async() -> None:
    def sync_view(request: Any) -> HttpResponse:
        return HttpResponse()

    async def async_view(request: Any) -> HttpResponse:
        return HttpResponse()

    assert RecoverkitMiddleware.sync_capable and RecoverkitMiddleware.async_capable
    assert not iscoroutinefunction(RecoverkitMiddleware(sync_view))
    assert iscoroutinefunction(RecoverkitMiddleware(async_view))


@pytest.mark.anyio
async def test_async_views_record_events_with_the_minted_session(
    embedded: RecoverkitState, store: MemoryStore
) -> None:
    client = AsyncClient()
    response = await client.get("/t/async/add?cart=c-2&utm_source=ads", headers={"User-Agent": IPHONE})
    body = response.json()
    assert body["kept"] is True and body["customer_id"] is None
    assert set_cookie(response).value == body["session_id"]
    again = await client.get("/t/async/sid")
    assert again.json()["session_id"] == body["session_id"] and set_cookie(again) is None
    [event] = journal(store)
    assert (event["session_id"], event["cart_id"], event["device"], event["source"]) == (
        body["session_id"], "c-2", "mobile", "ads")


@pytest.mark.anyio
async def test_under_asgi_checkout_paths_are_recorded_for_async_and_sync_views_on_get_only(
    rk: Callable[..., RecoverkitState], store: MemoryStore
) -> None:
    rk(STORE=store, CHANNELS={"email": MemoryChannel()},
       CHECKOUT_PATHS={"/t/async/checkout": "begin_checkout", "/t/checkout": "view_cart", "/t/missing": "view_cart"})
    client = AsyncClient()
    await client.post("/t/async/checkout")
    assert (await client.get("/t/missing")).status_code == 404
    assert kinds(store) == []
    assert (await client.get("/t/async/checkout")).status_code == 200
    assert (await client.get("/t/checkout")).status_code == 200  # a sync view under ASGI
    assert kinds(store) == ["begin_checkout", "view_cart"]


@pytest.mark.anyio
async def test_async_views_know_the_customer_through_aget_tracker_and_page_loads_do_too(
    rk: Callable[..., RecoverkitState], store: MemoryStore
) -> None:
    rk(STORE=store, CHANNELS={"email": MemoryChannel()}, CHECKOUT_PATHS={"/t/async/checkout": "begin_checkout"})
    user = await sync_to_async(new_user)()
    client = AsyncClient()
    await client.aforce_login(user)
    assert (await client.get("/t/async/add")).json()["customer_id"] == str(user.pk)
    await client.get("/t/async/checkout")  # recorded by the middleware, on the event loop
    assert [(e["event"], e["customer_id"]) for e in journal(store)] == [
        ("add_to_cart", str(user.pk)), ("begin_checkout", str(user.pk))]


@pytest.mark.anyio
async def test_an_async_view_without_aget_tracker_records_a_guest_event_and_never_fails(
    embedded: RecoverkitState, store: MemoryStore
) -> None:
    user = await sync_to_async(new_user)()
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get("/t/async/guess")
    assert response.status_code == 200 and response.json() == {"kept": True, "customer_id": None}
    [event] = journal(store)
    assert "customer_id" not in event


@pytest.mark.anyio
async def test_a_broken_engine_never_fails_an_async_request(
    rk: Callable[..., RecoverkitState], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = rk(CHANNELS={"email": MemoryChannel()}, CHECKOUT_PATHS={"/t/async/checkout": "begin_checkout"})

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the engine is broken")

    monkeypatch.setattr(state.engine, "track", broken)
    engine = state.engine.get()  # and the process's engine itself, which the request trackers hand events to
    assert engine is not None
    monkeypatch.setattr(engine, "track", broken)
    client = AsyncClient()
    response = await client.get("/t/async/checkout")
    assert response.status_code == 200 and set_cookie(response) is not None
    assert (await client.get("/t/async/add")).json()["kept"] is False
