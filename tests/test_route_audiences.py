"""Route and the channels that share a consent (``ChannelPolicy.consent``): the ad audiences need ``ads``."""

from __future__ import annotations

import pytest

from helpers import T0
from recoverkit.config import DEFAULT_CHANNELS, ChannelPolicy, Config, FlowStep
from recoverkit.errors import ConfigError
from recoverkit.route import Cancel
from recoverkit.sessionize import ContactChanged
from test_route import EMAIL, PHONE, RouteRun, contact, flow, scored


def audiences(*steps: FlowStep, **config: object) -> Config:
    return Config(flows=[flow("ads", *steps)], **config)  # type: ignore[arg-type]


def test_the_built_in_audience_channels_require_the_ads_consent() -> None:
    assert DEFAULT_CHANNELS["google_ads"].consent == DEFAULT_CHANNELS["meta_ads"].consent == "ads"
    assert DEFAULT_CHANNELS["whatsapp"] == ChannelPolicy(address="phone")


def test_an_audience_channel_is_used_with_the_ads_consent_and_carries_email_and_phone() -> None:
    config = audiences(FlowStep(delay=0.0, channel="google_ads"), FlowStep(delay=0.0, channel="meta_ads"))
    run = RouteRun(config).feed(contact(phone=PHONE, granted=("ads",)), scored())
    assert [(m.channel, m.recipient.email, m.recipient.phone) for m in run.messages()] == [
        ("google_ads", EMAIL, PHONE), ("meta_ads", EMAIL, PHONE),
    ]  # fmt: skip


def test_consent_to_the_channels_own_name_is_not_the_consent_it_requires() -> None:
    run = RouteRun(audiences(FlowStep(delay=0.0, channel="google_ads"))).feed(contact(granted=("google_ads",)), scored())
    assert run.messages() == [] and run.skipped == {"no_consent": 1}


def test_email_consent_does_not_put_anyone_in_an_audience() -> None:
    run = RouteRun(audiences(FlowStep(delay=0.0, channel="meta_ads"))).feed(contact(granted=("email",)), scored())
    assert run.messages() == []


def test_a_phone_alone_is_enough_for_an_audience() -> None:
    run = RouteRun(audiences(FlowStep(delay=0.0, channel="meta_ads")))
    run.feed(contact(email=None, phone=PHONE, granted=("ads",)), scored())
    [message] = run.messages()
    assert (message.recipient.email, message.recipient.phone) == (None, PHONE)


def test_no_audience_without_email_or_phone() -> None:
    run = RouteRun(audiences(FlowStep(delay=0.0, channel="meta_ads")))
    run.feed(contact(email=None, granted=("ads",)), scored())
    assert run.messages() == [] and run.skipped == {"no_address": 1}


def test_withdrawing_ads_cancels_it_and_every_channel_that_requires_it() -> None:
    withdrawal = ContactChanged(contact_key="cust-1", at=T0 + 9, withdrawn=("ads",))
    run = RouteRun(audiences(FlowStep(delay=0.0, channel="google_ads"))).feed(contact(granted=("ads",)), withdrawal)
    assert run.cancels() == [
        Cancel(why="consent_withdrawn", at=T0 + 9, contact_key="cust-1", channel=channel)
        for channel in ("ads", "google_ads", "meta_ads")
    ]


def test_a_shops_own_channel_may_require_a_shared_consent() -> None:
    config = audiences(
        FlowStep(delay=0.0, channel="tiktok"), channels={"tiktok": ChannelPolicy(address="email", consent="ads")}
    )
    withdrawal = ContactChanged(contact_key="cust-1", at=T0 + 9, withdrawn=("ads",))
    run = RouteRun(config).feed(contact(granted=("ads",)), scored(), withdrawal)
    assert [m.channel for m in run.messages()] == ["tiktok"]
    assert "tiktok" in {c.channel for c in run.cancels()}


def test_a_withdrawal_made_anonymously_cancels_the_audiences_on_login() -> None:
    anonymous = ContactChanged(contact_key="session:s1", at=T0 + 1, withdrawn=("ads",))
    login = ContactChanged(contact_key="cust-1", at=T0 + 9, customer_id="cust-1", merged_from="session:s1")
    run = RouteRun(audiences(FlowStep(delay=0.0, channel="meta_ads")))
    run.feed(contact(granted=("ads",)), anonymous)
    run.out.clear()
    run.feed(login)
    assert {c.channel for c in run.cancels()} == {"ads", "google_ads", "meta_ads"}


@pytest.mark.parametrize("bad", ["", "Ads!", "a" * 200])
def test_a_bad_consent_name_is_a_config_error_naming_the_key(bad: str, tmp_path: object) -> None:
    from pathlib import Path

    from recoverkit.config import load_config

    path = Path(str(tmp_path)) / "recoverkit.toml"
    path.write_text(f'[channels.tiktok]\naddress = "email"\nconsent = "{bad}"\n')
    with pytest.raises(ConfigError, match=r"channels.tiktok.consent"):
        load_config(path)
