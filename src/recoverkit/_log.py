"""recoverkit's log: structured calls, handed to the standard :mod:`logging` module and nothing else.

Every module logs through :func:`get_logger` under the ``recoverkit`` hierarchy (``recoverkit.engine``,
``recoverkit.dispatch``, ``recoverkit.channels.console``, ...)::

    _log = get_logger("recoverkit.engine")
    _log.info("checkpoint_saved", position=42)

Guarantees, which are what a library embedded in a shop's process owes the shop:

- Records go to ``logging.getLogger(name)`` and nowhere else. Importing recoverkit adds one
  :class:`logging.NullHandler` to the ``recoverkit`` logger (the standard library's advice for libraries) and
  changes nothing global: no handler on the root logger, no level, no ``logging.basicConfig``, no
  ``structlog.configure``. What is shown, where and from which level is the host's logging configuration
  (Django's ``LOGGING``, ``logging.config.dictConfig``, uvicorn's ``--log-config``). Without one, nothing is
  printed: the NullHandler also keeps Python's last-resort handler from writing warnings to stderr.
- A record's message is one readable line, ``event key=value key=value``; the event name and every field are
  also attributes of the :class:`logging.LogRecord` (``record.event``, ``record.position``), so a JSON
  formatter on the host side (python-json-logger, structlog's ``ProcessorFormatter`` with ``ExtraAdder``) gets
  them as structured fields. A field whose name is taken by a LogRecord attribute (``name``, ``module``,
  ``process``...) or by the event name (``event``) is stored with a trailing underscore (``name_``), since
  :mod:`logging` refuses to overwrite those.
- A disabled level costs one method call and :meth:`logging.Logger.isEnabledFor` (a dict lookup once the
  logger's cache is warm); nothing is rendered or allocated beyond the call's own keyword dict.
- Callers never pass personal data (emails, phones, names, addresses, discount codes, restore tokens, event
  payloads, provider responses): they log ids (cart and session keys, message keys) and counts. This module
  cannot check that; ``tests/test_log.py`` runs a realistic workload at DEBUG and looks.

Why not structlog here: structlog is the structured front the design card names, and
``structlog.wrap_logger(logging.getLogger(name), ...)`` would give the same records without touching its
global configuration. But measured on the development machine (CPU time of the import, best of 15, asyncio,
typing, dataclasses, inspect, json and re already imported), ``import structlog`` costs about 24 ms without rich
installed (``structlog.dev``, ``.processors``, ``.tracebacks``, ``.stdlib``, pickle, uuid) and 110 ms with it
(``structlog.dev`` imports rich), against a budget of 100 ms for ``import recoverkit`` as a whole; this module
costs under 3 ms. The call shape recoverkit needs (``log.info("event", key=value)``, ``.bind(...)``,
``.exception(...)``) is a few lines over :mod:`logging`, which asyncio imports anyway. A host that uses
structlog for its own log renders our records through ``structlog.stdlib.ProcessorFormatter``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from typing import Final, TextIO

__all__ = ["ROOT", "Logger", "get_logger", "host_configured", "log_to_stderr"]

ROOT: Final = "recoverkit"

# Attributes a LogRecord has (or gets from Formatter.format: message, asctime): logging raises KeyError when
# `extra` names one of them, so such a field is stored under `<name>_` instead.
# `event` is taken by the event name itself.
_RESERVED: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "event"}

# Values matching this are written bare; anything else (spaces, quotes, newlines, '=', empty) is JSON-quoted,
# which keeps one record on one line whatever a shop-supplied value (a template name, a reason) contains.
_BARE: Final = re.compile(r"[\w.,:;/@*+\-<>()\[\]]+")


def _value(value: object) -> str:
    if isinstance(value, (list, tuple, set, frozenset)):
        text = ",".join(str(item) for item in value)
    else:
        text = str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text)


def render(event: str, fields: Mapping[str, object]) -> str:
    """The one-line message of a record: ``event key=value ...``, values quoted only when they must be.

    >>> render("checkpoint_saved", {"position": 42, "owner": "web 1"})
    'checkpoint_saved position=42 owner="web 1"'
    >>> render("engine_started", {"channels": ["email", "sms"]})
    'engine_started channels=email,sms'
    """
    if not fields:
        return event
    return " ".join([event, *(f"{key}={_value(value)}" for key, value in fields.items())])


class Logger:
    """Structured logging over one :class:`logging.Logger`: ``log.info("event", key=value)``.

    ``bind(**fields)`` returns a logger that adds ``fields`` to every record; the original is unchanged, so a
    bound logger can be kept per object without locking. Records carry the caller's file, line and function,
    not this module's.
    """

    __slots__ = ("_context", "logger")

    def __init__(self, logger: logging.Logger, context: Mapping[str, object] | None = None) -> None:
        self.logger = logger
        self._context: dict[str, object] = dict(context) if context else {}

    @property
    def name(self) -> str:
        return self.logger.name

    def bind(self, **fields: object) -> Logger:
        """A logger that adds ``fields`` to each record (a call's own fields win over bound ones)."""
        return Logger(self.logger, {**self._context, **fields})

    def is_enabled_for(self, level: int) -> bool:
        """Whether a record at ``level`` would be handled: guard work done only to build a debug field."""
        return self.logger.isEnabledFor(level)

    # Each level is its own method with the check inlined, so a disabled level costs as little as it can.

    def debug(self, event: str, /, **fields: object) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, event, fields, None)

    def info(self, event: str, /, **fields: object) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, event, fields, None)

    def warning(self, event: str, /, **fields: object) -> None:
        if self.logger.isEnabledFor(logging.WARNING):
            self._emit(logging.WARNING, event, fields, None)

    def error(self, event: str, /, **fields: object) -> None:
        if self.logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, event, fields, None)

    def exception(self, event: str, /, **fields: object) -> None:
        """:meth:`error` with the exception being handled (its traceback) attached."""
        if self.logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, event, fields, True)

    def critical(self, event: str, /, **fields: object) -> None:
        if self.logger.isEnabledFor(logging.CRITICAL):
            self._emit(logging.CRITICAL, event, fields, None)

    def _emit(self, level: int, event: str, fields: dict[str, object], exc_info: bool | None) -> None:
        if self._context:
            fields = {**self._context, **fields}
        extra: dict[str, object] = {"event": event}
        for key, value in fields.items():
            extra[f"{key}_" if key in _RESERVED else key] = value
        # stacklevel 3: past this method and the level method, to the line that logged.
        self.logger.log(level, render(event, fields), exc_info=exc_info, extra=extra, stacklevel=3)


