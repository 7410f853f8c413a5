"""Engine configuration: one typed Struct tree, validated when the engine is built.

Build it in Python (``Config(abandon_after=900)``), from a ``dict`` (:meth:`Config.from_dict`) or from a TOML
file (:func:`load_config`). Every field has a default, so ``Config()`` runs a shop with a sensible zero-config
recovery flow (an email one hour after abandonment, a second one a day later). Errors are raised at start-up
as :class:`~recoverkit.errors.ConfigError` naming the file, the key path, the value and what was expected.
Durations are seconds.
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from ._alert_settings import AlertsConfig
from ._restore_url import check_base_url
from ._validation import describe_value, split_error
from .errors import ConfigError
from .items import Reason, Trigger
from .offers import CodePolicy

__all__ = [
    "DEFAULT_CHANNELS",
    "Cap",
    "ChannelPolicy",
    "Condition",
    "Config",
    "CurrencyConfig",
    "Flow",
    "FlowStep",
    "LinksConfig",
    "OfferSpec",
    "QuietHours",
    "StoreConfig",
    "Variant",
    "channel_paths",
    "load_config",
]

_Seconds = Annotated[float, msgspec.Meta(ge=0)]
_Positive = Annotated[float, msgspec.Meta(gt=0)]
_NAME_PATTERN = "^[a-z][a-z0-9_-]{0,31}$"
_Name = Annotated[str, msgspec.Meta(pattern=_NAME_PATTERN)]
_Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]

_MAX_AMOUNT_DIGITS = 15

class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Config Structs reject unknown keys: a typo in a config file must fail at start-up, not be ignored."""


