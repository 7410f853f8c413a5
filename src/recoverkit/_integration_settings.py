"""The web integrations' settings (Django's ``RECOVERKIT`` dict, Flask's ``RECOVERKIT_*`` keys), validated at
start-up into :class:`IntegrationSettings`: each setting checked on its own, every error naming the setting as the
shop wrote it, the value and what was expected. Re-exported by :mod:`recoverkit.integration`, whose docstring
describes the keys and the modes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Literal, cast

from ._offer_plugins import check_offer_plugins
from ._plugin_settings import check_flow_channels, in_settings_terms, plugin, unknown_setting
from ._web_session import SESSION_COOKIE
from .background import BackgroundEngine
from .channels.base import Channel
from .clock import Clock
from .config import Config, load_config
from .engine import Engine
from .errors import ConfigError
from .links import RestoreLinks
from .plugins import Plugins
from .store.base import Store

__all__ = ["PATH_EVENTS", "SETTING_KEYS", "IntegrationSettings", "Mode"]

Mode = Literal["embedded", "journal", "off"]

#: Events the middleware may record by itself for a path the settings name (``CHECKOUT_PATHS``).
PATH_EVENTS: Final = frozenset({"page_view", "view_cart", "begin_checkout", "add_shipping_info", "add_payment_info"})
_MODES: Final = ("embedded", "journal", "off")
#: The keys a settings mapping may hold (Django's ``RECOVERKIT`` dict; Flask's keys without ``RECOVERKIT_``).
SETTING_KEYS: Final = frozenset(
    {
        "MODE",
        "CONFIG",
        "STORE",
        "CHANNELS",
        "GUARD",
        "SCORER",
        "COUPONS",
        "CATALOGUE",
        "LOYALTY",
        "RATES",
        "CHECKOUT_PATHS",
        "TRACK_PAGE_VIEWS",
        "SESSION_COOKIE",
        "COOKIE_SECURE",
        "CLOSE_TIMEOUT",
        "CLOCK",
    }
)


#: The plug-ins that read as attributes of :class:`IntegrationSettings`.
_PLUGIN_FIELDS: Final = frozenset(field.name for field in dataclasses.fields(Plugins))


class IntegrationSettings:
    """The integration's settings, validated. Build with :meth:`from_mapping`; see the module docs for keys.

    ``source`` names where the settings came from (``"settings.RECOVERKIT"``) and prefixes every error, so a
    message reads ``settings.RECOVERKIT['MODE']: 'embeded' is not a mode; expected ...``; ``spell`` says how
    the shop wrote a key when that is not ``source['KEY']`` (Flask's ``app.config['RECOVERKIT_MODE']``).
    Errors of the engine built from the settings name the setting too (:meth:`build_engine`, :meth:`new_engine`).
    """

    def __init__(
        self,
        *,
        source: str,
        mode: Mode = "embedded",
        config: Config | None = None,
        plugins: Plugins | None = None,
        checkout_paths: Mapping[str, str] | None = None,
        track_page_views: bool = False,
        session_cookie: str = SESSION_COOKIE,
        cookie_secure: bool | None = None,
        close_timeout: float = 10.0,
        spell: Callable[[str], str] | None = None,
    ) -> None:
        self.source = source
        self._spell = spell
        self.mode = mode
        self.config = config if config is not None else Config()
        #: The plug-ins the settings name (``CHANNELS``, ``STORE``, ``CLOCK``, ``GUARD``, ...), one bundle that
        #: every engine built from these settings takes; each also reads as an attribute (``settings.channels``).
        self.plugins = plugins if plugins is not None else Plugins()
        self.checkout_paths = dict(checkout_paths or {})
        self.track_page_views = track_page_views
        self.session_cookie = session_cookie
        self.cookie_secure = cookie_secure
        self.close_timeout = close_timeout

    # The plug-ins read (and, for tests that break one after validation, write) as attributes of the settings,
    # from the one bundle: a new plug-in needs no line here.
    def __getattr__(self, name: str) -> Any:
        plugins = self.__dict__.get("plugins")  # absent while unpickling or copying: no recursion
        if name in _PLUGIN_FIELDS and plugins is not None:
            return getattr(plugins, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PLUGIN_FIELDS:
            self.plugins = dataclasses.replace(self.plugins, **{name: value})
        else:
            super().__setattr__(name, value)

    def setting(self, key: str, *more: str) -> str:
        """How the shop wrote setting ``key`` (and keys inside it): ``settings.RECOVERKIT['CHANNELS']['email']``."""
        head = self._spell(key) if self._spell is not None else f"{self.source}[{key!r}]"
        return head + "".join(f"[{k!r}]" for k in more)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any] | None, *, source: str, spell: Callable[[str], str] | None = None
    ) -> IntegrationSettings:
        """Validate ``mapping`` (keys as in the module docs, upper case) or raise :class:`ConfigError`.

        Besides each value, this checks what the engine would refuse at start-up, in the settings' terms: a
        channel a flow uses without an adapter in ``CHANNELS``, an offer that needs a ``CATALOGUE`` or
        ``LOYALTY`` that is not set (not in mode ``"off"``, which builds no engine), and a plug-in without its
        interface's method. ``spell`` is as for the class.
        """
        if not isinstance(mapping, Mapping) and mapping is not None:
            raise ConfigError(f"{source}: expected a dict of settings, got {type(mapping).__name__}")
        data = dict(mapping or {})
        where = _speller(source, spell)
        for key in data:
            if key not in SETTING_KEYS:
                raise unknown_setting(key, spelled=where(str(key)), known=SETTING_KEYS)
        # One setting at a time, in this order, so that of several mistakes the same one is named first.
        mode = _mode(data.get("MODE", "embedded"), where)
        config = _config(data.get("CONFIG"), where("CONFIG"))
        channels = _channels(data.get("CHANNELS"), where)
        paths = _checkout_paths(data.get("CHECKOUT_PATHS") or {}, where)
        cookie = _session_cookie(data.get("SESSION_COOKIE", SESSION_COOKIE), where)
        secure = _cookie_secure(data.get("COOKIE_SECURE"), where)
        timeout = _close_timeout(data.get("CLOSE_TIMEOUT", 10.0), where)
        page_views = _track_page_views(data.get("TRACK_PAGE_VIEWS", False), where)
        clock = _clock(data.get("CLOCK"), where)
        store = _store(data.get("STORE"), mode=mode, config=config, where=where)

        def named(key: str) -> Any:
            value = data.get(key)
            return plugin(value, key=key, setting=where(key)) if value is not None else None

        catalogue, loyalty, rates = named("CATALOGUE"), named("LOYALTY"), named("RATES")
        if mode != "off":
            _check_engine_would_start(config, channels, catalogue=catalogue, loyalty=loyalty, rates=rates, where=where)
        return cls(
            source=source,
            spell=spell,
            mode=mode,
            config=config,
            plugins=Plugins(
                channels=channels, store=store, clock=clock, guard=named("GUARD"), scorer=named("SCORER"),
                coupons=named("COUPONS"), catalogue=catalogue, loyalty=loyalty, rates=rates,
            ),
            checkout_paths=paths,
            track_page_views=page_views,
            session_cookie=cookie,
            cookie_secure=secure,
            close_timeout=timeout,
        )

    def engine_kwargs(self, *, pipeline: bool | None = None) -> dict[str, Any]:
        """Keyword arguments for :class:`~recoverkit.Engine`: the plug-ins, one keyword each, and ``pipeline``,
        which overrides what ``MODE`` implies (a dedicated worker passes ``True``)."""
        return {**self.plugins.as_kwargs(), "pipeline": self._pipeline(pipeline)}

    def _pipeline(self, pipeline: bool | None) -> bool:
        return self.mode == "embedded" if pipeline is None else pipeline

    def build_engine(self, *, pipeline: bool | None = None) -> BackgroundEngine:
        """The :class:`~recoverkit.BackgroundEngine` these settings describe (for WSGI: Django, Flask).

        A :class:`ConfigError` of the engine's (a missing secret, a template that does not render) names the
        settings and the setting to change: ``settings.RECOVERKIT: recoverkit cannot start: ...``.
        """
        with self._starting():
            return BackgroundEngine(
                self.config, plugins=self.plugins, pipeline=self._pipeline(pipeline), close_timeout=self.close_timeout
            )

    def new_engine(self, *, pipeline: bool | None = None) -> Engine:
        """The async :class:`~recoverkit.Engine` these settings describe, not started (for ASGI's lifespan and a
        dedicated worker), its ``close_timeout`` set from ``CLOSE_TIMEOUT``; errors as for :meth:`build_engine`."""
        with self._starting():
            engine = Engine(self.config, plugins=self.plugins, pipeline=self._pipeline(pipeline))
        engine.close_timeout = self.close_timeout
        return engine

    @contextlib.contextmanager
    def _starting(self) -> Iterator[None]:
        try:
            yield
        except ConfigError as exc:
            message, _ = in_settings_terms(str(exc), self.setting)
            raise ConfigError(f"{self.source}: recoverkit cannot start: {message}") from exc

    def links(self) -> RestoreLinks | None:
        """The cart-restore links ``[links]`` describes (``None`` without a ``base_url``); see
        :meth:`RestoreLinks.from_config`."""
        return RestoreLinks.from_config(self.config.links)

    def now(self) -> float:
        """The time on the engine's clock (``CLOCK`` in tests, else the wall clock)."""
        return self.clock.now() if self.clock is not None else time.time()

    def path_event(self, path: str) -> str | None:
        """The event ``CHECKOUT_PATHS`` names for a request path (longest matching prefix), if any."""
        best: tuple[int, str] | None = None
        for prefix, kind in self.checkout_paths.items():
            matches = path == prefix or path.startswith(prefix.rstrip("/") + "/")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), kind)
        if best is not None:
            return best[1]
        return "page_view" if self.track_page_views else None


