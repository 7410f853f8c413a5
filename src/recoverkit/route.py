"""Stage 4, route: turn scored abandonments into scheduled messages, following the shop's flows.

Flows are tried in the order configured; the **first** whose ``when`` holds takes the cart (so a shop writes
specific flows first and a catch-all last). Each of its steps becomes one :class:`~recoverkit.channels.Message`
due ``delay`` seconds after the abandonment, unless the step's own ``when`` excludes it. A channel is used only
with the customer's consent for it and a known address (see :class:`~recoverkit.config.ChannelPolicy`); when
either is missing the step's ``fallback`` channel is tried, else the step is skipped and counted
(``no_consent``, ``no_address``).

The stage also keeps the contact book (addresses, locale, time zone and consent per channel, from
``identify`` and ``consent`` events) and translates what happened to a cart into :class:`Cancel` orders for
dispatch: a return cancels what is pending for the cart, a purchase everything pending for the cart and the
customer, a withdrawal everything pending on that channel for the customer. When an anonymous shopper logs in,
their consent joins the customer's: a grant fills in a channel the customer has not decided on, and a
withdrawal on either side wins, since which came last is not known.
"""

from __future__ import annotations

import functools
import hashlib
import math
import zoneinfo
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Any

import cachetools
import msgspec

from . import _msgpack_parts as msgpack_parts
from ._interning import shared
from ._pipeline import Stage
from .cart import CartSnapshot
from .config import DEFAULT_CHANNELS, ChannelPolicy, Condition, Config, Flow, FlowStep, OfferSpec, channel_paths
from .currency import Amounts, Converter, Rates
from .events import CheckoutStep
from .facts import Assignment, AssignmentGroup, Conversion, HoldoutScope, MessageOutcome
from .items import Cancel, ContactChanged, Converted, Forget, Message, Offer, Recipient, Resumed, Scored

__all__ = ["Cancel", "Route"]


_STEPS = {"cart": CheckoutStep.CART, "checkout": CheckoutStep.CHECKOUT, "shipping": CheckoutStep.SHIPPING,
          "payment": CheckoutStep.PAYMENT}  # fmt: skip


def _unit(*parts: str) -> float:
    """A number in [0, 1) fixed by ``parts``: the same in every process and on every run (unlike ``hash()``)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@functools.lru_cache(maxsize=512)
def _zone(name: str | None) -> zoneinfo.ZoneInfo | None:
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # a customer's zone we do not know: the shop's then
        return None


def _score_matches(when: Condition, scored: Scored) -> bool:
    """The condition's bounds on the score, reason and trigger hold for ``scored``."""
    if when.min_score is not None and scored.probability < when.min_score:
        return False
    if when.max_score is not None and scored.probability > when.max_score:
        return False
    if when.reasons is not None and scored.reason not in when.reasons:
        return False
    return when.triggers is None or scored.abandoned.trigger in when.triggers


def _cart_matches(when: Condition, cart: CartSnapshot) -> bool:
    """The condition's currency, returning-customer and checkout-step requirements hold for ``cart``."""
    if when.currencies is not None and cart.currency not in when.currencies:
        return False
    if when.returning is not None and cart.returning != when.returning:
        return False
    return when.min_step is None or cart.step >= _STEPS[when.min_step]


#: Contacts a checkpoint encodes in one go before it lets the event loop run (about a millisecond's work).
CONTACTS_PART = 2048


class _Contact(msgspec.Struct, gc=False, array_like=True):
    customer_id: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    consent: dict[str, bool] = msgspec.field(default_factory=dict)


class _State(msgspec.Struct, array_like=True):
    watermark: float
    contacts: list[tuple[str, _Contact]]  # least recently used first
    skipped: dict[str, int]
    scheduled: list[tuple[str, int, str, int]]
    unrouted: int
    holdout: dict[str, int] = {}


def _addressed(policy: ChannelPolicy, contact_key: str, contact: _Contact | None) -> Recipient | None:
    """The recipient with the one address the channel needs, or ``None`` when the contact has none."""
    # Only the address this channel needs travels with the message: personal data goes no further than where it
    # is used.
    recipient = Recipient(
        contact_key=contact_key,
        customer_id=contact.customer_id if contact else None,
        locale=contact.locale if contact else None,
        timezone=contact.timezone if contact else None,
    )
    if policy.address in ("email", "phone", "email_or_phone"):
        email = contact.email if contact is not None and policy.address != "phone" else None
        phone = contact.phone if contact is not None and policy.address != "email" else None
        if email is None and phone is None:
            return None
        return msgspec.structs.replace(recipient, email=email, phone=phone)
    if policy.address == "customer_id" and recipient.customer_id is None:
        return None
    return recipient


