"""The console's framework-neutral core: permissions, masking, CSRF, and each page and action through
:func:`recoverkit.console.handle`, on a real engine whose webhook provider is a real HTTP server."""

from __future__ import annotations

import html
import json
import threading
import time
from typing import Any

import pytest

from recoverkit.console import (
    EXPORT,
    FORGET,
    PERMISSIONS,
    RESEND,
    RESOLVE,
    VIEW,
    VIEW_PERSONAL_DATA,
    ConsoleRequest,
    ConsoleResponse,
    CsrfTokens,
    Operator,
    handle,
    live_figures,
    mask_email,
    mask_fields,
    mask_phone,
    mask_text,
)
from recoverkit.store import PIPELINE_LEASE

from .shop import ADA, ADA_PHONE, BOB, Shop, operator

KEY = "cart-1/cart-recovery/0"


def ask(shop: Shop, who: Operator | None, method: str, path: str, *, csrf_ok: bool = True, **fields: str) -> Any:
    request = ConsoleRequest(method=method, path=path, query=fields if method == "GET" else {},
                             form=fields if method == "POST" else {})  # fmt: skip
    return handle(request, operator=who, access=lambda: shop.access, root="/ops/", csrf_field="csrf_token",
                  csrf_token="t0k3n", csrf_ok=csrf_ok)  # fmt: skip


def text(response: ConsoleResponse) -> str:
    return html.unescape(response.body.decode())


def audit(shop: Shop) -> list[tuple[str, str, str, str, str]]:
    return [(r.actor, r.action, r.subject_kind, r.subject, r.outcome) for r in shop.store.audit_records()
            if r.action != "config.changed"]  # fmt: skip


# -- permissions, masking, CSRF ------------------------------------------------------------------------------


def test_every_permission_is_named_and_described() -> None:
    assert set(PERMISSIONS) == {VIEW, VIEW_PERSONAL_DATA, RESEND, RESOLVE, FORGET, EXPORT}
    assert all(name.startswith("recoverkit.") for name in PERMISSIONS)


def test_an_operator_needs_a_name_and_holds_only_what_it_was_granted() -> None:
    with pytest.raises(ValueError, match="expected a non-empty `name`"):
        Operator(name=" ")
    who = operator("7", VIEW)
    assert who.can(VIEW) and not who.can(RESEND) and who.actor == "console:7"


def test_masking_keeps_enough_to_tell_customers_apart_and_not_enough_to_write_to_them() -> None:
    assert mask_email(ADA) == "a***@e***.com"
    assert mask_phone(ADA_PHONE) == "+** ** **** **21"
    assert (
        mask_text(f"550 mailbox {ADA} full; call {ADA_PHONE}")
        == "550 mailbox a***@e***.com full; call +** ** **** **21"
    )
    assert mask_text("order 1234567 at 12:30") == "order 1234567 at 12:30"  # not a phone number
    masked = mask_fields({"contact": {"email": ADA, "phone": ADA_PHONE, "name": "Ada"}, "customer_id": "c1",
                          "rows": [{"note": f"to {BOB}"}]})  # fmt: skip
    assert masked == {"contact": {"email": "a***@e***.com", "phone": "+** ** **** **21", "name": "A***"},
                      "customer_id": "c1", "rows": [{"note": "to b***@e***.org"}]}  # fmt: skip


def test_a_csrf_token_is_good_for_its_session_and_operator_only() -> None:
    tokens = CsrfTokens("a-shop-secret-of-some-length")
    session = tokens.new_session()
    token = tokens.token(session, "42")
    assert tokens.check(session, "42", token)
    assert not tokens.check(session, "43", token)
    assert not tokens.check(tokens.new_session(), "42", token)
    assert not tokens.check(session, "42", None) and not tokens.check(None, "42", token)
    assert not CsrfTokens("another-shop-secret-of-length").check(session, "42", token)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        CsrfTokens("short")


# -- refusals ------------------------------------------------------------------------------------------------


