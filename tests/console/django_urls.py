"""The Django console tests' URLs: the console under ``/ops/recoverkit/``."""

from django.urls import include, path

urlpatterns = [path("ops/recoverkit/", include("recoverkit.contrib.django.console_urls"))]
