"""What the Django, Flask and ASGI integrations share: settings, the process's engine, the request's tracker.

A web framework integration does four things, and only the first depends on the framework:

1. find the shopper's session id (a first-party cookie, :data:`SESSION_COOKIE`, that this module mints and
   checks) and the logged-in customer's id;
2. read the shop's settings (Django's ``RECOVERKIT`` dict, Flask's ``RECOVERKIT_*`` keys) into
   :class:`IntegrationSettings`, whose errors name the setting, the bad value and what was expected, at start-up;
3. hold one engine per process (:class:`LazyEngine`): built at start-up so that configuration errors surface
   then, started on first use, dropped and rebuilt in a forked child;
4. give views a :class:`Tracker` bound to the request, whose methods (``tracker.add_to_cart(...)``) fill in the
   session, the customer and the segment hints (device, traffic source) and never raise.

Modes (``MODE``): ``"embedded"`` (default) runs the engine in every web process; with a shared SQLite store the
pipeline lease makes exactly one of them run the pipeline while the others only journal. ``"journal"`` makes
web processes journal only, for a dedicated worker (``manage.py recoverkit worker``, ``flask recoverkit worker``)
that runs the pipeline. ``"off"`` records nothing (tests, management commands that must not start threads).
``CLOCK`` takes a :class:`~recoverkit.FakeClock` in a shop's own tests, so "an hour later" is instant.

Only first-party data: the session cookie identifies a visit to this shop and nothing else, is ``HttpOnly`` and
``SameSite=Lax``, and carries no personal data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import inspect
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Literal, TypeVar

from ._log import get_logger
from ._offer_plugins import check_offer_plugins
from .background import BackgroundEngine
from .channels.base import Channel
from .clock import Clock
from .config import Config, load_config
from .engine import Engine
from .errors import ConfigError, LinkError
from .events import EVENT_KINDS, RESTORE_PAGE
from .links import PARAMETER as LINK_PARAMETER
from .links import RestoreLinks, RestoreToken
from .plugins import Plugins
from .store.base import Store

__all__ = [
    "LINK_PARAMETER",
    "SESSION_COOKIE",
    "SETTING_KEYS",
    "IntegrationSettings",
    "LazyEngine",
    "Tracker",
    "device_of",
    "import_object",
    "is_session_id",
    "load_customer",
    "new_session_id",
    "restore_cart",
    "unknown_setting",
]

T = TypeVar("T")
Mode = Literal["embedded", "journal", "off"]

_log = get_logger("recoverkit.integration")

#: The first-party cookie that carries recoverkit's session id (a random id, nothing else).
SESSION_COOKIE: Final = "rk_sid"
#: 30 days: a cart abandoned today can still be restored and stitched when the shopper comes back next week.
SESSION_COOKIE_MAX_AGE: Final = 30 * 86_400
_SESSION_ID: Final = re.compile(r"[A-Za-z0-9_-]{22}")
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


def new_session_id() -> str:
    """A fresh, unguessable session id (128 bits, 22 URL-safe characters)."""
    return secrets.token_urlsafe(16)


def is_session_id(value: object) -> bool:
    """Whether a cookie value is a session id this module minted (anything else is replaced, never trusted)."""
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


_MOBILE: Final = re.compile(r"Mobi|iPhone|Android.+Mobile|Windows Phone", re.IGNORECASE)
_TABLET: Final = re.compile(r"iPad|Tablet|Android(?!.*Mobile)|Kindle|Silk", re.IGNORECASE)
_BOT: Final = re.compile(r"bot\b|crawler|spider|curl/|python-requests|HeadlessChrome", re.IGNORECASE)


def device_of(user_agent: str | None) -> str | None:
    """The device class of a ``User-Agent`` (``"mobile"``, ``"tablet"``, ``"desktop"``, ``"bot"``), for the
    analytics segments; ``None`` when there is none. A coarse guess on purpose: nothing is fingerprinted."""
    if not user_agent:
        return None
    ua = user_agent[:512]
    if _BOT.search(ua):
        return "bot"
    if _TABLET.search(ua):
        return "tablet"
    if _MOBILE.search(ua):
        return "mobile"
    return "desktop"


def load_customer(loader: Callable[[], object]) -> str | None:
    """Call a shop's customer loader and make its answer a customer id: ``str`` as is, ``int`` as text,
    ``None`` for a guest. A loader that raises or answers anything else is contained and logged (without what it
    returned, which may be personal data); the shopper is then treated as a guest."""
    try:
        value = loader()
    except Exception as exc:  # the shop's code: contained, and logged without anything it might hold
        _log.error("customer_loader_failed", error=type(exc).__name__)
        return None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    _log.error("customer_loader_bad_value", type=type(value).__name__, expected="str, int or None")
    return None


def import_object(value: Any, *, setting: str) -> Any:
    """Resolve a ``"package.module.attribute"`` (or ``"package.module:attribute"``) string; pass objects through.

    Raises :class:`ConfigError` naming ``setting`` and the path when the module or attribute is missing.
    """
    if not isinstance(value, str):
        return value
    module_name, sep, attribute = value.partition(":")
    if not sep:
        module_name, _, attribute = value.rpartition(".")
    if not module_name or not attribute:
        raise ConfigError(f"{setting}: {value!r} is not an import path; expected 'package.module.attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{setting}: cannot import module {module_name!r} (from {value!r}): {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise ConfigError(f"{setting}: module {module_name!r} has no attribute {attribute!r}") from exc


#: What each plug-in setting expects: the method its objects have, as documentation spells it, and its interface.
#: ``GUARD`` is not here: a guard is a function (or any callable), used as it is.
_PLUGIN_METHODS: Final = {
    "CHANNELS": ("send", "async send(message)", "a channel adapter (recoverkit.Channel)"),
    "SCORER": ("score", "score(cart, features)", "a scorer (recoverkit.score.Scorer)"),
    "COUPONS": ("issue", "async issue(offer, *, cart_key, contact_key, now)", "a coupon provider "
                "(recoverkit.offers.CouponProvider)"),
    "CATALOGUE": ("suggest", "async suggest(cart, *, kind, limit)", "a catalogue (recoverkit.Catalogue)"),
    "LOYALTY": ("grant", "async grant(*, customer_id, points, multiplier, expires_at, key)",
                "a loyalty programme (recoverkit.Loyalty)"),
    "RATES": ("rate", "rate(currency)", "exchange rates (recoverkit.Rates)"),
}


def _kind_of(obj: Any) -> str:
    """What an import path pointed to, for error messages: a class, a function, or an instance of a type."""
    if isinstance(obj, type):
        return f"the class {obj.__qualname__}"
    if inspect.isroutine(obj):
        return "a function"
    return f"an instance of {type(obj).__name__}"


def _plugin(value: Any, *, key: str, setting: str) -> Any:
    """The plug-in object a setting names, checked for the method its interface needs.

    ``value`` is the object itself, a class (built with no arguments), or an import path
    (``"package.module.attribute"`` or ``"package.module:attribute"``) to one of these or, for every plug-in
    but ``GUARD``, to a function of no arguments that returns the object. An attribute that already has the
    plug-in's method is used as it is; a class is always built, never used as the plug-in (its methods are
    unbound). ``GUARD`` is itself a function, ``guard(message) -> bool``, so a path to a function is the guard,
    never a factory. Raises :class:`ConfigError` naming the setting, the path, what it pointed to and what was
    expected.
    """
    path = value if isinstance(value, str) else None
    obj = import_object(value, setting=setting)
    given = f"{path!r} is {_kind_of(obj)}" if path is not None else f"got {_kind_of(obj)}"
    if key == "GUARD":
        expected = (
            "expected a guard function guard(message) -> bool (sync or async), an object with __call__(message), "
            "a class whose instances are one (built with no arguments), or an import path to any of these"
        )
        if isinstance(obj, type):
            call = _call_text(obj)
            obj = _build(obj, setting=setting, given=given, call=call, expected=expected)
            if not callable(obj):
                raise ConfigError(
                    f"{setting}: {given}, whose instances (built with {call}) are not callable; {expected}"
                )
        elif not callable(obj):
            raise ConfigError(f"{setting}: {given}, which is not callable; {expected}")
        return obj
    method, signature, what = _PLUGIN_METHODS[key]
    lacks = f"no `{signature}` method"
    expected = (
        f"expected {what}: an object with a `{signature}` method, its class (built with no arguments), or an "
        "import path to either, or to a function of no arguments that returns one"
    )
    if isinstance(obj, type):
        call = _call_text(obj)
        obj = _build(obj, setting=setting, given=given, call=call, expected=expected)
        if not callable(getattr(obj, method, None)):
            raise ConfigError(f"{setting}: {given}, whose instances (built with {call}) have {lacks}; {expected}")
    elif path is not None and callable(obj) and not callable(getattr(obj, method, None)):
        # A function of no arguments that builds the plug-in (a factory), from the shop's own settings, say.
        call = _call_text(obj)
        obj = _build(obj, setting=setting, given=given, call=call, expected=expected)
        if not callable(getattr(obj, method, None)):
            raise ConfigError(
                f"{setting}: {given}; {call} returned {_kind_of(obj)}, which has {lacks}; {expected}"
            )
    elif not callable(getattr(obj, method, None)):
        raise ConfigError(f"{setting}: {given}, which has {lacks}; {expected}")
    return obj


def _call_text(factory: Callable[..., Any]) -> str:
    return f"{getattr(factory, '__qualname__', type(factory).__name__)}()"


def _build(factory: Callable[[], Any], *, setting: str, given: str, call: str, expected: str) -> Any:
    try:
        return factory()
    except Exception as exc:  # the shop's constructor: its error is the shop's to read, named and chained
        raise ConfigError(
            f"{setting}: {given}; building the plug-in with {call} failed: {type(exc).__name__}: {exc}; {expected}"
        ) from exc


#: The plug-ins that read as attributes of :class:`IntegrationSettings`.
_PLUGIN_FIELDS: Final = frozenset(field.name for field in dataclasses.fields(Plugins))

#: The engine's keyword arguments that a setting fills: an engine's error that says "pass catalogue=... to
#: Engine" is rewritten to name the setting instead.
_ARGUMENT_SETTINGS: Final = {
    "channels": "CHANNELS",
    "store": "STORE",
    "guard": "GUARD",
    "scorer": "SCORER",
    "coupons": "COUPONS",
    "catalogue": "CATALOGUE",
    "loyalty": "LOYALTY",
    "rates": "RATES",
}
_PASS_TO_ENGINE: Final = re.compile(r"\bpass (\w+)=(.+?) to Engine\b")
_GIVEN_TO_ENGINE: Final = re.compile(r"\b(\w+) (?:was|were) given to Engine\b")


def _in_settings_terms(message: str, setting: Callable[[str], str]) -> tuple[str, str | None]:
    """``message`` (an engine's error) with the engine's arguments replaced by the settings that fill them, and
    the first setting it asks to set (``None`` if none)."""
    named: list[str] = []

    def pass_to_engine(match: re.Match[str]) -> str:
        key = _ARGUMENT_SETTINGS.get(match[1])
        if key is None:
            return match[0]
        named.append(key)
        return f"set {setting(key)} to {match[2]}"

    def given_to_engine(match: re.Match[str]) -> str:
        # Not a setting to add: what the rest of the message asks for is elsewhere (the configuration, say).
        key = _ARGUMENT_SETTINGS.get(match[1])
        return f"{setting(key)} is set" if key is not None else match[0]

    message = _PASS_TO_ENGINE.sub(pass_to_engine, message)
    message = _GIVEN_TO_ENGINE.sub(given_to_engine, message)
    return message, named[0] if named else None


def unknown_setting(key: object, *, spelled: str, known: Iterable[str]) -> ConfigError:
    """The error for a key that is not a setting: the nearest known one suggested (a typo must not be ignored),
    and, for a secret, where secrets go instead. ``spelled`` is the key as the shop wrote it
    (``settings.RECOVERKIT['CHANELS']``); ``known`` the keys as the shop would write them."""
    choices = sorted(known)
    text = str(key)
    if text.upper().endswith("SECRET"):
        variable = "RECOVERKIT_" + text.upper().removeprefix("RECOVERKIT_")
        return ConfigError(
            f"{spelled}: recoverkit reads its secrets from the environment, not from settings; expected "
            f"os.environ[{variable!r}] (set in every process that builds or checks links and codes, the worker's "
            "too), and no such setting"
        )
    near = difflib.get_close_matches(text, choices, n=1) or difflib.get_close_matches(text.upper(), choices, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ConfigError(f"{spelled} is not a recoverkit setting{hint}; expected one of {choices}")


def _check_flow_channels(config: Config, channels: Mapping[str, Channel], where: str) -> None:
    """Every channel a flow step (its fallback, its variants) uses has an adapter, or :class:`ConfigError`
    naming the first step that uses a missing one and the setting to add it to."""
    for flow in config.flows:
        for index, step in enumerate(flow.steps):
            for name in (step.channel, step.fallback, *(variant.channel for variant in step.variants)):
                if name is not None and name not in channels:
                    raise ConfigError(
                        f"{where}: the flow {flow.name!r} step {index} uses channel {name!r} but no adapter is "
                        f"configured for it (configured: {sorted(channels)}); add {where}[{name!r}] = <adapter> "
                        "(an object, its class or an import path; see docs/channels.md), or change the flows"
                    )


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

        def where(key: str, *more: str) -> str:
            head = spell(key) if spell is not None else f"{source}[{key!r}]"
            return head + "".join(f"[{k!r}]" for k in more)

        for key in data:
            if key not in SETTING_KEYS:
                raise unknown_setting(key, spelled=where(str(key)), known=SETTING_KEYS)
        mode = data.get("MODE", "embedded")
        if mode not in _MODES:
            raise ConfigError(f"{where('MODE')}: {mode!r} is not a mode; expected one of {list(_MODES)}")
        config = _config(data.get("CONFIG"), where("CONFIG"))
        channels_value = data.get("CHANNELS")
        channels: dict[str, Channel] | None = None
        if channels_value is not None:
            if not isinstance(channels_value, Mapping):
                raise ConfigError(
                    f"{where('CHANNELS')}: expected a dict of channel name to adapter (or its import path), "
                    f"got {type(channels_value).__name__}"
                )
            channels = {
                str(name): _plugin(adapter, key="CHANNELS", setting=where("CHANNELS", str(name)))
                for name, adapter in channels_value.items()
            }
        paths = data.get("CHECKOUT_PATHS") or {}
        if not isinstance(paths, Mapping):
            raise ConfigError(f"{where('CHECKOUT_PATHS')}: expected a dict of URL path to event name")
        for path, kind in paths.items():
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(f"{where('CHECKOUT_PATHS')}: key {path!r} is not a URL path; expected '/...'")
            if kind not in PATH_EVENTS:
                raise ConfigError(
                    f"{where('CHECKOUT_PATHS', path)}: {kind!r} cannot be recorded from a page load; "
                    f"expected one of {sorted(PATH_EVENTS)}"
                )
        cookie = data.get("SESSION_COOKIE", SESSION_COOKIE)
        if not isinstance(cookie, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cookie):
            raise ConfigError(f"{where('SESSION_COOKIE')}: {cookie!r} is not a cookie name; expected [A-Za-z0-9_-]")
        secure = data.get("COOKIE_SECURE")
        if secure is not None and not isinstance(secure, bool):
            raise ConfigError(f"{where('COOKIE_SECURE')}: expected true, false or None (follow the request)")
        timeout = data.get("CLOSE_TIMEOUT", 10.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout <= 600:
            raise ConfigError(f"{where('CLOSE_TIMEOUT')}: {timeout!r}; expected seconds from 0 to 600")
        page_views = data.get("TRACK_PAGE_VIEWS", False)
        if not isinstance(page_views, bool):
            raise ConfigError(f"{where('TRACK_PAGE_VIEWS')}: {page_views!r}; expected true or false")
        clock = data.get("CLOCK")
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError(f"{where('CLOCK')}: expected a recoverkit.Clock (a FakeClock in tests), got {clock!r}")
        store = data.get("STORE")
        if store is not None and not isinstance(store, (str, os.PathLike, Store)):
            raise ConfigError(
                f"{where('STORE')}: got {type(store).__name__}; expected the path of the SQLite file the processes "
                "share (a str: a file path, never an import path) or a recoverkit.store.Store"
            )
        if mode == "journal" and store is None and config.store.path is None:
            raise ConfigError(
                f"{where('MODE')}: 'journal' hands events to a worker process through a shared store; set "
                f"{where('STORE')} (or [store] path in the config) to the SQLite file the worker reads"
            )
        def plugin(key: str) -> Any:
            value = data.get(key)
            return _plugin(value, key=key, setting=where(key)) if value is not None else None

        catalogue, loyalty, rates = plugin("CATALOGUE"), plugin("LOYALTY"), plugin("RATES")
        if mode != "off":
            # What the engine would refuse when it is built, said now and in the settings' terms.
            if channels is not None:
                _check_flow_channels(config, channels, where("CHANNELS"))
            try:
                check_offer_plugins(config, catalogue=catalogue, loyalty=loyalty, rates=rates)
            except ConfigError as exc:
                message, named = _in_settings_terms(str(exc), where)
                raise ConfigError(f"{where(named or 'CONFIG')}: {message}") from exc
        return cls(
            source=source,
            spell=spell,
            mode=mode,
            config=config,
            plugins=Plugins(
                channels=channels, store=store, clock=clock, guard=plugin("GUARD"), scorer=plugin("SCORER"),
                coupons=plugin("COUPONS"), catalogue=catalogue, loyalty=loyalty, rates=rates,
            ),
            checkout_paths=paths,
            track_page_views=page_views,
            session_cookie=cookie,
            cookie_secure=secure,
            close_timeout=float(timeout),
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
            message, _ = _in_settings_terms(str(exc), self.setting)
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


class LazyEngine:
    """One engine per process, built when first asked for (thread-safe), closed once.

    Building is cheap and raises :class:`ConfigError` for a broken configuration, so integrations call
    :meth:`get` at start-up; the engine's thread starts on the first event. A forked child (gunicorn
    ``--preload``) rebuilds its own engine itself (:class:`~recoverkit.BackgroundEngine` is fork-aware), so the
    same ``LazyEngine`` is safe to share across a fork. ``MODE = "off"`` holds no engine at all.
    """

    def __init__(self, settings: IntegrationSettings) -> None:
        self.settings = settings
        self._engine: BackgroundEngine | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> BackgroundEngine | None:
        """The process's engine (``None`` in mode ``"off"`` or once closed)."""
        engine = self._engine
        if engine is not None and self._pid == os.getpid():
            return engine
        if self.settings.mode == "off" or self._closed:
            return None
        with self._lock:
            if self._pid != os.getpid():
                # Forked without Python's fork hooks (uWSGI forks from C): the parent's engine, its thread and its
                # store connection are not this process's. Leave them alone and build this process's own.
                self._pid = os.getpid()
                self._engine = None
            if self._engine is None and not self._closed:
                self._engine = self.settings.build_engine()
            return self._engine

    def track(self, event: Mapping[str, Any]) -> bool:
        """Hand ``event`` to the engine, stamped with the time it happened (``ts``, on the engine's clock) when it
        has none; ``False`` when nothing records events. Never raises."""
        try:
            engine = self.get()
            if engine is None:
                return False
            if "ts" not in event:
                # Now, not when the engine's loop next drains its inbox (up to a tick later, and much later when a
                # test moves a FakeClock in between).
                event = {**event, "ts": engine.engine.clock.now()}
        except Exception as exc:  # never fail the shop's request because recoverkit cannot start
            _log.error("engine_unavailable", error=str(exc))
            return False
        return engine.track(event)

    @property
    def links(self) -> RestoreLinks | None:
        """The engine's cart-restore links (``None`` when ``[links] base_url`` is not configured)."""
        engine = self.get()
        return engine.engine.links if engine is not None else None

    def close(self, timeout: float | None = None) -> None:
        """Drain and stop the engine (idempotent). Later events are refused."""
        with self._lock:
            self._closed = True
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close(timeout)


