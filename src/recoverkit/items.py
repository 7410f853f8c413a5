"""What travels between stages: every type that crosses a link of the pipeline, in one place.

A newcomer reading one stage finds here what it receives and what it hands on, without opening the stage
that produces it. Links carry, in order of the pipeline (``docs/architecture.md``, "What flows through"):

- ingest → sessionize: the shop's events (:mod:`recoverkit.events`, the contract with the shop, which stays
  there) and :class:`Forget`;
- sessionize → score: :class:`Abandoned`, :class:`Resumed`, :class:`Converted`, :class:`ContactChanged`;
- score → route: :class:`Scored` (with its :class:`Features`); the rest passes through;
- route → dispatch: :class:`Message` (with its :class:`Recipient`, the cart's
  :class:`~recoverkit.cart.CartSnapshot` and an :class:`Offer`), :class:`Cancel`;
- dispatch → the shop's channel adapter: :class:`Message`.

:class:`Forget` lives here rather than in :mod:`recoverkit.privacy` because it rides every link (each stage
erases what it holds when it passes); privacy builds it from the journal record and re-exports it. The
analytics facts that also ride the links to dispatch (``Assignment``, ``Conversion``, ``MessageOutcome``,
``LinkVisit``) stay in :mod:`recoverkit.facts` with the other records analytics reads: dispatch only hands
them to the store. :class:`~recoverkit.cart.CartSnapshot` stays in :mod:`recoverkit.cart`, which the events
side uses too. The pipeline's own plumbing (``Batch``, ``Control``) is in :mod:`recoverkit._pipeline`.

Every type is a frozen, keyword-only :class:`msgspec.Struct` (``Forget`` is filled in as it travels, see its
docstring), built by the stages and trusted to the type checker; the older homes (``recoverkit.sessionize``,
``recoverkit.score``, ``recoverkit.route``, ``recoverkit.channels.base``, ``recoverkit.offers``,
``recoverkit.privacy``, ``recoverkit.config``) re-export their names. This module depends only on the cart
and the catalogue's suggestion type, so that every stage, the configuration and the offers can import it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .cart import CartSnapshot
from .catalogue import Suggestion, SuggestKind

__all__ = [
    "Abandoned",
    "Cancel",
    "ContactChanged",
    "Converted",
    "Features",
    "Forget",
    "Message",
    "Offer",
    "OfferKind",
    "Reason",
    "Recipient",
    "Resumed",
    "Scored",
    "Trigger",
]

#: What triggered an abandonment (see :mod:`recoverkit.sessionize`).
Trigger = Literal["inactivity", "exit_intent", "payment_failed"]
#: Likely abandonment reasons (see :mod:`recoverkit.score`).
Reason = Literal["shipping_cost", "payment_failure", "form_friction", "price_comparison", "unknown"]
#: What an offer gives; see :mod:`recoverkit.offers`.
OfferKind = Literal["discount", "free_shipping", "payment_help", "substitute", "loyalty_bonus"]


# -- erasure, through every stage ----------------------------------------------------------------------------------


class Forget(msgspec.Struct, kw_only=True):
    """An erasure request for ``customer_id`` travelling through the pipeline.

    ``contact_keys`` and ``cart_keys`` are filled in by sessionize (every anonymous session stitched to the
    customer has its own contact key ``session:<id>``) so that later stages erase those too.
    """

    customer_id: str
    at: float
    contact_keys: list[str] = msgspec.field(default_factory=list)
    cart_keys: list[str] = msgspec.field(default_factory=list)


# -- sessionize → score ----------------------------------------------------------------------------------------------


class Abandoned(msgspec.Struct, frozen=True, kw_only=True):
    """A cart was left: its snapshot, what gave it away and when (the timer's due time)."""

    cart: CartSnapshot
    trigger: Trigger
    at: float


class Resumed(msgspec.Struct, frozen=True, kw_only=True):
    """The shopper came back to an abandoned cart before buying: what is pending for it should stop."""

    cart_key: str
    contact_key: str
    at: float


class Converted(msgspec.Struct, frozen=True, kw_only=True):
    """A cart was bought (or closed by a purchase of its customer in another session).

    ``value`` is the order value in minor units of ``currency`` when the purchase event said so.
    """

    cart_key: str
    session_id: str
    customer_id: str | None
    contact_key: str
    at: float
    value: int | None = None
    currency: str | None = None
    transaction_id: str | None = None
    #: ``False`` when the cart was closed by a purchase of its customer in another session.
    own: bool = True


class ContactChanged(msgspec.Struct, frozen=True, kw_only=True):
    """Contact details or consent changed for ``contact_key``.

    ``merged_from`` names an anonymous contact (``session:<id>``) whose consent now belongs to this customer.
    ``email`` and ``phone`` are personal data and are only ever used to address messages.
    """

    contact_key: str
    at: float
    customer_id: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    granted: tuple[str, ...] = ()
    withdrawn: tuple[str, ...] = ()
    merged_from: str | None = None


# -- score → route ---------------------------------------------------------------------------------------------------


class Features(msgspec.Struct, frozen=True, kw_only=True):
    """What a model may know about an abandoned cart at the moment it was abandoned.

    ``value`` is the cart value in major units as a float: a model input, never used for money arithmetic.
    ``shipping_ratio`` is shipping cost over cart value (0 when either is unknown).
    """

    value: float
    lines: int
    quantity: int
    step: int
    checkout_seconds: float
    session_seconds: float
    returning: bool
    identified: bool
    payment_failures: int
    form_errors: int
    exit_intent: bool
    shipping_ratio: float
    item_views: int
    views: int
    trigger: str
    # From the shop's ``checkout_signal`` events (see CheckoutSignals); 0 when it sends none. Defaults keep
    # features built before they existed (a shop's tests, stored records) valid.
    dead_clicks: int = 0
    slow_steps: int = 0
    tab_aways: int = 0
    hidden_seconds: float = 0.0
    longest_form_step: float = 0.0
    #: Whether the shop sent any ``checkout_signal`` for the cart (then a zero above is a measured zero).
    signals: bool = False


class Scored(msgspec.Struct, frozen=True, kw_only=True):
    """An abandonment with its features, score and reason: what the route stage decides on."""

    abandoned: Abandoned
    features: Features
    probability: float
    reason: Reason
    #: Which scorer produced the figure: the shop's, or ``"default"`` when it failed or none was given.
    scorer: str = "default"


# -- route → dispatch → adapter --------------------------------------------------------------------------------------


class Cancel(msgspec.Struct, frozen=True, kw_only=True):
    """Stop pending messages: for a cart, for a contact, or for one channel of a contact.

    ``why`` is ``"purchase"`` (also remembered by dispatch so that nothing for that cart or contact is sent
    afterwards), ``"resumed"`` or ``"consent_withdrawn"``.
    """

    why: Literal["purchase", "resumed", "consent_withdrawn"]
    at: float
    cart_key: str | None = None
    contact_key: str | None = None
    channel: str | None = None


class Offer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One offer made in one message; see :mod:`recoverkit.offers` for the fields each ``kind`` uses."""

    kind: OfferKind
    name: str
    code: str | None = None
    percent: int | None = None
    amount: int | None = None
    currency: str | None = None
    min_value: int | None = None
    expires_at: float | None = None
    items: tuple[str, ...] = ()
    points: int | None = None
    #: ``loyalty_bonus``: the order earns this many times its usual points (instead of ``points`` extra).
    multiplier: int | None = None
    #: ``loyalty_bonus``: the loyalty programme's reference of the grant, once granted (when the message was sent).
    grant_id: str | None = None
    #: ``substitute``: the products suggested, once the catalogue was asked (when the message was sent).
    suggestions: tuple[Suggestion, ...] = ()
    #: ``substitute``: what to ask the catalogue for, and how many at most.
    suggest: SuggestKind | None = None
    suggest_limit: int | None = None
    #: Any kind: products that go with the cart, "goes well with" beside the offer (asked when the message is sent),
    #: and how many at most were asked for.
    complements: tuple[Suggestion, ...] = ()
    complement_limit: int | None = None


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    """Who a message is for. ``email`` and ``phone`` are personal data: adapters must not log them."""

    contact_key: str
    customer_id: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None

    def __repr__(self) -> str:
        # Keep addresses out of reprs, which end up in tracebacks and logs.
        return (
            f"Recipient(contact_key={self.contact_key!r}, email={'***' if self.email else None}, "
            f"phone={'***' if self.phone else None})"
        )


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One recovery message, scheduled by the route stage and delivered by dispatch.

    ``key`` is the idempotency key ``"<cart_key>/<flow>/<step>"``: the engine sends each key at most once.
    ``due_at`` is epoch seconds on the engine's clock. ``score`` is the cart's conversion probability and
    ``reason`` its likely abandonment reason (see :mod:`recoverkit.score`).
    """

    key: str
    flow: str
    step: int
    channel: str
    template: str
    due_at: float
    abandoned_at: float
    trigger: str
    score: float
    reason: str
    cart: CartSnapshot
    recipient: Recipient
    #: The A/B variant of the step this message was assigned (recorded on every message of an experiment).
    variant: str | None = None
    #: What the message offers (a code, free shipping, ...), see :mod:`recoverkit.offers`.
    offer: Offer | None = None
    #: A signed link that restores the cart (see :mod:`recoverkit.links`), when the shop's URL is configured.
    restore_url: str | None = None
