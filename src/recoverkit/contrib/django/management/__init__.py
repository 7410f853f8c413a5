"""Django finds the ``recoverkit`` management command here."""

__all__: list[str] = []
