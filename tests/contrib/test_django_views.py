"""``recoverkit.contrib.django.views.restore_cart``: the linked cart, the visit recorded, bad links refused before
anything is loaded."""

from __future__ import annotations

from collections.abc import Callable

import pytest

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from django_support import setup
except ImportError:  # pragma: no cover
    from .django_support import setup

setup()

from django.test import Client, RequestFactory  # noqa: E402

from recoverkit import FakeClock, MemoryChannel, MemoryStore  # noqa: E402
from recoverkit.contrib.django import RecoverkitState  # noqa: E402
from recoverkit.contrib.django.views import restore_cart  # noqa: E402
from recoverkit.errors import ConfigError  # noqa: E402

try:
    from django_support.fixtures import journal, no_engine_leak, rk, secrets_env
except ImportError:  # pragma: no cover
    from .django_support.fixtures import journal, no_engine_leak, rk, secrets_env

__all__ = ["no_engine_leak", "rk", "secrets_env"]  # fixtures used by name

LINKS = {"links": {"base_url": "https://shop.example/t/restore", "max_age": 3600}}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def link_for(state: RecoverkitState, cart_key: str, now: float) -> str:
    links = state.links
    assert links is not None
    url = links.build(cart_key, now=now)
    assert url.startswith("https://shop.example/t/restore?t=")
    return url.removeprefix("https://shop.example")


@pytest.mark.parametrize("mode", ["embedded", "off"])
def test_restore_cart_loads_the_linked_cart_and_records_the_visit(
    rk: Callable[..., RecoverkitState], secrets_env: dict[str, str], store: MemoryStore, clock: FakeClock, mode: str
) -> None:
    state = rk(MODE=mode, CONFIG=LINKS, STORE=store, CLOCK=clock, CHANNELS={"email": MemoryChannel()})
    response = Client().get(link_for(state, "cart-7", clock.now()))
    assert response.json() == {"lines": ["SKU-1"]}
    if mode == "embedded":
        [visit] = journal(store)
        assert (visit["event"], visit["page_type"], visit["cart_id"]) == ("page_view", "cart_restore", "cart-7")


def test_restore_cart_answers_bad_links_before_loading_anything(
    rk: Callable[..., RecoverkitState], secrets_env: dict[str, str], store: MemoryStore, clock: FakeClock
) -> None:
    state = rk(CONFIG=LINKS, STORE=store, CLOCK=clock, CHANNELS={"email": MemoryChannel()})
    client = Client()
    good = link_for(state, "cart-7", clock.now())
    assert client.get("/t/restore").json() == {"problem": "malformed"}
    assert client.get("/t/restore?t=nonsense").json() == {"problem": "malformed"}
    assert client.get(good[:-3] + ("xyz" if not good.endswith("xyz") else "abc")).json() == {"problem": "tampered"}
    clock.advance(3600)  # the link's max_age, on the configured clock
    assert client.get(good).json() == {"problem": "expired"}
    assert journal(store) == []  # no visit recorded for a bad link


def test_restore_cart_takes_a_token_given_by_the_view(
    rk: Callable[..., RecoverkitState], secrets_env: dict[str, str], clock: FakeClock
) -> None:
    state = rk(MODE="off", CONFIG=LINKS, CLOCK=clock)
    token = link_for(state, "cart-9", clock.now()).split("t=", 1)[1]
    request = RequestFactory().get("/anywhere")  # no middleware either: the visit goes to an inert tracker
    assert restore_cart(request, lambda key: key.upper(), token=token) == "CART-9"


def test_restore_cart_without_links_configured_is_a_configuration_error(rk: Callable[..., RecoverkitState]) -> None:
    rk(CHANNELS={"email": MemoryChannel()})
    with pytest.raises(ConfigError, match="base_url"):
        restore_cart(RequestFactory().get("/t/restore?t=abc"), lambda key: key)
