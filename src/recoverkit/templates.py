"""Message bodies: Jinja2 templates, rendered in a sandbox, for the email, SMS and push channel adapters.

Where templates come from
-------------------------
A :class:`Templates` looks a name up in up to three sources, in order: a directory of the shop's files, a
dict of sources (handy in tests), then the templates recoverkit ships (``cart-reminder`` and
``cart-last-call``, under ``recoverkit/data/templates/``), so that a shop with no templates of its own still
sends something sensible. A name stands for one file per part:

=========  ===========================================================================================
kind       files for the name ``cart-reminder``
=========  ===========================================================================================
email      ``cart-reminder.subject.txt`` and ``cart-reminder.txt`` (required), ``cart-reminder.html``
sms        ``cart-reminder.sms.txt``
push       ``cart-reminder.push.txt``
onsite     ``cart-reminder.onsite.html`` (an HTML fragment for the page; see :mod:`recoverkit.onsite`)
=========  ===========================================================================================

For each kind, the first source holding the kind's first file provides all of that kind's files: a shop's
``cart-reminder.txt`` is never sent beside the built-in ``cart-reminder.html``.

Guarantees
----------
- Templates run in Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`: no attribute starting with
  an underscore (``''.__class__.__mro__``), no unsafe callables, no mutation of lists or dicts. A template
  that tries raises :class:`TemplateError`, like any other failure while rendering.
- ``.html`` files are autoescaped (a cart item named ``<b>Mug</b>`` shows as text); ``.txt`` files are not.
- Variables are strict: ``{{ cart.vlaue }}`` raises :class:`TemplateError` instead of rendering empty.
  :meth:`Templates.check` renders every part against a sample message at start-up, so such typos surface then
  rather than in the middle of a flow (on the paths the sample reaches).
- The context holds the recipient's email address and phone number only as ``recipient.email`` and
  ``recipient.phone``, for templates that ask; recoverkit never logs them.

Limits: the sandbox guards the process's data, not its CPU or memory (a template can still loop for a long
time); templates should come from people trusted with that. Amounts are formatted as ``35.79 EUR`` whatever the
locale, and ``offer.text`` is English: templates in other languages compose from the offer's fields.
See ``docs/templates.md`` for every variable.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from ._optional import deferred, require
from .errors import ConfigError, RecoverkitError
from .money import format_minor

if TYPE_CHECKING:
    import jinja2

    # Only for annotations: channels/ imports this module, so importing channels here at run time would
    # make the two import each other.
    from .catalogue import Suggestion
    from .channels.base import Message
    from .offers import Offer
else:  # the 'templates' extra: imported when a Templates is built, not with recoverkit (see recoverkit._optional)
    jinja2 = deferred("jinja2", extra="templates", feature="Templates")

__all__ = ["Rendered", "TemplateError", "TemplateKind", "Templates", "sample_message"]

#: What a template is rendered for; it decides which files a name stands for (see the module docstring).
TemplateKind = Literal["email", "sms", "push", "onsite"]

#: Per kind: (part, file suffix, required). The first entry is the file that picks the source of a name.
_PARTS: Mapping[TemplateKind, tuple[tuple[str, str, bool], ...]] = {
    "email": (("text", ".txt", True), ("subject", ".subject.txt", True), ("html", ".html", False)),
    "sms": (("text", ".sms.txt", True),),
    "push": (("text", ".push.txt", True),),
    # An on-site offer is an HTML fragment the page inserts (recoverkit.onsite): autoescaped, as every .html is.
    "onsite": (("html", ".onsite.html", True),),
}
#: Names a flow may give: path segments of letters, digits, ``_``, ``-`` and ``.``, never ``..`` or absolute.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
_BUILTIN = "built-in templates"
#: Context names recoverkit sets; shop ``variables`` may not shadow them.
_RESERVED = frozenset(
    {"cart", "channel", "flow", "key", "locale", "offer", "reason", "recipient", "restore_url", "step",
     "template", "trigger", "unsubscribe_url", "variant"}
)  # fmt: skip


class TemplateError(RecoverkitError):
    """Raised by :meth:`Templates.render` when a template is missing, does not compile or fails to render.

    That includes a template reaching for Python internals (``{{ ''.__class__ }}``), which the sandbox refuses.
    ``template`` is the name asked for, ``file`` the file at fault (when known) and ``line`` its line (when
    Jinja2 reports one). Channel adapters turn it into a
    :class:`~recoverkit.errors.PermanentDeliveryError`: a retry renders the same template the same way.
    """

    def __init__(self, message: str, *, template: str, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.template = template
        self.file = file
        self.line = line


class Rendered(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered message: ``text`` always; ``subject`` for email; ``html`` when the email has an HTML part.

    Surrounding whitespace is stripped from every part, and the subject is one line (runs of whitespace,
    newlines included, become one space).
    """

    text: str
    subject: str | None = None
    html: str | None = None


