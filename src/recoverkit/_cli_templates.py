"""The template commands of the ``recoverkit`` CLI (:mod:`recoverkit.cli` registers them with :func:`add_commands`).

::

    recoverkit preview TEMPLATE [--templates DIR] [--channel email|sms|push] [--format text|html]

``preview`` renders a template for a made-up message (:func:`recoverkit.templates.sample_message`: a two-line
EUR cart, 10% off with a code, a restore link) and prints it to stdout exactly as rendered: for email the
``Subject:`` line, a blank line, then the text or HTML part. Templates come from ``--templates DIR`` first,
then the built-in ones. Exit status 0 on success; 2, with a one-line message on stderr, for a template that
is missing, does not compile or fails to render (the same check :meth:`~recoverkit.templates.Templates.check`
runs at start-up), or for ``--format html`` with a channel that has no HTML.
"""

from __future__ import annotations

import argparse
import sys
from typing import get_args

from ._cli_output import Out
from .errors import ConfigError
from .templates import TemplateKind, Templates, sample_message

__all__ = ["add_commands"]

#: Where preview's unsubscribe link points; a placeholder, like everything else in the sample.
_SAMPLE_UNSUBSCRIBE = "https://shop.example/unsubscribe/sample"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``preview`` command on the CLI's subcommand parsers ``sub``."""
    p = sub.add_parser("preview", help="render a message template for a sample cart and print it")
    p.add_argument("template", help="the template name a flow step gives, like cart-reminder")
    p.add_argument("--templates", metavar="DIR", help="folder of the shop's templates (searched before the built-in)")
    p.add_argument("--channel", choices=list(get_args(TemplateKind)), default="email",
                   help="which template files to render (default email)")  # fmt: skip
    p.add_argument("--format", choices=["text", "html"], default="text",
                   help="email only: print the text part (default) or the HTML part")  # fmt: skip
    p.set_defaults(func=_cmd_preview)


def _cmd_preview(args: argparse.Namespace, console: Out, err: Out) -> int:
    kind: TemplateKind = args.channel
    if args.format == "html" and kind != "email":
        return _fail(err, f"preview: --format html is for email; {kind} messages are text only")
    try:
        templates = Templates(args.templates)
        templates.check([args.template], kind=kind)  # missing, not compiling or failing: named, with file and line
    except ConfigError as exc:
        return _fail(err, f"preview: {exc}")
    sample = sample_message(kind)
    rendered = templates.render(args.template, sample, kind=kind, unsubscribe_url=_SAMPLE_UNSUBSCRIBE)
    if args.format == "html" and rendered.html is None:
        return _fail(err, f"preview: template {args.template!r} has no HTML part ({args.template}.html)")
    # Written as is, not through rich: a template's "[b]" or long lines are its own, and must come out so.
    out = sys.stdout
    if rendered.subject is not None:
        out.write(f"Subject: {rendered.subject}\n\n")
    out.write((rendered.html if args.format == "html" else rendered.text) or "")
    out.write("\n")
    out.flush()
    return 0


def _fail(err: Out, message: str) -> int:
    err.error(message)  # one line, as the CLI's other errors
    return 2
