"""``dosirak serve TARGET``: serve a service over HTTP."""

from __future__ import annotations

import sys

import click


@click.command(context_settings={"show_default": True})
@click.argument("target", default=".")
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1, or the "
              "configuration's api_server.host]; 0.0.0.0 for every interface.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="TCP port [default: 3000, or api_server.port]; 0 picks a free one.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="API worker processes [default: api_server.workers, 1].")
@click.option("--reload", is_flag=True, help="Restart the workers when the service's sources "
              "change (development).")
@click.option("--development", is_flag=True, help="Serve from this one process, every runner "
              "in it.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              envvar="DOSIRAK_CONFIG", show_envvar=True,
              help="Serving configuration (YAML); DOSIRAK_CONFIG_OPTIONS overrides its keys.")
def serve(target: str, host: str | None, port: int | None, workers: int | None, reload: bool,
          development: bool, config_file: str | None) -> None:
    """Serve the service TARGET over HTTP until SIGTERM or Ctrl-C.

    TARGET is module:svc (importable from the current directory), path/to/file.py:svc, a
    directory holding service.py (or a bentofile.yaml naming the service), or the tag of a
    built bento (name, name:latest, name:version) when no such path or module exists. Without
    ':svc' the one Service the module defines is served.

    \b
    Examples:
      dosirak serve service.py:svc
      dosirak serve iris_classifier:latest
      dosirak serve service:svc --reload
      dosirak serve examples/iris --workers 2 --port 8080
    """
    from dosirak.serve import serve as run

    sys.exit(run(target, host=host, port=port, workers=workers, reload=reload,
                 development=development, config_file=config_file))
