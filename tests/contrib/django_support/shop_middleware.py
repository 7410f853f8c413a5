"""A shop's own subclass of the middleware (the system check must recognise it)."""

from recoverkit.contrib.django.middleware import RecoverkitMiddleware


class ShopRecoverkitMiddleware(RecoverkitMiddleware):
    pass
