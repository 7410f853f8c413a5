"""A JSON-lines log formatter of the kind a shop plugs into ``LOGGING`` (python-json-logger and the like): the
record's message, level and logger, plus every attribute a library passed in ``extra``."""

from __future__ import annotations

import json
import logging
from typing import Any

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {"logger": record.name, "level": record.levelname, "message": record.getMessage()}
        document.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        return json.dumps(document, default=str)
