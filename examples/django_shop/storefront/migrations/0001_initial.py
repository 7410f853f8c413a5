"""Products, carts (with their lines) and orders."""

import django.db.models.deletion
from django.db import migrations, models

import storefront.models


class Migration(migrations.Migration):
    initial = True

    dependencies = ()

    operations = (
        migrations.CreateModel(
            name="Cart",
            fields=[
                ("id", models.CharField(default=storefront.models.new_cart_id, editable=False, max_length=32,
                                        primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("email", models.EmailField(blank=True, max_length=254)),
                ("marketing", models.BooleanField(default=False)),
                ("shipping", models.CharField(blank=True, max_length=16, choices=[
                    ("standard", "Standard, 3-5 days"), ("express", "Express, next day")])),
            ],
        ),
        migrations.CreateModel(
            name="Product",
            fields=[
                ("sku", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=100)),
                ("price", models.DecimalField(decimal_places=2, max_digits=8)),
                ("description", models.TextField(blank=True)),
            ],
            options={"ordering": ("name",)},
        ),
        migrations.CreateModel(
            name="Order",
            fields=[
                ("number", models.CharField(max_length=16, primary_key=True, serialize=False)),
                ("total", models.DecimalField(decimal_places=2, max_digits=10)),
                ("shipping_cost", models.DecimalField(decimal_places=2, max_digits=8)),
                ("placed_at", models.DateTimeField(auto_now_add=True)),
                ("cart", models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name="order",
                                              to="storefront.cart")),
            ],
        ),
        migrations.CreateModel(
            name="CartLine",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("quantity", models.PositiveIntegerField(default=1)),
                ("cart", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="lines",
                                           to="storefront.cart")),
                ("product", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, to="storefront.product")),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("cart", "product"), name="one_line_per_product")],
            },
        ),
    )
