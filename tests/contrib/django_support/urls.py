"""The test views under ``/t/`` and the example shop at the root."""

from django.urls import include, path

from . import views

urlpatterns = [
    path("t/sid", views.sid),
    path("t/add", views.add),
    path("t/idle", views.idle),
    path("t/checkout", views.checkout),
    path("t/checkout/payment/card", views.checkout),
    path("t/api", views.api),
    path("t/missing", views.missing),
    path("t/moved", views.moved),
    path("t/broken", views.broken),
    path("t/login/<int:user_id>", views.log_in),
    path("t/logout", views.log_out),
    path("t/shop/<str:customer>", views.shop),
    path("t/restore", views.restore),
    path("t/async/add", views.async_add),
    path("t/async/sid", views.async_sid),
    path("t/async/guess", views.async_guess),
    path("t/async/checkout", views.async_checkout),
    path("", include("storefront.urls")),
]
