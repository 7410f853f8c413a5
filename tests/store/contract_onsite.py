"""The contract of :class:`~recoverkit.store.OnsiteStore`: on-site offers waiting for their visitor."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from recoverkit.store._onsite import OnsiteOffer, OnsiteStore

from .contract_base import T0, StoreFixture

__all__ = ["OnsiteContract", "offer"]


def offer(key: str = "cart-1/flow/0", **overrides: Any) -> OnsiteOffer:
    """An offer for session s-1 (customer none) of cart-1 / contact session:s-1, started at T0, put at T0 + 60,
    valid a day, shown once."""
    fields: dict[str, Any] = {
        "token": "tok-" + key,
        "key": key,
        "cart_key": "cart-1",
        "contact_key": "session:s-1",
        "session_id": "s-1",
        "customer_id": None,
        "started_at": T0,
        "put_at": T0 + 60,
        "expires_at": T0 + 86_400,
        "shows": 1,
        "message": b'{"key": "cart-1/flow/0"}',
    }
    fields.update(overrides)
    return OnsiteOffer(**fields)


NOW = T0 + 600


class OnsiteContract(StoreFixture):
    def test_the_built_in_store_is_an_onsite_store(self, store: Any) -> None:
        assert isinstance(store, OnsiteStore)

    def test_an_offer_put_is_found_for_its_session(self, store: Any) -> None:
        assert store.put_onsite(offer()) is True
        assert store.onsite_for(session_id="s-1", customer_id=None, now=NOW) == [offer()]

    def test_an_offer_is_found_for_its_customer_from_any_session(self, store: Any) -> None:
        store.put_onsite(offer(customer_id="c-9", contact_key="customer:c-9"))
        assert [o.key for o in store.onsite_for(session_id="s-other", customer_id="c-9", now=NOW)] == ["cart-1/flow/0"]

    def test_another_visitor_finds_nothing(self, store: Any) -> None:
        store.put_onsite(offer(customer_id="c-9"))
        assert store.onsite_for(session_id="s-2", customer_id=None, now=NOW) == []
        assert store.onsite_for(session_id="s-2", customer_id="c-8", now=NOW) == []
        assert store.mark_onsite("tok-cart-1/flow/0", "shown", session_id="s-2", customer_id="c-8", now=NOW) is None
        # ... and the owner still has it, unshown.
        assert store.onsite_for(session_id="s-1", customer_id=None, now=NOW)[0].shown == 0

    def test_a_second_put_of_a_key_changes_nothing(self, store: Any) -> None:
        assert store.put_onsite(offer()) is True
        assert store.put_onsite(offer(token="tok-other", shows=5)) is False
        assert store.onsite_for(session_id="s-1", customer_id=None, now=NOW) == [offer()]

    def test_newest_first(self, store: Any) -> None:
        store.put_onsite(offer("a", put_at=T0 + 10))
        store.put_onsite(offer("b", put_at=T0 + 20))
        assert [o.key for o in store.onsite_for(session_id="s-1", customer_id=None, now=NOW)] == ["b", "a"]

    def test_an_expired_offer_is_not_found_nor_marked(self, store: Any) -> None:
        store.put_onsite(offer(expires_at=NOW))
        assert store.onsite_for(session_id="s-1", customer_id=None, now=NOW) == []
        assert store.mark_onsite("tok-cart-1/flow/0", "shown", session_id="s-1", customer_id=None, now=NOW) is None

    def test_a_purchase_of_the_cart_since_it_started_withdraws_the_offer(self, store: Any) -> None:
        store.put_onsite(offer())
        store.record_purchase(cart_key="cart-1", contact_key=None, at=T0 + 300)
        assert store.onsite_for(session_id="s-1", customer_id=None, now=NOW) == []
        assert store.mark_onsite("tok-cart-1/flow/0", "shown", session_id="s-1", customer_id=None, now=NOW) is None

    def test_a_purchase_by_the_contact_since_the_cart_started_withdraws_the_offer(self, store: Any) -> None:
        store.put_onsite(offer())
        store.record_purchase(cart_key="cart-other", contact_key="session:s-1", at=T0)
        assert store.onsite_for(session_id="s-1", customer_id=None, now=NOW) == []

    def test_a_purchase_before_the_cart_started_does_not(self, store: Any) -> None:
        store.put_onsite(offer())
        store.record_purchase(cart_key="cart-1", contact_key="session:s-1", at=T0 - 1)
        assert len(store.onsite_for(session_id="s-1", customer_id=None, now=NOW)) == 1

    def test_shown_uses_a_show_and_answers_the_offer_as_it_was(self, store: Any) -> None:
        store.put_onsite(offer(shows=2))
        first = store.mark_onsite("tok-cart-1/flow/0", "shown", session_id="s-1", customer_id=None, now=NOW)
        assert first == offer(shows=2)
        second = store.mark_onsite("tok-cart-1/flow/0", "shown", session_id="s-1", customer_id=None, now=NOW)
        assert second is not None and second.shown == 1
        assert store.onsite_for(session_id="s-1", customer_id=None, now=NOW) == []
        assert store.mark_onsite("tok-cart-1/flow/0", "shown", session_id="s-1", customer_id=None, now=NOW) is None

    def test_a_click_after_the_last_show_is_kept_once(self, store: Any) -> None:
        store.put_onsite(offer())
        assert store.mark_onsite("tok-cart-1/flow/0", "shown", session_id="s-1", customer_id=None, now=NOW)
        clicked = store.mark_onsite("tok-cart-1/flow/0", "clicked", session_id="s-1", customer_id=None, now=NOW)
        assert clicked is not None and clicked.shown == 1 and clicked.state == "waiting"
        assert store.mark_onsite("tok-cart-1/flow/0", "clicked", session_id="s-1", customer_id=None, now=NOW) is None
        assert store.mark_onsite("tok-cart-1/flow/0", "dismissed", session_id="s-1", customer_id=None, now=NOW) is None

    def test_a_dismissed_offer_is_never_shown_again(self, store: Any) -> None:
        store.put_onsite(offer(shows=3))
        store.mark_onsite("tok-cart-1/flow/0", "shown", session_id="s-1", customer_id=None, now=NOW)
        assert store.mark_onsite("tok-cart-1/flow/0", "dismissed", session_id="s-1", customer_id=None, now=NOW)
        assert store.onsite_for(session_id="s-1", customer_id=None, now=NOW) == []

    def test_a_click_or_dismissal_of_an_offer_never_shown_is_refused(self, store: Any) -> None:
        store.put_onsite(offer())
        assert store.mark_onsite("tok-cart-1/flow/0", "clicked", session_id="s-1", customer_id=None, now=NOW) is None
        assert store.mark_onsite("tok-cart-1/flow/0", "dismissed", session_id="s-1", customer_id=None, now=NOW) is None

    def test_an_unknown_token_is_none(self, store: Any) -> None:
        assert store.mark_onsite("nope", "shown", session_id="s-1", customer_id=None, now=NOW) is None

    def test_changes_list_each_visitor_once_per_put_in_order(self, store: Any) -> None:
        assert store.onsite_changes(0, now=NOW).visitors == []
        store.put_onsite(offer("a", customer_id="c-1"))
        first = store.onsite_changes(0, now=NOW)
        assert first.visitors == [("s:s-1", T0 + 86_400), ("c:c-1", T0 + 86_400)]
        store.put_onsite(offer("b", session_id="s-2", contact_key="session:s-2", expires_at=T0 + 900))
        second = store.onsite_changes(first.position, now=NOW)
        assert second.position > first.position
        assert second.visitors == [("s:s-2", T0 + 900)]
        assert store.onsite_changes(second.position, now=NOW) == msgspec.structs.replace(second, visitors=[])

    def test_changes_leave_out_what_expired(self, store: Any) -> None:
        store.put_onsite(offer(expires_at=NOW))
        assert store.onsite_changes(0, now=NOW).visitors == []

    def test_a_put_deletes_what_expired_before_it(self, store: Any) -> None:
        store.put_onsite(offer("old", token="t-old", expires_at=T0 + 100))
        store.put_onsite(offer("new", token="t-new", put_at=T0 + 200))
        assert store.mark_onsite("t-old", "shown", session_id="s-1", customer_id=None, now=T0 + 50) is None
        assert [key for key, _ in store.onsite_changes(0, now=T0).visitors] == ["s:s-1"]

    def test_forget_deletes_the_contacts_offers(self, store: Any) -> None:
        store.put_onsite(offer("a"))
        store.put_onsite(offer("b", token="t-b", session_id="s-2", contact_key="session:s-2"))
        store.forget("session:s-1", at=NOW)
        assert store.onsite_for(session_id="s-1", customer_id=None, now=NOW) == []
        assert len(store.onsite_for(session_id="s-2", customer_id=None, now=NOW)) == 1
        assert store.forget_onsite("session:s-2") == 1

    @pytest.mark.parametrize(
        ("change", "what"),
        [
            ({"token": ""}, "`token` must be non-empty"),
            ({"session_id": None}, "needs a `session_id` or a `customer_id`"),
            ({"shows": 0}, "`shows` must be at least 1, got 0"),
            ({"expires_at": float("nan")}, "`expires_at` must be epoch seconds"),
        ],
    )
    def test_a_bad_offer_is_refused_naming_the_field(self, store: Any, change: dict[str, Any], what: str) -> None:
        with pytest.raises(ValueError, match=what):
            store.put_onsite(offer(**change))

    def test_a_bad_mark_or_visitor_is_refused(self, store: Any) -> None:
        with pytest.raises(ValueError, match="`mark` must be one of clicked, dismissed, shown, got 'seen'"):
            store.mark_onsite("t", "seen", session_id="s-1", customer_id=None, now=NOW)
        with pytest.raises(ValueError, match="onsite_for: expected a `session_id` or a `customer_id`"):
            store.onsite_for(session_id=None, customer_id="", now=NOW)
