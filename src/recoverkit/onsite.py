"""On-site offers: messages that wait for the shopper to come back to the shop, instead of being pushed.

Two halves, which usually run in different processes and meet in the store:

- :class:`OnsiteChannel`, the ``onsite`` channel's adapter. A flow step targets ``channel = "onsite"`` like any
  channel, with the same caps, holdout, variants and "never after purchase" claim; when the step falls due,
  dispatch hands the message to the adapter, which *puts* it in the store (an
  :class:`~recoverkit.store.OnsiteStore`) for the visitor: their first-party session and, when known, their
  customer id. It waits there until it expires (``ttl``), is shown ``shows`` times, or is clicked or dismissed.
- :class:`OnsiteBoard`, the look-up a web worker makes for the visitor of a request (the framework endpoints in
  :mod:`recoverkit.contrib` call it): is there something for them now? It answers with the offer rendered
  through the shop's sandboxed, autoescaped templates (kind ``"onsite"``: ``<name>.onsite.html``), its code and
  how long it is valid, and records ``shown``, ``clicked`` and ``dismissed`` as
  :class:`~recoverkit.facts.MessageOutcome` facts (channel ``onsite``) for the report.

Guarantees of the look-up:

- **Fast when nothing waits.** Each process keeps, in memory, the visitors offers were put for (not the offers),
  refreshed from the store at most every ``refresh`` seconds with one small query for what is new. A page view of
  a visitor who is not in it costs no store round trip; one who is gets their offers from the store, and leaves
  the in-memory set when they have none left.
- **Never after a purchase.** The store judges every answer against its purchase record, in the same
  statement: a purchase of the cart, or by the contact, since the cart was started withdraws the offer, whether
  or not a cancellation has reached anyone yet.
- **Only the visitor's own.** The visitor is who the request's cookie (``rk_sid``, minted by recoverkit) and
  login say; nothing in the request can name another visitor, an offer is marked only by the visitor it
  belongs to, and its token is random. There is nothing to enumerate.
- **Rate-limited** per visitor and per client address (:class:`RateLimit`), in each process.
- **No personal data** leaves: the answer holds what the template renders (the shop's template sees no e-mail
  address or phone: the adapter drops them before storing), the code, and the seconds left.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Final

import anyio
import msgspec

from ._log import get_logger
from .clock import Clock, WallClock
from .errors import ConfigError, PermanentDeliveryError
from .facts import MessageOutcome
from .items import Message, Recipient
from .store._facts import FactStore
from .store._onsite import OnsiteMark, OnsiteOffer, OnsiteStore, visitor_keys
from .templates import Templates

__all__ = ["OnsiteAnswer", "OnsiteBoard", "OnsiteChannel", "RateLimit", "snippet"]

_log = get_logger("recoverkit.onsite")
_decoder: Final = msgspec.json.Decoder(Message)
_encoder: Final = msgspec.json.Encoder()


def _positive(owner: str, name: str, value: object, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(f"{owner}: expected `{name}` to be a positive number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{owner}: expected `{name}` to be a whole number, got {value!r}")


class OnsiteChannel:
    """The ``onsite`` channel's adapter: puts each message in the store for its visitor; see the module.

    ``ttl`` is how long a message waits, in seconds from when it fell due (never past its code's expiry);
    ``shows`` how many page views may show it; ``templates`` renders the offers for the page (their files
    ``<name>.onsite.html``; the built-in ``cart-reminder`` and ``cart-last-call`` by default). ``store`` is the
    engine's store: leave it out and the engine gives its own when it starts (:meth:`bind_store`). The store must
    be an :class:`~recoverkit.store.OnsiteStore` (recoverkit's are); another is a
    :class:`~recoverkit.errors.ConfigError` at start-up. A send succeeds once the offer is committed in the store
    ("acknowledged means kept"); a message for a cart with no session and no customer id is refused
    permanently.
    """

    def __init__(
        self,
        store: OnsiteStore | None = None,
        *,
        ttl: float = 86_400.0,
        shows: int = 1,
        templates: Templates | None = None,
    ) -> None:
        _positive("OnsiteChannel", "ttl", ttl)
        _positive("OnsiteChannel", "shows", shows, integer=True)
        self.ttl = float(ttl)
        self.shows = shows
        #: What the endpoints render offers with (kind ``"onsite"``); the built-in templates by default.
        self.templates = templates if templates is not None else Templates()
        self._store: OnsiteStore | None = None
        if store is not None:
            self.bind_store(store)

    def check_templates(self, names: Iterable[str]) -> None:
        """Render each of ``names`` as kind ``"onsite"`` against a sample (the engine calls this at start-up)."""
        self.templates.check(names, kind="onsite")

    def bind_store(self, store: object) -> None:
        """Use ``store`` (the engine calls this with its own when it starts)."""
        if not isinstance(store, OnsiteStore):
            raise ConfigError(
                f"OnsiteChannel: the store {type(store).__name__} cannot keep on-site offers (it has no put_onsite); "
                "use SQLiteStore, PostgresStore or MemoryStore"
            )
        self._store = store

    def offer_for(self, message: Message) -> OnsiteOffer:
        """The store's record of ``message``: what :meth:`send` puts."""
        cart = message.cart
        customer = message.recipient.customer_id or cart.customer_id
        if not cart.session_id and not customer:
            raise PermanentDeliveryError(f"onsite: message {message.key!r} has neither a session nor a customer")
        expires = message.due_at + self.ttl
        if message.offer is not None and message.offer.expires_at is not None:
            expires = min(expires, message.offer.expires_at)
        # Only what a page may show travels: never the e-mail address or phone number.
        recipient = Recipient(
            contact_key=message.recipient.contact_key, customer_id=message.recipient.customer_id,
            locale=message.recipient.locale, timezone=message.recipient.timezone,
        )  # fmt: skip
        stored = msgspec.structs.replace(message, recipient=recipient)
        return OnsiteOffer(
            token=secrets.token_urlsafe(16), key=message.key, cart_key=cart.cart_key,
            contact_key=message.recipient.contact_key, session_id=cart.session_id or None, customer_id=customer,
            started_at=cart.started_at, put_at=message.due_at, expires_at=expires, shows=self.shows,
            message=_encoder.encode(stored),
        )  # fmt: skip

    async def send(self, message: Message) -> None:
        """Put ``message`` in the store for its visitor (a key put before is left as it is: a retry)."""
        store = self._store
        if store is None:
            raise PermanentDeliveryError("onsite: OnsiteChannel has no store (the engine binds its own at start-up)")
        offer = self.offer_for(message)
        await anyio.to_thread.run_sync(store.put_onsite, offer)


class RateLimit:
    """At most ``limit`` calls per ``per`` seconds for each key (a sliding count of the calls let through),
    keeping the most recent ``keys`` keys: a bound on memory that an attacker inventing keys cannot pass."""

    def __init__(self, limit: int = 60, per: float = 60.0, *, keys: int = 100_000) -> None:
        _positive("RateLimit", "limit", limit, integer=True)
        _positive("RateLimit", "per", per)
        _positive("RateLimit", "keys", keys, integer=True)
        self.limit, self.per, self.keys = limit, float(per), keys
        self._seen: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float) -> bool:
        """Count a call for ``key`` at ``now``; whether it is within the limit."""
        with self._lock:
            times = self._seen.pop(key, None) or []
            times = [t for t in times if t > now - self.per]
            allowed = len(times) < self.limit
            if allowed:
                times.append(now)
            self._seen[key] = times
            while len(self._seen) > self.keys:
                self._seen.popitem(last=False)
            return allowed


class OnsiteAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What the page is told: the offer's ``token`` (to report a click or dismissal), the rendered ``html``, the
    ``code`` when the offer has one, and ``expires_in``, the whole seconds it stays valid (for a countdown)."""

    token: str
    html: str
    code: str | None
    expires_in: int


class OnsiteBoard:
    """The look-up for the visitor of a request; see the module docstring for its guarantees.

    ``store`` is the engine's (``engine.store``), ``templates`` renders kind ``"onsite"``, ``clock`` is the
    engine's clock. ``refresh`` is the most seconds an offer put by another process takes to be seen here;
    ``visitor_limit`` and ``client_limit`` are the rate limits per visitor and per client address. Thread-safe.
    """

    def __init__(
        self,
        store: object,
        templates: Templates,
        *,
        clock: Clock | None = None,
        refresh: float = 1.0,
        visitor_limit: RateLimit | None = None,
        client_limit: RateLimit | None = None,
    ) -> None:
        if not isinstance(store, OnsiteStore):
            raise ConfigError(f"OnsiteBoard: the store {type(store).__name__} cannot keep on-site offers")
        if refresh < 0 or not math.isfinite(refresh):
            raise ConfigError(f"OnsiteBoard: expected `refresh` to be seconds >= 0, got {refresh!r}")
        self._store = store
        self._facts = store if isinstance(store, FactStore) else None
        self._templates = templates
        self._clock = clock if clock is not None else WallClock()
        self._refresh = refresh
        self._visitors = visitor_limit if visitor_limit is not None else RateLimit(30, 60.0)
        self._clients = client_limit if client_limit is not None else RateLimit(600, 60.0)
        self._lock = threading.Lock()
        self._waiting: dict[str, float] = {}  # visitor key -> the latest expiry of an offer put for them
        self._position = 0
        self._next_refresh = -math.inf
        #: Look-ups answered from memory alone, and those that asked the store: for tests and statistics.
        self.from_memory = 0
        self.from_store = 0

    def limited(self, session_id: str | None, customer_id: str | None, client: str | None) -> bool:
        """Count a request; whether it is over a rate limit (the caller answers 429)."""
        now = self._clock.now()
        keys = visitor_keys(session_id, customer_id)
        # Every request counts against each limit, refused or not: no limit is spared by another tripping first.
        over = [not self._visitors.allow(key, now) for key in keys]
        over.append(client is not None and not self._clients.allow("ip:" + client, now))
        return any(over)

    def answer(self, *, session_id: str | None, customer_id: str | None) -> OnsiteAnswer | None:
        """The offer to show this visitor now, counted as shown; ``None`` when there is none."""
        keys = visitor_keys(session_id, customer_id)
        if not keys:
            return None
        now = self._clock.now()
        if not self._maybe_waiting(keys, now):
            self.from_memory += 1
            return None
        self.from_store += 1
        offers = self._store.onsite_for(session_id=session_id, customer_id=customer_id, now=now)
        if not offers:
            with self._lock:
                for key in keys:
                    self._waiting.pop(key, None)
            return None
        for offer in offers:
            before = self._store.mark_onsite(
                offer.token, "shown", session_id=session_id, customer_id=customer_id, now=now
            )
            if before is not None:
                message = _decoder.decode(before.message)
                self._record(before, message, "shown", now)
                return self._render(before, message, now)
        return None

    def mark(self, token: str, mark: OnsiteMark, *, session_id: str | None, customer_id: str | None) -> bool:
        """Record that the visitor clicked or dismissed the offer ``token``; ``False`` when it is not theirs or
        no longer on (nothing recorded then)."""
        if mark not in ("clicked", "dismissed") or not isinstance(token, str) or not 0 < len(token) <= 64:
            return False
        if not visitor_keys(session_id, customer_id):
            return False
        now = self._clock.now()
        before = self._store.mark_onsite(token, mark, session_id=session_id, customer_id=customer_id, now=now)
        if before is None:
            return False
        self._record(before, _decoder.decode(before.message), mark, now)
        return True

    def _maybe_waiting(self, keys: list[str], now: float) -> bool:
        with self._lock:
            if now >= self._next_refresh:
                self._next_refresh = now + self._refresh
                try:
                    changes = self._store.onsite_changes(self._position, now=now)
                except Exception as exc:  # the store is away: answer from what is known, try again later
                    _log.warning("onsite_refresh_failed", error=type(exc).__name__)
                else:
                    self._position = changes.position
                    for key, expires in changes.visitors:
                        self._waiting[key] = max(expires, self._waiting.get(key, expires))
                    for key in [k for k, expires in self._waiting.items() if expires <= now]:
                        del self._waiting[key]
            return any(self._waiting.get(key, -math.inf) > now for key in keys)

    def _render(self, offer: OnsiteOffer, message: Message, now: float) -> OnsiteAnswer:
        rendered = self._templates.render(message.template, message, kind="onsite")
        code = message.offer.code if message.offer is not None else None
        return OnsiteAnswer(
            token=offer.token, html=rendered.html or "", code=code, expires_in=max(0, int(offer.expires_at - now))
        )

    def _record(self, offer: OnsiteOffer, message: Message, mark: OnsiteMark, now: float) -> None:
        if self._facts is None:
            return
        fact = MessageOutcome(
            key=message.key, cart_key=offer.cart_key, contact_key=offer.contact_key, flow=message.flow,
            step=message.step, outcome=mark, at=now, channel=message.channel, variant=message.variant,
            offer=message.offer.name if message.offer is not None else None,
            offer_kind=message.offer.kind if message.offer is not None else None,
        )  # fmt: skip
        try:
            self._facts.record_facts([fact])
        except Exception as exc:  # the offer was shown or marked all the same: the fact is what is lost
            _log.warning("onsite_fact_failed", mark=mark, error=type(exc).__name__)


def snippet() -> str:
    """The dependency-free JavaScript the endpoints serve (``/recoverkit/onsite.js``); see docs/onsite.md."""
    return resources.files("recoverkit").joinpath("data/onsite.js").read_text(encoding="utf-8")


def answer_json(answer: OnsiteAnswer | None) -> bytes:
    """The endpoint's JSON body for ``answer``: ``{"offer": {...}}`` or ``{"offer": null}``."""
    return _encoder.encode({"offer": answer})


def mark_request(body: bytes) -> tuple[str, OnsiteMark] | None:
    """The token and mark of a report's JSON body (``{"token": ..., "mark": "clicked"}``), or ``None``."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(data, Mapping):
        return None
    token, mark = data.get("token"), data.get("mark")
    if isinstance(token, str) and mark in ("clicked", "dismissed"):
        return token, mark
    return None
