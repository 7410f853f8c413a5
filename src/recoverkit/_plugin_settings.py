"""A plug-in that a setting names (``CHANNELS``, ``GUARD``, ``SCORER``, ...): resolved, checked for its
interface's method, and the engine's errors about plug-ins said again in the settings' terms.

Every error names the setting as the shop wrote it, the value (the import path, what it pointed to) and what was
expected. Re-exported by :mod:`recoverkit.integration` (``import_object``, ``unknown_setting``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from .channels.base import Channel
from .config import Config
from .errors import ConfigError

__all__ = ["check_flow_channels", "import_object", "in_settings_terms", "plugin", "unknown_setting"]


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


def plugin(value: Any, *, key: str, setting: str) -> Any:
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


def in_settings_terms(message: str, setting: Callable[[str], str]) -> tuple[str, str | None]:
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


def check_flow_channels(config: Config, channels: Mapping[str, Channel], where: str) -> None:
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
