"""``manage.py recoverkit``: see :mod:`recoverkit.contrib.django.management.commands.recoverkit`."""

__all__: list[str] = []
