"""docs/messengers.md's configuration, as written, run by the engine against the local Graph API server."""

from __future__ import annotations

import functools
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import recoverkit
from helpers import T0
from recoverkit import FakeClock, MemoryChannel, load_config
from recoverkit.templates import Templates

from .platform_server import TOKEN, Platform, platform

pytestmark = pytest.mark.anyio

DOC = Path(__file__).parents[2] / "docs" / "messengers.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture
def far() -> Iterator[Platform]:
    with platform() as server:
        yield server


class _Row:
    psid = "24681357"


class _Query:
    def __init__(self, customer_id: str | None) -> None:
        self.customer_id = customer_id

    async def afirst(self) -> _Row | None:
        return _Row() if self.customer_id == "c1" else None


class MessengerContact:
    """Stands in for the shop's Django model in the doc."""

    class objects:  # noqa: N801 - the Django manager's name
        @staticmethod
        def filter(customer_id: str | None) -> _Query:
            return _Query(customer_id)


def recovery_module(far: Platform, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name, value in {"WHATSAPP_PHONE_NUMBER_ID": "106540352242922", "WHATSAPP_ACCESS_TOKEN": TOKEN,
                        "FACEBOOK_PAGE_ID": "102938475610", "FACEBOOK_PAGE_TOKEN": TOKEN}.items():
        monkeypatch.setenv(name, value)
    models = types.ModuleType("myshop.models")
    models.MessengerContact = MessengerContact  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "myshop", types.ModuleType("myshop"))
    monkeypatch.setitem(sys.modules, "myshop.models", models)
    graph = f"{far.base_url}/graph/v21.0"
    shim = types.ModuleType("recoverkit")
    shim.WhatsAppChannel = functools.partial(recoverkit.WhatsAppChannel, base_url=graph)  # type: ignore[attr-defined]
    shim.WhatsAppTemplate = recoverkit.WhatsAppTemplate  # type: ignore[attr-defined]
    shim.Message = recoverkit.Message  # type: ignore[attr-defined]
    shim.MessengerChannel = functools.partial(  # type: ignore[attr-defined]
        recoverkit.MessengerChannel, base_url=graph,
        templates=Templates(sources={"cart-reminder.sms.txt": "Your {{ cart.quantity }} items are waiting"}))
    [source] = [block for block in blocks("python") if block.startswith("# myshop/recovery.py")]
    namespace: dict[str, Any] = {"__name__": "myshop.recovery", "recoverkit": shim}
    exec(compile(source.replace("import recoverkit\n", ""), str(DOC), "exec"), namespace)
    return namespace


async def test_the_documented_configuration_sends_a_whatsapp_template_and_a_messenger_text(
    far: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "recoverkit.toml").write_text(blocks("toml")[0], encoding="utf-8")
    config = load_config(tmp_path / "recoverkit.toml")
    module = recovery_module(far, monkeypatch)
    channels = {"email": MemoryChannel(), "whatsapp": module["whatsapp_channel"](),
                "messenger": module["messenger_channel"]()}
    clock = FakeClock(T0)
    base = {"session_id": "s1", "customer_id": "c1", "ts": T0}
    async with recoverkit.Engine(config, channels=channels, clock=clock) as engine:
        engine.track({"event": "identify", **base, "phone": "+49 170 1234567", "locale": "de-DE"})
        engine.track({"event": "consent", **base, "granted": ["whatsapp", "messenger"]})
        engine.track({"event": "add_to_cart", **base, "currency": "EUR",
                      "items": [{"item_id": "A", "name": "Mug", "price": "10.00", "quantity": 2}]})
        clock.advance(config.abandon_after + 3601)
        await engine.flush()
        assert engine.dispatch.outcomes["sent"] == 2
    [whatsapp] = far.whatsapp
    assert whatsapp["template"]["name"] == "cart_reminder" and whatsapp["template"]["language"] == {"code": "de"}
    assert [p["text"] for p in whatsapp["template"]["components"][0]["parameters"]] == ["Mug", "20.00 EUR"]
    [messenger] = far.messenger
    assert messenger["recipient"] == {"id": "24681357"} and messenger["messaging_type"] == "UPDATE"
    assert far.refused == []
