#!/usr/bin/env python
"""The example shop's manage.py. ``python examples/django_shop/manage.py runshop`` migrates (which seeds the
products) and runs the development server; see README.md beside this file."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")
    from shopsite.dev import prepare

    prepare()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
