"""``dosirak build``, ``list``, ``get``, ``delete``, ``export``, ``import`` and ``verify``:
bentos, at the top level as BentoML has them."""

from __future__ import annotations

import json
import sys

import click
from rich import box
from rich.console import Console
from rich.table import Table

from dosirak import bentos as bento_api
from dosirak.cli.common import byte_size, confirm_delete, human_size, progress_bar, user_location
from dosirak.store.versioned_store import dump_yaml


def _labels(_context: object, _param: object, values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE; write e.g. --label stage=dev")
        labels[key] = text
    return labels


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=True))
@click.option("-f", "--bentofile", type=click.Path(dir_okay=False),
              help="The bentofile (default: DIRECTORY/bentofile.yaml, else the "
                   "[tool.dosirak.bento] table of DIRECTORY/pyproject.toml).")
@click.option("--version", help="The bento's version (default: a new one, sorting by time).")
@click.option("--label", "labels", multiple=True, callback=_labels, metavar="KEY=VALUE",
              help="A label added to the bentofile's; repeat for more.")
@click.option("-o", "--output", type=click.Choice(["table", "tag", "json"]), default="table",
              show_default=True)
def build(directory: str, bentofile: str | None, version: str | None, labels: dict[str, str],
          output: str) -> None:
    """Build a bento from DIRECTORY (default: here) into the bento store."""
    bento = bento_api.build(directory, bentofile, version=version, labels=labels,
                            report=lambda line: click.echo(line, err=True))
    if output == "tag":
        click.echo(str(bento.tag))
    elif output == "json":
        click.echo(json.dumps({**bento.summary(), "digest": bento.digest,
                               "path": str(bento.path)}, indent=2))
    else:
        click.echo(f"built {bento.tag} ({human_size(bento.size)}, digest "
                   f"{bento.digest[:16]}) in {bento.path}")


@click.command("list")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table",
              show_default=True)
def list_bentos(name: str | None, output: str) -> None:
    """List stored bentos, newest first (optionally only the versions of NAME)."""
    rows = [bento.summary() for bento in bento_api.list(name)]
    if output != "table":
        click.echo(json.dumps(rows, indent=2) if output == "json" else dump_yaml({"bentos": rows}))
        return
    console = Console()
    piped = not console.is_terminal
    if piped:  # one plain line per bento, so grep and awk see whole tags
        console = Console(width=1 << 16)
    table = Table("Tag", "Service", "Size", "Models", "Labels", "Created",
                  box=None if piped else box.HEAVY_HEAD, pad_edge=not piped)
    table.columns[0].no_wrap = True
    for row in rows:
        table.add_row(row["tag"], row["service"], human_size(row["size"]),
                      ", ".join(row["models"]),
                      ", ".join(f"{k}={v}" for k, v in row["labels"].items()),
                      row["creation_time"][:19].replace("T", " "))
    console.print(table)


@click.command("get")
@click.argument("tag")
@click.option("-o", "--output", type=click.Choice(["yaml", "json", "path"]), default="yaml",
              show_default=True)
def get_bento(tag: str, output: str) -> None:
    """Show what bento.yaml says about TAG (or, with -o path, where the bento is)."""
    bento = bento_api.get(tag)
    if output == "path":
        click.echo(str(bento.path))
        return
    data = {"tag": str(bento.tag), **bento.info, "path": str(bento.path)}
    legacy = bento.path / "src" / "bentoml.yml"
    if legacy.is_file():  # a BentoML 0.x service: what its bentoml.yml says (apis, artifacts)
        import yaml

        data["bentoml"] = yaml.safe_load(legacy.read_text(encoding="utf-8"))
    click.echo(json.dumps(data, indent=2, default=str) if output == "json" else dump_yaml(data))


@click.command("delete")
@click.argument("tag")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True,
              help="Delete it even while a `dosirak serve`, `run` or `batch` of it runs.")
def delete_bento(tag: str, yes: bool, force: bool) -> None:
    """Delete one version of a bento (TAG or name:latest); its models stay in the model store."""
    bento = bento_api.get(tag)
    if not yes:
        confirm_delete(bento.tag)
    bento_api.delete(bento.tag, force=force)
    click.echo(f"deleted {bento.tag}")


@click.command("export")
@click.argument("tag")
@click.argument("dest", required=False)
@click.option("--sign", "key", metavar="KEYFILE", type=click.Path(dir_okay=False),
              help="Sign the archive with this Ed25519 private key (from `dosirak models "
                   "keygen`), so importers can require it with --require-signature.")
def export_bento(tag: str, dest: str | None, key: str | None) -> None:
    """Export TAG and the models it uses into one .bento archive at DEST (a path, a folder or
    an fsspec URL; default: ./NAME-VERSION.bento)."""
    bento = bento_api.get(tag)
    with user_location("export to", dest or "."), \
            progress_bar(f"export {bento.tag}", _total_size(bento)) as advance:
        where = bento_api.export_bento(bento.tag, dest, progress=advance, sign=key)
    click.echo(f"exported {bento.tag} to {where}" + (" (signed)" if key else ""))


def _total_size(bento: bento_api.Bento) -> int:
    from dosirak import models

    return int(bento.info.get("size") or 0) + sum(models.get(entry["tag"]).info.size
                                                  for entry in bento.models)


@click.command("import")
@click.argument("src")
@click.option("-f", "--force", is_flag=True,
              help="Replace a bento of the same tag, and models of the same tag whose contents "
                   "differ.")
@click.option("--require-signature", "public_key", metavar="PUBKEYFILE",
              type=click.Path(dir_okay=False),
              help="Refuse the archive unless it was signed (export --sign) by the private key "
                   "of this Ed25519 public key.")
@click.option("--max-size", callback=byte_size, metavar="SIZE",
              help="Most bytes the archive may unpack, such as '100GiB' (default: the setting "
                   "model_store.import_max_size, 64GiB).")
def import_bento(src: str, force: bool, public_key: str | None, max_size: int | None) -> None:
    """Import a .bento archive from SRC (a path or an fsspec URL): its models, then the bento.
    A directory saved by BentoML 0.13 (holding bentoml.yml) is migrated (see dosirak migrate).

    Serving a bento runs code from it: import only archives from people you trust, and require
    their signature (--require-signature) when they come by a route others could tamper with.
    """
    from pathlib import Path

    if Path(src, "bentoml.yml").is_file():
        from dosirak.cli.legacy import report_migration

        report_migration(src, None)
        return
    with user_location("import from", src), progress_bar(f"import {src}", None) as advance:
        bento = bento_api.import_bento(src, overwrite=force, progress=advance,
                                       max_size=max_size, require_signature=public_key)
    click.echo(f"imported {bento.tag} ({len(bento.models)} models)"
               + (" (signature checked)" if public_key else ""))


@click.command("verify")
@click.argument("tag")
def verify_bento(tag: str) -> None:
    """Re-hash TAG's files and every model it uses; exit 1 with a line per problem."""
    bento = bento_api.get(tag)
    problems = bento_api.verify(bento.tag)
    for line in problems:
        click.echo(line, err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{bento.tag}: the bento and its {len(bento.models)} models match their "
               "manifests")
