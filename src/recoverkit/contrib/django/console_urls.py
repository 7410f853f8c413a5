"""The console's URLs: ``path("ops/recoverkit/", include("recoverkit.contrib.django.console_urls"))``.

Namespace ``recoverkit_console``: ``reverse("recoverkit_console:index")`` is the console's overview.
"""

from __future__ import annotations

from django.urls import path  # type: ignore[import-untyped]

from ...console import require_templates
from .console import console_view

__all__ = ["app_name", "urlpatterns"]

require_templates()  # without Jinja2: MissingExtraError naming the extra when Django loads the URLconf

app_name = "recoverkit_console"

urlpatterns = [
    path("", console_view, name="index"),
    path("<path:path>", console_view, name="page"),
]
