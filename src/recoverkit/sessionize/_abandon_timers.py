"""When a cart counts as abandoned and a session as gone: the sessionize stage's one timer per session.

Each session has a ``deadline``: activity sets it to ``abandon_after`` past the last activity when the session
holds a cart, ``session_timeout`` when it does not; an ``exit_intent`` shortens it to ``exit_intent_after``, a
``payment_failed`` to ``payment_failed_after``; after an abandonment it is ``recovery_window`` away, after a
purchase ``session_timeout``. When the deadline passes, a session holding a cart that is not yet abandoned
is **abandoned** (see :func:`abandons`); any other session is forgotten.

Deadlines sit in a heap of :class:`Timer` entries (``due``, ``session_id``), one live entry per session: a
deadline pushed later only updates the session (the entry already in the heap re-arms itself when it pops), and
an entry whose session is gone, or whose time is no longer the session's ``timer_at``, is skipped when it pops.
This keeps an event's cost at one comparison in the common case (the shopper is still active).

The class only moves deadlines and says which are due; the stage decides what a due timer emits. It knows
nothing of events, so it can be driven with plain calls.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Mapping

import msgspec

from ..config import Config
from ._cart import Session

__all__ = ["AbandonTimers", "Timer", "abandons"]


class Timer(msgspec.Struct, gc=False, order=True, array_like=True):
    """A heap entry: ``session_id``'s timer falls due at ``due``. Ordered as the tuple ``(due, session_id)``
    would be (ties by session id, so the order never depends on arrival), in 32 bytes where that tuple takes 56:
    every held session has one, and 100,000s of carts may be open."""

    due: float
    session_id: str


def abandons(session: Session) -> bool:
    """Whether ``session``'s timer, when due, abandons its cart (it holds items not yet abandoned); a timer that
    does not abandon forgets the session."""
    return bool(session.lines) and not session.abandoned


class AbandonTimers:
    """The deadlines of the sessions a sessionize stage holds, and the heap that finds the due ones."""

    def __init__(self, config: Config) -> None:
        self.abandon_after = config.abandon_after
        self.exit_intent_after = config.exit_intent_after
        self.payment_failed_after = config.payment_failed_after
        self.session_timeout = config.session_timeout
        self.recovery_window = config.recovery_window
        #: Earliest first; may hold entries of sessions gone or re-armed (skipped). Always this one list object
        #: (rebuilt in place).
        self.heap: list[Timer] = []

    def __len__(self) -> int:
        return len(self.heap)

    @property
    def next_due(self) -> float:
        """The earliest deadline in the heap (infinite when none): never later than the next timer that fires, and
        possibly earlier (an entry re-armed or of a session gone is only skipped when it pops). The engine's
        ticker sleeps until it."""
        heap = self.heap
        return heap[0].due if heap else math.inf

    def arm(self, session: Session, deadline: float) -> None:
        """Set ``session``'s deadline (earlier or later than before)."""
        # One heap entry per session: a later deadline just updates the session, and the entry already in the
        # heap re-arms itself when it pops. Only an earlier deadline needs a new entry.
        if deadline < session.timer_at:
            session.timer_at = deadline
            heapq.heappush(self.heap, Timer(deadline, session.session_id))
        elif deadline == session.timer_at:
            # The same time as the timer's: share its float object (24 bytes a session; a cart's first event
            # arms it to the value it already has whenever abandon_after equals session_timeout).
            deadline = session.timer_at
        session.deadline = deadline

    def touch(self, session: Session, ts: float) -> None:
        """Activity at ``ts``: the shopper is here; the inactivity clock restarts from the last activity.

        An event older than the session's last activity changes nothing unless the deadline has already
        passed it.
        """
        if ts >= session.last_at or session.deadline < ts:
            session.trigger = "inactivity"
            self.arm(session, session.last_at + (self.abandon_after if session.lines else self.session_timeout))

    def exit_intent(self, session: Session, ts: float) -> None:
        """The shopper is about to leave at ``ts``: a cart is abandoned ``exit_intent_after`` from now, unless the
        inactivity deadline comes sooner."""
        self.touch(session, ts)
        if session.lines and ts + self.exit_intent_after < session.deadline:
            session.trigger = "exit_intent"
            self.arm(session, ts + self.exit_intent_after)

    def payment_failed(self, session: Session, ts: float) -> None:
        """A payment failed at ``ts``: a cart is abandoned ``payment_failed_after`` from now."""
        self.touch(session, ts)
        if session.lines:
            session.trigger = "payment_failed"
            self.arm(session, ts + self.payment_failed_after)

    def abandoned(self, session: Session) -> None:
        """``session``'s cart was just abandoned: it is kept ``recovery_window`` past the last activity, for a
        return or a purchase to cancel what is pending."""
        self.arm(session, session.last_at + self.recovery_window)

    def bought(self, session: Session, ts: float) -> None:
        """``session``'s cart was bought at ``ts``: the session is kept ``session_timeout`` longer."""
        self.arm(session, ts + self.session_timeout)

    def due(
        self, limit: float, sessions: Mapping[str, Session], *, inclusive: bool
    ) -> Iterator[tuple[float, Session]]:
        """Take the timers due at or before ``limit`` (strictly before it unless ``inclusive``) off the heap and
        yield each one's ``(due, session)``, earliest first.

        A yielded session is disarmed (``timer_at`` is infinite); the caller abandons it (which re-arms it) or
        forgets it before taking the next. Entries of sessions gone from ``sessions`` or re-armed since are
        skipped, and a session whose deadline moved later is re-armed instead of yielded.
        """
        heap = self.heap
        pop = heapq.heappop
        while heap and (heap[0].due <= limit if inclusive else heap[0].due < limit):
            entry = pop(heap)
            due = entry.due
            session = sessions.get(entry.session_id)
            if session is None or session.timer_at != due:
                continue  # superseded by an earlier timer for the same session
            session.timer_at = math.inf
            if session.deadline > due:  # activity moved the deadline since this entry was pushed
                self.arm(session, session.deadline)
            else:
                yield due, session

    def compact(self, sessions: Mapping[str, Session]) -> None:
        """Drop the entries of sessions no longer held once they outnumber the live ones (plus slack)."""
        if len(self.heap) > 2 * len(sessions) + 1024:
            # Evicted sessions leave their heap entries behind (skipped when they pop); rebuild the heap from
            # the live sessions so that sustained overflow cannot grow it without bound.
            self.rebuild(sessions)

    def rebuild(self, sessions: Mapping[str, Session]) -> None:
        """The heap anew from ``sessions`` (restored, or after evictions): one entry per armed session, as
        :meth:`arm` keeps it."""
        # In place: the stage reads the heap's head through one reference per batch, which must stay the heap.
        self.heap[:] = [Timer(s.timer_at, s.session_id) for s in sessions.values() if s.timer_at != math.inf]
        heapq.heapify(self.heap)
