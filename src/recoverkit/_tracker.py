"""What a request records: :class:`Tracker`, bound to one shopper's session, and :func:`restore_cart`, what a
shop's cart-restore view calls. Re-exported by :mod:`recoverkit.integration`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._log import get_logger
from .errors import ConfigError, LinkError
from .events import EVENT_KINDS, RESTORE_PAGE
from .links import RestoreLinks, RestoreToken

__all__ = ["Tracker", "restore_cart"]

T = TypeVar("T")
#: What a :class:`Tracker` hands each event to: a new ``dict`` per event, which the sink may keep and change.
EventSink = Callable[[dict[str, Any]], bool]

# The integration's logger: these are the integration's records, wherever the code lives.
_log = get_logger("recoverkit.integration")


class Tracker:
    """Records one shopper's events from a request: session, customer and segment hints filled in.

    Every method builds the event, a new ``dict`` that is the sink's to keep, and hands it to ``sink`` (the
    process's engine, :meth:`LazyEngine.sink <recoverkit.integration.LazyEngine.sink>`); none blocks, none raises,
    each returns whether the event was kept. ``identify`` also binds the customer id for the rest of the
    request. Amounts may be :class:`~decimal.Decimal`, ``int`` or numeric strings (``"19.90"``); never floats
    (they are refused as invalid by the engine, which counts them).
    """

    __slots__ = ("_sink", "customer_id", "defaults", "session_id")

    def __init__(
        self,
        sink: EventSink,
        session_id: str,
        *,
        customer_id: str | None = None,
        device: str | None = None,
        source: str | None = None,
    ) -> None:
        self._sink = sink
        self.session_id = session_id
        self.customer_id = customer_id
        self.defaults: dict[str, Any] = {}
        if device is not None:
            self.defaults["device"] = device
        if source is not None:
            self.defaults["source"] = source[:256]

    def track(self, event: str, **fields: Any) -> bool:
        """Record an event of kind ``event`` (see ``docs/events.md``) with ``fields``."""
        if event not in EVENT_KINDS:
            _log.warning("unknown_event_kind", kind=event[:64] if isinstance(event, str) else type(event).__name__)
        # A new dict per event, which the sink may keep or stamp (it is nobody else's); the engine validates it.
        data: dict[str, Any] = {"event": event, "session_id": self.session_id}
        if self.defaults:
            data.update(self.defaults)
        customer_id = self.customer_id
        if customer_id is not None:
            data["customer_id"] = customer_id
        for key, value in fields.items():
            if value is None:
                continue
            if isinstance(value, float) and not math.isfinite(value):
                continue  # never an amount: refuse quietly rather than poison the event
            data[key] = value
        try:
            return self._sink(data)
        except Exception as exc:  # the sink is the engine's track(), which does not raise; stay safe anyway
            _log.error("track_failed", kind=event, error=type(exc).__name__)
            return False

    # -- the GA4 e-commerce steps -------------------------------------------------------------------------

    def view_item(self, items: Iterable[Any], **fields: Any) -> bool:
        return self.track("view_item", items=list(items), **fields)

    def add_to_cart(self, items: Iterable[Any], **fields: Any) -> bool:
        """Lines added (each ``{"item_id", "price", "quantity"}``); pass ``currency`` and, if known, ``cart_id``."""
        return self.track("add_to_cart", items=list(items), **fields)

    def remove_from_cart(self, items: Iterable[Any], **fields: Any) -> bool:
        return self.track("remove_from_cart", items=list(items), **fields)

    def view_cart(self, items: Iterable[Any] | None = None, **fields: Any) -> bool:
        """The cart page; ``items``, when given, is the whole cart and replaces what the engine knows."""
        return self.track("view_cart", items=list(items) if items is not None else None, **fields)

    def begin_checkout(self, **fields: Any) -> bool:
        return self.track("begin_checkout", **fields)

    def add_shipping_info(self, **fields: Any) -> bool:
        """Shipping chosen; pass ``shipping`` (its cost) so that a shipping-cost shock can be recognised."""
        return self.track("add_shipping_info", **fields)

    def add_payment_info(self, **fields: Any) -> bool:
        return self.track("add_payment_info", **fields)

    def purchase(self, **fields: Any) -> bool:
        """The order is placed: stops every recovery message for this cart and customer."""
        return self.track("purchase", **fields)

    # -- who, consent, friction ---------------------------------------------------------------------------

    def identify(self, customer_id: str | None = None, **fields: Any) -> bool:
        """Link this session to a customer and their contact details (``email``, ``phone``, ``timezone``)."""
        if customer_id is not None:
            self.customer_id = customer_id
        return self.track("identify", **fields)

    def consent(self, *, granted: Iterable[str] = (), withdrawn: Iterable[str] = (), **fields: Any) -> bool:
        """Channels the shopper agreed to (``granted=["email"]``) or withdrew from; a withdrawal stops what is
        pending for that channel at once."""
        return self.track("consent", granted=list(granted), withdrawn=list(withdrawn), **fields)

    def payment_failed(self, **fields: Any) -> bool:
        return self.track("payment_failed", **fields)

    def form_error(self, **fields: Any) -> bool:
        """A checkout form rejected input: pass ``form_field`` (its name, never its value) and ``error_code``."""
        return self.track("form_error", **fields)

    def exit_intent(self, **fields: Any) -> bool:
        return self.track("exit_intent", **fields)


def restore_cart(
    links: RestoreLinks | None,
    token: str | None,
    load_cart: Callable[[str], T],
    *,
    tracker: Tracker | None = None,
    now: float | None = None,
) -> T:
    """What a shop's cart-restore view calls: verify the link's ``token`` and return ``load_cart(cart_key)``.

    Raises :class:`~recoverkit.errors.LinkError` (``error.reason``: ``"malformed"`` (also for no token at
    all), ``"tampered"`` or ``"expired"``) before ``load_cart`` is called, for the view to answer with a friendly
    page; a ``ConfigError`` when links are not configured. With a ``tracker``, the visit is recorded as a
    ``page_view`` with ``page_type="cart_restore"`` and the link's cart, so analytics can count links followed.
    ``now`` is the time on the engine's clock (default: the wall clock; pass ``settings.now()`` so that links
    built under a test's ``FakeClock`` are checked on it too).
    """
    if links is None:
        raise ConfigError("cart-restore links are not configured; set [links] base_url and its secret")
    if not token:
        raise LinkError("the restore link has no token; expected ?t=... as recoverkit builds it", reason="malformed")
    verified: RestoreToken = links.verify(token, now=now)
    result = load_cart(verified.cart_key)
    if tracker is not None:
        tracker.track("page_view", page_type=RESTORE_PAGE, cart_id=verified.cart_key)
    return result