# -- one setting each: the value as the settings hold it, checked, or a ConfigError naming the setting, the value
# -- and what was expected ------------------------------------------------------------------------------------


def _speller(source: str, spell: Callable[[str], str] | None) -> Callable[..., str]:
    """``where(key, *more)``: how the shop wrote a setting (and keys inside it), for error messages."""

    def where(key: str, *more: str) -> str:
        head = spell(key) if spell is not None else f"{source}[{key!r}]"
        return head + "".join(f"[{k!r}]" for k in more)

    return where


def _mode(value: Any, where: Callable[..., str]) -> Mode:
    if value not in _MODES:
        raise ConfigError(f"{where('MODE')}: {value!r} is not a mode; expected one of {list(_MODES)}")
    return cast(Mode, value)


def _config(value: Any, where: str) -> Config:
    if value is None:
        return Config()
    if isinstance(value, Config):
        return value
    if isinstance(value, Mapping):
        return Config.from_dict(value, source=where)
    if isinstance(value, str) or hasattr(value, "__fspath__"):
        return load_config(value)
    raise ConfigError(
        f"{where}: expected a recoverkit.Config, a dict, or the path of a TOML file, got {type(value).__name__}"
    )


def _channels(value: Any, where: Callable[..., str]) -> dict[str, Channel] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where('CHANNELS')}: expected a dict of channel name to adapter (or its import path), "
            f"got {type(value).__name__}"
        )
    return {
        str(name): plugin(adapter, key="CHANNELS", setting=where("CHANNELS", str(name)))
        for name, adapter in value.items()
    }


