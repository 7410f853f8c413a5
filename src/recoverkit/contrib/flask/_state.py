"""What the Flask extension keeps per app (``app.extensions["recoverkit"]``), shared by the hooks and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from flask import Flask

from ...clock import Clock, WallClock
from ...integration import IntegrationSettings, LazyEngine
from ...links import RestoreLinks

__all__ = ["EXTENSION_KEY", "RecoverkitState", "app_state"]

#: The key of recoverkit's :class:`RecoverkitState` in ``app.extensions``.
EXTENSION_KEY: Final = "recoverkit"


class _Extension(Protocol):
    """What the state needs of the :class:`Recoverkit` that set the app up.

    Typed by shape rather than by class: ``_extension`` imports this module, and naming the class here would
    make the two import each other.
    """

    def load_customer(self) -> str | None: ...


class RecoverkitState:
    """What :meth:`Recoverkit.init_app` keeps in ``app.extensions["recoverkit"]`` for one app.

    ``settings`` are the validated ``RECOVERKIT_*`` settings; :attr:`engine` is the process's
    :class:`~recoverkit.integration.LazyEngine` (its thread starts on the first event); ``extension`` is the
    :class:`Recoverkit` that set the app up.
    """

    __slots__ = ("_config_links", "_engine", "clock", "extension", "settings")

    def __init__(self, extension: _Extension, settings: IntegrationSettings, engine: LazyEngine) -> None:
        self.extension = extension
        self.settings = settings
        self._engine = engine
        self.clock: Clock = settings.clock if settings.clock is not None else WallClock()
        self._config_links: RestoreLinks | None = None

    @property
    def engine(self) -> LazyEngine:
        """This process's engine (a forked process gets its own: see :class:`~recoverkit.integration.LazyEngine`)."""
        return self._engine

    @property
    def links(self) -> RestoreLinks | None:
        """The cart-restore links of this app (``None`` when ``[links] base_url`` is not configured)."""
        if self.settings.mode != "off":
            return self.engine.links
        # Mode "off" holds no engine, but a shop's restore view must still work (in its own tests, say).
        if self._config_links is None:
            self._config_links = self.settings.links()
        return self._config_links

    def track(self, event: Mapping[str, Any]) -> bool:
        """Hand ``event`` to the engine (stamped with the time it was tracked); never raises."""
        return self.engine.track(event)


def app_state(app: Flask) -> RecoverkitState:
    """The :class:`RecoverkitState` of ``app``; ``RuntimeError`` when recoverkit is not set up on it."""
    state = app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, RecoverkitState):
        raise RuntimeError(
            f"recoverkit is not set up on the Flask app {app.name!r}; call Recoverkit(app) or rk.init_app(app) "
            "in the app factory"
        )
    return state
