"""The dead-letter list: messages that failed for good, kept so a person can look at them and send again.

Dispatch adds a :class:`DeadLetter` when an adapter raised
:class:`~recoverkit.errors.PermanentDeliveryError` or retries ran out. With a ``path`` every change is also
appended to a JSON-lines file (one ``{"dead": ...}`` or ``{"resent": key}`` record per line) that the CLI reads:
``recoverkit dead-letters list FILE`` and ``recoverkit dead-letters resend FILE --webhook URL``. A letter that
was re-sent is not re-sent again.

The file holds the messages' recipients (personal data): keep it where the shop keeps its order data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

from .channels.base import Message

__all__ = ["DeadLetter", "DeadLetters"]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message that could not be delivered: the last ``error`` (type and text) after ``attempts`` tries."""

    message: Message
    error: str
    attempts: int
    at: float
    permanent: bool


class _Record(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    dead: DeadLetter | None = None
    resent: str | None = None


class DeadLetters:
    """In-memory dead letters, optionally mirrored to an append-only JSON-lines file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._letters: dict[str, DeadLetter] = {}
        self._encoder = msgspec.json.Encoder()
        if self.path is not None and self.path.exists():
            self._letters = dict(self._read(self.path))

    def add(self, letter: DeadLetter) -> None:
        self._letters[letter.message.key] = letter
        self._append(_Record(dead=letter))

    def mark_resent(self, key: str) -> None:
        """Record that ``key`` was delivered by a re-send; it leaves the list."""
        self._letters.pop(key, None)
        self._append(_Record(resent=key))

    def forget(self, contact_keys: set[str]) -> int:
        """Drop the letters addressed to any of ``contact_keys``, and rewrite the file without them.

        The file is rewritten whole (to a temporary file, then renamed over it) because its earlier records
        hold the addresses; returns how many letters went.
        """
        gone = [key for key, letter in self._letters.items() if letter.message.recipient.contact_key in contact_keys]
        for key in gone:
            del self._letters[key]
        if gone and self.path is not None:
            temporary = self.path.with_name(self.path.name + ".tmp")
            with temporary.open("wb") as f:
                for letter in self._letters.values():
                    f.write(self._encoder.encode(_Record(dead=letter)) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        return len(gone)

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(list(self._letters.values()))

    def __len__(self) -> int:
        return len(self._letters)

    def _append(self, record: _Record) -> None:
        if self.path is not None:
            with self.path.open("ab") as f:
                f.write(self._encoder.encode(record) + b"\n")

    @staticmethod
    def _read(path: Path) -> Iterator[tuple[str, DeadLetter]]:
        decoder = msgspec.json.Decoder(_Record)
        letters: dict[str, DeadLetter] = {}
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = decoder.decode(line)
                except msgspec.DecodeError as exc:
                    raise ValueError(f"{path}:{number}: not a dead-letter record: {exc}") from exc
                if record.dead is not None:
                    letters[record.dead.message.key] = record.dead
                elif record.resent is not None:
                    letters.pop(record.resent, None)
        yield from letters.items()
