"""``dosirak migrate PATH``: a directory saved by BentoML 0.13 becomes a dosirak bento."""

from __future__ import annotations

import click


def report_migration(path: str, version: str | None) -> None:
    """Migrate ``path`` and say what became of it, and what could not be carried over."""
    from dosirak.legacy.migrate import migrate as run

    result = run(path, version=version)
    bento = result.bento
    click.echo(f"imported {bento.tag} from BentoML bundle {path} "
               f"({len(bento.models)} artifacts as models: "
               f"{', '.join(m['tag'] for m in bento.models) or 'none'})")
    if result.not_carried:
        click.echo("not carried over:")
        for line in result.not_carried:
            click.echo(f"  - {line}")
    else:
        click.echo("everything was carried over")
    click.echo(f"serve it with: dosirak serve {bento.tag}")


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--version", help="The bento's version (default: the bundle's own).")
def migrate(path: str, version: str | None) -> None:
    """Turn the BentoML 0.13 saved bundle at PATH (a directory holding bentoml.yml) into a
    dosirak bento: its module, its artifacts as models, its environment. Lists what could not
    be carried over. The module's `import bentoml` is read as dosirak's 0.x API."""
    report_migration(path, version)
