"""Reading recoverkit's settings from Django's ``settings.RECOVERKIT`` dict.

The keys are those of :class:`~recoverkit.integration.IntegrationSettings` (``MODE``, ``CONFIG``, ``STORE``,
``CHANNELS``, ...); a key set to ``None`` counts as not set, and no ``RECOVERKIT`` at all means every default.
Errors name the key as the shop wrote it, ``settings.RECOVERKIT['MODE']: 'embeded' is not a mode; expected one of
[...]``, so they point at the line to fix.

``STORE`` may also name one of the shop's own databases, ``{"DATABASE": "default"}``: a PostgreSQL entry of
``settings.DATABASES``, whose connection becomes the store's URL (the store keeps its tables in a schema of its
own, ``recoverkit``, made by ``recoverkit db init URL``; ``docs/scaling.md``). The URL is handed to the store and
never logged; the store's errors name ``user@host:port/database``, never the password.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote, urlencode

from ...errors import ConfigError
from ...integration import SETTING_KEYS, IntegrationSettings, unknown_setting

__all__ = ["SOURCE", "settings_from_django"]

#: The OPTIONS of a Django PostgreSQL database that are libpq connection settings, passed on to the store.
_LIBPQ_OPTIONS: Final = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "connect_timeout", "options", "passfile",
     "service", "application_name", "target_session_attrs", "channel_binding", "gssencmode"}
)  # fmt: skip
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
                mapping[key] = _store_from_databases(item) if key == "STORE" and isinstance(item, Mapping) else item
        else:
            raise unknown_setting(key, spelled=f"{SOURCE}[{key!r}]", known=SETTING_KEYS)
    return IntegrationSettings.from_mapping(mapping, source=SOURCE)


def _store_from_databases(value: Mapping[Any, Any]) -> str:
    """The PostgreSQL URL of the ``settings.DATABASES`` entry that ``STORE = {"DATABASE": alias}`` names."""
    from django.conf import settings as django_settings  # type: ignore[import-untyped]

    where = f"{SOURCE}['STORE']"
    if set(value) != {"DATABASE"} or not isinstance(value["DATABASE"], str):
        raise ConfigError(f"{where}: expected a file path, a postgresql:// URL or {{'DATABASE': '<alias>'}}")
    alias = value["DATABASE"]
    databases = getattr(django_settings, "DATABASES", {}) or {}
    if alias not in databases:
        raise ConfigError(f"{where}: no database {alias!r} in settings.DATABASES; expected one of {sorted(databases)}")
    entry = databases[alias]
    engine = str(entry.get("ENGINE", ""))
    if "postgresql" not in engine:
        raise ConfigError(
            f"{where}: settings.DATABASES[{alias!r}] uses {engine or 'no ENGINE'}; the shared store needs a "
            "PostgreSQL database (django.db.backends.postgresql)"
        )
    return _url(entry)


def _url(entry: Mapping[str, Any]) -> str:
    """A libpq URL with the connection settings of a Django database entry."""
    user, password = str(entry.get("USER") or ""), str(entry.get("PASSWORD") or "")
    credentials = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    host, port = str(entry.get("HOST") or ""), str(entry.get("PORT") or "")
    # Django's OPTIONS mix libpq's settings with its own (pool, isolation_level...): only libpq's are passed on.
    options = {k: str(v) for k, v in (entry.get("OPTIONS") or {}).items() if k in _LIBPQ_OPTIONS}
    if host.startswith("/"):  # a Unix socket's directory goes in the query, where libpq reads it
        host, options = "", {**options, "host": host}
    netloc = f"{credentials + '@' if credentials else ''}{host}{':' + port if port else ''}"
    url = f"postgresql://{netloc}/{quote(str(entry.get('NAME') or ''), safe='')}"
    return url + ("?" + urlencode(options) if options else "")
