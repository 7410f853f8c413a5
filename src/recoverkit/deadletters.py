"""The dead-letter list: messages that failed for good, kept so a person can look at them and send again.

Dispatch adds a :class:`DeadLetter` when an adapter raised
:class:`~recoverkit.errors.PermanentDeliveryError` or retries ran out. With a ``path`` every change is also
appended to a JSON-lines file (one ``{"dead": ...}`` or ``{"resent": key}`` record per line) that the CLI reads:
``recoverkit dead-letters list FILE`` and ``recoverkit dead-letters resend FILE --webhook URL``. A letter that
was re-sent is not re-sent again.

The file holds the messages' recipients (personal data): keep it where the shop keeps its order data. It is
created readable by its owner only (mode 0600, whatever the umask); a file that exists keeps its mode. Letters
hold neither the message's discount code nor its restore link, and dispatch redacts both from the ``error``
(see :mod:`recoverkit._redact`).

Several writers. Every change to the file (an append, the rewrite of :meth:`DeadLetters.forget`) holds an
exclusive ``flock`` on the lock file beside it (``<file>.lock``), so a process erasing a customer (``recoverkit
forget --dead-letters FILE``) and an engine appending letters never lose each other's records.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from ._files import PRIVATE_MODE, open_private
from .channels.base import Message

__all__ = ["DeadLetter", "DeadLetters"]

#: The mode of a dead-letter file this module creates (and of its lock file): it holds personal data.
FILE_MODE: Final = PRIVATE_MODE


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
            with self._locked():  # not half a line that another process is appending
                self._letters = dict(self._read(self.path))

    def add(self, letter: DeadLetter) -> None:
        self._letters[letter.message.key] = letter
        self._append(_Record(dead=letter))

    def mark_resent(self, key: str) -> None:
        """Record that ``key`` was delivered by a re-send; it leaves the list."""
        self._letters.pop(key, None)
        self._append(_Record(resent=key))

    def forget(self, contact_keys: Collection[str]) -> int:
        """Drop the letters for any of ``contact_keys`` (a letter's ``recipient.contact_key`` or its
        ``recipient.customer_id``), here and in the file; return how many letters went.

        The file is read again under its lock (another process may have added letters this object never saw)
        and, if any record in it, re-sent ones included, is for those contacts, rewritten whole without them:
        to a temporary file (mode as the file's), fsynced, renamed over the file, the directory fsynced. A crash
        leaves the old file or the new one, never half of either. The rewrite also drops re-sent letters.
        """
        keys = set(contact_keys)
        gone = {key for key, letter in self._letters.items() if _for(letter, keys)}
        for key in gone:
            del self._letters[key]
        if self.path is None:
            return len(gone)
        with self._locked():
            if not self.path.exists():
                return len(gone)
            records = list(self._records(self.path))
            theirs = {r.dead.message.key for r in records if r.dead is not None and _for(r.dead, keys)}
            if theirs:
                live = {k: v for k, v in _replay(records).items() if k not in theirs}
                self._rewrite(self.path, live.values())
                # Counted as gone only if still live: a re-sent letter leaves the file but was no longer listed.
                gone |= theirs & set(_replay(records))
        return len(gone)

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(list(self._letters.values()))

    def __len__(self) -> int:
        return len(self._letters)

    def _append(self, record: _Record) -> None:
        if self.path is None:
            return
        line = self._encoder.encode(record) + b"\n"
        with self._locked():
            fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
            with os.fdopen(fd, "ab") as f:
                f.write(line)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the exclusive lock of the file (its ``.lock`` sibling: the file itself is replaced by renames)."""
        assert self.path is not None  # callers check; a programming error otherwise, not user input
        try:
            import fcntl
        except ImportError:  # not POSIX (Windows): one process per file, as before this lock existed
            yield
            return
        fd = open_private(self.path.with_name(self.path.name + ".lock"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _rewrite(self, path: Path, letters: Iterable[DeadLetter]) -> None:
        temporary = path.with_name(path.name + ".tmp")
        temporary.unlink(missing_ok=True)  # left by a crash mid-rewrite; we hold the lock
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.fchmod(fd, os.stat(path).st_mode & 0o7777)  # the file's mode, as the operator left it
            with os.fdopen(fd, "wb") as f:
                fd = -1
                for letter in letters:
                    f.write(self._encoder.encode(_Record(dead=letter)) + b"\n")
                f.flush()
                os.fsync(f.fileno())
        finally:
            if fd >= 0:
                os.close(fd)
        os.replace(temporary, path)
        with contextlib.suppress(OSError):  # the rename is durable once the directory is (not on every OS)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    @staticmethod
    def _records(path: Path) -> Iterator[_Record]:
        decoder = msgspec.json.Decoder(_Record)
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield decoder.decode(line)
                except msgspec.DecodeError as exc:
                    raise ValueError(f"{path}:{number}: not a dead-letter record: {exc}") from exc

    @classmethod
    def _read(cls, path: Path) -> Iterator[tuple[str, DeadLetter]]:
        yield from _replay(cls._records(path)).items()


def _replay(records: Iterable[_Record]) -> dict[str, DeadLetter]:
    """The letters still listed after ``records``, in the order they were added."""
    letters: dict[str, DeadLetter] = {}
    for record in records:
        if record.dead is not None:
            letters[record.dead.message.key] = record.dead
        elif record.resent is not None:
            letters.pop(record.resent, None)
    return letters


def _for(letter: DeadLetter, keys: set[str]) -> bool:
    recipient = letter.message.recipient
    return recipient.contact_key in keys or (recipient.customer_id is not None and recipient.customer_id in keys)


