"""The shop's products: a data migration, so `manage.py migrate` (or `runshop`) leaves a shop ready to browse."""

from decimal import Decimal

from django.db import migrations

PRODUCTS = [
    ("MUG-1", "Enamel mug", "12.50", "A camp mug that survives being dropped down a mountain."),
    ("TEE-1", "Organic cotton T-shirt", "24.00", "Soft, sturdy, and dyed without the nasty stuff."),
    ("TOTE-1", "Canvas tote bag", "9.90", "Carries a week of groceries, or the mug and the T-shirt."),
    ("CAP-1", "Wool cap", "19.00", "Warm ears from October to April."),
]


def seed(apps, schema_editor):
    Product = apps.get_model("storefront", "Product")
    for sku, name, price, description in PRODUCTS:
        Product.objects.update_or_create(
            sku=sku, defaults={"name": name, "price": Decimal(price), "description": description}
        )


def unseed(apps, schema_editor):
    apps.get_model("storefront", "Product").objects.filter(sku__in=[sku for sku, *_ in PRODUCTS]).delete()


class Migration(migrations.Migration):
    dependencies = (("storefront", "0001_initial"),)
    operations = (migrations.RunPython(seed, unseed),)
