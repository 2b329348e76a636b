"""The ``dosirak`` command line."""

from __future__ import annotations

import sys
from typing import Any

import click

from dosirak.__about__ import __version__
from dosirak.cli.batch import batch
from dosirak.cli.models import models
from dosirak.cli.run import run
from dosirak.exceptions import DosirakError


class _Group(click.Group):
    """Turns dosirak's own errors into one line on stderr and exit status 1, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DosirakError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dosirak")
def cli() -> None:
    """dosirak: serve trained machine-learning models, fast."""


cli.add_command(models)
cli.add_command(run)
cli.add_command(batch)


def main() -> None:
    cli()
