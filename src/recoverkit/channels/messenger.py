"""Facebook Messenger (Send API): a recovery message as text from the shop's Page.

What goes out
-------------
``POST /<version>/<page_id>/messages`` with ``{"recipient": {"id": "<PSID>"}, "messaging_type": "UPDATE",
"message": {"text": "..."}}``, authenticated with the Page access token (``Authorization: Bearer``). The text is
the flow template's SMS text (``<template>.sms.txt``, see docs/templates.md), at most 2,000 characters. The
recipient is a page-scoped id (PSID), which the shop learns when the shopper writes to its Page (or through the
checkbox plugin); ``psid(message)`` returns it for a message's recipient (sync or async), ``None`` for none.

The 24-hour window and message tags
-----------------------------------
Messenger lets a Page message a person within 24 hours of that person's last message to it
(``messaging_type`` ``RESPONSE`` or ``UPDATE``). Outside the window only ``MESSAGE_TAG`` with one of four tags
(``CONFIRMED_EVENT_UPDATE``, ``POST_PURCHASE_UPDATE``, ``ACCOUNT_UPDATE``, ``HUMAN_AGENT``) is allowed, and
Meta's policy forbids promotional content under them: **a cart reminder is not an allowed use of a tag**. So
the channel sends ``UPDATE`` by default, which reaches shoppers who wrote to the Page in the last 24 hours;
Messenger refuses the rest (error 10, subcode 2018278, or 551), and the channel fails them permanently, saying
so. Set ``messaging_type="MESSAGE_TAG"`` and ``tag=`` only for messages the tag's policy allows. Meta's
opt-in marketing messages (notification tokens) are not covered.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from ..templates import TemplateError, Templates
from ._api import JsonApi, Token, check_base_url, check_text, check_timeout, check_token
from ._graph import graph_error
from .base import Message

if TYPE_CHECKING:
    import httpx

__all__ = ["MessengerChannel"]

GRAPH_URL = "https://graph.facebook.com/v21.0"
TAGS = ("CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE", "HUMAN_AGENT")
MAX_TEXT = 2000

#: The shop's lookup of a recipient's page-scoped id: sync or async, ``None`` when there is none.
Psid = Callable[[Message], str | None | Awaitable[str | None]]


class MessengerChannel:
    """Send each message as Messenger text from Page ``page_id``; see the module docstring.

    - ``access_token``: the Page access token with ``pages_messaging`` (never logged), or a function returning it.
    - ``psid``: the recipient's page-scoped id for a message.
    - ``templates``: where texts come from (the SMS kind; default: recoverkit's built-in templates).
    - ``messaging_type``: ``"UPDATE"`` (default), ``"RESPONSE"`` or ``"MESSAGE_TAG"`` (then ``tag`` is required).
    - ``base_url``, ``timeout``, ``client``: as for the other HTTP adapters.
    """

    owner = "MessengerChannel"

    def __init__(
        self,
        page_id: str,
        *,
        access_token: Token,
        psid: Psid,
        templates: Templates | None = None,
        messaging_type: Literal["UPDATE", "RESPONSE", "MESSAGE_TAG"] = "UPDATE",
        tag: str | None = None,
        base_url: str = GRAPH_URL,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        page = check_text(self.owner, "page_id", page_id)
        if not page.isdigit():
            raise ConfigError(f"MessengerChannel page_id must be the Page's numeric id, got {page!r}")
        if not callable(psid):
            raise ConfigError(f"MessengerChannel psid must be a function (message) -> str | None, got "
                              f"{type(psid).__name__}")
        if messaging_type not in ("UPDATE", "RESPONSE", "MESSAGE_TAG"):
            raise ConfigError(f"MessengerChannel messaging_type must be 'UPDATE', 'RESPONSE' or 'MESSAGE_TAG', got "
                              f"{messaging_type!r}")
        if (messaging_type == "MESSAGE_TAG") != (tag is not None) or (tag is not None and tag not in TAGS):
            raise ConfigError(f"MessengerChannel tag must be one of {', '.join(TAGS)} with messaging_type "
                              f"'MESSAGE_TAG', and None otherwise; got tag={tag!r} with {messaging_type!r}")
        self._psid = psid
        self._templates = templates if templates is not None else Templates()
        self._messaging_type = messaging_type
        self._tag = tag
        self._api = JsonApi(
            self.owner, check_base_url(self.owner, base_url, GRAPH_URL), check_token(self.owner, access_token),
            timeout=check_timeout(self.owner, timeout), client=client,
        )  # fmt: skip
        self._path = f"{page}/messages"

    def __repr__(self) -> str:
        return f"MessengerChannel(host={self._api.where!r}, messaging_type={self._messaging_type!r})"

    def check_templates(self, names: Iterable[str]) -> None:
        """Raise :class:`~recoverkit.errors.ConfigError` unless every template in ``names`` renders (SMS kind)."""
        self._templates.check(names, kind="sms")

    async def send(self, message: Message) -> None:
        """Render and send the text; return once Messenger accepted it."""
        key = message.key
        try:
            text = self._templates.render(message.template, message, kind="sms").text
        except TemplateError as exc:
            raise PermanentDeliveryError(f"{self.owner}: message {key!r} not sent: {exc}") from exc
        if len(text) > MAX_TEXT:
            raise PermanentDeliveryError(f"{self.owner}: message {key!r} renders to {len(text)} characters; "
                                         f"Messenger takes at most {MAX_TEXT}")
        psid = await self._lookup(message)
        body: dict[str, Any] = {
            "recipient": {"id": psid},
            "messaging_type": self._messaging_type,
            "message": {"text": text},
        }
        if self._tag is not None:
            body["tag"] = self._tag
        what = f"message {key!r}"
        answer = await self._api.request("POST", self._path, what, body)
        if 200 <= answer.status < 300:
            return
        error = answer.body.get("error", {}) if isinstance(answer.body, dict) else {}
        outside = error.get("code") == 10 and error.get("error_subcode") == 2018278 or error.get("code") == 551
        hint = " (outside the 24-hour window, or the person cannot be messaged by this Page)" if outside else ""
        raise graph_error(answer, owner=self.owner, where=self._api.where, what=what,
                          scrub=lambda t: self._api.scrub(t, psid), hint=hint)

    async def _lookup(self, message: Message) -> str:
        key = message.key
        try:
            psid = self._psid(message)
            if inspect.isawaitable(psid):
                psid = await psid
        except Exception as exc:  # the shop's lookup (a database): may work next time
            raise TransientDeliveryError(f"{self.owner}: psid lookup for message {key!r} raised "
                                         f"{type(exc).__name__}") from exc
        if psid is None:
            raise PermanentDeliveryError(f"{self.owner}: message {key!r}: no page-scoped id (PSID) for the "
                                         "recipient; they have not written to the Page")
        if not isinstance(psid, str) or not psid.isdigit():
            raise PermanentDeliveryError(f"{self.owner}: psid lookup for message {key!r} returned "
                                         f"{type(psid).__name__}; expected a str of digits or None")
        return psid

    async def aclose(self) -> None:
        """Close the HTTP client if the channel made it. Idempotent; later sends raise."""
        await self._api.aclose()
