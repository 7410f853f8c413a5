"""SmtpChannel against a real SMTP server on 127.0.0.1 (aiosmtpd's Controller), not a mocked client."""

from __future__ import annotations

import asyncio
import doctest
import email
import email.policy
import socket
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import anyio
import msgspec
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from recoverkit.cart import CartLine
from recoverkit.channels import Message, SmtpChannel
from recoverkit.channels import smtp as smtp_module
from recoverkit.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from recoverkit.templates import Templates

from .contract import EMAIL, PHONE, ChannelContract, make_message

pytestmark = pytest.mark.anyio

SENDER = "Acme Shop <shop@acme.example>"
UNSUBSCRIBE = "https://acme.example/unsubscribe?key={key}"
#: The contract's messages name the template "reminder-1": the shop's own, given as sources.
SOURCES = {
    "reminder-1.subject.txt": "Your {{ cart.value }} cart",
    "reminder-1.txt": "{% for line in cart.lines %}{{ line.quantity }} x {{ line.name }}\n{% endfor %}"
    "Total {{ cart.value }}{{ ', ' ~ offer.text if offer else '' }}\n{{ unsubscribe_url }}",
    "reminder-1.html": "<ul>{% for line in cart.lines %}<li>{{ line.name }}</li>{% endfor %}</ul>"
    "<p>Total {{ cart.value }}</p>",
    "plain.subject.txt": "Plain",
    "plain.txt": "Only text for {{ cart.value }}",
    "evil.subject.txt": "Hi",
    "evil.txt": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
}


class Received(NamedTuple):
    peer: Any
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def email(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Recorder:
    """aiosmtpd handler: records accepted messages; answers with the replies queued in its lists first."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.mail_replies: list[str] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_replies: list[str] = []
        self.mail_attempts = 0
        self.delay = 0.0
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.mail_attempts += 1
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.data_replies:
            return self.data_replies.pop(0)
        self.messages.append(Received(session.peer, envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 queued"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"right", handled=False)


class Server(NamedTuple):
    handler: Recorder
    port: int

    @property
    def where(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self, **options: Any) -> SmtpChannel:
        settings: dict[str, Any] = {
            "sender": SENDER,
            "templates": Templates(sources=SOURCES),
            "unsubscribe_url": UNSUBSCRIBE,
            "local_hostname": "localhost",  # not getfqdn(): a reverse lookup can take seconds in a sandbox
            "timeout": 5,
        }
        settings.update(options)
        return SmtpChannel("127.0.0.1", self.port, **settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def server() -> Iterator[Server]:
    handler = Recorder()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        server_hostname="localhost",
        authenticator=handler.authenticate,
        auth_require_tls=False,  # the test server has no certificate; the client logs in only when told to
    )
    controller.start()
    try:
        yield Server(handler, port)
    finally:
        controller.stop()


@pytest.fixture
async def channel(server: Server) -> AsyncIterator[SmtpChannel]:
    channel = server.channel()
    yield channel
    await channel.aclose()


def body(mail: EmailMessage, subtype: str) -> str:
    """The decoded ``text/<subtype>`` part, with the wire's CRLF line ends read as newlines."""
    part = mail.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def key_of(received: Received) -> str:
    """The message key, read back from the unsubscribe link, which carries it."""
    link = received.email["List-Unsubscribe"].partition("<")[2].partition(">")[0]
    return parse_qs(urlsplit(link).query)["key"][0]


class TestSmtpChannelContract(ChannelContract):
    @pytest.fixture
    async def channel(self, server: Server) -> AsyncIterator[SmtpChannel]:
        self.server = server
        channel = server.channel()
        yield channel
        await channel.aclose()

    def delivered_keys(self, channel: SmtpChannel) -> list[str]:
        return [key_of(received) for received in self.server.handler.messages]


async def test_sends_a_multipart_alternative_email_with_text_and_html(server: Server, channel: SmtpChannel) -> None:
    await channel.send(make_message())
    [received] = server.handler.messages
    assert received.mail_from == "shop@acme.example" and received.rcpt_tos == [EMAIL]
    mail = received.email
    assert mail["From"] == SENDER and mail["To"] == EMAIL and mail["Subject"] == "Your 35.79 EUR cart"
    assert mail.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "text/html"]
    assert body(mail, "plain") == (
        "1 x Mug\n2 x Coaster\nTotal 35.79 EUR\nhttps://acme.example/unsubscribe?key=cart-1%2Fdefault%2F0\n"
    )
    assert "<li>Mug</li><li>Coaster</li>" in body(mail, "html")
    assert mail["Date"] is not None
    assert b"\r\n" in received.data and all(byte < 128 for byte in received.data)  # 7-bit, whatever the text