class Tracker:
    """Records one shopper's events from a request: session, customer and segment hints filled in.

    Every method builds the event and hands it to ``sink`` (the process's engine); none blocks, none raises,
    each returns whether the event was kept. ``identify`` also binds the customer id for the rest of the
    request. Amounts may be :class:`~decimal.Decimal`, ``int`` or numeric strings (``"19.90"``); never floats
    (they are refused as invalid by the engine, which counts them).
    """

    __slots__ = ("_sink", "customer_id", "defaults", "session_id")

    def __init__(
        self,
        sink: Callable[[Mapping[str, Any]], bool],
        session_id: str,
        *,
        customer_id: str | None = None,
        device: str | None = None,
        source: str | None = None,
    ) -> None:
        self._sink = sink
        self.session_id = session_id
        self.customer_id = customer_id
        self.defaults: dict[str, Any] = {}
        if device is not None:
            self.defaults["device"] = device
        if source is not None:
            self.defaults["source"] = source[:256]

    def track(self, event: str, **fields: Any) -> bool:
        """Record an event of kind ``event`` (see ``docs/events.md``) with ``fields``."""
        if event not in EVENT_KINDS:
            _log.warning("unknown_event_kind", kind=event[:64] if isinstance(event, str) else type(event).__name__)
        data: dict[str, Any] = {"event": event, "session_id": self.session_id, **self.defaults}
        if self.customer_id is not None:
            data["customer_id"] = self.customer_id
        for key, value in fields.items():
            if value is None:
                continue
            if isinstance(value, float) and not math.isfinite(value):
                continue  # never an amount: refuse quietly rather than poison the event
            data[key] = value
        try:
            return self._sink(data)
        except Exception as exc:  # the sink is the engine's track(), which does not raise; stay safe anyway
            _log.error("track_failed", kind=event, error=type(exc).__name__)
            return False

    # -- the GA4 e-commerce steps -------------------------------------------------------------------------

    def view_item(self, items: Iterable[Any], **fields: Any) -> bool:
        return self.track("view_item", items=list(items), **fields)

    def add_to_cart(self, items: Iterable[Any], **fields: Any) -> bool:
        """Lines added (each ``{"item_id", "price", "quantity"}``); pass ``currency`` and, if known, ``cart_id``."""
        return self.track("add_to_cart", items=list(items), **fields)

    def remove_from_cart(self, items: Iterable[Any], **fields: Any) -> bool:
        return self.track("remove_from_cart", items=list(items), **fields)

    def view_cart(self, items: Iterable[Any] | None = None, **fields: Any) -> bool:
        """The cart page; ``items``, when given, is the whole cart and replaces what the engine knows."""
        return self.track("view_cart", items=list(items) if items is not None else None, **fields)

    def begin_checkout(self, **fields: Any) -> bool:
        return self.track("begin_checkout", **fields)

    def add_shipping_info(self, **fields: Any) -> bool:
        """Shipping chosen; pass ``shipping`` (its cost) so that a shipping-cost shock can be recognised."""
        return self.track("add_shipping_info", **fields)

    def add_payment_info(self, **fields: Any) -> bool:
        return self.track("add_payment_info", **fields)

    def purchase(self, **fields: Any) -> bool:
        """The order is placed: stops every recovery message for this cart and customer."""
        return self.track("purchase", **fields)

    # -- who, consent, friction ---------------------------------------------------------------------------

    def identify(self, customer_id: str | None = None, **fields: Any) -> bool:
        """Link this session to a customer and their contact details (``email``, ``phone``, ``timezone``)."""
        if customer_id is not None:
            self.customer_id = customer_id
        return self.track("identify", **fields)

    def consent(self, *, granted: Iterable[str] = (), withdrawn: Iterable[str] = (), **fields: Any) -> bool:
        """Channels the shopper agreed to (``granted=["email"]``) or withdrew from; a withdrawal stops what is
        pending for that channel at once."""
        return self.track("consent", granted=list(granted), withdrawn=list(withdrawn), **fields)

    def payment_failed(self, **fields: Any) -> bool:
        return self.track("payment_failed", **fields)

    def form_error(self, **fields: Any) -> bool:
        """A checkout form rejected input: pass ``form_field`` (its name, never its value) and ``error_code``."""
        return self.track("form_error", **fields)

    def exit_intent(self, **fields: Any) -> bool:
        return self.track("exit_intent", **fields)