class _Line(msgspec.Struct, frozen=True, kw_only=True):
    # What a template sees of a cart line: amounts already formatted, in the cart's currency.
    name: str
    item_id: str
    category: str | None
    quantity: int
    price: str
    total: str


class _Cart(msgspec.Struct, frozen=True, kw_only=True):
    currency: str | None
    value: str
    value_minor: int
    shipping: str | None
    quantity: int
    lines: tuple[_Line, ...]


class _Suggestion(msgspec.Struct, frozen=True, kw_only=True):
    # What a template sees of a suggested product: its price already formatted.
    item_id: str
    name: str
    price: str
    url: str | None


class _Offer(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    name: str
    text: str
    code: str | None
    percent: int | None
    amount: str | None
    min_value: str | None
    expires: str | None
    expires_at: datetime | None
    items: tuple[str, ...]
    points: int | None
    multiplier: int | None
    suggestions: tuple[_Suggestion, ...]
    complements: tuple[_Suggestion, ...]


class _Recipient(msgspec.Struct, frozen=True, kw_only=True):
    locale: str | None
    timezone: str | None
    customer_id: str | None
    email: str | None
    phone: str | None

    def __repr__(self) -> str:
        # Jinja2 names objects by type in its errors, but a template may print the object whole.
        return f"Recipient(locale={self.locale!r}, email={'***' if self.email else None}, " \
               f"phone={'***' if self.phone else None})"


def _sandbox(loader: jinja2.BaseLoader) -> jinja2.Environment:
    """The environment every source renders in: sandboxed, strict, autoescaping ``.html`` and ``.htm``."""
    # Here, not at the top: jinja2 is optional, and only a Templates being built (which required it) calls this.
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm"), default_for_string=False, default=False
        ),
        trim_blocks=True,
        lstrip_blocks=True,
    )


class _Source(NamedTuple):
    label: str  # for messages: the directory, "the given sources" or "built-in templates"
    env: jinja2.Environment


