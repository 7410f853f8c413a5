from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("product/<str:sku>", views.product, name="product"),
    path("cart", views.cart_page, name="cart"),
    path("cart/add", views.add_to_cart, name="cart-add"),
    path("cart/remove", views.remove_from_cart, name="cart-remove"),
    path("cart/restore", views.restore, name="cart-restore"),
    path("checkout/address", views.address, name="checkout-address"),
    path("checkout/shipping", views.shipping, name="checkout-shipping"),
    path("checkout/payment", views.payment, name="checkout-payment"),
    path("order/<str:number>", views.order, name="order"),
    path("outbox", views.outbox, name="outbox"),
]
