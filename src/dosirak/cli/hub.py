"""``dosirak hub ...`` (the model repository: serve, sign in, tokens, gc), ``dosirak models
push|pull``, ``dosirak push|pull`` (a bento with its models) and ``dosirak
yatai-service-start`` (the seeds' name for ``hub serve`` on port 3000).

The hub's server needs the ``hub`` extra (``pip install 'dosirak[hub]'``); the client needs only
dosirak itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dosirak.cli.common import byte_size, human_size, progress_bar
from dosirak.exceptions import MissingDependency


def _server_options(port: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("--host", default="127.0.0.1", show_default=True,
                         help="Address to listen on; 0.0.0.0 for every interface."),
            click.option("--port", type=click.IntRange(0, 65535), default=port,
                         show_default=True, help="TCP port; 0 picks a free one."),
            click.option("--data", type=click.Path(file_okay=False), default=None,
                         help="Folder of the hub's SQLite database, files and admin token "
                              "[default: $DOSIRAK_HOME/hub]."),
            click.option("--db", default=None, envvar="DOSIRAK_HUB_DB", show_envvar=True,
                         help="Database URL: postgresql://USER:PASS@HOST:PORT/DB, or "
                              "sqlite:///PATH [default: DATA/hub.db]."),
            click.option("--storage", default=None, envvar="DOSIRAK_HUB_STORAGE",
                         show_envvar=True, help="Where files go: a folder or an fsspec URL "
                         "such as s3://bucket/prefix [default: DATA/objects]."),
            click.option("--chunk-size", type=click.IntRange(64 << 10, 64 << 20),
                         default=8 << 20, show_default=True,
                         help="Bytes per upload chunk (larger ones are refused, 413)."),
            click.option("--max-size", default=None, metavar="SIZE",
                         help="Largest version accepted, such as '100GiB' [default: 64GiB]."),
            click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True,
                         envvar="FORWARDED_ALLOW_IPS", show_envvar=True, metavar="IPS",
                         help="Proxies (comma-separated addresses, or *) whose "
                              "X-Forwarded-For names the client: behind a load balancer, its "
                              "address, so that failed attempts count per real client."),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _run_server(host: str, port: int, data: str | None, db: str | None, storage: str | None,
                chunk_size: int, max_size: str | None, forwarded_allow_ips: str) -> None:
    try:
        from dosirak.hub.app import serve
        from dosirak.hub.hub import HubSettings
    except ImportError as error:
        raise MissingDependency(f"the hub server needs the hub extra ({error.name} is "
                                "missing): pip install 'dosirak[hub]'") from None
    from dosirak.store import home

    settings = HubSettings(data=Path(data) if data else home() / "hub", db=db, storage=storage,
                           chunk_size=chunk_size)
    if max_size:
        from dataclasses import replace

        settings = replace(settings, max_size=byte_size(None, None, max_size))
    serve(settings, host=host, port=port, forwarded_allow_ips=forwarded_allow_ips)


@click.group()
def hub() -> None:
    """The model repository: serve one, sign in to one, manage its tokens."""


@hub.command("serve")
@_server_options(3333)
def serve_hub(**options: Any) -> None:
    """Run a hub until Ctrl-C: REST API (/docs.json) and dashboard (/).

    On the first start it creates an admin token and writes it to DATA/admin-token (mode
    0600). Several hub processes may share one --db and one --storage.
    """
    _run_server(**options)


@click.command("yatai-service-start")
@_server_options(3000)
def yatai_service_start(**options: Any) -> None:
    """The seeds' name for `dosirak hub serve`, on port 3000."""
    _run_server(**options)


def _client() -> Any:
    from dosirak.hub.client import HubClient

    return HubClient.from_login()


@hub.command("login")
@click.argument("url")
@click.option("--token", required=True, envvar="DOSIRAK_HUB_TOKEN",
              help="A token the hub's admin gave you (dsk_...).")
def login(url: str, token: str) -> None:
    """Check TOKEN against the hub at URL and remember both ($DOSIRAK_HOME, mode 0600)."""
    from dosirak.hub.client import login_file, save_login

    who = save_login(url, token)
    click.echo(f"signed in to {url} as {who['name']} ({', '.join(who['scopes'])}); saved in "
               f"{login_file()}")


@hub.command("logout")
def logout() -> None:
    """Forget the saved hub and token."""
    from dosirak.hub.client import forget_login

    click.echo("signed out" if forget_login() else "was not signed in")


