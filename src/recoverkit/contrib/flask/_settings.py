"""Reading recoverkit's settings from a Flask app's ``app.config`` (the ``RECOVERKIT_*`` keys).

Every ``RECOVERKIT_<KEY>`` of ``app.config`` is the ``<KEY>`` of :class:`~recoverkit.integration.IntegrationSettings`
(``RECOVERKIT_MODE`` is ``MODE``); a key set to ``None`` counts as not set. Errors name the key as the shop wrote
it, ``app.config['RECOVERKIT_MODE']: 'embeded' is not a mode; expected one of [...]``, so they point at the line
to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ...integration import SETTING_KEYS, IntegrationSettings, unknown_setting

__all__ = ["PREFIX", "settings_from_config"]

#: The prefix of recoverkit's keys in ``app.config``.
PREFIX: Final = "RECOVERKIT_"
_SOURCE: Final = "app.config"
#: How errors that concern the settings as a whole name them (the engine's: "recoverkit cannot start").
_ALL: Final = "app.config RECOVERKIT_* settings"


def _spell(key: str) -> str:
    """A setting as the shop wrote it: ``MODE`` is ``app.config['RECOVERKIT_MODE']``."""
    return f"{_SOURCE}[{PREFIX + key!r}]"


def settings_from_config(config: Mapping[str, Any]) -> IntegrationSettings:
    """Validate the ``RECOVERKIT_*`` keys of ``config`` (a Flask ``app.config``) or raise :class:`ConfigError`.

    Unknown ``RECOVERKIT_*`` keys are errors (a typo must not be ignored), with the nearest known key suggested.
    Secrets (``RECOVERKIT_LINK_SECRET``, ``RECOVERKIT_CODE_SECRET``) are refused here: recoverkit reads them from
    the environment, in every process that builds or checks links and codes (the worker's too).
    """
    known = sorted(PREFIX + key for key in SETTING_KEYS)
    mapping: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key.startswith(PREFIX) or value is None:
            continue
        name = key.removeprefix(PREFIX)
        if name in SETTING_KEYS:
            mapping[name] = value
        else:
            raise unknown_setting(key, spelled=f"{_SOURCE}[{key!r}]", known=known)
    return IntegrationSettings.from_mapping(mapping, source=_ALL, spell=_spell)
