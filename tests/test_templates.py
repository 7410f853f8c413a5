"""Templates: where names resolve, what the context holds, and what the sandbox and escaping guarantee."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from channels.contract import EMAIL, PHONE, make_message
from recoverkit.cart import CartLine
from recoverkit.channels import Message
from recoverkit.errors import ConfigError, RecoverkitError
from recoverkit.offers import Offer
from recoverkit.templates import Rendered, TemplateError, Templates, sample_message


def render(source: str, message: Message | None = None, *, kind: Any = "sms", **options: Any) -> str:
    """Render a one-file sms template with ``source`` as its text."""
    templates = Templates(sources={"t.sms.txt": source}, builtin=False, **options)
    return templates.render("t", message or make_message(), kind=kind).text


def with_lines(*lines: CartLine) -> Message:
    message = make_message()
    return msgspec.structs.replace(message, cart=msgspec.structs.replace(message.cart, lines=lines))


# -- the built-in templates --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["email", "sms", "push"])
def test_the_built_in_templates_exist_compile_and_render_for_every_kind(kind: Any) -> None:
    Templates().check(["cart-reminder", "cart-last-call"], kind=kind)


def test_the_built_in_email_has_subject_text_and_html() -> None:
    rendered = Templates().render("cart-reminder", sample_message(), unsubscribe_url="https://shop.example/u")
    assert rendered.subject == "Get 10% off on the items in your cart"
    assert rendered.text.startswith("Hello,\n\nYou left these in your cart:\n\n  1 x Enamel mug    19.99 EUR\n")
    assert rendered.html is not None and rendered.html.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in rendered.html
    assert "Stop these emails: https://shop.example/u" in rendered.text


def test_the_built_in_templates_work_without_offer_or_restore_link() -> None:
    message = msgspec.structs.replace(sample_message(), offer=None, restore_url=None)
    rendered = Templates().render("cart-reminder", message)
    assert rendered.subject == "You left something in your cart"
    assert "code" not in rendered.text and "http" not in rendered.text


def test_shop_variables_reach_the_built_in_templates() -> None:
    rendered = Templates(variables={"shop_name": "Acme"}).render("cart-reminder", sample_message("sms"), kind="sms")
    assert rendered.text.startswith("Acme: You left 3 items (35.79 EUR) in your cart.")


# -- the context ---------------------------------------------------------------------------------------------


def test_cart_lines_carry_formatted_unit_prices_and_totals() -> None:
    source = "{% for l in cart.lines %}{{ l.quantity }}x{{ l.name }}@{{ l.price }}={{ l.total }};{% endfor %}"
    assert render(source) == "1xMug@19.99 EUR=19.99 EUR;2xCoaster@7.90 EUR=15.80 EUR;"
    source = "{{ cart.value }}|{{ cart.value_minor }}|{{ cart.shipping }}|{{ cart.currency }}|{{ cart.quantity }}"
    assert render(source) == "35.79 EUR|3579|4.90 EUR|EUR|3"


def test_a_line_without_a_name_shows_its_item_id() -> None:
    message = with_lines(CartLine(item_id="sku-77", price=100, quantity=1))
    assert render("{{ cart.lines[0].name }}", message) == "sku-77"


def test_amounts_use_the_currency_minor_unit() -> None:
    message = make_message()
    cart = msgspec.structs.replace(message.cart, currency="JPY", value=1200, lines=())
    assert render("{{ cart.value }}", msgspec.structs.replace(message, cart=cart)) == "1200 JPY"


@pytest.mark.parametrize(
    ("offer", "text"),
    [
        (Offer(kind="discount", name="Spring", code="S10", percent=10), "10% off"),
        (Offer(kind="discount", name="Five", code="F5", amount=500), "5.00 EUR off"),
        (Offer(kind="discount", name="Five", code="F5", amount=500, currency="USD"), "5.00 USD off"),
        (Offer(kind="free_shipping", name="Free shipping", code="FREESHIP"), "free shipping"),
        (Offer(kind="payment_help", name="Pay by invoice instead"), "Pay by invoice instead"),
        (Offer(kind="loyalty_bonus", name="Points", points=200), "200 bonus points"),
        (Offer(kind="substitute", name="Similar, for less", items=("sku-9",)), "Similar, for less"),
    ],
)
def test_offer_text_says_what_the_offer_gives(offer: Offer, text: str) -> None:
    assert render("{{ offer.text }}", make_message(offer=offer)) == text


def test_offer_fields_are_formatted() -> None:
    offer = Offer(kind="discount", name="x", code="C", amount=500, min_value=3000, expires_at=1_767_225_600.0)
    source = "{{ offer.code }}|{{ offer.amount }}|{{ offer.min_value }}|{{ offer.expires }}"
    assert render(source, make_message(offer=offer)) == "C|5.00 EUR|30.00 EUR|2026-01-01 00:00 UTC"


def test_offer_expiry_is_shown_in_the_recipients_time_zone() -> None:
    message = make_message(offer=Offer(kind="discount", name="x", percent=5, expires_at=1_767_225_600.0))
    recipient = msgspec.structs.replace(message.recipient, timezone="Europe/Berlin")
    berlin = msgspec.structs.replace(message, recipient=recipient)
    assert render("{{ offer.expires }}|{{ offer.expires_at.hour }}", berlin) == "2026-01-01 01:00 CET|1"


@pytest.mark.parametrize("zone", ["Not/AZone", "../../etc/passwd", ""])
def test_an_unknown_time_zone_shows_utc(zone: str) -> None:
    message = make_message(offer=Offer(kind="discount", name="x", percent=5, expires_at=1_767_225_600.0))
    message = msgspec.structs.replace(message, recipient=msgspec.structs.replace(message.recipient, timezone=zone))
    assert render("{{ offer.expires }}", message) == "2026-01-01 00:00 UTC"


def test_message_fields_locale_and_restore_link_are_in_the_context() -> None:
    message = make_message(variant="B", restore_url="https://shop.example/r?t=1")
    source = (
        "{{ flow }}/{{ step }}/{{ variant }}/{{ channel }}/{{ template }}/{{ reason }}/{{ locale }}/{{ restore_url }}"
    )
    assert render(source, message) == "default/0/B/email/reminder-1/price/de-DE/https://shop.example/r?t=1"


def test_the_recipients_address_is_there_only_for_a_template_that_asks() -> None:
    assert render("{{ recipient.email }} {{ recipient.phone }}") == f"{EMAIL} {PHONE}"
    printed = render("{{ recipient }}")
    assert EMAIL not in printed and PHONE not in printed and "***" in printed


def test_the_unsubscribe_link_is_passed_to_the_templates() -> None:
    templates = Templates(sources={"t.sms.txt": "{{ unsubscribe_url }}"}, builtin=False)
    assert templates.render("t", make_message(), kind="sms", unsubscribe_url="https://x.example/u").text == (
        "https://x.example/u"
    )
    assert templates.render("t", make_message(), kind="sms").text == "None"


# -- escaping --------------------------------------------------------------------------------------------------


def test_html_in_item_names_is_escaped_in_html_but_not_in_text_or_subject() -> None:
    message = with_lines(CartLine(item_id="x", price=100, quantity=1, name="<script>alert('x')</script> & Co"))
    source = "{{ cart.lines[0].name }}"
    sources = {"t.subject.txt": source, "t.txt": source, "t.html": f"<p>{source}</p>"}
    templates = Templates(sources=sources, builtin=False)
    rendered = templates.render("t", message)
    assert rendered.html == "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co</p>"
    assert rendered.text == "<script>alert('x')</script> & Co"
    assert rendered.subject == "<script>alert('x')</script> & Co"


def test_a_subject_is_one_line() -> None:
    templates = Templates(
        sources={"t.subject.txt": "  Your\ncart \r\n {{ cart.value }}\n", "t.txt": "x"}, builtin=False
    )
    assert templates.render("t", make_message()).subject == "Your cart 35.79 EUR"


def test_an_empty_subject_is_an_error_naming_the_file() -> None:
    templates = Templates(sources={"t.subject.txt": "{% if false %}x{% endif %}", "t.txt": "x"}, builtin=False)
    with pytest.raises(TemplateError, match=r"rendered an empty subject from t\.subject\.txt"):
        templates.render("t", make_message())


# -- the sandbox -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cart.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ '{0.__class__}'.format(cart) }}",
        "{{ cart.lines[0].__reduce_ex__(2) }}",
        "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ shop.update({'x': 1}) }}",
    ],
)
def test_reaching_for_python_internals_or_mutating_is_a_clean_recoverkit_error(source: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(source, variables={"shop": {"name": "Acme"}})
    error = info.value
    assert isinstance(error, RecoverkitError)
    assert "SecurityError" in str(error) and "unsafe" in str(error)
    assert error.template == "t" and error.file == "t.sms.txt" and error.line == 1


def test_a_misspelt_variable_fails_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "t.sms.txt").write_text("line one\nline two {{ cart.vlaue }}\n")
    with pytest.raises(TemplateError, match=r"t\.sms\.txt line 2 in .*UndefinedError: .*'vlaue'") as info:
        Templates(tmp_path, builtin=False).render("t", make_message(), kind="sms")
    assert info.value.line == 2 and str(tmp_path) in str(info.value)


def test_a_syntax_error_fails_with_file_and_line() -> None:
    templates = Templates(sources={"t.sms.txt": "ok\n{% if %}"}, builtin=False)
    with pytest.raises(TemplateError, match=r"does not compile: t\.sms\.txt line 2 in the given sources") as info:
        templates.render("t", make_message(), kind="sms")
    assert info.value.line == 2


def test_any_exception_while_rendering_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        render("{{ cart.quantity / 0 }}")


def test_a_huge_range_is_refused() -> None:
    with pytest.raises(TemplateError, match="OverflowError"):
        render("{% for i in range(10**9) %}{% endfor %}")


# -- where names resolve -------------------------------------------------------------------------------------


def test_a_missing_template_names_the_file_and_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=rf"'nope' \(push\) not found: no nope\.push\.txt in {tmp_path} or built"):
        Templates(tmp_path).render("nope", make_message(), kind="push")


def test_a_directory_template_replaces_the_built_in_one_whole(tmp_path: Path) -> None:
    (tmp_path / "cart-reminder.subject.txt").write_text("Ours")
    (tmp_path / "cart-reminder.txt").write_text("Our text")
    rendered = Templates(tmp_path).render("cart-reminder", make_message())
    assert rendered == Rendered(subject="Ours", text="Our text", html=None)  # never the built-in HTML
    sms = Templates(tmp_path).render("cart-reminder", make_message(), kind="sms")
    assert sms.text.startswith("You left 3 items")  # no .sms.txt of ours: the built-in one


def test_an_email_template_needs_its_subject_in_the_same_place(tmp_path: Path) -> None:
    (tmp_path / "cart-reminder.txt").write_text("Our text")
    with pytest.raises(TemplateError, match=r"has cart-reminder\.txt but no cart-reminder\.subject\.txt in "):
        Templates(tmp_path).render("cart-reminder", make_message())


def test_the_directory_comes_before_the_sources(tmp_path: Path) -> None:
    (tmp_path / "t.sms.txt").write_text("from the folder")
    templates = Templates(tmp_path, sources={"t.sms.txt": "from the dict", "u.sms.txt": "only in the dict"})
    assert templates.render("t", make_message(), kind="sms").text == "from the folder"
    assert templates.render("u", make_message(), kind="sms").text == "only in the dict"


def test_includes_resolve_in_the_same_folder_and_subfolders_name_templates(tmp_path: Path) -> None:
    (tmp_path / "promo").mkdir()
    (tmp_path / "footer.txt").write_text("-- Acme")
    (tmp_path / "promo" / "spring.sms.txt").write_text("Spring! {% include 'footer.txt' %}")
    assert Templates(tmp_path).render("promo/spring", make_message(), kind="sms").text == "Spring! -- Acme"


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "t.sms.txt"
    path.write_text("first")
    templates = Templates(tmp_path)
    assert templates.render("t", make_message(), kind="sms").text == "first"
    path.write_text("second")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert templates.render("t", make_message(), kind="sms").text == "second"


@pytest.mark.parametrize("name", ["../secrets", "/etc/passwd", "a/../../b", "", "a\\b", "-x"])
def test_names_that_could_leave_the_folder_are_refused(name: str) -> None:
    with pytest.raises(TemplateError, match="is not valid; expected letters, digits"):
        Templates().render(name, make_message())


# -- start-up checks and options ---------------------------------------------------------------------------------


def test_check_names_every_template_that_fails(tmp_path: Path) -> None:
    (tmp_path / "typo.subject.txt").write_text("Hi")
    (tmp_path / "typo.txt").write_text("{{ offer.cod }}")
    with pytest.raises(ConfigError) as info:
        Templates(tmp_path).check(["cart-reminder", "typo", "missing", "typo"])
    message = str(info.value)
    assert "template 'typo' (email) failed to render: typo.txt line 1" in message
    assert "template 'missing' (email) not found" in message
    assert "cart-reminder" not in message and message.count("'typo'") == 1


def test_check_with_an_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="kind must be one of email, sms, push, onsite, got 'fax'"):
        Templates().check(["cart-reminder"], kind="fax")  # type: ignore[arg-type]


def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        Templates(tmp_path / "nope")


def test_variables_may_not_shadow_the_context() -> None:
    with pytest.raises(ConfigError, match="variables may not set 'cart'"):
        Templates(variables={"cart": "x", "shop_name": "Acme"})


def test_nothing_to_search_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nothing to search"):
        Templates(builtin=False)


def test_sources_must_be_text() -> None:
    with pytest.raises(ConfigError, match="must map file names to template text"):
        Templates(sources={"t.txt": b"bytes"})  # type: ignore[dict-item]


def test_the_sample_message_is_for_the_kind_asked() -> None:
    assert sample_message("sms").channel == "sms"
    assert sample_message().recipient.email == "customer@example.com"
