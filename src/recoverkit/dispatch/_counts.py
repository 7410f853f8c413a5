"""Messages counted so that the counts add up: each message scheduled once, and each ending once.

``recoverkit_messages_total`` counts everything dispatch does under one label (scheduled, retries, offers, final
outcomes ...), so summing it double-counts. :class:`MessageCounts` keeps the two figures that add up: the
messages this process scheduled, by channel and flow, and the final outcome of each (sent, dead, unknown,
cancelled_*, capped, skipped ones, duplicate_key), by outcome, channel and flow. For one process, every message it
scheduled has ended once or is still pending, due or in flight, so ``scheduled == sum(ended) + pending + waiting +
in flight``; messages it took over from a checkpoint end here without having been scheduled here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..items import Message

__all__ = ["MessageCounts"]


class MessageCounts:
    """Per-process counts, from zero: never restored from a checkpoint (they are this process's work)."""

    __slots__ = ("ended", "scheduled")

    def __init__(self) -> None:
        self.scheduled: Counter[tuple[str, str]] = Counter()  # (channel, flow)
        self.ended: Counter[tuple[str, str, str]] = Counter()  # (outcome, channel, flow)

    def schedule(self, message: Message) -> None:
        self.scheduled[message.channel, message.flow] += 1

    def end(self, message: Message, outcome: str) -> None:
        self.ended[outcome, message.channel, message.flow] += 1

    def figures(self) -> dict[str, Any]:
        """JSON-friendly: ``scheduled`` as {channel: {flow: n}}, ``ended`` as {outcome: {channel: {flow: n}}}."""
        scheduled: dict[str, dict[str, int]] = {}
        for (channel, flow), n in self.scheduled.items():
            scheduled.setdefault(channel, {})[flow] = n
        ended: dict[str, dict[str, dict[str, int]]] = {}
        for (outcome, channel, flow), n in self.ended.items():
            ended.setdefault(outcome, {}).setdefault(channel, {})[flow] = n
        return {"scheduled": scheduled, "ended": ended}
