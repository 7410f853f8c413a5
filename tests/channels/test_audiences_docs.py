"""docs/audiences.md's configuration, as written, run by the engine against the local platform server."""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import recoverkit
from helpers import T0
from recoverkit import FakeClock, MemoryChannel, load_config

from .platform_server import DEVELOPER_TOKEN, TOKEN, Platform, platform

pytestmark = pytest.mark.anyio

DOC = Path(__file__).parents[2] / "docs" / "audiences.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture
def far() -> Iterator[Platform]:
    with platform() as server:
        yield server


def recovery_module(far: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The doc's myshop/recovery.py, executed with the platforms' URLs pointed at the local server."""
    for name, value in {
        "RECOVERKIT_AUDIENCE_MEMBERS": str(tmp_path / "audience-members.sqlite"),
        "META_AUDIENCE_ID": "23850000000000001", "META_ACCESS_TOKEN": TOKEN,
        "GOOGLE_ADS_CUSTOMER_ID": "123-456-7890", "GOOGLE_ADS_USER_LIST_ID": "9876543",
        "GOOGLE_ADS_DEVELOPER_TOKEN": DEVELOPER_TOKEN, "GOOGLE_ADS_ACCESS_TOKEN": TOKEN,
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    shim = types.ModuleType("recoverkit")
    shim.MetaAudience = functools.partial(  # type: ignore[attr-defined]
        recoverkit.MetaAudience, base_url=f"{far.base_url}/graph/v21.0", linger=0.01)
    shim.GoogleAdsAudience = functools.partial(  # type: ignore[attr-defined]
        recoverkit.GoogleAdsAudience, base_url=f"{far.base_url}/google/v19", linger=0.01)
    [source] = [block for block in blocks("python") if block.startswith("# myshop/recovery.py")]
    namespace: dict[str, Any] = {"__name__": "myshop.recovery", "recoverkit": shim}
    exec(compile(source.replace("import recoverkit\n", ""), str(DOC), "exec"), namespace)
    return namespace


async def test_the_documented_configuration_fills_and_empties_both_audiences(
    far: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [toml] = blocks("toml")[:1]
    (tmp_path / "recoverkit.toml").write_text(toml, encoding="utf-8")
    config = load_config(tmp_path / "recoverkit.toml")
    module = recovery_module(far, tmp_path, monkeypatch)
    channels = {"email": MemoryChannel(), "meta_ads": module["meta_audience"](),
                "google_ads": module["google_audience"]()}
    clock = FakeClock(T0)
    base = {"session_id": "s1", "customer_id": "c1", "ts": T0}
    async with recoverkit.Engine(config, channels=channels, clock=clock) as engine:
        engine.track({"event": "identify", **base, "email": "Ada.Lovelace@gmail.com", "phone": "+44 20 7946 0958"})
        engine.track({"event": "consent", **base, "granted": ["ads", "email"]})
        engine.track({"event": "add_to_cart", **base, "currency": "EUR",
                      "items": [{"item_id": "A", "price": "10.00", "quantity": 1}]})
        clock.advance(config.abandon_after + 7201)
        await engine.flush()
        assert (len(far.meta["23850000000000001"]), len(far.google["customers/1234567890/userLists/9876543"])) == (1, 1)
        assert await engine.forget("c1") is True
        assert far.meta["23850000000000001"] == set() and far.google["customers/1234567890/userLists/9876543"] == set()
    assert far.refused == []


def test_the_documented_policy_for_a_shops_own_audience_loads(tmp_path: Path) -> None:
    own = [block for block in blocks("toml") if "[channels.tiktok_ads]" in block]
    (tmp_path / "own.toml").write_text(own[0], encoding="utf-8")
    policy = load_config(tmp_path / "own.toml").channel_policy("tiktok_ads")
    assert (policy.address, policy.consent) == ("email_or_phone", "ads")
