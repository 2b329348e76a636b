"""The ``dosirak`` command line.

Each command's module is imported only when that command runs (or ``--help`` lists them): a
command's imports (rich, the offline runners...) must not slow down another's start, and
``dosirak serve`` counts its cold start from the moment the command is typed.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from dosirak.__about__ import __version__
from dosirak.exceptions import DosirakError

# name -> "module:attribute" of the click command
_COMMANDS = {
    "models": "dosirak.cli.models:models",
    "run": "dosirak.cli.run:run",
    "batch": "dosirak.cli.batch:batch",
    "serve": "dosirak.cli.serve:serve",
    "build": "dosirak.cli.bentos:build",
    "list": "dosirak.cli.bentos:list_bentos",
    "get": "dosirak.cli.bentos:get_bento",
    "delete": "dosirak.cli.bentos:delete_bento",
    "export": "dosirak.cli.bentos:export_bento",
    "import": "dosirak.cli.bentos:import_bento",
    "verify": "dosirak.cli.bentos:verify_bento",
    "migrate": "dosirak.cli.legacy:migrate",
    "hub": "dosirak.cli.hub:hub",
    "push": "dosirak.cli.hub:push_bento",
    "pull": "dosirak.cli.hub:pull_bento",
    "yatai-service-start": "dosirak.cli.hub:yatai_service_start",
    "containerize": "dosirak.cli.deploy:containerize",
    "deploy": "dosirak.cli.deploy:deploy",
}


class _Group(click.Group):
    """Loads commands on first use; turns dosirak's own errors into one line on stderr and exit
    status 1, no traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in _COMMANDS and name not in self.commands:
            module, _, attribute = _COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

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


def main() -> None:
    cli()
