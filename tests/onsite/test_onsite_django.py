"""The on-site view in Django, behind recoverkit's middleware: the visitor's own offer once, nobody else's."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contrib"))
from django_support import setup

setup()

from django.test import RequestFactory  # noqa: E402
from django_support.fixtures import no_engine_leak, rk, secrets_env  # noqa: E402

from recoverkit import FakeClock  # noqa: E402
from recoverkit.contrib.django import RecoverkitState  # noqa: E402
from recoverkit.contrib.django.middleware import RecoverkitMiddleware  # noqa: E402
from recoverkit.contrib.django.onsite import onsite_script, onsite_urls, onsite_view  # noqa: E402
from recoverkit.contrib.django.tracking import flush, get_tracker  # noqa: E402
from recoverkit.onsite import OnsiteChannel  # noqa: E402

__all__ = ["no_engine_leak", "rk", "secrets_env"]  # fixtures used by name

FLOW = {
    "abandon_after": 60,
    "offers": {"ten": {"kind": "discount", "name": "10% off", "percent": 10, "valid_for": 3600}},
    "flows": [{"name": "back", "steps": [{"delay": 0, "channel": "onsite", "offer": "ten"}]}],
}


def add(request: Any) -> Any:
    from django.http import JsonResponse

    get_tracker(request).add_to_cart([{"item_id": "MUG", "price": "10.00"}], currency="EUR", cart_id="c-1")
    return JsonResponse({})


def call(view: Callable[[Any], Any], request: Any) -> Any:
    return RecoverkitMiddleware(view)(request)


def test_the_view_answers_the_visitors_offer_once_and_nobody_elses(
    rk: Callable[..., RecoverkitState], secrets_env: dict[str, str], tmp_path: Path
) -> None:
    clock = FakeClock()
    rk(CONFIG=FLOW, STORE=str(tmp_path / "d.db"), CLOCK=clock, CHANNELS={"onsite": OnsiteChannel()})
    factory = RequestFactory()
    first = call(add, factory.get("/t/add"))
    sid = first.cookies["rk_sid"].value
    flush()
    clock.advance(120)
    flush()

    other = call(onsite_view, factory.get("/recoverkit/onsite", HTTP_ACCEPT="application/json"))
    assert json.loads(other.content) == {"offer": None}
    mine = factory.get("/recoverkit/onsite", HTTP_ACCEPT="application/json")
    mine.COOKIES["rk_sid"] = sid
    offer = json.loads(call(onsite_view, mine).content)["offer"]
    assert offer["code"] and offer["code"] in offer["html"]
    again = factory.get("/recoverkit/onsite", HTTP_ACCEPT="application/json")
    again.COOKIES["rk_sid"] = sid
    assert json.loads(call(onsite_view, again).content) == {"offer": None}

    report = json.dumps({"token": offer["token"], "mark": "clicked"})
    stolen = factory.post("/recoverkit/onsite", report, content_type="application/json")
    assert call(onsite_view, stolen).status_code == 404
    clicked = factory.post("/recoverkit/onsite", report, content_type="application/json")
    clicked.COOKIES["rk_sid"] = sid
    assert call(onsite_view, clicked).status_code == 204
    assert onsite_view.csrf_exempt is True  # type: ignore[attr-defined]


def test_the_script_and_the_urls(
    rk: Callable[..., RecoverkitState], secrets_env: dict[str, str], tmp_path: Path
) -> None:
    rk(CONFIG=FLOW, STORE=str(tmp_path / "d.db"), CHANNELS={"onsite": OnsiteChannel()})
    script = call(onsite_script, RequestFactory().get("/recoverkit/onsite.js"))
    assert script.status_code == 200 and b"recoverkit:onsite" in script.content
    assert [str(p.pattern) for p in onsite_urls()] == ["recoverkit/onsite", "recoverkit/onsite.js"]


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_other_methods_are_refused(
    rk: Callable[..., RecoverkitState], secrets_env: dict[str, str], tmp_path: Path, method: str
) -> None:
    rk(CONFIG=FLOW, STORE=str(tmp_path / "d.db"), CHANNELS={"onsite": OnsiteChannel()})
    response = call(onsite_view, RequestFactory().generic(method, "/recoverkit/onsite"))
    assert response.status_code == 405
