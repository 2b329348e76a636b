"""``dosirak models``: list, inspect, delete, export and import stored models."""

from __future__ import annotations

import json

import click
from rich import box
from rich.console import Console
from rich.table import Table

from dosirak import models as store_api
from dosirak.cli.common import (
    byte_size,
    confirm_delete,
    human_size,
    progress_bar,
    user_location,
)
from dosirak.store.versioned_store import dump_yaml


@click.group()
def models() -> None:
    """Manage the local model store ($DOSIRAK_HOME/models)."""


@models.command("list")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table",
              show_default=True)
def list_models(name: str | None, output: str) -> None:
    """List stored models, newest first (optionally only the versions of NAME)."""
    found = store_api.list(name)
    if output != "table":
        rows = [{"tag": str(m.tag), "module": m.info.module, "size": m.info.size,
                 "labels": m.info.labels, "creation_time": m.info.creation_time.isoformat()}
                for m in found]
        click.echo(json.dumps(rows, indent=2) if output == "json" else dump_yaml({"models": rows}))
        return
    console = Console()
    piped = not console.is_terminal
    if piped:
        # One plain line per model at its natural width, so grep and awk see whole tags.
        console = Console(width=1 << 16)
    table = Table("Tag", "Module", "Size", "Labels", "Created",
                  box=None if piped else box.HEAVY_HEAD, pad_edge=not piped)
    table.columns[0].no_wrap = True
    for m in found:
        labels = ", ".join(f"{k}={v}" for k, v in m.info.labels.items())
        table.add_row(str(m.tag), m.info.module, human_size(m.info.size), labels,
                      m.info.creation_time.strftime("%Y-%m-%d %H:%M:%S"))
    console.print(table)


@models.command("get")
@click.argument("tag")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)
def get_model(tag: str, output: str) -> None:
    """Show everything model.yaml says about TAG."""
    model = store_api.get(tag)
    data = model.info.to_dict()
    data["path"] = str(model.path)
    click.echo(json.dumps(data, indent=2, default=str) if output == "json" else dump_yaml(data))


@models.command("delete")
@click.argument("tag")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True,
              help="Delete it even if stored bentos use it (they stop serving).")
def delete_model(tag: str, yes: bool, force: bool) -> None:
    """Delete a model: NAME:VERSION (or NAME:latest) one version, NAME every version.

    BentoML's meaning of a bare NAME; it asks first, listing the versions (-y skips).
    """
    if ":" in tag:
        model = store_api.get(tag)
        if not yes:
            confirm_delete(model.tag)
        store_api.delete(model.tag, force=force)
        click.echo(f"deleted {model.tag}")
        return
    versions = store_api.list(store_api.get(tag).tag.name)  # ModelNotFound names what exists
    if not yes:
        shown = ", ".join(str(model.tag.version) for model in versions[:10])
        more = f" and {len(versions) - 10} more" if len(versions) > 10 else ""
        confirm_delete(f"every version of {versions[0].tag.name} ({len(versions)}: "
                       f"{shown}{more})")
    for model in versions:
        store_api.delete(model.tag, force=force)
        click.echo(f"deleted {model.tag}")


@models.command("export")
@click.argument("tag")
@click.argument("dest", default=".")
@click.option("--sign", "key", metavar="KEYFILE", type=click.Path(dir_okay=False),
              help="Sign the archive with this Ed25519 private key (from `dosirak models "
                   "keygen`), so importers can require it with --require-signature.")
def export_model(tag: str, dest: str, key: str | None) -> None:
    """Export TAG into a .dosirakmodel archive at DEST (a path, a folder or an fsspec URL).

    Without DEST the archive lands in the current folder as NAME-VERSION.dosirakmodel.
    """
    model = store_api.get(tag)
    with user_location("export to", dest), \
            progress_bar(f"export {model.tag}", model.info.size) as advance:
        where = store_api.export_model(model.tag, dest, progress=advance, sign=key)
    click.echo(f"exported {model.tag} to {where}" + (" (signed)" if key else ""))


@models.command("import")
@click.argument("src")
@click.option("-f", "--force", is_flag=True, help="Replace the model if its tag exists.")
@click.option("--require-signature", "public_key", metavar="PUBKEYFILE",
              type=click.Path(dir_okay=False),
              help="Refuse the archive unless it was signed (export --sign) by the private key "
                   "of this Ed25519 public key.")
@click.option("--max-size", callback=byte_size, metavar="SIZE",
              help="Most bytes the archive may unpack, such as '100GiB' (default: the setting "
                   "model_store.import_max_size, 64GiB).")
def import_model(src: str, force: bool, public_key: str | None, max_size: int | None) -> None:
    """Import a .dosirakmodel archive from SRC (a path or an fsspec URL).

    Loading an imported model runs code from it (pickles): import only archives from people
    you trust, and require their signature (--require-signature) when they come by a route
    others could tamper with. Checksums prove an archive is whole, not who made it.
    """
    # The bar counts unpacked bytes, whose total is known only inside the archive: no total.
    with user_location("import from", src), progress_bar(f"import {src}", None) as advance:
        model = store_api.import_model(src, overwrite=force, progress=advance,
                                       max_size=max_size, require_signature=public_key)
    click.echo(f"imported {model.tag}" + (" (signature checked)" if public_key else ""))


@models.command("keygen")
@click.argument("directory", type=click.Path(file_okay=False))
def keygen(directory: str) -> None:
    """Make an Ed25519 key pair in DIRECTORY for signing exports.

    Writes dosirak-signing.key (private, mode 0600: keep it secret, sign with `export --sign`)
    and dosirak-signing.pub (give it to importers: `import --require-signature`).
    """
    private, public = store_api.generate_signing_keys(directory)
    click.echo(f"private key: {private}\npublic key: {public}")


# `dosirak models push|pull` talk to a hub; they live with the other hub commands.
from dosirak.cli.hub import pull_model, push_model  # noqa: E402 - needs the group above

models.add_command(push_model)
models.add_command(pull_model)
