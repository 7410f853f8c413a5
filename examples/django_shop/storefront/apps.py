from django.apps import AppConfig


class StorefrontConfig(AppConfig):
    name = "storefront"
    verbose_name = "The Example Shop"
    default_auto_field = "django.db.models.BigAutoField"
