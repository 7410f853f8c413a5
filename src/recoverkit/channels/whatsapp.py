"""WhatsApp Business (Cloud API): recovery messages as approved template messages with parameters.

What goes out
-------------
``POST /<version>/<phone_number_id>/messages`` with the Cloud API's template message::

    {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "491701234567",
     "type": "template", "biz_opaque_callback_data": "<message.key>",
     "template": {"name": "cart_reminder", "language": {"code": "de"},
                  "components": [{"type": "body", "parameters": [{"type": "text", "text": "35.79 EUR"}, ...]}]}}

Each flow template name maps to a :class:`WhatsAppTemplate`: the approved template's name, its languages, and
which of recoverkit's values fill its body's ``{{1}}``, ``{{2}}``, ... in order (:data:`PARAMETERS`), or a
``components`` function for anything else (buttons, headers). ``to`` is the recipient's phone in E.164 digits.
``message.key`` travels as ``biz_opaque_callback_data``, so the status webhooks Meta sends back name the message.

Opt-in and the 24-hour window
-----------------------------
WhatsApp requires the shopper's opt-in to receive messages from the business: the ``whatsapp`` channel requires
the ``whatsapp`` consent (grant it when the shopper ticks the box; withdraw it when they reply STOP). Free-form
text is only allowed within 24 hours of the shopper's last message to the business (the customer-service
window); outside it only templates are. A recovery message is the business writing first, so recoverkit
**always sends a template**, which WhatsApp delivers inside and outside the window; it never sends free-form
text, and so never needs to know whether a window is open. Abandoned-cart templates are in the *marketing*
category, priced and limited per conversation by Meta.

Answers: 2xx is sent (WhatsApp accepted it; delivery is reported later by webhook). Errors are read as
:mod:`recoverkit.channels._graph` says: rate limits (130429, 131048, 131056, 4, 80007, HTTP 429) and platform
trouble are retried; an expired token, a template that does not exist in the language (132001), a number that
is not on WhatsApp or cannot receive (131026) are permanent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ..errors import ConfigError, PermanentDeliveryError
from ..money import format_minor
from ._api import JsonApi, Token, check_base_url, check_text, check_timeout, check_token
from ._graph import graph_error
from ._hashing import e164
from .base import Message

if TYPE_CHECKING:
    import httpx

__all__ = ["PARAMETERS", "WhatsAppChannel", "WhatsAppTemplate"]

GRAPH_URL = "https://graph.facebook.com/v21.0"

Parameter = Literal["cart_value", "item_count", "first_item", "restore_url", "offer_code", "offer_name"]


def _first_item(message: Message) -> str | None:
    lines = message.cart.lines
    return (lines[0].name or lines[0].item_id) if lines else None


#: The values a template's body parameters can name, and how each is read from a message.
PARAMETERS: Mapping[str, Callable[[Message], str | None]] = {
    "cart_value": lambda m: format_minor(m.cart.value, m.cart.currency),
    "item_count": lambda m: str(m.cart.quantity),
    "first_item": _first_item,
    "restore_url": lambda m: m.restore_url,
    "offer_code": lambda m: m.offer.code if m.offer is not None else None,
    "offer_name": lambda m: m.offer.name if m.offer is not None else None,
}

_HINTS = {
    131047: " (more than 24 hours since the shopper's last message: only a template may be sent)",
    131026: " (the number cannot receive WhatsApp messages)",
    132001: " (no approved template of that name in that language)",
    190: " (the access token expired or was revoked)",
}


class WhatsAppTemplate(msgspec.Struct, frozen=True, kw_only=True):
    """An approved WhatsApp template, as a flow's template name maps to it.

    - ``name``: the template's name in WhatsApp Manager.
    - ``language``: the language code to use when the recipient's locale matches none of ``languages``.
    - ``languages``: the codes the template is approved in (``"de"``, ``"en_US"``); a recipient with locale
      ``de-DE`` gets ``de_DE`` if listed, else ``de`` if listed, else ``language``.
    - ``body``: which of :data:`PARAMETERS` fill the body's placeholders, in order.
    """

    name: str
    language: str = "en_US"
    languages: tuple[str, ...] = ()
    body: tuple[Parameter, ...] = ()


#: A function giving the template's ``components`` for a message (instead of ``body``), for buttons or headers.
Components = Callable[[Message], list[dict[str, Any]]]


class WhatsAppChannel:
    """Send each message as a WhatsApp template message from ``phone_number_id``; see the module docstring.

    - ``access_token``: a system user's token with ``whatsapp_business_messaging`` (never logged), or a function
      returning the current one.
    - ``templates``: flow template name -> :class:`WhatsAppTemplate`; a name without one fails at start-up.
    - ``components``: optional; builds the components itself (``body`` is then not used).
    - ``base_url``, ``timeout``, ``client``: as for the other HTTP adapters.
    """

    owner = "WhatsAppChannel"

    def __init__(
        self,
        phone_number_id: str,
        *,
        access_token: Token,
        templates: Mapping[str, WhatsAppTemplate],
        components: Components | None = None,
        base_url: str = GRAPH_URL,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        number = check_text(self.owner, "phone_number_id", phone_number_id)
        if not number.isdigit():
            raise ConfigError(f"WhatsAppChannel phone_number_id must be the numeric id WhatsApp Manager shows (not "
                              f"the phone number itself), got {number!r}")
        if not isinstance(templates, Mapping) or not templates:
            raise ConfigError("WhatsAppChannel templates must map flow template names to WhatsAppTemplate, got "
                              f"{type(templates).__name__}")
        for key, template in templates.items():
            if not isinstance(template, WhatsAppTemplate):
                raise ConfigError(f"WhatsAppChannel templates[{key!r}] must be a WhatsAppTemplate, got "
                                  f"{type(template).__name__}")
            for parameter in template.body:
                if parameter not in PARAMETERS:
                    raise ConfigError(f"WhatsAppChannel templates[{key!r}].body names {parameter!r}; expected one "
                                      f"of {', '.join(PARAMETERS)}")
        if components is not None and not callable(components):
            raise ConfigError(f"WhatsAppChannel components must be a function (message) -> list, got "
                              f"{type(components).__name__}")
        self._templates = dict(templates)
        self._components = components
        self._api = JsonApi(
            self.owner, check_base_url(self.owner, base_url, GRAPH_URL), check_token(self.owner, access_token),
            timeout=check_timeout(self.owner, timeout), client=client,
        )  # fmt: skip
        self._path = f"{number}/messages"

    def __repr__(self) -> str:
        return f"WhatsAppChannel(host={self._api.where!r}, templates={sorted(self._templates)!r})"

    def check_templates(self, names: Iterable[str]) -> None:
        """Raise :class:`~recoverkit.errors.ConfigError` for a flow template name without a WhatsAppTemplate."""
        missing = sorted(set(names) - set(self._templates))
        if missing:
            raise ConfigError(f"WhatsAppChannel has no WhatsAppTemplate for the flow template(s) {missing}; "
                              f"expected each in templates=, got {sorted(self._templates)}")

    async def send(self, message: Message) -> None:
        """Send the template message; return once WhatsApp accepted it."""
        key = message.key
        template = self._templates.get(message.template)
        if template is None:
            raise PermanentDeliveryError(f"{self.owner}: message {key!r}: no WhatsAppTemplate for template "
                                         f"{message.template!r}")
        if not message.recipient.phone:
            raise PermanentDeliveryError(f"{self.owner}: message {key!r} has no recipient phone")
        try:
            to = e164(message.recipient.phone).removeprefix("+")
        except ValueError as exc:
            raise PermanentDeliveryError(f"{self.owner}: message {key!r} not sent: {exc}") from exc
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "biz_opaque_callback_data": key[:512],
            "template": {
                "name": template.name,
                "language": {"code": _language(template, message.recipient.locale)},
                "components": self._built(template, message),
            },
        }
        what = f"message {key!r}"
        answer = await self._api.request("POST", self._path, what, body)
        if 200 <= answer.status < 300:
            return
        code = answer.body.get("error", {}).get("code") if isinstance(answer.body, dict) else None
        hint = _HINTS.get(code, "") if isinstance(code, int) else ""
        raise graph_error(answer, owner=self.owner, where=self._api.where, what=what,
                          scrub=lambda text: self._api.scrub(text, message.recipient.phone, to), hint=hint)

    def _built(self, template: WhatsAppTemplate, message: Message) -> list[dict[str, Any]]:
        key = message.key
        if self._components is not None:
            try:
                built = self._components(message)
            except Exception as exc:  # the shop's function: fails this message, named, not the engine
                raise PermanentDeliveryError(f"{self.owner}: components function failed for message {key!r}: "
                                             f"{type(exc).__name__}") from exc
            if not isinstance(built, list):
                raise PermanentDeliveryError(f"{self.owner}: components function returned {type(built).__name__} "
                                             f"for message {key!r}; expected a list")
            return built
        parameters = []
        for name in template.body:
            value = PARAMETERS[name](message)
            if not value:
                raise PermanentDeliveryError(f"{self.owner}: message {key!r} has no {name} for template "
                                             f"{template.name!r}'s body")
            parameters.append({"type": "text", "text": value})
        return [{"type": "body", "parameters": parameters}] if parameters else []

    async def aclose(self) -> None:
        """Close the HTTP client if the channel made it. Idempotent; later sends raise."""
        await self._api.aclose()


def _language(template: WhatsAppTemplate, locale: str | None) -> str:
    if locale:
        exact = locale.replace("-", "_")
        for code in (exact, exact.split("_")[0]):
            if code in template.languages:
                return code
    return template.language