async def test_a_template_without_html_sends_text_only(server: Server, channel: SmtpChannel) -> None:
    await channel.send(make_message(template="plain"))
    mail = server.handler.messages[0].email
    assert mail.get_content_type() == "text/plain"
    assert body(mail, "plain") == "Only text for 35.79 EUR\n"


async def test_without_templates_the_built_in_ones_are_used(server: Server) -> None:
    channel = server.channel(templates=None)
    try:
        await channel.send(make_message(template="cart-last-call", restore_url="https://acme.example/r/1"))
    finally:
        await channel.aclose()
    mail = server.handler.messages[0].email
    assert mail["Subject"] == "Last call: your cart is still waiting"
    assert "Complete your order: https://acme.example/r/1" in body(mail, "plain")


async def test_the_message_id_is_derived_from_the_key_and_the_same_on_a_retry(
    server: Server, channel: SmtpChannel
) -> None:
    await channel.send(make_message("cart-1/default/0"))
    await channel.send(make_message("cart-1/default/0"))
    await channel.send(make_message("cart-1/default/1"))
    first, again, other = (received.email["Message-ID"] for received in server.handler.messages)
    assert first == again == channel.message_id("cart-1/default/0")
    assert first.startswith("<rk.") and first.endswith("@acme.example>")
    assert other != first
    assert "cart-1" not in first


async def test_list_unsubscribe_offers_the_link_and_the_mailto_with_one_click_post(server: Server) -> None:
    channel = server.channel(unsubscribe_mailto="unsubscribe@acme.example")
    try:
        await channel.send(make_message())
    finally:
        await channel.aclose()
    mail = server.handler.messages[0].email
    assert mail["List-Unsubscribe"] == (
        "<https://acme.example/unsubscribe?key=cart-1%2Fdefault%2F0>, "
        "<mailto:unsubscribe@acme.example?subject=unsubscribe%20cart-1%2Fdefault%2F0>"
    )
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_a_mailto_alone_has_no_one_click_post_header(server: Server) -> None:
    channel = server.channel(unsubscribe_url=None, unsubscribe_mailto="unsubscribe@acme.example")
    try:
        await channel.send(make_message())
    finally:
        await channel.aclose()
    mail = server.handler.messages[0].email
    assert mail["List-Unsubscribe"].startswith("<mailto:unsubscribe@acme.example?subject=")
    assert mail["List-Unsubscribe-Post"] is None


async def test_an_unsubscribe_function_signs_each_link_and_a_long_link_stays_intact(server: Server) -> None:
    seen: list[str] = []

    def link(message: Message) -> str:
        seen.append(message.key)
        return f"https://acme.example/u/{message.recipient.contact_key}?sig={'f' * 300}"

    channel = server.channel(unsubscribe_url=link)
    try:
        await channel.send(make_message())
    finally:
        await channel.aclose()
    assert seen == ["cart-1/default/0"]
    mail = server.handler.messages[0].email
    assert mail["List-Unsubscribe"] == f"<https://acme.example/u/cust_8812?sig={'f' * 300}>"
    assert b"=?utf-8?" not in server.handler.messages[0].data  # not mangled into encoded words


async def test_an_unsubscribe_function_that_fails_fails_the_message_permanently(server: Server) -> None:
    channel = server.channel(unsubscribe_url=lambda message: "http://acme.example/not-https")
    try:
        with pytest.raises(PermanentDeliveryError, match=r"unsubscribe_url function .* 'cart-1/default/0'"):
            await channel.send(make_message())
    finally:
        await channel.aclose()
    assert server.handler.messages == []


async def test_html_in_item_names_is_escaped_in_the_html_part_but_not_in_the_text(
    server: Server, channel: SmtpChannel
) -> None:
    message = make_message()
    lines = (CartLine(item_id="sku-9", price=500, quantity=1, name='<b>Mug</b> & "Co"'),)
    await channel.send(msgspec.structs.replace(message, cart=msgspec.structs.replace(message.cart, lines=lines)))
    mail = server.handler.messages[0].email
    assert "<li>&lt;b&gt;Mug&lt;/b&gt; &amp; &#34;Co&#34;</li>" in body(mail, "html")
    assert '1 x <b>Mug</b> & "Co"' in body(mail, "plain")


