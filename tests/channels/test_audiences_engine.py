"""The whole engine with real audience adapters against the local platform server: an abandonment lands in the
audiences; a purchase, a withdrawal of the ``ads`` consent and ``forget`` take the shopper out again."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import T0
from recoverkit import Config, Engine, FakeClock, Flow, FlowStep, GoogleAdsAudience, MemoryChannel, MetaAudience
from recoverkit.channels import Withdrawal

from .platform_server import DEVELOPER_TOKEN, TOKEN, Platform, graph_error, platform

pytestmark = pytest.mark.anyio

AUDIENCE = "23850000000000001"
USER_LIST = "customers/1234567890/userLists/9876543"


@pytest.fixture
def far() -> Iterator[Platform]:
    with platform() as server:
        yield server


def config() -> Config:
    steps = [FlowStep(delay=0, channel="google_ads"), FlowStep(delay=0, channel="meta_ads"),
             FlowStep(delay=3600, channel="email")]
    return Config(abandon_after=600, flows=[Flow(name="ads", steps=steps)])


def channels(far: Platform, members: Path) -> dict[str, Any]:
    return {
        "google_ads": GoogleAdsAudience(
            "1234567890", "9876543", developer_token=DEVELOPER_TOKEN, access_token=TOKEN, members=members,
            base_url=f"{far.base_url}/google/v19", linger=0.01,
        ),
        "meta_ads": MetaAudience(AUDIENCE, access_token=TOKEN, members=members, linger=0.01,
                                 base_url=f"{far.base_url}/graph/v21.0"),
        "email": MemoryChannel(),
    }  # fmt: skip


def shopper(customer: str, granted: list[str], t: float = 0.0) -> list[dict[str, Any]]:
    base = {"session_id": f"s-{customer}", "ts": T0 + t, "customer_id": customer}
    return [
        {"event": "identify", **base, "email": f"{customer}@example.com", "phone": "+49 170 1234567"},
        {"event": "consent", **base, "granted": granted},
        {"event": "add_to_cart", **base, "currency": "EUR", "items": [{"item_id": "A", "price": "10.00", "quantity": 1}]},
    ]


def in_audiences(far: Platform) -> tuple[int, int]:
    return len(far.google.get(USER_LIST, ())), len(far.meta.get(AUDIENCE, ()))


async def abandon(engine: Engine, clock: FakeClock, *customers: tuple[str, list[str]]) -> None:
    for customer, granted in customers:
        for event in shopper(customer, granted):
            engine.track(event)
    clock.advance(601)
    await engine.flush()


async def test_an_abandoner_with_ads_consent_joins_both_audiences_and_a_purchase_takes_them_out(
    far: Platform, tmp_path: Path
) -> None:
    clock = FakeClock(T0)
    async with Engine(config(), channels=channels(far, tmp_path / "members.sqlite"), clock=clock) as engine:
        await abandon(engine, clock, ("c1", ["ads", "email"]), ("c2", ["email"]))
        assert in_audiences(far) == (1, 1)  # c2 never granted "ads"
        assert engine.dispatch.outcomes["sent"] == 2
        engine.track({"event": "purchase", "session_id": "s-c1", "customer_id": "c1", "ts": T0 + 700})
        clock.advance(100)
        await engine.flush()
        assert in_audiences(far) == (0, 0)
        assert engine.dispatch.outcomes["withdrawn"] >= 2
        # c1's email step was cancelled by the purchase too; c2's waits.
        assert [m.recipient.contact_key for m in engine.pending_messages()] == ["c2"]
    assert far.refused == []


async def test_withdrawing_the_ads_consent_takes_them_out_and_keeps_the_email(far: Platform, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with Engine(config(), channels=channels(far, tmp_path / "members.sqlite"), clock=clock) as engine:
        await abandon(engine, clock, ("c1", ["ads", "email"]))
        assert in_audiences(far) == (1, 1)
        # From the account page, days later in another session (on the cart's own session it would resume it).
        engine.track({"event": "consent", "session_id": "s-account", "customer_id": "c1", "ts": T0 + 700,
                      "withdrawn": ["ads"]})
        clock.advance(100)
        await engine.flush()
        assert in_audiences(far) == (0, 0)
        assert [m.channel for m in engine.pending_messages()] == ["email"]


async def test_forget_takes_them_out_and_leaves_no_hash_in_the_membership_file(far: Platform, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    members = tmp_path / "members.sqlite"
    async with Engine(config(), channels=channels(far, members), clock=clock) as engine:
        await abandon(engine, clock, ("c1", ["ads", "email"]))
        assert in_audiences(far) == (1, 1)
        assert await engine.forget("c1") is True
        assert in_audiences(far) == (0, 0)
    with sqlite3.connect(members) as db:
        assert db.execute("SELECT COUNT(*) FROM audience_members").fetchone() == (0,)


async def test_a_failed_removal_is_counted_and_sent_with_the_next_one(far: Platform, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    adapters = channels(far, tmp_path / "members.sqlite")
    async with Engine(config(), channels=adapters, clock=clock) as engine:
        await abandon(engine, clock, ("c1", ["ads"]), ("c2", ["ads"]))
        assert in_audiences(far) == (2, 2)
        far.fail_path.append(("/graph/", graph_error("Service temporarily unavailable", 2, 503)))  # Meta's fails
        await adapters["meta_ads"].withdraw(Withdrawal(why="purchase", contact_key="c9", at=T0))  # not a member
        assert far.fail_path  # made no request
        engine.track({"event": "purchase", "session_id": "s-c1", "customer_id": "c1", "ts": T0 + 700})
        clock.advance(100)
        await engine.flush()
        assert engine.dispatch.outcomes["withdraw_failed"] == 1
        assert in_audiences(far) == (1, 2) and adapters["meta_ads"].statistics() == {"members": 1, "removing": 1}
        engine.track({"event": "purchase", "session_id": "s-c2", "customer_id": "c2", "ts": T0 + 800})
        clock.advance(100)
        await engine.flush()
        assert in_audiences(far) == (0, 0)