def restore_cart(
    links: RestoreLinks | None,
    token: str | None,
    load_cart: Callable[[str], T],
    *,
    tracker: Tracker | None = None,
    now: float | None = None,
) -> T:
    """What a shop's cart-restore view calls: verify the link's ``token`` and return ``load_cart(cart_key)``.

    Raises :class:`~recoverkit.errors.LinkError` (``error.reason``: ``"malformed"`` (also for no token at
    all), ``"tampered"`` or ``"expired"``) before ``load_cart`` is called, for the view to answer with a friendly
    page; a ``ConfigError`` when links are not configured. With a ``tracker``, the visit is recorded as a
    ``page_view`` with ``page_type="cart_restore"`` and the link's cart, so analytics can count links followed.
    ``now`` is the time on the engine's clock (default: the wall clock; pass ``settings.now()`` so that links
    built under a test's ``FakeClock`` are checked on it too).
    """
    if links is None:
        raise ConfigError("cart-restore links are not configured; set [links] base_url and its secret")
    if not token:
        raise LinkError("the restore link has no token; expected ?t=... as recoverkit builds it", reason="malformed")
    verified: RestoreToken = links.verify(token, now=now)
    result = load_cart(verified.cart_key)
    if tracker is not None:
        tracker.track("page_view", page_type=RESTORE_PAGE, cart_id=verified.cart_key)
    return result
