"""The Django app: ``"recoverkit.contrib.django"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig, apps  # type: ignore[import-untyped]
from django.core import checks  # type: ignore[import-untyped]
from django.core.signals import setting_changed  # type: ignore[import-untyped]
from django.db.models.signals import post_migrate  # type: ignore[import-untyped]

__all__ = ["RecoverkitConfig"]


class RecoverkitConfig(AppConfig):  # type: ignore[misc]
    """recoverkit's app config.

    :meth:`ready` validates ``settings.RECOVERKIT`` and builds the process's engine, so a broken configuration (a
    typo, a missing channel adapter, a missing secret) raises :class:`~recoverkit.errors.ConfigError` at start-up,
    naming ``settings.RECOVERKIT[...]``. It starts no thread: Django calls ``ready()`` in every management command,
    twice under ``runserver``'s autoreloader (once in each process) and in gunicorn's master before it forks with
    ``--preload``; the engine's thread starts with the first event, in the process that records it.
    """

    name = "recoverkit.contrib.django"
    label = "recoverkit"
    verbose_name = "recoverkit"
    default = True

    def ready(self) -> None:
        from . import checks as recoverkit_checks
        from ._state import configure
        from .console import create_permissions
        from .receivers import on_setting_changed, on_user_logged_in, on_user_logged_out

        configure()
        setting_changed.connect(on_setting_changed, dispatch_uid="recoverkit.setting_changed")
        if apps.is_installed("django.contrib.auth"):
            from django.contrib.auth.signals import user_logged_in, user_logged_out  # type: ignore[import-untyped]

            user_logged_in.connect(on_user_logged_in, dispatch_uid="recoverkit.user_logged_in")
            user_logged_out.connect(on_user_logged_out, dispatch_uid="recoverkit.user_logged_out")
        # The console's permissions (recoverkit.view, ...), created once auth has migrated: see contrib.django.console.
        post_migrate.connect(create_permissions, dispatch_uid="recoverkit.console_permissions")
        checks.register(recoverkit_checks.check_settings, "recoverkit")
        checks.register(recoverkit_checks.check_middleware, "recoverkit")
        checks.register(recoverkit_checks.check_deployment, "recoverkit", deploy=True)
