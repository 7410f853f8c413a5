"""Files that hold personal data: created readable by their owner only (0600), whatever the process's umask.

The store and its ``-wal``/``-shm`` files, the dead-letter file, and the JSON-lines output of
:class:`~recoverkit.channels.JsonLinesChannel` (``recoverkit replay --out``) hold shoppers' addresses. A file
that already exists keeps its mode: the operator may have chosen it (a group that backs it up), and widening or
narrowing it behind their back would be the surprise.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["PRIVATE_MODE", "open_private"]

PRIVATE_MODE: Final = 0o600


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags)``, creating the file with exactly :data:`PRIVATE_MODE` if it is missing.

    The umask cannot widen the mode given to ``os.open``, but it can narrow it; ``fchmod`` makes it exactly
    0600 so the owner can always read what it wrote. Raises what ``os.open`` raises.
    """
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        return os.open(path, flags & ~(os.O_CREAT | os.O_EXCL))
    try:
        os.fchmod(fd, PRIVATE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd
