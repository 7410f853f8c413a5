"""Reading recoverkit's settings from Django's ``settings.RECOVERKIT`` dict.

The keys are those of :class:`~recoverkit.integration.IntegrationSettings` (``MODE``, ``CONFIG``, ``STORE``,
``CHANNELS``, ...); a key set to ``None`` counts as not set, and no ``RECOVERKIT`` at all means every default.
Errors name the key as the shop wrote it, ``settings.RECOVERKIT['MODE']: 'embeded' is not a mode; expected one of
[...]``, so they point at the line to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ...errors import ConfigError
from ...integration import SETTING_KEYS, IntegrationSettings, unknown_setting

__all__ = ["SOURCE", "settings_from_django"]

#: How errors name the settings: ``settings.RECOVERKIT['MODE']``.
SOURCE: Final = "settings.RECOVERKIT"


def settings_from_django(value: object) -> IntegrationSettings:
    """Validate ``value`` (the ``RECOVERKIT`` setting, ``None`` when absent) or raise :class:`ConfigError`.

    Unknown keys are errors (a typo must not be ignored), with the nearest known key suggested. Secrets
    (``LINK_SECRET``, ``CODE_SECRET``) are refused here: recoverkit reads them from the environment
    (``RECOVERKIT_LINK_SECRET``, ``RECOVERKIT_CODE_SECRET``), in every process that builds or checks links and
    codes, the worker's too.
    """
    if value is None:
        return IntegrationSettings.from_mapping({}, source=SOURCE)
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{SOURCE}: expected a dict of recoverkit settings (keys {sorted(SETTING_KEYS)}), "
            f"got {type(value).__name__}"
        )
    mapping: dict[str, Any] = {}
    for key, item in value.items():
        if key in SETTING_KEYS:
            if item is not None:
                mapping[key] = item
        else:
            raise unknown_setting(key, spelled=f"{SOURCE}[{key!r}]", known=SETTING_KEYS)
    return IntegrationSettings.from_mapping(mapping, source=SOURCE)