_Clock = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class QuietHours(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Local hours ``start`` to ``end`` (``"HH:MM"``, 24-hour) in which a channel stays silent.

    A window may cross midnight (``start = "21:00"``, ``end = "08:00"``). A message due inside it is moved to
    its end, so it is delayed, never dropped.
    """

    start: _Clock
    end: _Clock

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError(f"`end` expected a time other than `start` ({self.start}); remove quiet_hours instead")

    def minutes(self) -> tuple[int, int]:
        """Start and end as minutes after local midnight."""
        (sh, sm), (eh, em) = (map(int, t.split(":")) for t in (self.start, self.end))
        return sh * 60 + sm, eh * 60 + em


class ChannelPolicy(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How dispatch treats one channel, and what routing needs before using it.

    ``address`` names the recipient field the channel needs (``"none"`` for channels such as a webhook to the
    shop's own systems); ``requires_consent`` whether the customer must have granted ``consent``: the name of
    the consent (a purpose the shopper grants or withdraws, as ``consent`` events name it) this channel needs,
    by default the channel's own name. Several channels may share one: both ad audiences need ``"ads"``.
    Retries back off exponentially from ``backoff`` to at most ``backoff_max`` seconds with full jitter.
    """

    #: ``"email_or_phone"``: whichever of the two are known travel, at least one (the ad audiences match on both).
    address: Literal["email", "phone", "email_or_phone", "customer_id", "none"] = "email"
    requires_consent: bool = True
    #: The consent this channel requires (``None``: the channel's own name); see the class docs.
    consent: _Name | None = None
    #: Soft opt-in (as the UK's PECR and the EU's ePrivacy rules allow for a shop's own customers): a customer
    #: who has bought before and never said no may be written to without an explicit grant. Off by default.
    soft_opt_in: bool = False
    #: No message on this channel inside these local hours (the customer's time zone, else the shop's); one due
    #: then moves to their end.
    quiet_hours: QuietHours | None = None
    timeout: _Positive = 10.0
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 8
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    backoff: _Positive = 30.0
    backoff_max: _Positive = 3600.0


#: Policies for the channel names recoverkit knows; a shop can override any and add its own.
DEFAULT_CHANNELS: Mapping[str, ChannelPolicy] = {
    "email": ChannelPolicy(address="email"),
    "sms": ChannelPolicy(address="phone"),
    "push": ChannelPolicy(address="customer_id"),
    "webhook": ChannelPolicy(address="none", requires_consent=False),
    "ads": ChannelPolicy(address="customer_id"),
    # On-site offers wait in the store for the visitor's next page view (recoverkit.onsite): shown on the shop's
    # own pages to the visitor the cart belongs to, so they need no address and no consent of their own.
    "onsite": ChannelPolicy(address="none", requires_consent=False),
    # The ad audiences need the "ads" consent and batch their sends: many may be in flight (docs/audiences.md).
    "google_ads": ChannelPolicy(address="email_or_phone", consent="ads", concurrency=500, timeout=60.0),
    "meta_ads": ChannelPolicy(address="email_or_phone", consent="ads", concurrency=500, timeout=60.0),
    "whatsapp": ChannelPolicy(address="phone"),
    "messenger": ChannelPolicy(address="customer_id"),
}


class Condition(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Entry conditions on a scored abandonment; every given bound must hold.

    The trigger of a flow is written here too: ``triggers = ["payment_failed"]`` for failed payments,
    ``min_step = "checkout"`` for abandoned checkouts; no condition takes every abandoned cart.

    ``min_value`` and ``max_value`` are in major units: one amount (``"20.00"``), in the base currency when
    ``[currency] base`` is set (converted to the cart's currency with the shop's rates), else in the cart's
    currency; or one amount per currency (``{ EUR = "20.00", USD = "25.00" }``), the cart's own winning over a
    converted base amount (see :mod:`recoverkit.currency`). A bound that cannot be found in the cart's currency
    does not hold. ``currencies`` limits the condition to carts in those currencies.
    """

    min_score: _Probability | None = None
    max_score: _Probability | None = None
    reasons: list[Reason] | None = None
    triggers: list[Trigger] | None = None
    min_value: Decimal | dict[Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")], Decimal] | None = None
    max_value: Decimal | dict[Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")], Decimal] | None = None
    currencies: list[Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]] | None = None
    returning: bool | None = None
    #: How far the cart got at least: ``"checkout"`` makes a checkout-abandonment flow.
    min_step: Literal["cart", "checkout", "shipping", "payment"] | None = None

    def __post_init__(self) -> None:
        for name in ("min_value", "max_value"):
            given = getattr(self, name)
            if given is None:
                continue
            if isinstance(given, dict):
                amounts = {currency: _amount(name, value) for currency, value in given.items()}
                msgspec.structs.force_setattr(self, name, amounts)
            else:
                msgspec.structs.force_setattr(self, name, _amount(name, given))


def _amount(name: str, amount: object) -> Decimal:
    """A condition's amount as a Decimal, or ValueError: built in Python it may be an int or a str, never a float."""
    if isinstance(amount, (int, str)) and not isinstance(amount, bool):
        # Built in Python (Condition(min_value=50)): decoding would have made it a Decimal; so do we.
        try:
            amount = Decimal(amount)
        except ArithmeticError as exc:
            raise ValueError(f"`{name}` expected an amount in major units, got {amount!r}") from exc
    elif not isinstance(amount, Decimal):
        raise ValueError(f"`{name}` expected an amount in major units (Decimal, int or str), got {amount!r}")
    # NaN and infinities pass Decimal parsing but no comparison with a cart's value is meaningful.
    # adjusted(): the power of ten of the leading digit, read without arithmetic that could overflow.
    if not (amount.is_finite() and amount.adjusted() < _MAX_AMOUNT_DIGITS):
        raise ValueError(f"`{name}` expected a finite amount below 10^{_MAX_AMOUNT_DIGITS} in major units")
    return amount


class Cap(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A frequency cap: at most ``max`` messages to one customer on ``channel`` (every channel when omitted)
    within any ``per`` seconds, across all flows. A message over the cap is skipped and counted (``capped``),
    not delayed."""

    max: Annotated[int, msgspec.Meta(ge=1)]
    per: _Positive
    channel: _Name | None = None


_Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]


class OfferSpec(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An offer a flow step can make (see :mod:`recoverkit.offers`): named in ``[offers.<name>]``.

    ``discount`` and ``free_shipping`` offers carry a code valid for ``valid_for`` seconds: ``percent`` off,
    or ``amount`` off in each currency listed (major units, ``{EUR = "5.00"}``); ``min_value`` per currency is
    the smallest cart the code applies to. With ``[currency] base`` set, an amount given in the base currency
    is converted for carts in a currency not listed (see :mod:`recoverkit.currency`); an offer whose amount or
    minimum cannot be found in the cart's currency is left out (counted as ``offer_currency``).

    ``loyalty_bonus`` grants ``points`` extra points, or ``multiplier`` times the usual points (2: double
    points), through the shop's loyalty programme, if the order is completed within ``valid_for``.
    ``substitute`` suggests up to ``suggestions`` products (default 3) from the shop's catalogue: cheaper ones
    like the cart's (``suggest = "substitute"``, the default) or ones that go with it (``"complement"``). Any
    offer may add up to ``complements`` "goes well with" products beside it. ``name`` is what a template shows.
    """

    kind: Literal["discount", "free_shipping", "payment_help", "substitute", "loyalty_bonus"]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    percent: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    amount: dict[_Currency, Decimal] = msgspec.field(default_factory=dict)
    min_value: dict[_Currency, Decimal] = msgspec.field(default_factory=dict)
    valid_for: Annotated[float, msgspec.Meta(ge=60, le=90 * 86_400)] = 86_400.0
    points: Annotated[int, msgspec.Meta(ge=1)] | None = None
    multiplier: Annotated[int, msgspec.Meta(ge=2, le=10)] | None = None
    suggest: Literal["substitute", "complement"] | None = None
    suggestions: Annotated[int, msgspec.Meta(ge=1, le=10)] | None = None
    complements: Annotated[int, msgspec.Meta(ge=1, le=10)] | None = None

    def __post_init__(self) -> None:
        if self.kind == "discount" and (self.percent is None) == (not self.amount):
            raise ValueError("`percent` or `amount` expected for a discount (one of the two, not both)")
        if self.kind == "loyalty_bonus" and (self.points is None) == (self.multiplier is None):
            # Not worded `points` first: the message is reported at `offers.<name>`, where neither may be written.
            raise ValueError("a loyalty_bonus offer expects `points` or `multiplier` (one of the two, not both)")
        if self.multiplier is not None and self.kind != "loyalty_bonus":
            raise ValueError(f"`multiplier` expected only on a loyalty_bonus offer, not on a {self.kind} offer")
        for name in ("suggest", "suggestions"):
            if getattr(self, name) is not None and self.kind != "substitute":
                raise ValueError(f"`{name}` expected only on a substitute offer, not on a {self.kind} offer")
        _check_amounts(self.amount, self.min_value)


def _check_amounts(*per_currency: Mapping[str, Decimal]) -> None:
    """An offer's amounts and minimums are finite, not negative, and of a size money can have."""
    for amounts in per_currency:
        for currency, value in amounts.items():
            if not (value.is_finite() and value >= 0 and value.adjusted() < _MAX_AMOUNT_DIGITS):
                raise ValueError(f"`amount` expected finite amounts >= 0 in major units, got {value} {currency}")


class Variant(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An A/B variant of a step: carts are assigned by ``weight`` (deterministically, from the cart and the
    engine's ``seed``), and the variant's fields replace the step's."""

    name: _Name
    weight: _Positive = 1.0
    template: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    channel: _Name | None = None
    delay: _Seconds | None = None
    offer: _Name | None = None


class FlowStep(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One message of a flow: sent ``delay`` seconds after the abandonment, on ``channel``, with ``template``.

    ``when`` adds a condition for this step alone; ``fallback`` names the channel to use instead when the
    customer has no address or no consent for ``channel``.
    """

    delay: _Seconds
    channel: _Name = "email"
    template: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = "cart-reminder"
    when: Condition | None = None
    fallback: _Name | None = None
    #: The offer made with this message (a name in ``offers``); ``offer_by_reason`` picks one by the cart's
    #: likely abandonment reason first (``shipping_cost = "free-shipping"``).
    offer: _Name | None = None
    offer_by_reason: dict[Reason, _Name] = msgspec.field(default_factory=dict)
    variants: Annotated[list[Variant], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"`variants` expected unique names, got {names}")


class Flow(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A recovery sequence: which abandonments it takes (``when``) and its ``steps`` in delay order.

    A cart goes through a flow at most once (message keys are ``cart/flow/step``). It leaves it when bought, when
    the shopper comes back to it, and, per channel, when consent is withdrawn.
    """

    name: _Name
    steps: Annotated[list[FlowStep], msgspec.Meta(min_length=1, max_length=20)]
    when: Condition = Condition()
    #: Share of the carts this flow takes that get nothing from it (a control group for measuring uplift).
    holdout: _Probability = 0.0

    def __post_init__(self) -> None:
        delays = [step.delay for step in self.steps]
        if delays != sorted(delays):
            raise ValueError(f"steps must be in increasing `delay` order, got delays {delays}")


class StoreConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the engine keeps its state, and how hard it tries to keep it.

    ``path`` names the SQLite file (created if missing; share it between the worker processes of one host).
    Without it the state is kept in memory and lost with the process: fine for tests and replays, not for a
    shop. ``durability`` says when ``track()`` has made an accepted event durable (see
    :mod:`recoverkit.journal`): ``"batch"`` within one ``tick_interval``, ``"sync"`` before it returns.
    ``synchronous`` is SQLite's: ``"normal"`` survives a killed process, ``"full"`` also a power loss.

    A checkpoint of the pipeline's state is written every ``checkpoint_interval`` seconds (when events arrived
    since); a restart loads it and re-reads the journal after it, so this bounds the work of a restart, not
    what is kept. The process holding the pipeline lease renews it every ``lease_ttl / 5`` seconds; when it
    dies another worker takes over within about ``lease_ttl`` seconds.

    Retention (days): finished ledger entries and purchase records are purged ``ledger_days`` after they were
    written, dead letters after ``dead_letter_days``. Unapplied journal entries are never purged.
    """

    path: str | None = None
    durability: Literal["batch", "sync"] = "batch"
    synchronous: Literal["normal", "full"] = "normal"
    checkpoint_interval: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    lease_ttl: Annotated[float, msgspec.Meta(ge=1, le=600)] = 5.0
    busy_timeout: Annotated[float, msgspec.Meta(ge=0, le=600)] = 5.0
    ledger_days: Annotated[float, msgspec.Meta(gt=0)] = 90.0
    dead_letter_days: Annotated[float, msgspec.Meta(gt=0)] = 30.0


class LinksConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Signed cart-restore links on messages (see :mod:`recoverkit.links`).

    ``base_url`` is the absolute URL of the shop's restore view; without it messages carry no link. Links
    work for ``max_age`` seconds. The signing secret (at least 32 bytes) is read from the environment variable
    named by ``secret_env`` at start-up, never from this file.
    """

    base_url: str | None = None
    max_age: Annotated[float, msgspec.Meta(ge=60, le=90 * 86_400)] = 7 * 86_400.0
    secret_env: Annotated[str, msgspec.Meta(pattern="^[A-Z_][A-Z0-9_]*$")] = "RECOVERKIT_LINK_SECRET"


class CurrencyConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How amounts in this configuration apply to carts in other currencies (see :mod:`recoverkit.currency`).

    ``base`` is the shop's base currency: once set, a plain amount (a condition's ``min_value = "20.00"``) is in
    it, and amounts given in it are converted for carts in currencies they do not list. ``rates`` are static
    exchange rates, as decimal strings: units of the currency per one unit of the base (``USD = "1.08"``);
    ``Engine(rates=...)`` can supply live ones, which win. Carts always keep their own currency.
    """

    base: _Currency | None = None
    rates: dict[_Currency, Decimal] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        from .currency import MAX_RATE  # the same bounds as a live Rates object's answers

        for currency, rate in self.rates.items():
            if not (rate.is_finite() and 0 < rate < MAX_RATE):
                raise ValueError(f"`rates` expected decimal rates > 0 and < 10^12, got {rate} for {currency}")
            if currency == self.base and rate != 1:
                raise ValueError(f"`rates` expected no rate other than 1 for the base currency {currency}, got {rate}")
        if self.rates and self.base is None:
            # Worded `rates` first: `base` is missing, so the message is reported where the rates are.
            raise ValueError("`rates` expected a `base` currency to convert from; set [currency] base")


DEFAULT_FLOW = Flow(
    name="cart-recovery",
    steps=[
        FlowStep(delay=3600.0, channel="email", template="cart-reminder"),
        FlowStep(delay=86_400.0, channel="email", template="cart-last-call"),
    ],
)


class Config(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the engine can be told; all of it optional.

    Sessionize: a cart with items and no activity for ``abandon_after`` is abandoned; after an ``exit_intent``
    that shrinks to ``exit_intent_after``, after a ``payment_failed`` to ``payment_failed_after``. Sessions
    without a cart are forgotten after ``session_timeout``; abandoned carts are kept ``recovery_window`` so a
    return or purchase can still cancel what is pending. At most ``max_sessions`` sessions are held; beyond
    that the least recently active are evicted (counted as ``evicted_overflow``).

    Event time (replay): events up to ``allowed_lateness`` seconds out of order are put back in order before
    the sessionizer sees them; later ones are still applied but counted as ``late``.

    Plumbing: stages exchange batches of up to ``batch_size`` events over queues holding ``queue_batches``
    batches; ``track()`` holds at most ``inbox_capacity`` events, for at most two ``tick_interval``, before it
    journals them itself (``durability = "batch"``: this bounds what a ``kill -9`` can lose, see
    :mod:`recoverkit.journal`). ``tick_interval`` is how often a live engine advances its clock through the
    pipeline while work comes in; a timer falling due sooner gets a tick of its own, and an idle engine sleeps
    until its next deadline or the next event (see :mod:`recoverkit._runner`).
    """

    abandon_after: _Positive = 1800.0
    exit_intent_after: _Seconds = 300.0
    payment_failed_after: _Seconds = 900.0  # most who pay after a decline have by then: docs/scoring.md, "wait"
    session_timeout: _Positive = 1800.0
    recovery_window: _Positive = 7 * 86_400.0
    max_sessions: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    allowed_lateness: _Seconds = 60.0
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=65_536)] = 256
    queue_batches: Annotated[int, msgspec.Meta(ge=1, le=65_536)] = 64
    inbox_capacity: Annotated[int, msgspec.Meta(ge=1)] = 1024
    tick_interval: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.01
    max_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 1000  # deliveries at once; partitions share it out
    flows: list[Flow] = msgspec.field(default_factory=lambda: [DEFAULT_FLOW])
    channels: dict[_Name, ChannelPolicy] = msgspec.field(default_factory=dict)
    #: Shipping cost at or above this share of the cart value counts as a shipping-cost shock.
    shipping_shock_ratio: _Probability = 0.1
    #: Seed for retry jitter and other randomness, so replays are repeatable.
    seed: int = 0
    store: StoreConfig = StoreConfig()
    #: The shop's time zone (IANA name): quiet hours use it for customers whose own zone is not known.
    timezone: str = "UTC"
    #: Share of all abandoned carts that get no message at all (a global control group), before any flow.
    holdout: _Probability = 0.0
    caps: list[Cap] = msgspec.field(default_factory=list)
    offers: dict[_Name, OfferSpec] = msgspec.field(default_factory=dict)
    #: How discount codes look and how often one customer, domain or device may get one.
    codes: CodePolicy = msgspec.field(default_factory=CodePolicy)
    #: The environment variable holding the secret (at least 32 bytes) that keys stored code hashes.
    code_secret_env: Annotated[str, msgspec.Meta(pattern="^[A-Z_][A-Z0-9_]*$")] = "RECOVERKIT_CODE_SECRET"
    links: LinksConfig = LinksConfig()
    #: The base currency and static exchange rates that thresholds given in it are converted with.
    currency: CurrencyConfig = CurrencyConfig()
    #: A model file written by ``recoverkit train`` (a path, relative to the working directory): loaded and checked
    #: when the engine is built, it scores carts instead of the default model (see docs/scoring.md).
    model: str | None = None
    #: The purchase-path watcher's judgement and whom it alerts (:mod:`recoverkit.alerts`, docs/alerts.md).
    alerts: AlertsConfig = AlertsConfig()

    def __post_init__(self) -> None:
        # Checks across fields; each raises ValueError, which msgspec's convert reports as a validation error.
        _check_flow_names(self.flows)
        _check_timezone(self.timezone)
        _check_links(self.links)
        _check_offers_named(self.flows, self.offers)
        _check_ledger_outlives_flows(self)

    def code_offers(self) -> list[str]:
        """The offers the flows can make that carry a code (discounts, free shipping)."""
        return sorted(name for name, spec in self.offers.items() if spec.kind in ("discount", "free_shipping"))

    def channel_policy(self, channel: str) -> ChannelPolicy:
        """The policy for ``channel``: the configured one, else recoverkit's default, else a generic one."""
        return self.channels.get(channel) or DEFAULT_CHANNELS.get(channel) or ChannelPolicy(address="none")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> Config:
        """Validate a mapping (as read from TOML or JSON) into a Config, or raise :class:`ConfigError`."""
        try:
            return msgspec.convert(data, cls, strict=False)
        except msgspec.ValidationError as exc:
            what, path = split_error(str(exc))
            what, path = _name_the_entry(data, what, path)
            what = _one_line(what)
            if path is None:
                raise ConfigError(f"{source}: invalid configuration: {what}") from exc
            # A config author thinks in key paths (flows[0].delay), not JSON paths ($.flows[0].delay).
            key = _one_line(path.removeprefix("$").removeprefix(".")) or "the top level"
            value = describe_value(lambda: data, path)
            raise ConfigError(f"{source}: invalid configuration at `{key}`: {what} (value: {value})") from exc
        except RecursionError as exc:
            raise ConfigError(f"{source}: invalid configuration: a value is nested too deeply") from exc


# -- the checks that span fields of a Config (each raises ValueError naming the field, the value and what was
# -- expected) ------------------------------------------------------------------------------------------------


def _check_flow_names(flows: list[Flow]) -> None:
    names = [flow.name for flow in flows]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"flow names must be unique, got {dupes} more than once in `flows`")


def _check_timezone(timezone: str) -> None:
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"`timezone` expected an IANA time zone name such as 'Europe/Berlin', got {timezone!r}"
        ) from exc


