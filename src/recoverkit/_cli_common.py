"""Helpers every command module of the ``recoverkit`` CLI shares: times as the tables print them, ``--json``
documents on stdout, the configuration a ``--config`` names, a PostgreSQL store given as a URL."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from .config import Config, load_config
from .errors import ConfigError

if TYPE_CHECKING:
    from .store.postgres import PostgresStore

__all__ = ["config_from", "open_url", "when", "write_json"]


def config_from(path: str | None) -> Config:
    """The configuration in the TOML file ``path``, or the defaults without one."""
    return load_config(path) if path else Config()


def when(ts: float | None) -> str:
    """``ts`` (epoch seconds) as ``2024-05-01 12:00:00`` in UTC, ``-`` for none."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def write_json(document: Any) -> None:
    """``document`` as one JSON document on stdout (indented, as every --json of the CLI)."""
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document)) + b"\n")
    sys.stdout.buffer.flush()


def open_url(url: str, command: str, *, one_pipeline: str | None = None) -> PostgresStore:
    """The PostgreSQL store at ``url`` (a ``postgresql://`` URL), opened for ``command``.

    ``one_pipeline``: the command runs a pipeline of its own on the store (an engine, a replay), which a store of
    several journal partitions cannot give it yet; such a store is closed again and refused with
    :class:`~recoverkit.errors.ConfigError` naming the command, why, and ``one_pipeline``, what to use instead.
    What is printed names the store by :func:`~recoverkit.store.store_label`, never with its password.
    """
    from .store import open_store_url, store_label

    store = open_store_url(url)
    if one_pipeline is not None and store.partitions != 1:
        partitions = store.partitions
        store.close()
        raise ConfigError(
            f"{command}: {store_label(url)} has {partitions} journal partitions, and {command} cannot run on a "
            f"partitioned store yet: it runs a pipeline of its own, which on such a store would join the shop's "
            f"processes as one more member and see only the partitions it took; {one_pipeline}"
        )
    return store