def get_logger(name: str) -> Logger:
    """The structured logger for ``name``, which must be ``recoverkit`` or below it (``recoverkit.engine``).

    Cheap and side-effect free beyond :func:`logging.getLogger`: call it at import time, once per module.
    """
    if name != ROOT and not name.startswith(ROOT + "."):
        raise ValueError(f"logger name {name!r} is outside recoverkit's hierarchy; expected 'recoverkit.<part>'")
    return Logger(logging.getLogger(name))


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to the ``sys.stderr`` of the moment: a test runner or a command framework swaps it per command."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # StreamHandler.__init__ assigns one; the stream is always the current sys.stderr


def host_configured() -> bool:
    """Whether the host process has configured where recoverkit's records go.

    True when the ``recoverkit`` logger has a level or ``propagate = False`` set, is disabled, or when it or an
    ancestor it propagates to (the root logger included) has a handler other than a :class:`logging.NullHandler`.
    A Django ``LOGGING`` that names ``recoverkit`` (even only to silence it), a ``logging.basicConfig()`` or a
    root handler from ``dictConfig`` all count.
    """
    logger = logging.getLogger(ROOT)
    if logger.disabled or logger.level != logging.NOTSET or not logger.propagate:
        return True
    current: logging.Logger | None = logger
    while current is not None:
        if any(not isinstance(handler, logging.NullHandler) for handler in current.handlers):
            return True
        if not current.propagate:
            break
        current = current.parent
    return False


def log_to_stderr(level: int, *, unless_configured: bool) -> bool:
    """Send recoverkit's records from ``level`` up to standard error; ``True`` if a handler was attached.

    For programs only (the ``recoverkit`` command, the worker and maintenance commands), never the library: it
    sets the ``recoverkit`` logger's level and adds a handler to it, never to the root logger, and never writes to
    standard output. Calling it again replaces the handler it attached before rather than adding a second one.
    With ``unless_configured`` (a command running inside a host's process: ``manage.py``, ``flask``), it does
    nothing when :func:`host_configured` says the host has configured recoverkit's records itself.
    """
    logger = logging.getLogger(ROOT)
    ours = [handler for handler in logger.handlers if isinstance(handler, _StderrHandler)]
    for handler in ours:
        logger.removeHandler(handler)
    if ours:
        logger.setLevel(logging.NOTSET)  # the level was ours too; it must not read as the host's below
    if unless_configured and host_configured():
        return False
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return True


def _install_null_handler() -> None:
    # Idempotent so that a reload of this module (tests, some dev servers) does not pile handlers up.
    logger = logging.getLogger(ROOT)
    if not any(type(handler) is logging.NullHandler for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())


_install_null_handler()