class Route(Stage):
    """Applies flows to scored abandonments; keeps consent and addresses; issues cancellations."""

    name = "route"

    def __init__(self, config: Config, *, rates: Rates | None = None) -> None:
        super().__init__()
        self._config = config
        #: Finds configured amounts in a cart's currency (converting base-currency ones with the shop's rates).
        self._money = Converter(config.currency.base, config.currency.rates, rates)
        self._flows = config.flows
        # Bounded like the sessions: forgetting a contact can only stop messages (no consent known), never
        # send one that should not go.
        self._contacts: cachetools.LRUCache[str, _Contact] = cachetools.LRUCache(maxsize=config.max_sessions)
        self.skipped: Counter[str] = Counter()
        #: Carts held out of every flow ("*") or of one flow, by flow: the control groups.
        self.holdout: Counter[str] = Counter()
        self._seed = str(config.seed)
        self.scheduled: Counter[tuple[str, int, str]] = Counter()
        self.unrouted = 0
        #: For each consent that channels other than its namesake require (``ChannelPolicy.consent``), those
        #: channels: withdrawing it cancels what is pending on each of them.
        self._requiring: dict[str, list[str]] = {}
        for name in {*DEFAULT_CHANNELS, *config.channels, *channel_paths(config)}:
            consent = config.channel_policy(name).consent
            if consent is not None and consent != name:
                self._requiring.setdefault(consent, []).append(name)

    def handle(self, items: list[Any], out: list[Any]) -> None:
        for item in items:
            try:
                kind = type(item)
                if kind is Scored:
                    self._route(item, out)
                elif kind is Converted:
                    out.append(
                        Cancel(why="purchase", at=item.at, cart_key=item.cart_key, contact_key=item.contact_key)
                    )
                    out.append(
                        Conversion(
                            cart_key=item.cart_key, contact_key=item.contact_key, at=item.at, own=item.own,
                            value=item.value, currency=item.currency, transaction_id=item.transaction_id,
                        )
                    )
                elif kind is Resumed:
                    out.append(Cancel(why="resumed", at=item.at, cart_key=item.cart_key))
                elif kind is ContactChanged:
                    self._contact_changed(item, out)
                elif kind is Forget:
                    for key in item.contact_keys:
                        self._contacts.pop(key, None)
                    out.append(item)
                else:
                    out.append(item)
            except Exception:
                self.errors += 1
                self.log.exception("route_failed", item=type(item).__name__)

    # -- contacts -------------------------------------------------------------------------------------------

    def _contact_changed(self, change: ContactChanged, out: list[Any]) -> None:
        contacts = self._contacts
        contact = contacts.get(change.contact_key)
        if contact is None:
            contact = contacts[change.contact_key] = _Contact()
        if change.merged_from is not None:
            anonymous = contacts.pop(change.merged_from, None)
            if anonymous is not None:
                self._merge(anonymous, contact, change, out)
        if change.customer_id is not None:
            contact.customer_id = change.customer_id
        if change.email is not None:
            contact.email = change.email
        if change.phone is not None:
            contact.phone = change.phone
        # Interned, as are the consent's channel names below: a handful of values every contact shares ("en-GB",
        # "Europe/Paris", "email"), where each event decoded its own copy and each contact kept one (about 4 MB
        # held per million events of a replay).
        if change.locale is not None:
            contact.locale = shared(change.locale)
        if change.timezone is not None:
            contact.timezone = shared(change.timezone)
        for channel in change.granted:
            contact.consent[shared(channel)] = True
        for channel in change.withdrawn:
            contact.consent[shared(channel)] = False
            self._withdrawn(channel, change, out)

    def _merge(self, anonymous: _Contact, contact: _Contact, change: ContactChanged, out: list[Any]) -> None:
        """An anonymous shopper's contact merged into the customer's they logged in as: what the customer's lacks
        is taken from it, and consent granted while anonymous is kept unless the customer said otherwise."""
        for field in ("email", "phone", "locale", "timezone"):
            if getattr(contact, field) is None:
                setattr(contact, field, getattr(anonymous, field))
        for channel, granted in anonymous.consent.items():
            if granted:
                contact.consent.setdefault(channel, True)
                continue
            # Never send on a "no": a withdrawal made while anonymous stops the customer's messages.
            before = contact.consent.get(channel)
            contact.consent[channel] = False
            if before:
                self._withdrawn(channel, change, out)

    def _withdrawn(self, consent: str, change: ContactChanged, out: list[Any]) -> None:
        """Cancel what is pending on the channel named ``consent`` and on every channel that requires it."""
        for channel in (consent, *sorted(self._requiring.get(consent, ()))):
            out.append(Cancel(why="consent_withdrawn", at=change.at, contact_key=change.contact_key, channel=channel))

    # -- flows ----------------------------------------------------------------------------------------------

    def _route(self, scored: Scored, out: list[Any]) -> None:
        cart = scored.abandoned.cart
        flow = next((f for f in self._flows if self._holds(f.when, scored)), None)
        if flow is None:
            self.unrouted += 1
            return
        if self._held_out(scored, flow, out):
            return
        contact = self._contacts.get(cart.contact_key)
        steps = [self._variant(base, cart.cart_key, flow.name, index) for index, base in enumerate(flow.steps)]
        variants = {str(index): variant for index, (_, variant) in enumerate(steps) if variant is not None}
        out.append(self._assignment(scored, flow, "treatment", None, variants))
        for index, (step, variant) in enumerate(steps):
            if step.when is not None and not self._holds(step.when, scored):
                self._skip(scored, flow, index, variant, "condition", out)
                continue
            channel, recipient, why = self._channel_for(step, cart.contact_key, contact, returning=cart.returning)
            if channel is None or recipient is None:
                self._skip(scored, flow, index, variant, why, out)
                continue
            self.scheduled[(flow.name, index, channel)] += 1
            out.append(self._message(scored, flow, index, step, channel, recipient, variant))

    def _held_out(self, scored: Scored, flow: Flow, out: list[Any]) -> bool:
        """Whether the cart falls in the shop-wide control group or the flow's (recorded as its assignment).

        The holdouts are drawn among the carts a flow would take, so that the control group compares with the
        messaged carts like for like; each draw depends only on the seed and the cart (and flow).
        """
        cart_key = scored.abandoned.cart.cart_key
        if self._config.holdout and _unit(self._seed, "holdout", cart_key) < self._config.holdout:
            self.holdout["*"] += 1  # the shop-wide control group
            out.append(self._assignment(scored, flow, "holdout", "global", {}))
            return True
        if flow.holdout and _unit(self._seed, "holdout", flow.name, cart_key) < flow.holdout:
            self.holdout[flow.name] += 1
            out.append(self._assignment(scored, flow, "holdout", "flow", {}))
            return True
        return False

    def _skip(self, scored: Scored, flow: Flow, index: int, variant: str | None, why: str, out: list[Any]) -> None:
        """A step that will not be sent to this cart: counted, and kept as the step's outcome for analytics."""
        self.skipped[why] += 1
        cart = scored.abandoned.cart
        out.append(
            MessageOutcome(
                key=f"{cart.cart_key}/{flow.name}/{index}", cart_key=cart.cart_key, contact_key=cart.contact_key,
                flow=flow.name, step=index, outcome=f"skipped_{why}", at=scored.abandoned.at, variant=variant,
            )
        )

    @staticmethod
    def _assignment(
        scored: Scored, flow: Flow, group: AssignmentGroup, scope: HoldoutScope | None, variants: dict[str, str]
    ) -> Assignment:
        cart = scored.abandoned.cart
        return Assignment(
            cart_key=cart.cart_key, flow=flow.name, group=group, scope=scope, contact_key=cart.contact_key,
            assigned_at=scored.abandoned.at, value=cart.value, currency=cart.currency, variants=variants,
            score=scored.probability, reason=scored.reason, trigger=scored.abandoned.trigger,
        )  # fmt: skip

    def _variant(self, step: FlowStep, cart_key: str, flow: str, index: int) -> tuple[FlowStep, str | None]:
        """The step as the cart's A/B variant has it (assigned by weight, the same on every run), and its name."""
        if not step.variants:
            return step, None
        point = _unit(self._seed, "variant", flow, str(index), cart_key) * sum(v.weight for v in step.variants)
        chosen = step.variants[-1]
        for variant in step.variants:
            point -= variant.weight
            if point < 0:
                chosen = variant
                break
        changes = {
            name: getattr(chosen, name)
            for name in ("template", "channel", "delay", "offer")
            if getattr(chosen, name) is not None
        }
        return msgspec.structs.replace(step, **changes), chosen.name

    def _channel_for(
        self, step: FlowStep, contact_key: str, contact: _Contact | None, *, returning: bool = False
    ) -> tuple[str | None, Recipient | None, str]:
        why = "no_consent"
        for channel in (step.channel, step.fallback):
            if channel is None:
                continue
            policy = self._config.channel_policy(channel)
            if policy.requires_consent and not self._consents(policy, channel, contact, returning):
                why = "no_consent"
                continue
            recipient = _addressed(policy, contact_key, contact)
            if recipient is None:
                why = "no_address"
                continue
            return channel, recipient, ""
        return None, None, why

    @staticmethod
    def _consents(policy: ChannelPolicy, channel: str, contact: _Contact | None, returning: bool) -> bool:
        decided = contact.consent.get(policy.consent or channel) if contact is not None else None
        if decided is not None:
            return decided  # a "no" always wins, soft opt-in or not
        # Soft opt-in: a customer who has bought before and was never asked may be written to.
        return policy.soft_opt_in and returning

    def _holds(self, when: Condition, scored: Scored) -> bool:
        cart = scored.abandoned.cart
        return _score_matches(when, scored) and _cart_matches(when, cart) and self._value_within(when, cart)

    def _value_within(self, when: Condition, cart: CartSnapshot) -> bool:
        """The cart's value is within the condition's bounds, each in the cart's currency (a bound without an
        amount in it, nor a rate to convert one, does not hold)."""
        if when.min_value is not None:
            least = self._bound(when.min_value, cart.currency)
            if least is None or cart.value < least:
                return False
        if when.max_value is not None:
            most = self._bound(when.max_value, cart.currency)
            if most is None or cart.value > most:
                return False
        return True

    def _bound(self, given: Amounts, currency: str | None) -> int | None:
        """A condition's amount in minor units of ``currency``, or ``None`` (counted): then the bound cannot hold."""
        limit = self._money.minor(given, currency)
        if limit is None:
            self.skipped["condition_currency"] += 1  # no amount in this currency and no rate to convert one
        return limit

    def _message(
        self,
        scored: Scored,
        flow: Flow,
        index: int,
        step: FlowStep,
        channel: str,
        to: Recipient,
        variant: str | None,
    ) -> Message:
        abandoned = scored.abandoned
        due = self._outside_quiet_hours(abandoned.at + step.delay, channel, to.timezone)
        return Message(
            key=f"{abandoned.cart.cart_key}/{flow.name}/{index}",
            flow=flow.name,
            step=index,
            channel=channel,
            template=step.template,
            due_at=due,
            abandoned_at=abandoned.at,
            trigger=abandoned.trigger,
            score=scored.probability,
            reason=scored.reason,
            cart=abandoned.cart,
            recipient=to,
            variant=variant,
            offer=self._offer(step, scored, due),
        )

    def _offer(self, step: FlowStep, scored: Scored, due: float) -> Offer | None:
        """The offer the step makes for this cart, as data; a code is issued when the message is sent."""
        name = step.offer_by_reason.get(scored.reason, step.offer)
        if name is None:
            return None
        spec = self._config.offers[name]
        currency = scored.abandoned.cart.currency
        amounts = self._offer_amounts(spec, currency)
        if amounts is None:
            return None
        amount, minimum = amounts
        substitute = spec.kind == "substitute"
        return Offer(
            kind=spec.kind,
            name=spec.name,
            percent=spec.percent,
            amount=amount,
            currency=currency if amount is not None or minimum is not None else None,
            min_value=minimum,
            expires_at=due + spec.valid_for,
            points=spec.points,
            multiplier=spec.multiplier,
            suggest=(spec.suggest or "substitute") if substitute else None,
            suggest_limit=(spec.suggestions or 3) if substitute else None,
            complement_limit=spec.complements,
        )

    def _offer_amounts(self, spec: OfferSpec, currency: str | None) -> tuple[int | None, int | None] | None:
        """The offer's amount and minimum in minor units of ``currency`` (each ``None`` when the offer has none),
        or ``None`` (counted) when one is configured but not available in this currency."""
        # Amounts of an offer are bound to a currency (a code records it): without the cart's, none applies.
        amount = self._money.minor(spec.amount, currency) if spec.amount and currency else None
        minimum = self._money.minor(spec.min_value, currency) if spec.min_value and currency else None
        if (spec.amount and amount is None) or (spec.min_value and minimum is None):
            # An amount or minimum not configured in this cart's currency, nor convertible to it: never guessed.
            self.skipped["offer_currency"] += 1
            return None
        return amount, minimum

    def _outside_quiet_hours(self, due: float, channel: str, timezone: str | None) -> float:
        """``due``, or the end of the channel's quiet hours in the customer's (else the shop's) time zone."""
        quiet = self._config.channel_policy(channel).quiet_hours
        if quiet is None:
            return due
        zone = _zone(timezone) or _zone(self._config.timezone) or UTC
        local = datetime.fromtimestamp(due, zone)
        start, end = quiet.minutes()
        minute = local.hour * 60 + local.minute
        inside = start <= minute < end if start < end else (minute >= start or minute < end)
        if not inside:
            return due
        day = local.date() if minute < end else local.date() + timedelta(days=1)
        ends = datetime.combine(day, time(end // 60, end % 60), zone)
        # A local time that does not exist (a DST gap) resolves to the instant after the gap: still later.
        return max(ends.timestamp(), due)

    def contact_of(self, contact_key: str) -> dict[str, Any] | None:
        """The contact record kept for ``contact_key`` (addresses, locale, consent), for an access request."""
        contact = self._contacts.get(contact_key)
        return None if contact is None else msgspec.to_builtins(msgspec.structs.asdict(contact))

    # -- state ----------------------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        # Read through the base class: LRUCache.__getitem__ would reorder the cache on every read, and is slow.
        # The order kept is the order of insertion, close to (not exactly) least recently used first; it only
        # matters once max_sessions contacts are held.
        cache = self._contacts
        read = cachetools.Cache.__getitem__
        contacts = [(key, read(cache, key)) for key in cache]
        scheduled = [(flow, step, channel, n) for (flow, step, channel), n in self.scheduled.items()]
        state = _State(self.watermark, contacts, dict(self.skipped), scheduled, self.unrouted, dict(self.holdout))
        return msgspec.msgpack.encode(state)

    async def snapshot_soon(self) -> bytes:
        """:meth:`snapshot`'s bytes exactly, the contacts encoded :data:`CONTACTS_PART` at a time with the event
        loop let run in between (at 100,000 contacts a checkpoint held it 30 ms), joined off the loop."""
        cache = self._contacts
        if len(cache) <= CONTACTS_PART:
            return self.snapshot()
        read = cachetools.Cache.__getitem__
        contacts = ((key, read(cache, key)) for key in cache)  # raises, were the cache changed meanwhile
        scheduled = [(flow, step, channel, n) for (flow, step, channel), n in self.scheduled.items()]
        fields = [
            self.watermark, msgpack_parts.Lazy(contacts, len(cache), list), dict(self.skipped), scheduled,
            self.unrouted, dict(self.holdout),
        ]  # fmt: skip
        return await msgpack_parts.encode_fields(fields, step=CONTACTS_PART)

    def restore(self, state: bytes | None) -> None:
        s = _State(-math.inf, [], {}, [], 0) if state is None else msgspec.msgpack.decode(state, type=_State)
        self.watermark = s.watermark
        self._contacts.clear()
        for key, contact in s.contacts:
            self._contacts[key] = contact
        self.skipped = Counter(s.skipped)
        self.scheduled = Counter({(flow, step, channel): n for flow, step, channel, n in s.scheduled})
        self.unrouted = s.unrouted
        self.holdout = Counter(s.holdout)

    def extra_statistics(self) -> dict[str, Any]:
        return {
            "contacts": len(self._contacts),
            "skipped": dict(self.skipped),
            "unrouted": self.unrouted,
            "holdout": dict(self.holdout),
            "scheduled": sum(self.scheduled.values()),
        }
