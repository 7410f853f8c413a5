"""Stage 2, sessionize: keep every session's cart, stitch sessions to customers, detect abandonment.

This is where "the shopper left" is decided. Per session the stage keeps the cart (lines in integer minor
units, currency, shipping, the furthest checkout step, friction signals) and one timer:

- a cart with items and no activity for ``abandon_after`` is **abandoned** (trigger ``inactivity``); after an
  ``exit_intent`` the wait shrinks to ``exit_intent_after`` (trigger ``exit_intent``); after a
  ``payment_failed`` to ``payment_failed_after`` (trigger ``payment_failed``, at once by default);
- any later activity in the session **resumes** the cart (downstream cancels what is pending for it) and
  re-arms the timer, so there is at most one abandonment per idle period; so does following the cart's
  restore link from another session (another device): the shopper is back;
- a ``purchase`` **converts** the cart and every other open cart of the same customer, including carts in
  other sessions, and events older than the purchase no longer change the closed cart. A purchase is not a
  return: what it stops downstream stops because of the purchase;
- **one cart per** ``cart_id``: the shop's cart lives in the session that last sent its ``cart_id``. When
  another session sends it (the shopper switched devices, or followed the restore link), the cart moves
  there, with its lines, its checkout progress and its start, and is merged with what that session already
  held; the session it left keeps no cart. A session without a customer that takes a known customer's cart
  becomes that customer's session (it is their cart);
- sessions without a cart are forgotten ``session_timeout`` after their last activity, abandoned ones after
  ``recovery_window``; beyond ``max_sessions`` the least recently active are evicted, so memory is bounded.

Timers fire when the watermark passes them (see :mod:`recoverkit.clock`), so replay and live decide alike.
What crosses to the next stage: :class:`Abandoned`, :class:`Resumed`, :class:`Converted` and
:class:`ContactChanged`.

Where each part lives: the stage that receives the batches and decides what each event means in ``_stage``;
the deadlines above, their heap and which are due at a watermark in ``_abandon_timers``; sessions stitched to
customers, the session holding each ``cart_id``, the customers seen buying, and erasure (``Forget``) and access
over those indexes in ``_stitching``; the cart records, what each cart event does to the lines, a cart moving
between sessions and the checkpoint's layout in ``_cart``.
"""

from ..items import Abandoned, ContactChanged, Converted, Resumed
from ._stage import Sessionize

__all__ = ["Abandoned", "ContactChanged", "Converted", "Resumed", "Sessionize"]
