"""Offer preparation: what a message promises is made real just before its first send.

:meth:`Preparer.prepare` issues the offer's code (the shop's :class:`~recoverkit.offers.CouponProvider`), grants
its loyalty bonus (:class:`~recoverkit.loyalty.Loyalty`), asks the catalogue for its suggestions
(:class:`~recoverkit.catalogue.Catalogue`) and signs the cart's restore link (:class:`~recoverkit.links.RestoreLinks`).
Every call into the shop's code goes through the stage's :class:`~recoverkit._contain.Containment`, under the
channel's timeout: a slow catalogue must not hold a delivery slot.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import msgspec

from .._contain import Containment, Failed, Plugin, describe
from .._log import Logger
from ..catalogue import Catalogue, Suggestion, SuggestKind
from ..config import ChannelPolicy
from ..items import Message, Offer
from ..links import RestoreLinks
from ..loyalty import Loyalty, NotGranted
from ..offers import CouponProvider, Refused

__all__ = ["Preparer"]


class Preparer:
    """Completes a message's offer and restore link with the shop's plug-ins (any of them may be ``None``).

    ``policies`` gives each channel's timeout; ``outcomes`` is the stage's counter, where every offer that goes
    out, or does not, is counted (``offer_codes``, ``offer_refused_<reason>``, ``offer_catalogue_failed``, ...).
    """

    def __init__(
        self,
        *,
        policies: Mapping[str, ChannelPolicy],
        contain: Containment,
        outcomes: Counter[str],
        log: Logger,
        coupons: CouponProvider | None = None,
        links: RestoreLinks | None = None,
        catalogue: Catalogue | None = None,
        loyalty: Loyalty | None = None,
    ) -> None:
        self._policies = policies
        self._contain = contain
        self._outcomes = outcomes
        self._log = log
        self.coupons = coupons
        self.links = links
        self.catalogue = catalogue
        self.loyalty = loyalty
        self._coupons_plugin = Plugin("coupons", repr(describe(coupons)))
        self._catalogue_plugin = Plugin("catalogue", repr(describe(catalogue)))
        self._loyalty_plugin = Plugin("loyalty", repr(describe(loyalty)))

    async def prepare(self, message: Message, now: float) -> Message:
        """Issue the offer's code (or grant its loyalty bonus, or ask the catalogue for its suggestions) and sign
        the restore link, just before the first send of ``message``.

        Done after the claim, so a code is issued, points granted and the catalogue asked only for a message that
        goes out; a retry reuses the prepared message (its code, grant, suggestions and link). A refused code
        (abuse limits) sends the message without the offer, counted as ``offer_refused_<reason>``; so does a
        catalogue that fails (``offer_catalogue_failed``). A code or a grant that fails (raises) fails the attempt,
        which is retried: the message promises them.
        """
        changes: dict[str, Any] = {}
        offer = message.offer
        # ``now`` is the attempt's time (see Schedule.moment): a code issued in a replay of old data is valid from
        # when its message was due, in event time, and a link is signed as of then.
        if offer is not None and _unfinished(offer):
            offer = changes["offer"] = await self._complete(message, offer, now)
        if offer is not None and offer.complement_limit and not offer.complements:
            changes["offer"] = await self._complement(message, offer)
        if self.links is not None and message.restore_url is None:
            changes["restore_url"] = self.links.build(
                message.cart.cart_key, contact_key=message.recipient.contact_key, now=now
            )
        if not changes:
            return message
        return msgspec.structs.replace(message, **changes)

    async def _complete(self, message: Message, offer: Offer, now: float) -> Offer | None:
        """``offer`` as it goes out, or ``None`` when the message goes without it (counted)."""
        if offer.kind == "substitute":
            return await self._suggest(message, offer)
        if offer.kind == "loyalty_bonus":
            return await self._grant(message, offer, now)
        return await self._issue(message, offer, now)

    async def _issue(self, message: Message, offer: Offer, now: float) -> Offer | None:
        """``offer`` with its code, or ``None`` (counted) when there is no provider or it refused; raises when
        the provider fails, for the attempt to be retried (the message promises a code)."""
        if self.coupons is None:
            self._outcomes["offer_no_coupons"] += 1
            return None
        answer = await self._contain.call(
            self._coupons_plugin, self.coupons.issue, offer,
            cart_key=message.cart.cart_key, contact_key=message.recipient.contact_key, now=now,
            email=message.recipient.email, device=message.cart.device,
            timeout=self._policies[message.channel].timeout, ids={"key": message.key},
        )  # fmt: skip
        if isinstance(answer, Failed):
            raise answer.error()  # the message promises a code: the attempt fails and is retried
        issued: Offer | Refused = answer.value
        if isinstance(issued, Refused):
            self._outcomes[f"offer_refused_{issued.reason}"] += 1
            return None
        self._outcomes["offer_codes"] += 1
        return issued

    async def _suggest(self, message: Message, offer: Offer) -> Offer | None:
        """``offer`` with the catalogue's suggestions, or ``None`` (counted) when there are none to make."""
        valid = await self._ask_catalogue(message, offer.suggest or "substitute", offer.suggest_limit or 3)
        if valid is None:
            return None
        if not valid:
            self._outcomes["offer_no_suggestions"] += 1
            return None
        self._outcomes["offer_suggestions"] += 1
        return msgspec.structs.replace(offer, suggestions=tuple(valid), items=tuple(s.item_id for s in valid))

    async def _ask_catalogue(self, message: Message, kind: SuggestKind, limit: int) -> list[Suggestion] | None:
        """Up to ``limit`` valid suggestions of ``kind`` for the message's cart; ``None`` (counted) without a
        catalogue or when it failed."""
        if self.catalogue is None:
            self._outcomes["offer_no_catalogue"] += 1
            return None
        cart = message.cart
        # The channel's timeout bounds the catalogue too: a slow catalogue must not hold a delivery slot.
        answer = await self._contain.call(
            self._catalogue_plugin, self.catalogue.suggest, cart, kind=kind, limit=limit,
            timeout=self._policies[message.channel].timeout, ids={"key": message.key},
        )  # fmt: skip
        try:
            if isinstance(answer, Failed):
                raise answer.error()
            found = list(answer.value)
        except Exception as exc:  # the shop's catalogue, contained: the message goes without the offer
            self._outcomes["offer_catalogue_failed"] += 1
            self._log.warning("catalogue_failed", key=message.key, error=type(exc).__name__)
            return None
        # Prices are money: integers in the cart's currency, or the suggestion is not shown.
        valid = [
            s for s in found
            if type(s) is Suggestion and type(s.price) is int and s.price >= 0 and s.currency == cart.currency
        ][:limit]  # fmt: skip
        if len(valid) < min(len(found), limit):
            self._outcomes["offer_catalogue_invalid"] += 1
            self._log.warning("catalogue_invalid", key=message.key, invalid=len(found) - len(valid))
        return valid

    async def _complement(self, message: Message, offer: Offer) -> Offer:
        """``offer`` with the products that go with the cart beside it; unchanged (counted) when there are none."""
        found = await self._ask_catalogue(message, "complement", offer.complement_limit or 3)
        if found is None:
            return offer  # no catalogue, or it failed (counted): the offer goes as it is
        if not found:
            self._outcomes["offer_no_complements"] += 1
            return offer
        self._outcomes["offer_complements"] += 1
        return msgspec.structs.replace(offer, complements=tuple(found))

    async def _grant(self, message: Message, offer: Offer, now: float) -> Offer | None:
        """``offer`` with its loyalty grant, or ``None`` (counted) when it cannot be granted; raises when the
        programme fails, for the attempt to be retried (the grant is idempotent on the message key)."""
        customer = message.recipient.customer_id or message.cart.customer_id
        if customer is None:
            self._outcomes["offer_no_customer"] += 1  # points need an account
            return None
        if self.loyalty is None:
            self._outcomes["offer_no_loyalty"] += 1
            return None
        expires_at = offer.expires_at if offer.expires_at is not None else math.inf
        if not now < expires_at:
            self._outcomes["offer_expired"] += 1  # retried past the time limit: nothing left to promise
            return None
        granted = await self._contain.call(
            self._loyalty_plugin, self.loyalty.grant,
            customer_id=customer, points=offer.points, multiplier=offer.multiplier, expires_at=expires_at,
            key=message.key, timeout=self._policies[message.channel].timeout, ids={"key": message.key},
        )  # fmt: skip
        if isinstance(granted, Failed):
            raise granted.error()  # the grant is idempotent on the key: the retried attempt asks again
        answer = granted.value
        if isinstance(answer, NotGranted):
            self._outcomes[f"offer_loyalty_{answer.reason}"] += 1
            return None
        self._outcomes["offer_loyalty_granted"] += 1
        return msgspec.structs.replace(
            offer, grant_id=answer.grant_id, points=answer.points, multiplier=answer.multiplier,
            expires_at=answer.expires_at,
        )  # fmt: skip


def _unfinished(offer: Offer) -> bool:
    """Does ``offer`` still need its suggestions, its grant or its code (a retry's offer has them already)?"""
    if offer.kind == "substitute":
        return not offer.suggestions
    if offer.kind == "loyalty_bonus":
        return offer.grant_id is None
    return offer.code is None and offer.kind in ("discount", "free_shipping")