def _check_links(links: LinksConfig) -> None:
    if links.base_url is not None:
        try:
            check_base_url(links.base_url)  # the same rules as RestoreLinks, checked at load time
        except ConfigError as exc:
            raise ValueError(f"`links.base_url`: {exc}") from None


def _check_offers_named(flows: list[Flow], offers: Mapping[str, OfferSpec]) -> None:
    """Every offer a flow step names (itself, by reason, in a variant) is defined under ``[offers]``."""
    for flow in flows:
        for index, step in enumerate(flow.steps):
            named = [step.offer, *step.offer_by_reason.values(), *(v.offer for v in step.variants)]
            unknown = sorted({n for n in named if n is not None and n not in offers})
            if unknown:
                raise ValueError(
                    f"flow {flow.name!r} step {index} names offer(s) {unknown}, expected one of "
                    f"{sorted(offers)} (define them under [offers.<name>])"
                )


def _check_ledger_outlives_flows(config: Config) -> None:
    # The ledger is what makes "never twice" hold: it must outlive every message a flow can still send.
    longest = config.recovery_window + max((s.delay for f in config.flows for s in f.steps), default=0.0)
    if config.store.ledger_days * 86_400 < longest:
        raise ValueError(
            f"`store.ledger_days` = {config.store.ledger_days} is shorter than `recovery_window` "
            f"({config.recovery_window / 86_400:.2f} days) plus the longest step `delay` in `flows` "
            f"({(longest - config.recovery_window) / 86_400:.2f} days); expected at least their sum, or a "
            "message could be sent twice"
        )


