"""The console in Django: behind the login, ``is_staff`` and the ``recoverkit.*`` permissions, with Django's own
CSRF protection, through Django's test client on the process's real engine (``settings.RECOVERKIT``)."""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contrib"))
from django_support import setup

setup()

from django.contrib.auth.models import Permission, User  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django_support.fixtures import no_engine_leak, rk  # noqa: E402

from recoverkit.channels.webhook import WebhookChannel  # noqa: E402
from recoverkit.console import PERMISSIONS  # noqa: E402
from recoverkit.contrib.django import RecoverkitState  # noqa: E402
from recoverkit.contrib.django.console import create_permissions  # noqa: E402

from .shop import ADA, CONFIG, Shop  # noqa: E402

__all__ = ["no_engine_leak", "rk"]  # fixtures used by name

KEY = "cart-1/cart-recovery/0"
URL = "/ops/recoverkit/"


@pytest.fixture
def urls() -> Iterator[None]:
    """The console's URLs. Set up before ``rk`` and torn down after it: override_settings restores the settings it
    found, so overrides must end in the reverse order they began (or this one would outlive the test)."""
    with override_settings(ROOT_URLCONF="console.django_urls"):
        yield


@pytest.fixture
def shop(urls: None, rk: Callable[..., RecoverkitState], tmp_path: Path) -> Iterator[Shop]:
    def engine(receiver: Any, clock: Any) -> Any:
        state = rk(CONFIG=CONFIG, STORE=str(tmp_path / "state.db"), CLOCK=clock,
                   CHANNELS={"email": WebhookChannel(receiver.url)})  # fmt: skip
        background = state.engine.get()
        assert background is not None
        background.start()
        return background

    made = Shop(tmp_path, engine=engine)
    try:
        yield made
    finally:
        made.receiver.close()  # the engine is closed by the rk fixture


def user(name: str, *codenames: str, staff: bool = True) -> Client:
    account, _ = User.objects.get_or_create(username=name, defaults={"is_staff": staff})
    account.user_permissions.set(Permission.objects.filter(content_type__app_label="recoverkit",
                                                           codename__in=codenames))  # fmt: skip
    client = Client(enforce_csrf_checks=True)
    client.force_login(account)
    return client


def token_of(page: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def test_migrate_created_the_six_permissions_once() -> None:
    from django.apps import apps

    create_permissions(sender=apps.get_app_config("auth"), apps=apps)  # a second migrate changes nothing
    found = Permission.objects.filter(content_type__app_label="recoverkit", content_type__model="console")
    assert sorted(f"recoverkit.{p.codename}" for p in found) == sorted(PERMISSIONS)


def test_a_visitor_who_is_not_signed_in_is_sent_to_the_login_page(shop: Shop) -> None:
    answer = Client().get(URL + "dead-letters")
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/?next=/ops/recoverkit/")


def test_a_user_who_is_not_staff_and_staff_without_view_get_403(shop: Shop) -> None:
    assert user("shopper", "view", staff=False).get(URL).status_code == 403
    assert user("clerk").get(URL).status_code == 403


def test_a_viewer_sees_masked_data_and_cannot_resend(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    viewer = user("viewer", "view", "forget")
    page = viewer.get(URL + "dead-letters")
    assert page.status_code == 200 and KEY in page.text and ADA not in html.unescape(page.text)
    token = token_of(viewer.get(URL + "customer").text)  # a form the viewer has: Django's token
    refused = viewer.post(URL + "dead-letters/resend", {"key": KEY, "csrfmiddlewaretoken": token})
    assert refused.status_code == 403 and shop.receiver.received == []


def test_an_operator_resends_once_and_a_forged_post_is_refused(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    ops = user("ops", "view", "view_personal_data", "resend")
    page = ops.get(URL + "dead-letters")
    assert ADA in html.unescape(page.text)
    assert ops.post(URL + "dead-letters/resend", {"key": KEY}).status_code == 403  # no token: Django refuses
    assert shop.receiver.received == []
    form = {"key": KEY, "csrfmiddlewaretoken": token_of(page.text)}
    sent = ops.post(URL + "dead-letters/resend", form)
    assert sent.status_code == 200 and f"{KEY}: re-sent" in sent.text
    assert ops.post(URL + "dead-letters/resend", form).status_code == 409
    assert shop.receiver.received == [KEY]
    [record] = [r for r in shop.store.audit_records(actions=["resend"]) if r.outcome == "ok"]
    assert record.actor == f"console:{User.objects.get(username='ops').pk}"


def test_forget_through_the_form_erases_the_customer(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    ops = user("eraser", "view", "forget")
    page = ops.get(URL + "customer")
    done = ops.post(URL + "customer/forget", {"customer": "c1", "csrfmiddlewaretoken": token_of(page.text)})
    assert done.status_code == 200 and "the customer was forgotten" in done.text
    assert shop.store.dead_letters() == [] and shop.store.is_suppressed("c1")