async def test_an_internationalized_domain_is_sent_as_punycode(server: Server, channel: SmtpChannel) -> None:
    message = make_message()
    recipient = msgspec.structs.replace(message.recipient, email="jane@bücher.example")
    await channel.send(msgspec.structs.replace(message, recipient=recipient))
    assert server.handler.messages[0].rcpt_tos == ["jane@xn--bcher-kva.example"]


async def test_the_connection_is_kept_for_the_next_message(server: Server, channel: SmtpChannel) -> None:
    await channel.send(make_message("a/f/0"))
    await channel.send(make_message("b/f/0"))
    first, second = server.handler.messages
    assert first.peer == second.peer


async def test_concurrent_sends_take_turns_on_the_connection(server: Server, channel: SmtpChannel) -> None:
    keys = [f"cart-{n}/default/0" for n in range(8)]
    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(channel.send, make_message(key))
    assert sorted(key_of(received) for received in server.handler.messages) == sorted(keys)
    assert len({received.peer for received in server.handler.messages}) == 1


async def test_login_uses_the_username_and_password(server: Server) -> None:
    channel = server.channel(username="shop", password="right")
    try:
        await channel.send(make_message())
    finally:
        await channel.aclose()
    assert server.handler.logins == [(b"shop", b"right")]
    assert len(server.handler.messages) == 1


async def test_a_refused_login_is_permanent_and_does_not_show_the_password(server: Server) -> None:
    channel = server.channel(username="shop", password="wrong-s3cret")
    try:
        with pytest.raises(PermanentDeliveryError, match=r"refused the login of message 'cart-1/default/0' with 535"):
            await channel.send(make_message())
    finally:
        await channel.aclose()
    assert server.handler.messages == []


@pytest.mark.parametrize("reply", ["550 5.1.1 <jane.doe@example.com>: Recipient address rejected", "553 no"])
async def test_a_5xx_recipient_refusal_is_permanent_and_masks_the_address(
    server: Server, channel: SmtpChannel, reply: str
) -> None:
    server.handler.rcpt_replies[EMAIL] = reply
    with pytest.raises(PermanentDeliveryError) as info:
        await channel.send(make_message())
    text = str(info.value)
    assert f"SMTP server {server.where} refused the recipient of message 'cart-1/default/0' with 5" in text
    assert EMAIL not in text and "jane" not in text


async def test_a_4xx_recipient_refusal_is_transient(server: Server, channel: SmtpChannel) -> None:
    server.handler.rcpt_replies[EMAIL] = "450 4.2.1 Mailbox busy, call +49 170 1234567"
    with pytest.raises(TransientDeliveryError, match=r"refused the recipient .* with 450 4\.2\.1 Mailbox busy") as info:
        await channel.send(make_message())
    assert PHONE not in str(info.value)
    del server.handler.rcpt_replies[EMAIL]
    await channel.send(make_message())  # the same connection carries on after the refusal
    assert len(server.handler.messages) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 4.3.0 Try again later", TransientDeliveryError), ("554 5.7.1 Rejected as spam", PermanentDeliveryError)],
)
async def test_a_refused_content_is_classified_by_its_code(
    server: Server, channel: SmtpChannel, reply: str, error: type[Exception]
) -> None:
    server.handler.data_replies.append(reply)
    with pytest.raises(error, match=rf"refused the content of message 'cart-1/default/0' with {reply[:3]}"):
        await channel.send(make_message())


async def test_a_421_on_a_reused_connection_is_retried_at_once_on_a_new_one(
    server: Server, channel: SmtpChannel
) -> None:
    await channel.send(make_message("a/f/0"))
    server.handler.mail_replies.append("421 4.4.2 Idle for too long, closing")
    await channel.send(make_message("b/f/0"))
    first, second = server.handler.messages
    assert first.peer != second.peer
    assert server.handler.mail_attempts == 3


