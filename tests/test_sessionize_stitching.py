"""The sessionize stage's indexes alone: customers, cart ids, buyers, erasure, with plain calls on records."""

from __future__ import annotations

from collections import Counter
from typing import Any

from recoverkit.items import ContactChanged, Forget, Resumed
from recoverkit.sessionize._cart import Line, Session, pack_lines
from recoverkit.sessionize._stitching import Stitching


def session(session_id: str, *, customer: str | None = None, cart_id: str | None = None, cart: bool = False) -> Session:
    lines = pack_lines([Line(item_id="A", price=1000, quantity=1, name=None, category=None)]) if cart else None
    return Session(
        session_id=session_id, started_at=0, last_at=0, deadline=600, customer_id=customer, cart_id=cart_id,
        lines=lines,
    )  # fmt: skip


def stitching(*sessions: Session, **kwargs: Any) -> tuple[Stitching, Counter[str]]:
    counts: Counter[str] = Counter()
    return Stitching({s.session_id: s for s in sessions}, counts, max_buyers=100, **kwargs), counts


def test_an_anonymous_session_stitched_is_merged_into_the_customer() -> None:
    s = session("s1")
    index, counts = stitching(s)
    out: list[Any] = []
    index.stitch(s, "cust-1", 10, out)
    assert out == [ContactChanged(contact_key="cust-1", at=10, customer_id="cust-1", merged_from="session:s1")]
    assert (index.customers, s.customer_id, counts["stitched"]) == ({"cust-1": ("s1",)}, "cust-1", 1)


def test_a_session_switching_customers_leaves_the_first_and_merges_nothing() -> None:
    s = session("s1", customer="cust-1")
    index, _ = stitching(s, customers={"cust-1": ("s1",)})
    out: list[Any] = []
    index.stitch(s, "cust-2", 10, out)
    assert [c.merged_from for c in out] == [None]
    assert index.customers == {"cust-2": ("s1",)}


def test_a_cart_id_sent_from_another_session_moves_the_cart_there() -> None:
    laptop, phone = session("laptop", customer="cust-1", cart_id="cart-7", cart=True), session("phone")
    index, counts = stitching(laptop, phone, customers={"cust-1": ["laptop"]})
    out: list[Any] = []
    index.take_cart(phone, "cart-7", 60, out, back=True)
    assert index.carts == {"cart-7": "phone"}
    assert (laptop.lines, laptop.cart_id, phone.lines is not None) == (None, None, True)
    assert [type(x) for x in out] == [ContactChanged]  # the phone became the cart's customer's session
    assert (phone.customer_id, counts["carts_moved"], counts["resumed"]) == ("cust-1", 1, 0)


def test_an_abandoned_cart_taken_back_is_resumed_unless_by_a_purchase() -> None:
    for back, resumed in ((True, [Resumed(cart_key="cart-7", contact_key="session:laptop", at=60)]), (False, [])):
        laptop = session("laptop", cart_id="cart-7", cart=True)
        laptop.abandoned = True
        phone = session("phone")
        index, _ = stitching(laptop, phone)
        out: list[Any] = []
        index.take_cart(phone, "cart-7", 60, out, back=back)
        assert [x for x in out if type(x) is Resumed] == resumed


def test_a_link_of_a_cart_without_cart_id_finds_the_session_it_was_built_for() -> None:
    laptop, phone = session("laptop", cart=True), session("phone")
    index, _ = stitching(laptop, phone)
    index.take_cart(phone, "laptop", 60, [], back=True)
    assert (laptop.lines, phone.lines is not None, index.carts) == (None, True, {"laptop": "phone"})


def test_the_latest_of_two_sessions_holding_one_cart_id_in_a_checkpoint_holds_it() -> None:
    index, _ = stitching(session("old", cart_id="cart-7"), session("new", cart_id="cart-7"))
    assert index.carts == {"cart-7": "new"}


def test_an_evicted_session_leaves_every_index() -> None:
    s = session("s1", customer="cust-1", cart_id="cart-7")
    index, _ = stitching(s, customers={"cust-1": ("s1",)})
    index.drop(s)
    assert (index.customers, index.carts) == ({}, {})


def test_forget_erases_the_customers_sessions_and_names_their_keys() -> None:
    a, b = session("a", customer="cust-1", cart_id="cart-7"), session("b", customer="cust-1")
    other = session("c", customer="cust-2")
    # "b" is the customer's by its own customer_id, though the index (an older checkpoint's) misses it.
    index, counts = stitching(a, b, other, customers={"cust-1": ("a",), "cust-2": ("c",)}, buyers=[("cust-1", 5.0)])
    forget, out = Forget(customer_id="cust-1", at=100), list[Any]()
    index.forget(forget, out)
    assert out == [forget] and counts["forgotten"] == 1
    assert (forget.contact_keys, forget.cart_keys) == (["session:a", "session:b"], ["cart-7", "b"])
    assert (index.customers, index.carts, "cust-1" in index.buyers) == ({"cust-2": ("c",)}, {}, False)
    assert index.carts_of("cust-1") == [] and len(index.carts_of("cust-2")) == 1


def test_a_cart_is_returning_once_its_customer_bought() -> None:
    s = session("s1", customer="cust-1", cart=True)
    index, _ = stitching(s)
    assert index.snapshot(s).returning is False
    index.bought("cust-1", 10)
    assert index.snapshot(s).returning is True
