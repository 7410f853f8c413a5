"""Integrations with web frameworks: :mod:`recoverkit.contrib.django`, :mod:`recoverkit.contrib.flask` and
:mod:`recoverkit.contrib.asgi` (Starlette, FastAPI). Each imports its framework lazily, so installing recoverkit
does not pull in any of them (``pip install recoverkit[django]``, ``[flask]``, ``[asgi]``); the pieces they
share live in :mod:`recoverkit.integration`."""

__all__: list[str] = []