async def test_a_421_on_a_new_connection_is_transient_and_not_retried(server: Server, channel: SmtpChannel) -> None:
    server.handler.mail_replies.append("421 4.3.2 Shutting down")
    with pytest.raises(TransientDeliveryError, match="refused the sender of message 'cart-1/default/0' with 421"):
        await channel.send(make_message())
    assert server.handler.mail_attempts == 1


async def test_connection_refused_is_transient() -> None:
    port = free_port()
    channel = SmtpChannel(
        "127.0.0.1", port, sender=SENDER, unsubscribe_url=UNSUBSCRIBE, templates=Templates(sources=SOURCES)
    )
    try:
        with pytest.raises(TransientDeliveryError, match=rf"cannot connect to SMTP server 127\.0\.0\.1:{port}"):
            await channel.send(make_message())
    finally:
        await channel.aclose()


async def test_a_server_slower_than_the_timeout_is_transient(server: Server) -> None:
    server.handler.delay = 3.0
    channel = server.channel(timeout=0.3)
    try:
        with pytest.raises(TransientDeliveryError, match=r"did not answer within 0\.3s for message 'cart-1/"):
            await channel.send(make_message())
    finally:
        await channel.aclose()


async def test_a_cancelled_send_leaves_no_half_used_connection(server: Server, channel: SmtpChannel) -> None:
    await channel.send(make_message("a/f/0"))
    server.handler.delay = 1.0
    with anyio.move_on_after(0.2):
        await channel.send(make_message("b/f/0"))
    server.handler.delay = 0.0
    await channel.send(make_message("c/f/0"))
    peers = {key_of(received): received.peer for received in server.handler.messages}
    assert peers["c/f/0"] != peers["a/f/0"]  # a new connection, not the one cut mid-DATA


async def test_a_message_without_an_email_address_is_permanent(server: Server, channel: SmtpChannel) -> None:
    message = make_message()
    recipient = msgspec.structs.replace(message.recipient, email=None)
    with pytest.raises(PermanentDeliveryError, match="'cart-1/default/0' has no recipient email address"):
        await channel.send(msgspec.structs.replace(message, recipient=recipient))
    assert server.handler.mail_attempts == 0


@pytest.mark.parametrize(
    "address", ["not-an-address", "jane@", "Jane <jane@example.com>", "jane@example.com\r\nBcc: x@y.example"]
)
async def test_an_invalid_address_is_permanent_and_not_repeated(
    server: Server, channel: SmtpChannel, address: str
) -> None:
    message = make_message()
    recipient = msgspec.structs.replace(message.recipient, email=address)
    with pytest.raises(PermanentDeliveryError, match="is not a valid email address") as info:
        await channel.send(msgspec.structs.replace(message, recipient=recipient))
    assert address not in str(info.value) and "jane" not in str(info.value)
    assert server.handler.mail_attempts == 0


async def test_a_missing_template_is_permanent_and_named(server: Server, channel: SmtpChannel) -> None:
    with pytest.raises(PermanentDeliveryError, match=r"template 'nope' \(email\) not found: no nope\.txt"):
        await channel.send(make_message(template="nope"))


async def test_a_template_reaching_for_python_internals_is_permanent_not_a_crash(
    server: Server, channel: SmtpChannel
) -> None:
    with pytest.raises(PermanentDeliveryError, match=r"evil\.txt line 1 .*SecurityError: access to attribute"):
        await channel.send(make_message(template="evil"))
    assert server.handler.mail_attempts == 0