@hub.group("token")
def token() -> None:
    """Create, list and revoke the hub's tokens (needs an admin token)."""


@token.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, default=("read",), show_default=True,
              type=click.Choice(["read", "write", "admin"]),
              help="read: pull and browse; write: also push, delete, move aliases; admin: "
                   "also tokens and gc.")
@click.option("--expires", default=None, metavar="DURATION",
              help="Lifetime such as 30d, 12h or 1w [default: never].")
def create_token(name: str, scopes: tuple[str, ...], expires: str | None) -> None:
    """Create a token NAME and print it (shown this once only)."""
    with _client() as client:
        made = client.create_token(name, list(scopes), expires)
    click.echo(made["token"])
    click.echo(f"token {name} ({', '.join(made['scopes'])}, expires "
               f"{made['expires_at'] or 'never'}): keep it secret", err=True)


@token.command("list")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def list_tokens(output: str) -> None:
    """List the tokens (never their secrets)."""
    with _client() as client:
        rows = client.list_tokens()
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "revoked" if row["revoked_at"] else "active"
        click.echo(f"{row['name']:<24} {','.join(row['scopes']):<18} {state:<8} expires "
                   f"{(row['expires_at'] or 'never')[:19]:<20} last used "
                   f"{(row['last_used_at'] or 'never')[:19]}")


@token.command("revoke")
@click.argument("name")
def revoke_token(name: str) -> None:
    """Revoke the token NAME: it is refused from now on."""
    with _client() as client:
        client.revoke_token(name)
    click.echo(f"revoked token {name}")


@hub.command("gc")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--grace", default=None, metavar="DURATION",
              help="Keep what was touched more recently than this [default: 1h].")
def gc(dry_run: bool, grace: str | None) -> None:
    """Remove files no version uses and abandoned uploads."""
    with _client() as client:
        result = client.gc(dry_run=dry_run, grace=grace)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {result['blobs']} unused file(s) ({human_size(result['bytes'])}), "
               f"{result['uploads']} expired upload(s), {result['orphans']} orphan object(s), "
               f"{result.get('partials', 0)} partial file(s) of cut writes")


def _report(result: dict[str, Any], verb: str) -> None:
    kind = result.get("kind", "bento")
    if result["status"] == "exists":
        click.echo(f"{kind} {result['tag']}: already there (same digest), nothing to do")
    else:
        click.echo(f"{verb} {kind} {result['tag']} (digest {result['digest'][:16]})")


@click.command("push")
@click.argument("tag")
def push_model(tag: str) -> None:
    """Push the model TAG to the hub (resumes a push that was cut)."""
    from dosirak import models

    model = models.get(tag)
    with _client() as client, progress_bar(f"push {model.tag}", None) as advance:
        result = client.push_model(model.tag, progress=advance)
    _report(result, "pushed")


@click.command("pull")
@click.argument("tag")
@click.option("-f", "--force", is_flag=True,
              help="Replace a local model of the same tag whose contents differ.")
def pull_model(tag: str, force: bool) -> None:
    """Pull the model TAG (name:version, name:latest or name@alias) from the hub."""
    with _client() as client, progress_bar(f"pull {tag}", None) as advance:
        result = client.pull_model(tag, force=force, progress=advance)
    _report({**result, "kind": "model"}, "pulled")


@click.command("push")
@click.argument("tag")
def push_bento(tag: str) -> None:
    """Push the bento TAG and the models it uses to the hub."""
    from dosirak import bentos

    bento = bentos.get(tag)
    with _client() as client, progress_bar(f"push {bento.tag}", None) as advance:
        result = client.push_bento(bento.tag, progress=advance)
    for model in result["models"]:
        _report(model, "pushed")
    _report(result, "pushed")


@click.command("pull")
@click.argument("tag")
@click.option("-f", "--force", is_flag=True,
              help="Replace a local bento (and models) of the same tag whose contents differ.")
def pull_bento(tag: str, force: bool) -> None:
    """Pull the bento TAG (name:version, name:latest or name@alias) and the models it uses
    that the local store lacks."""
    with _client() as client, progress_bar(f"pull {tag}", None) as advance:
        result = client.pull_bento(tag, force=force, progress=advance)
    for model in result["models"]:
        _report(model, "pulled")
    _report({**result, "kind": "bento"}, "pulled")