class Templates:
    """Finds, compiles and renders message templates; see the module docstring for names and guarantees.

    - ``directory``: a folder of template files (subfolders allowed: ``promo/spring`` names
      ``promo/spring.txt`` and its siblings). It must exist; its files are re-read when they change.
    - ``sources``: template sources keyed by file name (``{"cart-reminder.txt": "..."}``), searched after
      ``directory``.
    - ``builtin``: whether the shipped ``cart-reminder`` and ``cart-last-call`` are searched last (default).
    - ``variables``: extra values every template sees (``{"shop_name": "Acme"}``); they may not use the names
      recoverkit sets (``cart``, ``offer``, ...).

    A bad directory or variable raises :class:`~recoverkit.errors.ConfigError`. Compiled templates are cached;
    a ``Templates`` is safe to share between channels and tasks.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        sources: Mapping[str, str] | None = None,
        builtin: bool = True,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        require("jinja2", extra="templates", feature="Templates")
        found: list[_Source] = []
        if directory is not None:
            path = Path(directory)
            if not path.is_dir():
                raise ConfigError(f"Templates directory {str(path)!r} is not a directory; expected a folder of "
                                  "template files such as cart-reminder.txt")
            found.append(_Source(str(path), _sandbox(jinja2.FileSystemLoader(path))))
        if sources is not None:
            bad = [name for name in sources if not isinstance(name, str) or not isinstance(sources[name], str)]
            if bad:
                raise ConfigError(f"Templates sources must map file names to template text (str), got {bad[0]!r}")
            found.append(_Source("the given sources", _sandbox(jinja2.DictLoader(dict(sources)))))
        if builtin:
            found.append(_Source(_BUILTIN, _sandbox(jinja2.PackageLoader("recoverkit", "data/templates"))))
        if not found:
            raise ConfigError("Templates has nothing to search: give a directory or sources, or keep builtin=True")
        self._sources = tuple(found)
        self._variables = dict(variables or {})
        shadowing = sorted(_RESERVED.intersection(self._variables))
        if shadowing:
            raise ConfigError(f"Templates variables may not set {shadowing[0]!r}: recoverkit sets it for every "
                              f"message (its own names are {', '.join(sorted(_RESERVED))})")

    def __repr__(self) -> str:
        return f"Templates({', '.join(source.label for source in self._sources)})"

    def render(
        self,
        name: str,
        message: Message,
        *,
        kind: TemplateKind = "email",
        unsubscribe_url: str | None = None,
    ) -> Rendered:
        """Render template ``name`` for ``message`` as ``kind``, or raise :class:`TemplateError`.

        ``unsubscribe_url`` is passed to the templates (the email adapter gives the one it puts in the
        ``List-Unsubscribe`` header). Rendering is synchronous, pure and takes no lock.
        """
        source, templates = self._resolve(name, kind)
        context = {**self._variables, **_context(message, unsubscribe_url)}
        parts: dict[str, str] = {}
        for part, template in templates.items():
            try:
                output = template.render(context)
            except Exception as exc:  # a template bug of any kind: contained, named, never a crash
                raise _render_error(name, kind, source, template, exc) from exc
            parts[part] = " ".join(output.split()) if part == "subject" else output.strip()
        text = parts.pop("text", "")  # an on-site offer has only its HTML
        if kind == "email" and not parts.get("subject"):
            raise TemplateError(
                f"template {name!r} (email) rendered an empty subject from {name}.subject.txt in {source.label}; "
                "expected a one-line subject",
                template=name,
                file=f"{name}.subject.txt",
            )
        return Rendered(text=text, subject=parts.get("subject"), html=parts.get("html"))

    def check(self, names: Iterable[str], *, kind: TemplateKind = "email") -> None:
        """Check at start-up that every template in ``names`` exists for ``kind``, compiles and renders.

        Each is rendered against :func:`sample_message` (a cart with an offer and a restore link), which
        catches misspelt variables on the paths the sample takes. Raises
        :class:`~recoverkit.errors.ConfigError` naming every template, file and line at fault.
        """
        if kind not in _PARTS:
            raise ConfigError(f"Templates.check kind must be one of {', '.join(_PARTS)}, got {kind!r}")
        sample = sample_message(kind)
        problems = []
        for name in dict.fromkeys(names):  # each name once, in the order given
            try:
                self.render(name, sample, kind=kind, unsubscribe_url="https://shop.example/unsubscribe/sample")
            except TemplateError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("; ".join(problems))

    def _resolve(self, name: str, kind: TemplateKind) -> tuple[_Source, dict[str, jinja2.Template]]:
        if kind not in _PARTS:
            raise TemplateError(f"template {name!r}: kind must be one of {', '.join(_PARTS)}, got {kind!r}",
                                template=name)
        if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name.split("/"):
            raise TemplateError(
                f"template name {name!r} is not valid; expected letters, digits, '_', '-' and '.', with '/' "
                "between folders, like 'cart-reminder' or 'promo/spring'",
                template=str(name),
            )
        parts = _PARTS[kind]
        first = name + parts[0][1]
        for source in self._sources:
            main = _load(name, kind, source, first)
            if main is None:
                continue
            templates = {parts[0][0]: main}
            for part, suffix, required in parts[1:]:
                template = _load(name, kind, source, name + suffix)
                if template is not None:
                    templates[part] = template
                elif required:
                    raise TemplateError(
                        f"template {name!r} ({kind}) has {first} but no {name + suffix} in {source.label}; "
                        f"expected both (a {kind} template is taken whole from one place)",
                        template=name,
                        file=name + suffix,
                    )
            return source, templates
        raise TemplateError(
            f"template {name!r} ({kind}) not found: no {first} in {' or '.join(s.label for s in self._sources)}",
            template=name,
            file=first,
        )


def _load(name: str, kind: str, source: _Source, file: str) -> jinja2.Template | None:
    """``file`` compiled from ``source``, ``None`` when the source has no such file."""
    try:
        return source.env.get_template(file)
    except jinja2.TemplateNotFound:
        return None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template {name!r} ({kind}) does not compile: {file} line {exc.lineno} in {source.label}: "
            f"{exc.message or exc}",
            template=name,
            file=file,
            line=exc.lineno,
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(
            f"template {name!r} ({kind}) cannot be read: {file} in {source.label}: {type(exc).__name__}: {exc}",
            template=name,
            file=file,
        ) from exc


def _render_error(name: str, kind: str, source: _Source, template: jinja2.Template, exc: Exception) -> TemplateError:
    file = template.name or "?"
    line: int | None
    if isinstance(exc, jinja2.TemplateSyntaxError):  # an {% include %}d or {% extends %}ed file that does not compile
        at, line = f"{exc.name or '?'} line {exc.lineno} (used by {file})", exc.lineno
    else:
        line = _template_line(exc.__traceback__, template.filename or "<template>")
        at = file if line is None else f"{file} line {line}"
    return TemplateError(
        f"template {name!r} ({kind}) failed to render: {at} in {source.label}: {type(exc).__name__}: {exc}",
        template=name,
        file=file,
        line=line,
    )


def _template_line(tb: TracebackType | None, filename: str) -> int | None:
    """The template line of the innermost frame Jinja2 attributed to ``filename``.

    Jinja2 rewrites the traceback of a render error so that frames in template code carry the template's
    file name and line; that is the only place a runtime error's line is recorded.
    """
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _context(message: Message, unsubscribe_url: str | None) -> dict[str, Any]:
    cart, recipient = message.cart, message.recipient
    currency = cart.currency
    lines = tuple(
        _Line(
            name=line.name or line.item_id,
            item_id=line.item_id,
            category=line.category,
            quantity=line.quantity,
            price=format_minor(line.price, currency),
            total=format_minor(line.price * line.quantity, currency),
        )
        for line in cart.lines
    )
    zone = _zone(recipient.timezone)
    return {
        "cart": _Cart(
            currency=currency,
            value=format_minor(cart.value, currency),
            value_minor=cart.value,
            shipping=None if cart.shipping is None else format_minor(cart.shipping, currency),
            quantity=cart.quantity,
            lines=lines,
        ),
        "offer": None if message.offer is None else _offer(message.offer, currency, zone),
        "restore_url": message.restore_url,
        "unsubscribe_url": unsubscribe_url,
        "recipient": _Recipient(
            locale=recipient.locale,
            timezone=recipient.timezone,
            customer_id=recipient.customer_id,
            email=recipient.email,
            phone=recipient.phone,
        ),
        "locale": recipient.locale,
        "key": message.key,
        "flow": message.flow,
        "step": message.step,
        "variant": message.variant,
        "channel": message.channel,
        "template": message.template,
        "reason": message.reason,
        "trigger": message.trigger,
    }


def _offer(offer: Offer, cart_currency: str | None, zone: tzinfo) -> _Offer:
    currency = offer.currency or cart_currency
    amount = None if offer.amount is None else format_minor(offer.amount, currency)
    expires_at = None
    if offer.expires_at is not None and math.isfinite(offer.expires_at):
        expires_at = datetime.fromtimestamp(offer.expires_at, UTC).astimezone(zone)
    return _Offer(
        kind=offer.kind,
        name=offer.name,
        text=_offer_text(offer, amount),
        code=offer.code,
        percent=offer.percent,
        amount=amount,
        min_value=None if offer.min_value is None else format_minor(offer.min_value, currency),
        expires=None if expires_at is None else expires_at.strftime("%Y-%m-%d %H:%M %Z"),
        expires_at=expires_at,
        items=offer.items,
        points=offer.points,
        multiplier=offer.multiplier,
        suggestions=tuple(_suggestion(s) for s in offer.suggestions),
        complements=tuple(_suggestion(s) for s in offer.complements),
    )


def _suggestion(s: Suggestion) -> _Suggestion:
    return _Suggestion(item_id=s.item_id, name=s.name, price=format_minor(s.price, s.currency), url=s.url)


def _offer_text(offer: Offer, amount: str | None) -> str:
    """What the offer gives, in a few English words: ``10% off``, ``5.00 EUR off``, ``free shipping``."""
    if offer.kind == "discount" and offer.percent is not None:
        return f"{offer.percent}% off"
    if offer.kind == "discount" and amount is not None:
        return f"{amount} off"
    if offer.kind == "free_shipping":
        return "free shipping"
    if offer.kind == "loyalty_bonus" and offer.points is not None:
        return f"{offer.points} bonus points"
    if offer.kind == "loyalty_bonus" and offer.multiplier is not None:
        return {2: "double points", 3: "triple points"}.get(offer.multiplier, f"{offer.multiplier}x points")
    return offer.name


def _zone(name: str | None) -> tzinfo:
    # The shop's data decides the zone name; an unknown one shows UTC rather than failing the message.
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError; a bad path a ValueError
        return UTC


def sample_message(kind: TemplateKind = "email") -> Message:
    """A made-up message for previews and start-up checks: a two-line EUR cart, 10% off, a restore link.

    The recipient is ``customer@example.com`` / ``+1 555 0100``, reserved example addresses.
    """
    # Imported here: channels/ imports this module (see the TYPE_CHECKING import above).
    from .cart import CartLine, CartSnapshot
    from .channels.base import Message, Recipient
    from .events import CheckoutStep
    from .offers import Offer

    cart = CartSnapshot(
        cart_key="sample-cart",
        session_id="sample-session",
        customer_id="sample-customer",
        currency="EUR",
        lines=(
            CartLine(item_id="sku-mug", price=1999, quantity=1, name="Enamel mug", category="kitchen"),
            CartLine(item_id="sku-coaster", price=790, quantity=2, name="Cork coaster"),
        ),
        value=3579,
        shipping=490,
        step=CheckoutStep.SHIPPING,
        started_at=1_767_225_600.0,
        checkout_at=1_767_226_200.0,
        last_at=1_767_226_500.0,
    )
    return Message(
        key="sample-cart/cart-recovery/0",
        flow="cart-recovery",
        step=0,
        channel=kind,
        template="cart-reminder",
        due_at=1_767_230_100.0,
        abandoned_at=1_767_226_500.0,
        trigger="inactivity",
        score=0.42,
        reason="shipping_cost",
        cart=cart,
        recipient=Recipient(
            contact_key="sample-customer",
            customer_id="sample-customer",
            email="customer@example.com",
            phone="+1 555 0100",
            locale="en-US",
        ),
        offer=Offer(kind="discount", name="10% welcome back", code="COMEBACK10", percent=10,
                    expires_at=1_767_484_800.0),
        restore_url="https://shop.example/cart/restore?token=sample",
    )