def _checkout_paths(value: Any, where: Callable[..., str]) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where('CHECKOUT_PATHS')}: expected a dict of URL path to event name")
    for path, kind in value.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(f"{where('CHECKOUT_PATHS')}: key {path!r} is not a URL path; expected '/...'")
        if kind not in PATH_EVENTS:
            raise ConfigError(
                f"{where('CHECKOUT_PATHS', path)}: {kind!r} cannot be recorded from a page load; "
                f"expected one of {sorted(PATH_EVENTS)}"
            )
    return value


def _session_cookie(value: Any, where: Callable[..., str]) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ConfigError(f"{where('SESSION_COOKIE')}: {value!r} is not a cookie name; expected [A-Za-z0-9_-]")
    return value


def _cookie_secure(value: Any, where: Callable[..., str]) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{where('COOKIE_SECURE')}: expected true, false or None (follow the request)")
    return value


def _close_timeout(value: Any, where: Callable[..., str]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 600:
        raise ConfigError(f"{where('CLOSE_TIMEOUT')}: {value!r}; expected seconds from 0 to 600")
    return float(value)


def _track_page_views(value: Any, where: Callable[..., str]) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where('TRACK_PAGE_VIEWS')}: {value!r}; expected true or false")
    return value


def _clock(value: Any, where: Callable[..., str]) -> Clock | None:
    if value is not None and not isinstance(value, Clock):
        raise ConfigError(f"{where('CLOCK')}: expected a recoverkit.Clock (a FakeClock in tests), got {value!r}")
    return value


def _store(
    value: Any, *, mode: Mode, config: Config, where: Callable[..., str]
) -> Store | str | os.PathLike[str] | None:
    """``STORE``, and a store the worker can read when ``MODE`` is ``"journal"``.

    A ``postgresql://`` (or ``postgres://``) URL names the PostgreSQL store every host shares (docs/scaling.md);
    any other text is the path of a SQLite file.
    """
    if value is not None and not isinstance(value, (str, os.PathLike, Store)):
        raise ConfigError(
            f"{where('STORE')}: got {type(value).__name__}; expected the path of the SQLite file the processes "
            "share (a str: a file path, never an import path), a postgresql:// URL of the store several hosts "
            "share, or a recoverkit.store.Store"
        )
    if mode == "journal" and value is None and config.store.path is None:
        raise ConfigError(
            f"{where('MODE')}: 'journal' hands events to a worker process through a shared store; set "
            f"{where('STORE')} (or [store] path in the config) to the SQLite file the worker reads"
        )
    return value


def _check_engine_would_start(
    config: Config,
    channels: Mapping[str, Channel] | None,
    *,
    catalogue: Any,
    loyalty: Any,
    rates: Any,
    where: Callable[..., str],
) -> None:
    """What the engine would refuse when it is built, said now and in the settings' terms."""
    if channels is not None:
        check_flow_channels(config, channels, where("CHANNELS"))
    try:
        check_offer_plugins(config, catalogue=catalogue, loyalty=loyalty, rates=rates)
    except ConfigError as exc:
        message, named = in_settings_terms(str(exc), where)
        raise ConfigError(f"{where(named or 'CONFIG')}: {message}") from exc