async def test_send_after_aclose_is_a_permanent_failure(server: Server, channel: SmtpChannel) -> None:
    await channel.aclose()
    with pytest.raises(PermanentDeliveryError, match=rf"{server.where} is closed; message 'cart-1/default/0'"):
        await channel.send(make_message())
    assert server.handler.mail_attempts == 0


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"sender": "no address"}, "sender 'no address' holds no valid ASCII email address"),
        ({"sender": "shop@acme.example\nBcc: x@y.example"}, "sender must be a one-line str"),
        ({"unsubscribe_url": None}, "needs unsubscribe_url or unsubscribe_mailto"),
        ({"unsubscribe_url": "http://acme.example/u?key={key}"},
         r"unsubscribe_url http://acme\.example/\.\.\. is http:// on a host that is not loopback; "
         r"expected an https://"),
        ({"unsubscribe_url": "http://127.0.0.1.acme.example/u"}, "is http:// on a host that is not loopback"),
        ({"unsubscribe_url": "http://localhost@acme.example/u"}, "is http:// on a host that is not loopback"),
        ({"unsubscribe_url": "ftp://acme.example/u"}, "has scheme 'ftp'"),
        ({"unsubscribe_url": "/unsubscribe?key={key}"}, "has no host"),
        ({"unsubscribe_url": "https://acme.example/u?sig=" + "f" * 900}, "is 927 characters long"),
        ({"unsubscribe_url": "https://acme.example/u/{key} x"}, "holds a space"),
        ({"unsubscribe_url": 42}, "unsubscribe_url must be an https:// URL string or a function"),
        ({"unsubscribe_mailto": "nobody"}, "unsubscribe_mailto must be an email address"),
        ({"reply_to": "x"}, "reply_to must be an email address"),
        ({"port": 0}, "port must be an int from 1 to 65535, got 0"),
        ({"timeout": 0}, "timeout must be a positive number of seconds, got 0"),
        ({"use_tls": True, "start_tls": True}, "use_tls=True and start_tls=True exclude each other"),
        ({"username": "shop"}, "username and password go together"),
    ],
)
def test_bad_options_are_config_errors_naming_the_value(options: dict[str, Any], match: str) -> None:
    settings: dict[str, Any] = {"port": 2525, "sender": SENDER, "unsubscribe_url": UNSUBSCRIBE, **options}
    with pytest.raises(ConfigError, match=match):
        SmtpChannel("smtp.acme.example", **settings)


def test_a_refused_unsubscribe_url_says_how_to_use_a_local_address_in_development() -> None:
    with pytest.raises(ConfigError) as info:
        SmtpChannel("smtp.acme.example", sender=SENDER, unsubscribe_url="http://shop.example/u?token=s3cret")
    message = str(info.value)
    assert "http://shop.example/..." in message  # what was given, without the token
    assert "s3cret" not in message
    assert "expected an https:// URL" in message
    assert "http://localhost:8000/unsubscribe?key={key}" in message


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/unsubscribe?key={key}",
        "http://LOCALHOST/u/{contact_key}",
        "http://shop.localhost:8000/u?key={key}",
        "http://127.0.0.1:8000/u?key={key}",
        "http://127.1.2.3/u",
        "http://[::1]:8000/u?key={key}",
        "https://acme.example/u?key={key}",
    ],
)
def test_an_http_unsubscribe_url_is_accepted_on_a_loopback_host_for_development(url: str) -> None:
    SmtpChannel("smtp.acme.example", sender=SENDER, unsubscribe_url=url)


async def test_a_local_http_unsubscribe_link_reaches_the_email(server: Server) -> None:
    channel = server.channel(unsubscribe_url="http://localhost:8000/unsubscribe?key={key}")
    try:
        await channel.send(make_message())
    finally:
        await channel.aclose()
    mail = server.handler.messages[0].email
    assert mail["List-Unsubscribe"] == "<http://localhost:8000/unsubscribe?key=cart-1%2Fdefault%2F0>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_an_unsubscribe_function_may_answer_a_loopback_http_link_but_no_other(server: Server) -> None:
    channel = server.channel(unsubscribe_url=lambda message: "http://127.0.0.1:8000/u")
    other = server.channel(unsubscribe_url=lambda message: "http://acme.example/u")
    try:
        await channel.send(make_message())
        with pytest.raises(PermanentDeliveryError, match="is http:// on a host that is not loopback"):
            await other.send(make_message())
    finally:
        await channel.aclose()
        await other.aclose()
    assert [m.email["List-Unsubscribe"] for m in server.handler.messages] == ["<http://127.0.0.1:8000/u>"]


def test_a_config_error_never_shows_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        SmtpChannel("smtp.acme.example", sender=SENDER, unsubscribe_url=UNSUBSCRIBE, password="s3cret")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(("options", "port"), [({}, 25), ({"use_tls": True}, 465), ({"start_tls": True}, 587)])
def test_the_default_port_follows_the_tls_mode(options: dict[str, Any], port: int) -> None:
    channel = SmtpChannel("smtp.acme.example", sender=SENDER, unsubscribe_url=UNSUBSCRIBE, **options)
    assert repr(channel) == f"SmtpChannel(server='smtp.acme.example:{port}')"


def test_the_docstring_examples_run() -> None:
    assert doctest.testmod(smtp_module).failed == 0
