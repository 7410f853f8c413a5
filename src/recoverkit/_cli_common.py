"""Helpers every command module of the ``recoverkit`` CLI shares: times as the tables print them, ``--json``
documents on stdout, the configuration a ``--config`` names."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

from .config import Config, load_config

__all__ = ["config_from", "when", "write_json"]


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
