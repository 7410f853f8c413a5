"""Replaying the synthetic shop through an engine and keeping the keys of what it sent: how the tests compare one
store, one partition count or one number of engines with another."""

from __future__ import annotations

from typing import Any

from recoverkit import Config, Engine, EventClock
from recoverkit.channels.base import Message
from recoverkit.store import Store
from recoverkit.synthetic import generate_jsonl

__all__ = ["KeyRecorder", "channels_for", "replay_keys", "synthetic_lines"]


class KeyRecorder:
    """A channel adapter that keeps the key of every message handed to it."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    async def send(self, message: Message) -> None:
        self.keys.append(message.key)


def channels_for(config: Config, adapter: Any) -> dict[str, Any]:
    """``adapter`` for every channel the flows of ``config`` use (steps and fallbacks)."""
    used = {ch for flow in config.flows for step in flow.steps for ch in (step.channel, step.fallback) if ch}
    return dict.fromkeys(sorted(used), adapter)


def synthetic_lines(carts: int, seed: int) -> list[bytes]:
    """The synthetic shop's events for ``carts`` carts, as JSON lines."""
    return [line if isinstance(line, bytes) else line.encode() for line in generate_jsonl(carts, seed=seed)]


async def replay_keys(lines: list[bytes], store: Store) -> tuple[list[str], dict[str, Any] | None, Any]:
    """Replay ``lines`` in event time on ``store`` with the default configuration: the sorted keys of the messages
    sent, ``engine.partitions`` and ``engine.statistics()`` (read before the engine closes)."""
    config = Config()
    record = KeyRecorder()
    async with Engine(config, channels=channels_for(config, record), clock=EventClock(), store=store) as engine:
        for i in range(0, len(lines), 256):
            await engine.submit_many(lines[i : i + 256])
        await engine.flush(end_of_input=True)
        return sorted(record.keys), engine.partitions, engine.statistics()