def _one_line(text: str) -> str:
    # A key can hold a newline (TOML allows it); an error message stays one line, for logs.
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


_KEY_ERROR = re.compile(r"^(.*) - at `key` in `(\$[^`]*)`$")
_FIELD_FIRST = re.compile(r"^`([a-z_]+)` (.*)$", re.DOTALL)


def _name_the_entry(data: Mapping[str, Any], what: str, path: str | None) -> tuple[str, str | None]:
    """Make msgspec's path name what the author wrote.

    msgspec reports a bad entry of ``channels`` or ``offers`` (the mappings keyed by the author's own names) as
    ``channels[...]``, and a bad name as "at `key` in `$.channels`": find the entry by validating each alone.
    A check in a ``__post_init__`` that starts its message with a field name (`` `min_value` must ...``) is
    reported at that field.
    """
    if path is None:
        match = _KEY_ERROR.match(what)
        if match is not None and match.group(2) == "$.channels":
            for name in _channel_entries(data):
                if not re.fullmatch(_NAME_PATTERN, name):
                    return f"channel name {name!r} under `channels`: {match.group(1)}", None
        if match is None:
            return what, path
        # A bad key of another mapping (a currency code in `min_value = { eur = "20" }`): report at the mapping.
        what, path = f"{match.group(1)} for every key", match.group(2)
    for section, kind in (("channels", ChannelPolicy), ("offers", OfferSpec)):  # the mappings keyed by names
        if path.startswith(f"$.{section}[...]"):
            for name, entry in _channel_entries(data, section).items():
                if not re.fullmatch(_NAME_PATTERN, name):
                    break  # msgspec names a bad key itself; never point a path at one
                try:
                    msgspec.convert(entry, kind, strict=False)
                except (msgspec.ValidationError, RecursionError):
                    path = path.replace("[...]", f".{name}", 1)
                    break
    field = _FIELD_FIRST.match(what)
    if field is not None:
        return field.group(2), f"{path}.{field.group(1)}"
    return what, path


