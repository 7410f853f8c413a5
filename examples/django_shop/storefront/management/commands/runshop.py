"""``python manage.py runshop [ADDRPORT]``: migrate (which seeds the products), then run the development server."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate (which seeds the products), then run the development server with the demo's instructions."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("addrport", nargs="?", default=f"127.0.0.1:{settings.SHOP_PORT}")
        parser.add_argument("--noreload", action="store_false", dest="use_reloader",
                            help="do not restart the server when the code changes")

    def handle(self, *args: Any, addrport: str, use_reloader: bool, **options: Any) -> None:
        # Under the autoreloader this command runs twice: in the watching process, then in the serving child
        # (RUN_MAIN is set there), which has nothing left to migrate or explain.
        if os.environ.get("RUN_MAIN") != "true":
            call_command("migrate", interactive=False, verbosity=0)
            base = settings.SHOP_BASE_URL
            self.stdout.write(
                f"{settings.SHOP_NAME} on {base}: fill a cart, start the checkout (give an e-mail address and tick "
                f"the box), and leave it for half a minute. The recovery e-mails are printed here and shown at "
                f"{base}/outbox.\nrecoverkit's state: {settings.RECOVERKIT['STORE']}; "
                f"settings: python {os.path.relpath(settings.BASE_DIR / 'manage.py')} recoverkit check"
            )
        call_command("runserver", addrport, use_reloader=use_reloader)