def test_nobody_signed_in_and_an_operator_without_view_get_403(shop: Shop) -> None:
    assert ask(shop, None, "GET", "").status == 403
    assert ask(shop, operator("1", RESEND), "GET", "dead-letters").status == 403
    response = ask(shop, operator("1", RESEND), "POST", "dead-letters/resend", key=KEY)
    assert response.status == 403 and "recoverkit.view" in text(response)


def test_unknown_pages_and_wrong_methods(shop: Shop) -> None:
    assert ask(shop, operator("1", VIEW), "GET", "nope").status == 404
    response = ask(shop, operator("1", VIEW, RESEND), "GET", "dead-letters/resend")
    assert response.status == 405 and ("Allow", "POST") in response.headers


def test_a_post_without_a_valid_csrf_token_is_refused_and_does_nothing(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    response = ask(shop, operator("1", VIEW, RESEND), "POST", "dead-letters/resend", key=KEY, csrf_ok=False)
    assert response.status == 403 and "CSRF token" in text(response)
    assert [r.key for r in shop.store.dead_letters()] == [KEY]
    assert shop.receiver.attempts == 1 and audit(shop) == []


def test_every_page_is_never_cached_and_loads_nothing_else(shop: Shop) -> None:
    headers = dict(ask(shop, operator("1", VIEW), "GET", "").headers)
    assert headers["Cache-Control"] == "no-store" and headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in headers["Content-Security-Policy"]


# -- pages ---------------------------------------------------------------------------------------------------


def test_the_overview_shows_the_live_figures(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    figures = live_figures(shop.access)
    assert figures.owner and figures.dead == 1 and figures.ledger == {"dead": 1} and figures.unknown == 0
    assert figures.abandoned_today == 1 and figures.open_carts is not None
    page = text(ask(shop, operator("1", VIEW), "GET", ""))
    assert '<b id="dead">1</b>' in page and "abandoned today" in page and "Uplift against the holdout" in page


def test_dead_letters_mask_the_recipient_unless_the_operator_may_see_it(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    masked = text(ask(shop, operator("1", VIEW), "GET", "dead-letters"))
    assert KEY in masked and "a***@e***.com" in masked and ADA not in masked and "lovelace" not in masked
    assert "Resend</button>" not in masked  # no button for an operator without the permission
    shown = text(ask(shop, operator("2", VIEW, VIEW_PERSONAL_DATA, RESEND), "GET", "dead-letters"))
    assert ADA in shown and "Resend</button>" in shown and 'value="t0k3n"' in shown


def test_carts_are_found_by_key_and_by_address_only_with_the_personal_data_permission(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.abandon("c2", BOB, cart="cart-2")
    viewer, personal = operator("1", VIEW), operator("2", VIEW, VIEW_PERSONAL_DATA)
    page = text(ask(shop, viewer, "GET", "carts", q="cart-2"))
    assert "cart-2" in page and "cart-1" not in page and BOB not in page and "b***@e***.org" in page
    assert "cart-1" not in text(ask(shop, viewer, "GET", "carts", q="lovelace"))  # no finding by address
    found = text(ask(shop, personal, "GET", "carts", q="lovelace"))
    assert "cart-1" in found and ADA in found and "cart-2" not in found
    listed = text(ask(shop, viewer, "GET", "carts"))
    assert listed.index("cart-2") < listed.index("cart-1")  # newest first


# -- actions -------------------------------------------------------------------------------------------------


def test_a_resend_goes_out_exactly_once_and_is_audited(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    who = operator("42", VIEW, RESEND)
    first = ask(shop, who, "POST", "dead-letters/resend", key=KEY)
    assert first.status == 200 and f"{KEY}: re-sent" in text(first)
    second = ask(shop, who, "POST", "dead-letters/resend", key=KEY)
    assert second.status == 409 and "nothing was sent" in text(second)
    assert shop.receiver.received == [KEY]
    assert shop.store.dead_letters() == [] and shop.background.statistics().dead_letters == 0
    assert audit(shop) == [
        ("console:42", "resend", "message", KEY, "ok"),
        ("console:42", "resend", "message", KEY, "failed"),
    ]


def test_resends_racing_from_two_threads_send_once(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    who = operator("42", VIEW, RESEND)
    start = threading.Barrier(4)
    statuses: list[int] = []

    def click() -> None:
        start.wait()
        statuses.append(ask(shop, who, "POST", "dead-letters/resend", key=KEY).status)

    threads = [threading.Thread(target=click) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409, 409, 409]
    assert shop.receiver.received == [KEY]


def test_a_resend_refused_by_the_provider_keeps_the_letter(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    response = ask(shop, operator("42", VIEW, RESEND), "POST", "dead-letters/resend", key=KEY)
    assert response.status == 409 and "still failing (PermanentDeliveryError)" in text(response)
    assert [r.key for r in shop.store.dead_letters()] == [KEY]
    [record] = [r for r in shop.store.audit_records() if r.action == "resend"]
    assert (record.outcome, record.detail) == ("failed", "PermanentDeliveryError")


def test_an_operator_without_the_permission_is_refused_and_the_refusal_audited(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    response = ask(shop, operator("9", VIEW), "POST", "dead-letters/resend", key=KEY)
    assert response.status == 403 and "recoverkit.resend" in text(response)
    assert shop.receiver.received == [] and [r.key for r in shop.store.dead_letters()] == [KEY]
    [record] = shop.store.audit_records(actions=["resend"])
    assert (record.actor, record.outcome, record.detail) == (
        "console:9",
        "refused",
        "missing permission recoverkit.resend",
    )


def test_a_suppressed_contact_is_not_written_to_again(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    shop.store.suppress("c1", reason="unsubscribed", at=shop.clock.now())
    response = ask(shop, operator("42", VIEW, RESEND), "POST", "dead-letters/resend", key=KEY)
    assert response.status == 409 and "suppressed" in text(response) and shop.receiver.received == []


def test_an_unknown_outcome_is_resolved_and_audited(shop: Shop) -> None:
    now = shop.clock.now()
    store = shop.store
    holder = store.lease_holder(PIPELINE_LEASE, now=time.time())
    store.claim("cart-9/cart-recovery/0", cart_key="cart-9", contact_key="c9", channel="email", started_at=now,
                owner=holder, now=time.time())  # fmt: skip
    store.mark_unknown(holder)
    who = operator("42", VIEW, RESOLVE)
    page = text(ask(shop, who, "GET", "unknown"))
    assert "cart-9/cart-recovery/0" in page and "It was sent</button>" in page
    done = ask(shop, who, "POST", "unknown/resolve", key="cart-9/cart-recovery/0", **{"as": "sent"})
    assert done.status == 200 and "recorded as sent" in text(done)
    assert [e.state for e in store.ledger()] == ["sent"]
    again = ask(shop, who, "POST", "unknown/resolve", key="cart-9/cart-recovery/0", **{"as": "retry"})
    assert again.status == 409 and "not resolved" in text(again)
    bad = ask(shop, who, "POST", "unknown/resolve", key="cart-9/cart-recovery/0", **{"as": "maybe"})
    assert bad.status == 400 and "expected `as` to be 'sent' or 'retry'" in text(bad)
    assert [(r.action, r.subject, r.outcome, r.detail[:7]) for r in store.audit_records(actions=["resolve"])] == [
        ("resolve", "cart-9/cart-recovery/0", "ok", "as sent"),
        ("resolve", "cart-9/cart-recovery/0", "failed", "as retr"),
    ]


def test_forget_removes_what_it_says_and_is_audited_under_the_customers_hash(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.abandon("c2", BOB, cart="cart-2")
    response = ask(shop, operator("42", VIEW, FORGET), "POST", "customer/forget", customer="c1")
    page = text(response)
    assert response.status == 200 and "the customer was forgotten" in page and "dead letters: 1" in page
    assert [r.key for r in shop.store.dead_letters()] == ["cart-2/cart-recovery/0"]
    exported = shop.background.export("c1")
    assert exported["contact"] is None and exported["carts"] == [] and exported["store"][0]["suppressed"] is True
    assert ADA not in json.dumps(exported)
    [record] = shop.store.audit_records(actions=["forget"])
    assert (record.actor, record.subject, record.outcome) == ("console:42", shop.store.hash_contact("c1"), "ok")


def test_export_masks_personal_data_unless_the_operator_may_see_it(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1", phone=ADA_PHONE)
    masked = ask(shop, operator("1", VIEW, EXPORT), "POST", "customer/export", customer="c1")
    assert masked.status == 200 and ("Content-Type", "application/json") in masked.headers
    assert (
        ADA not in text(masked) and "a***@e***.com" in text(masked) and json.loads(masked.body)["customer_id"] == "c1"
    )
    shown = ask(shop, operator("2", VIEW, EXPORT, VIEW_PERSONAL_DATA), "POST", "customer/export", customer="c1")
    assert ADA in text(shown)
    assert [(r.outcome, r.detail) for r in shop.store.audit_records(actions=["export"])] == [
        ("ok", "personal data masked"),
        ("ok", ""),
    ]


def test_an_empty_customer_id_is_a_clear_error(shop: Shop) -> None:
    response = ask(shop, operator("1", VIEW, FORGET), "POST", "customer/forget", customer="  ")
    assert response.status == 400 and "expected a non-empty identifier" in text(response)


def test_a_store_without_an_audit_log_refuses_every_action_before_carrying_it_out() -> None:
    from types import SimpleNamespace

    from recoverkit import FakeClock, MemoryChannel
    from recoverkit.console import EngineAccess, resend, resolve

    asked: list[str] = []

    class NoAudit:  # a store that cannot record: nothing may be done through it
        def __getattr__(self, name: str) -> Any:
            asked.append(name)
            raise AttributeError(name)

    channel = MemoryChannel()
    engine = SimpleNamespace(store=NoAudit(), clock=FakeClock(), channels={"email": channel})
    access = EngineAccess(engine, run=lambda fn, *args: pytest.fail("nothing may run on the engine"))  # type: ignore[arg-type]
    who = operator("1", VIEW, RESEND, RESOLVE)
    with pytest.raises(TypeError, match="needs a store with an audit log"):
        resend(access, who, KEY)
    with pytest.raises(TypeError, match="needs a store with an audit log"):
        resolve(access, who, KEY, "sent")
    assert channel.attempts == []
    assert set(asked) <= {"append_audit", "audit_records", "audit_anchor", "audit_head", "audit_problems", "trim_audit"}


def test_the_overview_shows_recovered_revenue_and_the_uplift_against_the_holdout(tmp_path: Any) -> None:
    from recoverkit import Config

    shop = Shop(tmp_path, config=Config(abandon_after=600, holdout=0.5))
    try:
        shop.receiver.status = 200  # the messages go out
        for n in range(8):
            shop.abandon(f"c{n}", f"u{n}@example.com", cart=f"cart-{n}")
        treated = {a.cart_key for a in shop.store.assignments() if a.group == "treatment"}
        bought = sorted(treated)[0]
        shop.buy(f"c{bought.removeprefix('cart-')}", cart=bought, value="12.50")
        figures = live_figures(shop.access)
        assert figures.uplift is not None
        assert figures.uplift.treated + figures.uplift.holdout == 8 and figures.uplift.verdict == "too_small"
        assert [(r.currency, r.recovered) for r in figures.revenue] == [("EUR", 1250)]
        assert figures.sent_today == len(treated) == figures.ledger["sent"]
        page = text(ask(shop, operator("1", VIEW), "GET", ""))
        assert "12.50 EUR" in page and 'id="uplift"' in page and "95% interval" in page and "too_small" in page
    finally:
        shop.close()


def test_without_jinja2_mounting_the_console_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from recoverkit.console import _pages, require_templates
    from recoverkit.contrib.flask.console import console_blueprint
    from recoverkit.errors import MissingExtraError

    _pages._environment.cache_clear()
    monkeypatch.setitem(sys.modules, "jinja2", None)  # as if it were not installed
    try:
        with pytest.raises(MissingExtraError, match=r"recoverkit\[templates\]"):
            require_templates()
        with pytest.raises(MissingExtraError, match="operator console"):
            console_blueprint(lambda request: None)
    finally:
        _pages._environment.cache_clear()