def _channel_entries(data: Mapping[str, Any], section: str = "channels") -> dict[str, Any]:
    entries = data.get(section) if isinstance(data, Mapping) else None
    return {str(k): v for k, v in entries.items()} if isinstance(entries, Mapping) else {}


def channel_paths(config: Config) -> dict[str, list[str]]:
    """Every channel the flows use, with the key paths that name it, in the order of the file.

    ``{"sms": ["flows[0].steps[1].channel", "flows[1].steps[0].variants[0].channel"]}``: steps' ``channel``
    and ``fallback`` and their variants' ``channel``. An error about a channel names one of these paths, so that
    the author finds the line to change (the engine's "no adapter for channel" and ``recoverkit check-config``).
    """
    paths: dict[str, list[str]] = {}
    for f, flow in enumerate(config.flows):
        for s, step in enumerate(flow.steps):
            at = f"flows[{f}].steps[{s}]"
            named = [(step.channel, f"{at}.channel"), (step.fallback, f"{at}.fallback")]
            named += [(variant.channel, f"{at}.variants[{v}].channel") for v, variant in enumerate(step.variants)]
            for name, path in named:
                if name is not None:
                    paths.setdefault(name, []).append(path)
    return paths


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML configuration file. Raises :class:`ConfigError` naming file and key path."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: configuration file not found; expected a TOML file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read configuration file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{p}: not valid TOML: arrays or tables nested too deeply") from exc
    return Config.from_dict(data, source=str(p))
