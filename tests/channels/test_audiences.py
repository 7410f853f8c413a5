"""The ad audience adapters against a local server that plays Meta's Graph API and the Google Ads API."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from recoverkit.channels import AudienceMembers, GoogleAdsAudience, MetaAudience, Withdrawal
from recoverkit.channels.audiences import MemoryAudience
from recoverkit.channels._hashing import sha256_hex
from recoverkit.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError

from .contract_withdrawing import WithdrawingContract, gone, message_for
from .http_server import Reply
from .platform_server import DEVELOPER_TOKEN, TOKEN, Platform, google_error, graph_error, platform

pytestmark = pytest.mark.anyio

AUDIENCE = "23850000000000001"
CUSTOMER = "1234567890"
LIST = "9876543"
USER_LIST = f"customers/{CUSTOMER}/userLists/{LIST}"


@pytest.fixture
def far() -> Iterator[Platform]:
    with platform() as server:
        yield server


def meta(far: Platform, **options: Any) -> MetaAudience:
    options.setdefault("members", ":memory:")
    options.setdefault("linger", 0.05)
    return MetaAudience(AUDIENCE, access_token=TOKEN, base_url=f"{far.base_url}/graph/v21.0", **options)


def google(far: Platform, **options: Any) -> GoogleAdsAudience:
    options.setdefault("members", ":memory:")
    options.setdefault("linger", 0.05)
    options.setdefault("access_token", TOKEN)
    return GoogleAdsAudience(
        "123-456-7890", LIST, developer_token=DEVELOPER_TOKEN, base_url=f"{far.base_url}/google/v19", **options
    )


class TestMetaAudienceContract(WithdrawingContract):
    @pytest.fixture
    async def channel(self, far: Platform) -> AsyncIterator[MetaAudience]:
        self.far = far
        channel = meta(far)
        yield channel
        await channel.aclose()

    def on_far_side(self, channel: Any) -> int:
        return len(self.far.meta.get(AUDIENCE, ()))

    def requests(self, channel: Any) -> int:
        return len(self.far.requests)

    def fail_next_transient(self, channel: Any) -> None:
        self.far.fail_next.append(graph_error("Service temporarily unavailable", 2, 503))


class TestGoogleAdsAudienceContract(WithdrawingContract):
    requests_per_batch = 3

    @pytest.fixture
    async def channel(self, far: Platform) -> AsyncIterator[GoogleAdsAudience]:
        self.far = far
        channel = google(far)
        yield channel
        await channel.aclose()

    def on_far_side(self, channel: Any) -> int:
        return len(self.far.google.get(USER_LIST, ()))

    def requests(self, channel: Any) -> int:
        return len(self.far.requests)

    def fail_next_transient(self, channel: Any) -> None:
        self.far.fail_next.append(google_error(503, "UNAVAILABLE", "The service is currently unavailable."))


class TestMemoryAudienceContract(WithdrawingContract):
    """The test double keeps the same promises (requests are its uploads)."""

    @pytest.fixture
    async def channel(self) -> AsyncIterator[MemoryAudience]:
        channel = MemoryAudience(linger=0.01)
        yield channel
        await channel.aclose()

    def on_far_side(self, channel: Any) -> int:
        return len(channel.audience)

    def requests(self, channel: Any) -> int:
        return int(channel.requests)

    def fail_next_transient(self, channel: Any) -> None:
        channel.fail_next()


# -- Meta: what goes over the wire ---------------------------------------------------------------------------------


async def test_meta_sends_the_documented_payload_with_hashes_normalised_as_meta_says(far: Platform) -> None:
    channel = meta(far)
    await channel.send(message_for(1, email=" Jane.Doe@GMail.com", phone="+49 170 1234567"))
    await channel.aclose()
    (request,) = far.requests
    assert (request.method, request.path) == ("POST", f"/graph/v21.0/{AUDIENCE}/users")
    assert request.headers["authorization"] == f"Bearer {TOKEN}" and TOKEN not in request.path
    # Meta: no Gmail rule, phone as digits without '+'.
    expected = [[sha256_hex("jane.doe@gmail.com"), sha256_hex("491701234567")]]
    assert json.loads(request.body) == {"payload": {"schema": ["EMAIL", "PHONE"], "data": expected}}


async def test_meta_removal_is_a_delete_with_the_same_hashes(far: Platform) -> None:
    channel = meta(far)
    await channel.send(message_for(1, phone="+49 170 1234567"))
    await channel.withdraw(gone(1))
    await channel.aclose()
    added, removed = far.requests
    assert removed.method == "DELETE" and json.loads(removed.body) == json.loads(added.body)
    assert far.refused == []


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80003])
async def test_meta_rate_limit_codes_are_transient_and_quote_retry_after(far: Platform, code: int) -> None:
    channel = meta(far)
    reply = graph_error("(#%d) Application request limit reached" % code, code, 400)
    far.fail_next.append(Reply(reply.status, reply.body, {**reply.headers, "Retry-After": "7"}))
    with pytest.raises(TransientDeliveryError, match="rate limited") as caught:
        await channel.send(message_for(1))
    await channel.aclose()
    assert caught.value.retry_after == 7.0
    assert f"code {code}" in str(caught.value) and "AbC123" in str(caught.value)


async def test_meta_http_429_without_json_is_transient(far: Platform) -> None:
    channel = meta(far)
    far.fail_next.append(Reply(429, b"slow down", {"Retry-After": "3"}))
    with pytest.raises(TransientDeliveryError) as caught:
        await channel.send(message_for(1))
    await channel.aclose()
    assert caught.value.retry_after == 3.0


async def test_meta_bad_token_is_permanent_and_never_shows_the_token(far: Platform) -> None:
    channel = MetaAudience(AUDIENCE, access_token="wrong-t0ken-value", members=":memory:", linger=0,
                           base_url=f"{far.base_url}/graph/v21.0")
    far.fail_next.append(graph_error("Invalid OAuth access token - wrong-t0ken-value", 190, 401))
    with pytest.raises(PermanentDeliveryError, match="code 190") as caught:
        await channel.send(message_for(1))
    await channel.aclose()
    assert "wrong-t0ken-value" not in str(caught.value)
    assert "shopper" not in str(caught.value).lower()


async def test_all_members_of_a_batch_share_its_failure_each_as_its_own_error(far: Platform) -> None:
    channel = meta(far, linger=0.2)
    far.fail_next.append(graph_error("Service temporarily unavailable", 2, 503))
    errors: list[BaseException] = []

    async def send(n: int) -> None:
        try:
            await channel.send(message_for(n))
        except TransientDeliveryError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(send, n)
    assert len(errors) == 3 and len({id(e) for e in errors}) == 3
    assert len(far.requests) == 1 and channel.statistics() == {"members": 0, "removing": 0}
    await channel.aclose()


async def test_a_batch_never_exceeds_batch_size(far: Platform) -> None:
    channel = meta(far, batch_size=4, linger=0.5)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(channel.send, message_for(n))
    await channel.aclose()
    sizes = [len(json.loads(r.body)["payload"]["data"]) for r in far.requests]
    assert sorted(sizes) == [2, 4, 4] and len(far.meta[AUDIENCE]) == 10


# -- Google: what goes over the wire -------------------------------------------------------------------------------


async def test_google_runs_one_job_per_batch_with_hashes_normalised_as_google_says(far: Platform) -> None:
    channel = google(far, login_customer_id="111-222-3333")
    await channel.send(message_for(1, email=" J.Doe@GMail.com", phone="+49 (170) 123-4567"))
    await channel.aclose()
    create, add, run = far.requests
    assert create.path == f"/google/v19/customers/{CUSTOMER}/offlineUserDataJobs:create"
    assert json.loads(create.body)["job"]["customerMatchUserListMetadata"]["userList"] == USER_LIST
    assert add.path.endswith(":addOperations") and run.path.endswith(":run")
    assert {r.headers["login-customer-id"] for r in far.requests} == {"1112223333"}
    assert {r.headers["developer-token"] for r in far.requests} == {DEVELOPER_TOKEN}
    # Google: Gmail dots removed, phone in E.164 with '+'.
    operations = json.loads(add.body)["operations"]
    assert operations == [{"create": {"userIdentifiers": [
        {"hashedEmail": sha256_hex("jdoe@gmail.com")}, {"hashedPhoneNumber": sha256_hex("+491701234567")},
    ]}}]  # fmt: skip
    assert far.refused == []


async def test_google_removal_is_a_job_of_remove_operations(far: Platform) -> None:
    channel = google(far)
    await channel.send(message_for(1))
    await channel.withdraw(gone(1))
    await channel.aclose()
    add_job = json.loads(far.requests[1].body)["operations"][0]
    remove_job = json.loads(far.requests[4].body)["operations"][0]
    assert remove_job == {"remove": add_job["create"]}
    assert far.google[USER_LIST] == set()


async def test_google_quota_exhaustion_is_transient_after_its_retry_delay(far: Platform) -> None:
    channel = google(far)
    far.fail_next.append(google_error(429, "RESOURCE_EXHAUSTED", "Too many requests.",
                                      {"quotaError": "RESOURCE_EXHAUSTED"}, retry_delay="30s"))
    with pytest.raises(TransientDeliveryError, match="RESOURCE_EXHAUSTED") as caught:
        await channel.send(message_for(1))
    await channel.aclose()
    assert caught.value.retry_after == 30.0


async def test_google_concurrent_modification_is_transient(far: Platform) -> None:
    channel = google(far)
    far.fail_next.append(google_error(409, "ABORTED", "Multiple requests were attempting to modify the same resource.",
                                      {"databaseError": "CONCURRENT_MODIFICATION"}))
    with pytest.raises(TransientDeliveryError, match="CONCURRENT_MODIFICATION"):
        await channel.send(message_for(1))
    await channel.aclose()


async def test_google_invalid_argument_is_permanent_and_hides_both_tokens(far: Platform) -> None:
    channel = google(far)
    far.fail_next.append(google_error(400, "INVALID_ARGUMENT", f"bad request from {DEVELOPER_TOKEN} / {TOKEN}",
                                      {"userListError": "INVALID_USER_LIST"}))
    with pytest.raises(PermanentDeliveryError, match="INVALID_ARGUMENT") as caught:
        await channel.send(message_for(1))
    await channel.aclose()
    assert DEVELOPER_TOKEN not in str(caught.value) and TOKEN not in str(caught.value)


async def test_google_access_token_function_is_asked_before_every_request(far: Platform) -> None:
    asked = 0

    async def token() -> str:
        nonlocal asked
        asked += 1
        return TOKEN

    channel = google(far, access_token=token)
    await channel.send(message_for(1))
    await channel.aclose()
    assert asked == 3 and far.refused == []


# -- construction and the membership file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: MetaAudience("my-audience", access_token=TOKEN, members=":memory:"), "numeric id"),
        (lambda: MetaAudience(AUDIENCE, access_token="", members=":memory:"), "access_token"),
        (lambda: MetaAudience(AUDIENCE, access_token=TOKEN, members=":memory:", batch_size=10_001), "batch_size"),
        (lambda: GoogleAdsAudience("12345", LIST, developer_token="d", access_token=TOKEN, members=":memory:"),
         "ten digits"),
        (lambda: GoogleAdsAudience(CUSTOMER, LIST, developer_token="d", access_token=TOKEN, members=":memory:",
                                   base_url="ftp://x"), "base_url"),
        (lambda: MetaAudience(AUDIENCE, access_token=TOKEN, members=":memory:", linger=-1), "linger"),
    ],
)
def test_bad_options_are_config_errors_naming_the_option(build: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as caught:
        build()
    assert TOKEN not in str(caught.value)


async def test_the_membership_file_is_private_and_survives_a_restart(far: Platform, tmp_path: Path) -> None:
    path = tmp_path / "audience-members.sqlite"
    first = meta(far, members=path)
    await first.send(message_for(1))
    await first.aclose()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert b"shopper" not in path.read_bytes().lower()  # hashes only, never the address
    second = meta(far, members=str(path))  # a new process: it still knows whom to remove
    await second.withdraw(gone(1))
    await second.aclose()
    assert far.meta[AUDIENCE] == set()


async def test_after_aclose_send_and_withdraw_fail_permanently(far: Platform) -> None:
    channel = meta(far)
    await channel.aclose()
    with pytest.raises(PermanentDeliveryError, match="closed"):
        await channel.send(message_for(1))
    with pytest.raises(PermanentDeliveryError, match="closed"):
        await channel.withdraw(gone(1))


async def test_one_membership_file_serves_two_audiences(far: Platform) -> None:
    members = AudienceMembers(":memory:")
    one, two = meta(far, members=members), google(far, members=members)
    await one.send(message_for(1))
    await two.send(message_for(1))
    await one.withdraw(gone(1))
    assert members.count(one.membership_key) == (0, 0) and members.count(two.membership_key) == (1, 0)
    await one.aclose()
    await two.aclose()
    members.close()


# -- how long a member stays ---------------------------------------------------------------------------------------


def due(n: int, at: float) -> Any:
    import msgspec

    return msgspec.structs.replace(message_for(n), due_at=at)


async def test_a_member_past_max_age_is_removed_with_the_next_withdrawal() -> None:
    channel = MemoryAudience(max_age=3600)
    await channel.send(due(1, 1_700_000_000.0))
    await channel.send(due(2, 1_700_008_000.0))
    await channel.withdraw(gone(9))  # at 1_700_010_000: someone never added; the first addition is past max_age
    assert len(channel.audience) == 1 and channel.statistics() == {"members": 1, "removing": 0}
    assert channel.members.get(channel.membership_key, "cust_1") is None
    await channel.aclose()


async def test_max_age_none_keeps_members_until_withdrawn() -> None:
    channel = MemoryAudience(max_age=None)
    await channel.send(due(1, 1_600_000_000.0))
    await channel.withdraw(gone(9))
    assert len(channel.audience) == 1
    await channel.aclose()


async def test_a_failed_sweep_is_logged_not_raised_and_waits_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    channel = MemoryAudience(max_age=3600)
    await channel.send(due(1, 1_700_000_000.0))
    channel.fail_next(1)
    withdrawal = gone(9)  # at 1_700_010_000: past the first member's max_age
    await channel.withdraw(withdrawal)
    assert channel.statistics() == {"members": 0, "removing": 1}
    assert "audience_removals_pending" in caplog.text and "Shopper" not in caplog.text
    assert await channel.sweep() == 0  # within the minute: not tried
    assert await channel.sweep(now=withdrawal.at + 30) == 0  # still within the minute
    await channel.withdraw(Withdrawal(why="purchase", contact_key="cust_8", at=withdrawal.at + 61))
    assert channel.statistics() == {"members": 0, "removing": 0} and channel.audience == set()
    await channel.aclose()


@pytest.mark.parametrize("bad", [0, -1, float("inf"), True, "30d"])
def test_a_bad_max_age_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="max_age"):
        MemoryAudience(max_age=bad)


async def test_sweep_with_the_time_removes_members_past_max_age_without_any_traffic() -> None:
    channel = MemoryAudience(max_age=3600)
    await channel.send(due(1, 1_700_000_000.0))
    assert await channel.sweep() == 0
    assert await channel.sweep(now=1_700_003_601.0) == 1
    assert channel.audience == set()
    await channel.aclose()
