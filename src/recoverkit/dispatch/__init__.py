"""Stage 5, dispatch: hold scheduled messages until they are due, then deliver them through the adapters.

Guarantees, in the order they are checked when a message comes due:

1. **Never after purchase.** A purchase of the cart, or by its customer in any session after the cart was
   started, cancels the message. The last check is made by the store's :meth:`~recoverkit.store.Store.claim`,
   in the same transaction that records the send: live, every purchase is recorded there as soon as it is
   journaled (by any worker process), before the pipeline has even read it. A host-supplied ``guard`` (for
   example "has this customer ordered since?", asked of the shop's own database) is asked after the claim and
   just before the adapter, and can veto the send. In event time (replay) "after" is in event time: a message
   due before a purchase is sent, as it would have been live, however the events were batched.
2. **At most once per key.** ``message.key`` (cart, flow, step) is claimed in the store's ledger before the
   adapter is called, and the outcome recorded after. A key already in the ledger is never handed over again:
   not after a restart from an older checkpoint, not by another worker. After a crash between claim and
   outcome the entry is ``unknown`` and the message is not sent again until a person resolves it
   (``recoverkit ledger``).
3. **Contained plug-ins.** Every call into shop code (adapter, guard, catalogue, loyalty, coupons) goes through
   :class:`~recoverkit._contain.Containment`: plain functions in a worker thread, coroutines in a task of
   their own, under the channel's timeout. A send that raises (``CancelledError`` included) or times out fails
   only that message, which is retried with exponential backoff and full jitter (transient failures) or
   dead-lettered (permanent failures, attempts exhausted). A send still running after its timeout and a grace
   (it ignores cancellation) may yet reach the provider: it is recorded ``unknown`` in the ledger and never
   retried. Ingest, other channels, ``flush()`` and ``close()`` carry on.
4. **Never dropped.** A claim refused because this process does not hold the pipeline lease (it lapsed during
   a stall) holds the message and makes the engine check the lease at once; the engine resumes it, or restores
   from the checkpoint, which holds it.

Retries are the one place a message can reach a provider twice: a send that timed out may have been
accepted. The idempotency key ``message.key`` is stable across retries; adapters should pass it on (the
webhook adapter sends it as ``Idempotency-Key``).

The schedule is part of every checkpoint, so pending messages survive a restart; the ledger is in the store.

Where each part lives: the schedule (pending messages, purchases seen, caps, retention) in ``_schedule``, offer
preparation in ``_prepare``, claims, sends, retries and dead letters in ``_delivery``, the analytics facts' writer
in ``_facts``, and the stage that runs them in ``_stage``.
"""

from ._delivery import Guard, StoreCall
from ._stage import Dispatch

__all__ = ["Dispatch", "Guard", "StoreCall"]
