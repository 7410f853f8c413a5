"""Reading recoverkit's settings from a Flask app's ``app.config`` (the ``RECOVERKIT_*`` keys).

Every ``RECOVERKIT_<KEY>`` of ``app.config`` is the ``<KEY>`` of :class:`~recoverkit.integration.IntegrationSettings`
(``RECOVERKIT_MODE`` is ``MODE``); a key set to ``None`` counts as not set. Errors name the key as the shop wrote
it, ``app.config['RECOVERKIT_MODE']: 'embeded' is not a mode; expected one of [...]``, so they point at the line
to fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Final

from ...errors import ConfigError
from ...integration import SETTING_KEYS, IntegrationSettings

__all__ = ["PREFIX", "settings_from_config"]

#: The prefix of recoverkit's keys in ``app.config``.
PREFIX: Final = "RECOVERKIT_"
_SOURCE: Final = "app.config"
# IntegrationSettings names a key as source['KEY']; the shop wrote app.config['RECOVERKIT_KEY'].
_WHERE: Final = re.compile(r"app\.config\['([A-Z_]+)'\]")


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
        elif name.endswith("SECRET"):
            raise ConfigError(
                f"{_SOURCE}[{key!r}]: recoverkit reads its secrets from the environment, not from app.config; "
                f"expected os.environ[{key!r}] (set in every process that builds or checks links and codes, the "
                "worker's too), and no such key in app.config"
            )
        else:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{_SOURCE}[{key!r}] is not a recoverkit setting{hint}; expected one of {known}")
    try:
        return IntegrationSettings.from_mapping(mapping, source=_SOURCE)
    except ConfigError as exc:
        raise ConfigError(_WHERE.sub(rf"{_SOURCE}['{PREFIX}\1']", str(exc))) from exc
